"""``/segment`` and ``/superres`` on a real ``bentoml serve``: BentoML's client and plain HTTP, odd and bad images."""

from __future__ import annotations

import base64
import concurrent.futures
import io
from pathlib import Path

import bentoml
import httpx
import numpy as np
import pytest
from conftest import SERVED_ENV
from PIL import Image

pytestmark = pytest.mark.slow
SUPERRES_CAP = int(SERVED_ENV["ZOO_SUPERRES_MAX_PIXELS"])




def encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.random.default_rng(width * height).integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)


def decode_png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_segment_with_bentoml_client(client: bentoml.SyncHTTPClient, mirror: Path) -> None:
    photo = sorted((mirror / "camvid_tiny" / "images").iterdir())[0]
    result = client.segment(image=photo, overlay=True)
    assert result["model_version"] and result["classes"][-1] == "Void"
    with Image.open(photo) as img:
        size = img.size
    mask = decode_png(result["mask_png"])
    assert mask.size == size and mask.mode == "L" and (result["width"], result["height"]) == size
    assert np.asarray(mask).max() < len(result["classes"])
    assert abs(sum(s["share"] for s in result["shares"]) - 1) < 1e-3
    counts = np.bincount(np.asarray(mask).ravel(), minlength=len(result["classes"]))
    assert [s["index"] for s in result["shares"]] == [i for i in np.argsort(-counts, kind="stable") if counts[i]]
    assert decode_png(result["overlay_png"]).size == size


@pytest.mark.parametrize("width, height, mode", [(131, 97, "RGB"), (1, 1, "RGB"), (40, 30, "L"), (64, 48, "RGBA")])
def test_segment_odd_images_over_plain_http(server: str, width: int, height: int, mode: str) -> None:
    r = httpx.post(f"{server}/segment", files={"image": ("x.png", encode(noise(width, height, mode)), "image/png")}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-model-version"] == body["model_version"]
    assert decode_png(body["mask_png"]).size == (width, height) and body["overlay_png"] is None


def test_superres_with_bentoml_client(client: bentoml.SyncHTTPClient, tmp_path: Path) -> None:
    path = tmp_path / "small.jpg"
    noise(70, 50).save(path, format="JPEG")
    out = client.superres(image=path)
    assert isinstance(out, Image.Image) and out.size == (140, 100) and out.mode == "RGB"


@pytest.mark.parametrize("width, height, mode", [(131, 97, "RGB"), (1, 1, "RGB"), (33, 20, "L"), (40, 41, "RGBA")])
def test_superres_odd_images_over_plain_http(server: str, width: int, height: int, mode: str) -> None:
    r = httpx.post(f"{server}/superres", files={"image": ("x.png", encode(noise(width, height, mode)), "image/png")}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["x-model-version"]
    assert Image.open(io.BytesIO(r.content)).size == (2 * width, 2 * height)


def test_superres_requests_of_other_sizes_run_together(server: str) -> None:
    sizes = [(90, 70), (31, 17), (120, 60), (8, 8)]

    def call(size: tuple[int, int]) -> tuple[int, tuple[int, int]]:
        r = httpx.post(f"{server}/superres", files={"image": ("x.png", encode(noise(*size)), "image/png")}, timeout=120)
        return r.status_code, Image.open(io.BytesIO(r.content)).size

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, sizes))
    assert results == [(200, (2 * w, 2 * h)) for w, h in sizes]


@pytest.mark.parametrize("route", ["/segment", "/superres"])
def test_bad_bytes_are_400(server: str, route: str) -> None:
    r = httpx.post(f"{server}{route}", files={"image": ("x.png", b"\x89PNG not really", "image/png")})
    assert r.status_code == 400, r.text
    assert r.json()["reason"] == "not_an_image"


def test_superres_over_the_pixel_cap_is_413(server: str) -> None:
    r = httpx.post(f"{server}/superres", files={"image": ("big.png", encode(Image.new("RGB", (250, 200))), "image/png")})
    assert r.status_code == 413, r.text
    assert r.json()["reason"] == "too_many_pixels" and str(SUPERRES_CAP) in r.json()["error"]


def test_segment_pixel_bomb_is_413(server: str) -> None:
    r = httpx.post(f"{server}/segment", files={"image": ("bomb.png", encode(Image.new("RGB", (3000, 2000))), "image/png")})
    assert r.status_code == 413, r.text
    assert r.json()["reason"] == "too_many_pixels"


def test_client_sees_a_clear_error(client: bentoml.SyncHTTPClient, tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(bentoml.exceptions.BentoMLException) as info:
        client.superres(image=bad)
    assert "not a decodable image" in str(info.value)
