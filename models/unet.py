"""The course's U-Net (fast.ai's ``DynamicUnet``), shared by ``segment`` and ``superres``.

A torchvision ResNet encoder (built from scratch: ``weights=None``; trained
weights may be loaded from a local file), a middle block, one decoder block per
encoder stage that upsamples with :class:`PixelShuffleICNR` and concatenates the
stage's skip connection, and a final block that returns to the input size,
concatenates the input itself ("last cross") and maps to ``n_out`` channels.
``upscale`` adds a last pixel-shuffle stage (super-resolution).

Every upsampled map is resized to its skip connection's size unconditionally
(``F.interpolate(size=skip.shape[-2:])``, an identity when the sizes already
agree): a shape-dependent Python ``if`` would be frozen by the ONNX export at
the example's size and then fail in ONNX Runtime at other sizes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from models.weights import load_backbone

ARCHS = ("resnet18", "resnet34", "resnet10")
"""Encoders: torchvision's ResNet-18 and -34, and ``resnet10`` (ResNet-18 with one block per stage)."""


def conv_layer(ni: int, nf: int, ks: int = 3, act: bool = True, bn: bool = True) -> nn.Sequential:
    """Conv (no bias when followed by BatchNorm), BatchNorm, ReLU: fast.ai's ``ConvLayer``."""
    conv = nn.Conv2d(ni, nf, ks, padding=ks // 2, bias=not bn)
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    layers: list[nn.Module] = [conv]
    if bn:
        layers.append(nn.BatchNorm2d(nf))
    if act:
        layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def icnr_(weight: torch.Tensor, scale: int = 2, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR initialisation (Aitken et al. 2017): each sub-pixel starts as the same kernel, no checkerboard."""
    ni, nf, h, w = weight.shape
    sub = init(weight.new_zeros([ni // scale**2, nf, h, w])).transpose(0, 1)
    sub = sub.contiguous().view(ni // scale**2, nf, -1).repeat(1, 1, scale**2)
    with torch.no_grad():
        weight.copy_(sub.contiguous().view([nf, ni, h, w]).transpose(0, 1))
    return weight


class PixelShuffleICNR(nn.Sequential):
    """1x1 conv to ``nf * scale**2`` channels (ICNR-initialised), ReLU, pixel shuffle by ``scale``."""

    def __init__(self, ni: int, nf: int, scale: int = 2, act: bool = True) -> None:
        conv = nn.Conv2d(ni, nf * scale**2, 1)
        icnr_(conv.weight, scale)
        nn.init.zeros_(conv.bias)
        layers: list[nn.Module] = [conv]
        if act:
            layers.append(nn.ReLU(inplace=False))
        layers.append(nn.PixelShuffle(scale))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two conv layers plus a 1x1 projection of the input (fast.ai's ``ResBlock(1, ni, nf)``)."""

    def __init__(self, ni: int, nf: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_layer(ni, nf), conv_layer(nf, nf, act=False))
        self.idconv = nn.Identity() if ni == nf else conv_layer(ni, nf, ks=1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.convs(x) + self.idconv(x))


class UnetBlock(nn.Module):
    """Upsample the decoder's map, resize it to the skip's size, concatenate the skip, two convs."""

    def __init__(self, up_in: int, skip_in: int, out: int) -> None:
        super().__init__()
        self.shuf = PixelShuffleICNR(up_in, up_in // 2)
        self.bn = nn.BatchNorm2d(skip_in)
        ni = up_in // 2 + skip_in
        self.conv1 = conv_layer(ni, out)
        self.conv2 = conv_layer(out, out)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.shuf(up), size=skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(F.relu(torch.cat([up, self.bn(skip)], dim=1))))


def resnet_encoder(arch: str, in_channels: int = 3, weights: str | Path | None = None) -> nn.Module:
    """A torchvision ResNet without its head, from scratch; optional weights from a local file or ``imagenet`` (:mod:`models.pretrained`)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown encoder {arch!r}; known: {', '.join(ARCHS)}")
    if arch == "resnet10":
        net = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    else:
        net = getattr(torchvision.models, arch)(weights=None)
    if weights:
        load_backbone(net, weights, arch)
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        with torch.no_grad():  # keep trained RGB filters meaningful for other channel counts
            net.conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels)
    net.fc = nn.Identity()
    return net


class DynamicUnet(nn.Module):
    """U-Net over a ResNet encoder; ``forward(x)`` maps ``(B, in_channels, H, W)`` to ``(B, n_out, H*upscale, W*upscale)``."""

    def __init__(
        self,
        n_out: int,
        arch: str = "resnet18",
        in_channels: int = 3,
        upscale: int = 1,
        weights: str | Path | None = None,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        enc = resnet_encoder(arch, in_channels, weights)
        self.stem = nn.Sequential(enc.conv1, enc.bn1, enc.relu)  # stride 2, 64 channels
        self.pool = enc.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = enc.layer1, enc.layer2, enc.layer3, enc.layer4
        # fast.ai's widths for a ResNet-18/34 encoder, times ``width`` (even numbers for the shuffles)
        c = [2 * max(4, round(n * width / 2)) for n in (1024, 512, 384, 256, 96)]
        self.middle = nn.Sequential(nn.BatchNorm2d(512), nn.ReLU(), conv_layer(512, c[0]), conv_layer(c[0], c[1]))
        # (upsampled channels in, skip channels, out): fast.ai keeps the width except in the last block
        self.up4 = UnetBlock(c[1], 256, c[1])
        self.up3 = UnetBlock(c[1], 128, c[2])
        self.up2 = UnetBlock(c[2], 64, c[3])
        self.up1 = UnetBlock(c[3], 64, c[4])
        self.to_full = PixelShuffleICNR(c[4], c[4])
        self.cross = ResBlock(c[4] + in_channels, c[4])
        self.upscale = PixelShuffleICNR(c[4], c[4], scale=upscale) if upscale > 1 else nn.Identity()
        self.head = nn.Conv2d(c[4], n_out, 1)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.stem, self.layer1, self.layer2, self.layer3, self.layer4) for p in m.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.stem(x)
        s1 = self.layer1(self.pool(s0))
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        y = self.middle(self.layer4(s3))
        y = self.up1(self.up2(self.up3(self.up4(y, s3), s2), s1), s0)
        y = F.interpolate(self.to_full(y), size=x.shape[-2:], mode="nearest")
        y = self.cross(torch.cat([y, x], dim=1))
        return self.head(self.upscale(y))
