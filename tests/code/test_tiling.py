"""Overlapping tiles reassemble exactly: bicubic, and a conv net whose receptive field fits the margin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from models.tiling import TilePlan, upscale_tiled


def bicubic(x: np.ndarray, scale: int = 2) -> np.ndarray:
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(x)), scale_factor=float(scale), mode="bicubic", align_corners=False).numpy()


@pytest.mark.parametrize("height, width", [(97, 131), (1, 1), (5, 64), (64, 64), (200, 33), (33, 32)])
def test_bicubic_through_the_tiler_equals_direct_upscaling(height: int, width: int) -> None:
    image = np.random.default_rng(height * width).random((3, height, width), dtype=np.float32)
    calls: list[tuple[int, ...]] = []

    def run(tiles: np.ndarray) -> np.ndarray:
        calls.append(tiles.shape)
        return bicubic(tiles)

    tiled = upscale_tiled(image, run, scale=2, tile=32, margin=4, batch=5)
    direct = bicubic(image[None])[0]
    assert tiled.shape == (3, 2 * height, 2 * width)
    np.testing.assert_allclose(tiled, direct, atol=1e-5)
    # every window of an image has the same shape (the tile's, or the image's where it is smaller): they batch
    assert {s[1:] for s in calls} == {(3, min(32, height), min(32, width))}
    assert max(s[0] for s in calls) <= 5


def test_a_conv_net_through_the_tiler_equals_the_whole_image() -> None:
    """Zero padding inside the net, image borders included: exact when the margin covers the receptive field."""
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(4) for m in (nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())], nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    image = np.random.default_rng(1).random((3, 70, 90), dtype=np.float32)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    whole = run(image[None])[0]
    np.testing.assert_allclose(upscale_tiled(image, run, scale=2, tile=24, margin=5), whole, atol=1e-5)  # receptive field 5
    assert np.abs(upscale_tiled(image, run, scale=2, tile=24, margin=2) - whole).max() > 1e-3  # too small a margin shows


def test_identity_reassembles_bit_exactly() -> None:
    image = np.random.default_rng(0).random((3, 50, 70), dtype=np.float32)
    assert np.array_equal(upscale_tiled(image, lambda t: t, scale=1, tile=16, margin=3), image)


@pytest.mark.parametrize("height, width", [(97, 131), (100, 64), (64, 65), (10, 200)])
def test_the_cores_cover_the_image_once_inside_the_windows(height: int, width: int) -> None:
    plan = TilePlan(height, width, tile=64, margin=8, scale=2)
    covered = np.zeros((height * 2, width * 2), dtype=np.int32)
    wh, ww = plan.window
    for t in plan.tiles():
        assert 0 <= t.win_top <= t.top and t.top + t.height <= t.win_top + wh <= height
        assert 0 <= t.win_left <= t.left and t.left + t.width <= t.win_left + ww <= width
        patch = np.zeros((1, *covered.shape), dtype=np.float32)
        plan.place(patch, np.ones((1, wh * 2, ww * 2), dtype=np.float32), t)
        covered += patch[0].astype(np.int32)
    assert (covered == 1).all()
    assert len(plan) == len(list(plan.tiles()))
    with pytest.raises(ValueError, match="no core"):
        TilePlan(10, 10, tile=16, margin=8, scale=2)
