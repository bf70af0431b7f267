"""Overlapping tiles reassemble exactly: a bicubic 'model' through the tiler equals whole-image upscaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.tiling import TilePlan, upscale_tiled


def bicubic(x: np.ndarray, scale: int = 2) -> np.ndarray:
    return F.interpolate(torch.from_numpy(np.ascontiguousarray(x)), scale_factor=float(scale), mode="bicubic", align_corners=False).numpy()


@pytest.mark.parametrize("height, width", [(97, 131), (1, 1), (5, 64), (64, 64), (200, 33)])
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
    assert {s[1:] for s in calls} == {(3, 32, 32)}  # every tile has the same shape: they batch
    assert max(s[0] for s in calls) <= 5


def test_identity_reassembles_bit_exactly() -> None:
    image = np.random.default_rng(0).random((3, 50, 70), dtype=np.float32)
    assert np.array_equal(upscale_tiled(image, lambda t: t, scale=1, tile=16, margin=3), image)


def test_the_plan_covers_the_image_once() -> None:
    plan = TilePlan(97, 131, tile=64, margin=8, scale=2)
    assert plan.core == 48 and (plan.rows, plan.cols) == (3, 3) and len(plan) == 9
    covered = np.zeros((97 * 2, 131 * 2), dtype=np.int32)
    ones = np.ones((1, 128, 128), dtype=np.float32)
    for top, left in plan.positions():
        patch = np.zeros_like(covered, dtype=np.float32)[None]
        plan.place(patch, ones, top, left)
        covered += patch[0].astype(np.int32)
    assert (covered == 1).all()
    with pytest.raises(ValueError, match="no core"):
        TilePlan(10, 10, tile=16, margin=8, scale=2)
