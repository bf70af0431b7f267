"""The super-resolution networks and losses (PyTorch): the luma residual over bicubic, its bodies, SSIM and the feature loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.tasks.superres.quality import LUMA
from models.unet import icnr_
from models.weights import load_weights


def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    g = torch.exp(-((torch.arange(size, dtype=torch.float32) - size // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_torch(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image mean SSIM of ``(N, C, H, W)`` tensors (Gaussian window 11, sigma 1.5, per channel)."""
    c = a.shape[1]
    win = _gauss_window().to(a).repeat(c, 1, 1, 1)
    pad = win.shape[-1] // 2
    a_, b_ = F.pad(a, [pad] * 4, mode="replicate"), F.pad(b, [pad] * 4, mode="replicate")

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    mu_a, mu_b = blur(a_), blur(b_)
    var_a = blur(a_ * a_) - mu_a**2
    var_b = blur(b_ * b_) - mu_b**2
    cov = blur(a_ * b_) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)


class ResidualPS(nn.Module):
    """A light residual network on one channel with a pixel-shuffle upscale (ESPCN/EDSR-like)."""

    def __init__(self, scale: int = 2, features: int = 64, blocks: int = 6, channels: int = 1, res_scale: float = 0.2) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(), nn.Conv2d(features, features, 3, padding=1))
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(features, features, 3, padding=1)
        self.up = nn.Conv2d(features, channels * scale**2, 3, padding=1)
        icnr_(self.up.weight, scale)
        nn.init.zeros_(self.up.bias)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        y = h
        for block in self.body:
            y = y + self.res_scale * block(y)
        return self.shuffle(self.up(F.relu(self.tail(y) + h)))


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((t - 5) * t + 8) * t * a - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


class Bicubic(nn.Module):
    """Bicubic upscaling by an integer ``scale`` with PIL's kernel (a = -0.5), edges repeated.

    PyTorch's own bicubic uses a = -0.75, a sharper kernel that rings more on
    saturated edges; this one reproduces PIL's ``Image.resize(BICUBIC)`` (the
    baseline) up to rounding, as one grouped 5x5 convolution and a pixel shuffle.
    """

    def __init__(self, scale: int, channels: int = 3, a: float = -0.5) -> None:
        super().__init__()
        taps = np.arange(-2, 3, dtype=np.float64)
        rows = []
        for phase in range(scale):
            w = _cubic(taps - ((phase + 0.5) / scale - 0.5), a)
            rows.append(w / w.sum())
        k = np.asarray(rows)  # (scale, 5)
        kernel = np.einsum("pi,qj->pqij", k, k).reshape(scale * scale, 1, 5, 5)
        self.scale, self.channels = scale, channels
        self.register_buffer("kernel", torch.from_numpy(np.tile(kernel, (channels, 1, 1, 1))).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), self.kernel, groups=self.channels)
        return F.pixel_shuffle(out, self.scale)


class LumaResidual(nn.Module):
    """``bicubic(x) + body(Y(x))``: an RGB image in [0, 1] in, its ``scale``x upscaling out.

    With ``luma=False`` the body sees and corrects all three channels instead
    (``bicubic(x) + body(x)``): more to gain on JPEG-damaged colour, but colour can drift.
    """

    def __init__(self, body: nn.Module, scale: int, luma: bool = True, gamut_limit: bool = False) -> None:
        super().__init__()
        self.body, self.scale, self.luma_only, self.gamut_limit = body, scale, luma, gamut_limit
        self.upsample = Bicubic(scale)
        self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.upsample(x)
        if not self.luma_only:
            return base + self.body((x - 0.45) / 0.25)
        delta = self.body(((x * self.luma).sum(dim=1, keepdim=True) - 0.45) / 0.25)
        if self.gamut_limit:  # no channel is pushed out of [0, 1]: saturated colours keep their hue
            inside = base.clamp(0.0, 1.0)
            low, high = -inside.amin(dim=1, keepdim=True), 1.0 - inside.amax(dim=1, keepdim=True)
            delta = torch.minimum(torch.maximum(delta, low), high)
        return base + delta


class FeatureLoss(nn.Module):
    """The course's feature loss: pixel L1 + L1 of VGG16 features and (x 5e3) of their Gram matrices."""

    def __init__(self, weights: Path, layer_weights: tuple[float, ...] = (20.0, 70.0, 10.0)) -> None:
        super().__init__()
        import torchvision

        vgg = torchvision.models.vgg16(weights=None).features
        state = load_weights(weights)
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        vgg.load_state_dict(state)
        vgg.eval().requires_grad_(False)
        pools = [i for i, m in enumerate(vgg) if isinstance(m, nn.MaxPool2d)]
        self.layer_ids = [i - 1 for i in pools[1:4]]  # the ReLU before the 2nd, 3rd and 4th pooling
        self.vgg = vgg[: self.layer_ids[-1] + 1]
        self.layer_weights = layer_weights
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.mean) / self.std
        for i, layer in enumerate(self.vgg):
            h = layer(h)
            if i in self.layer_ids:
                out.append(h)
        return out

    @staticmethod
    def gram(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        f = x.reshape(n, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.l1_loss(output, target)
        for fo, ft, w in zip(self.features(output), self.features(target), self.layer_weights):
            loss = loss + w * F.l1_loss(fo, ft) + w**2 * 5e3 * F.l1_loss(self.gram(fo), self.gram(ft))
        return loss


def l1_ssim(output: torch.Tensor, target: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    loss = F.l1_loss(output, target)
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - ssim_torch(output, target).mean())
    return loss
