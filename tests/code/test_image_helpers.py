"""Segmentation metrics and mask helpers; the super-resolution network's colour guarantee; the U-Net at odd sizes."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from models.tasks.segment import IGNORE, mean_iou, pixel_accuracy
from models.tasks.segment.masks import class_shares, overlay, png_bytes, predict_mask
from models.tasks.superres.networks import Bicubic, LumaResidual, ResidualPS, ssim_torch
from models.tasks.superres.quality import bicubic as pil_bicubic
from models.unet import DynamicUnet


def test_pixel_accuracy_and_mean_iou_skip_void() -> None:
    target = np.array([[0, 0, 1, IGNORE]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 0]], dtype=np.uint8)
    assert pixel_accuracy(pred, target) == 2 / 3
    # class 0: inter 1, union 2; class 1: inter 1, union 2
    assert mean_iou(pred, target, n_classes=3) == 0.5
    assert np.isnan(pixel_accuracy(pred, np.full_like(target, IGNORE)))


def test_mask_comes_back_at_the_photo_size_with_shares() -> None:
    logits = np.zeros((3, 4, 6), dtype=np.float32)
    logits[2, :2] = 1.0  # top half class 2, bottom half class 0
    mask = predict_mask(logits, (13, 9))
    assert mask.shape == (9, 13) and set(np.unique(mask)) == {0, 2}
    shares = class_shares(mask, ["a", "b", "c"])
    assert [s["label"] for s in shares] == ["a", "c"] or [s["label"] for s in shares] == ["c", "a"]
    assert abs(sum(s["share"] for s in shares) - 1) < 1e-6
    png = Image.open(io.BytesIO(png_bytes(mask)))
    assert png.mode == "L" and np.array_equal(np.asarray(png), mask)
    assert overlay(np.zeros((9, 13, 3), dtype=np.uint8), mask, 3).shape == (9, 13, 3)


class Constant(nn.Module):
    def __init__(self, value: float, scale: int) -> None:
        super().__init__()
        self.value, self.scale = value, scale

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return torch.full((y.shape[0], 1, y.shape[2] * self.scale, y.shape[3] * self.scale), self.value)


def test_the_bicubic_base_is_pils() -> None:
    x = np.random.default_rng(0).integers(64, 192, size=(3, 12, 17)).astype(np.float32) / 255  # no overshoot to clip
    ours = Bicubic(2)(torch.from_numpy(x)[None])[0].numpy()
    # inside (PIL renormalises its kernel at the edges instead of repeating them), up to PIL's 8-bit rounding
    diff = np.abs(ours - pil_bicubic(x, 2))[:, 4:-4, 4:-4]
    assert diff.max() < 1.5 / 255 and diff.mean() < 0.5 / 255
    torch_a075 = F.interpolate(torch.from_numpy(x)[None], scale_factor=2.0, mode="bicubic", align_corners=False)[0].numpy()
    assert np.allclose(Bicubic(2, a=-0.75)(torch.from_numpy(x)[None])[0].numpy(), torch_a075, atol=1e-5)  # same maths as torch's
    assert Bicubic(3)(torch.rand(1, 3, 4, 5)).shape == (1, 3, 12, 15)


def test_the_residual_only_touches_luminance() -> None:
    """Adding the same residual to R, G and B changes Y only: no colour cast, and no residual is plain bicubic."""
    x = torch.rand(2, 3, 7, 9)
    bicubic = Bicubic(2)(x)
    assert torch.allclose(LumaResidual(Constant(0.0, 2), 2)(x), bicubic)
    delta = LumaResidual(Constant(0.1, 2), 2)(x) - bicubic
    assert torch.allclose(delta, torch.full_like(delta, 0.1))
    cb = lambda t: -0.168736 * t[:, 0] - 0.331264 * t[:, 1] + 0.5 * t[:, 2]  # noqa: E731
    assert torch.allclose(cb(bicubic + delta), cb(bicubic), atol=1e-6)


def test_residual_pixel_shuffle_upscales() -> None:
    assert ResidualPS(scale=2, features=8, blocks=2)(torch.rand(1, 1, 5, 7)).shape == (1, 1, 10, 14)


def test_unet_keeps_odd_sizes_and_upscales() -> None:
    torch.manual_seed(0)
    net = DynamicUnet(5, "resnet10", width=0.125).eval()
    assert net(torch.rand(2, 3, 37, 53)).shape == (2, 5, 37, 53)
    sr = DynamicUnet(1, "resnet10", in_channels=1, upscale=2, width=0.125).eval()
    assert sr(torch.rand(1, 1, 9, 1)).shape == (1, 1, 18, 2)


def test_ssim_is_one_for_identical_images() -> None:
    a = torch.rand(2, 3, 20, 20)
    assert torch.allclose(ssim_torch(a, a), torch.ones(2), atol=1e-5)
    assert (ssim_torch(a, torch.rand(2, 3, 20, 20)) < 0.5).all()


def test_the_gamut_limit_keeps_saturated_colours() -> None:
    red = torch.zeros(1, 3, 6, 6)
    red[:, 0] = 1.0
    grey = torch.full((1, 3, 6, 6), 0.8)
    for value in (0.3, -0.3):
        net = LumaResidual(Constant(value, 2), 2, gamut_limit=True)
        assert torch.allclose(net(red), Bicubic(2)(red))  # a pure colour has no headroom: left as bicubic
        out = net(grey)
        assert torch.allclose(out, torch.full_like(out, min(0.8 + value, 1.0)))  # grey moves as far as it can
