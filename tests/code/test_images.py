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


def test_the_crop_fit_cuts_the_centre_at_the_models_aspect_as_fastai_does() -> None:
    from models.images import ImageSpec, centre_crop_box

    assert centre_crop_box((120, 80), (32, 32)) == (20, 0, 100, 80)
    assert centre_crop_box((80, 120), (64, 32)) == (0, 40, 80, 80)  # a (w=64, h=32) model: a 2:1 band from a tall photo
    assert centre_crop_box((101, 50), (32, 32)) == (25, 0, 75, 50)  # fastai's int() truncation, both the size and the offset
    spec = {"image_size": [32, 32], "mean": [0.0] * 3, "std": [1.0] * 3, "fit": "crop"}
    wide = Image.new("RGB", (120, 80), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 20, 80))  # blue bands at both ends: cut off by the crop, squished in without it
    wide.paste((0, 0, 255), (100, 0, 120, 80))
    assert ImageSpec.from_spec(spec).pixels(wide)[..., 2].max() == 0
    assert ImageSpec.from_spec({**spec, "fit": "squish"}).pixels(wide)[..., 2].max() > 200
    with pytest.raises(ValueError, match="unknown fit 'pad'"):
        ImageSpec.from_spec({**spec, "fit": "pad"})
