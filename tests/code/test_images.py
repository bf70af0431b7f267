"""Safe image decoding: the checks every image API relies on."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from models.images import decode_image
from models.inputs import InvalidInput


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def test_decodes_to_rgb() -> None:
    img = decode_image(png(10, 8, "L"))
    assert img.mode == "RGB" and img.size == (10, 8)


@pytest.mark.parametrize("body", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 30, png(10, 10)[:40]])
def test_garbage_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image(body)
    assert info.value.reason == "not_an_image" and info.value.status == 400


def test_empty_body_is_refused() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"")


def test_pixel_bomb_is_refused_before_decoding() -> None:
    bomb = png(4000, 3000)  # 12 MP of zeros compresses to a few KB
    assert len(bomb) < 100_000
    with pytest.raises(InvalidInput) as info:
        decode_image(bomb, max_pixels=1_000_000)
    assert info.value.reason == "too_many_pixels" and info.value.status == 413


def test_oversize_body_is_refused() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_image(png(64, 64), max_bytes=10)
    assert info.value.reason == "too_large" and info.value.status == 413
