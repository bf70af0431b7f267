"""Training ``segment``: the course's U-Net over a ResNet encoder, pixel cross-entropy without Void."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.task import Spec, TrainConfig
from models.tasks.segment import IGNORE, SegmentConfig
from models.training.recipe import Recipe
from models.unet import ARCHS, DynamicUnet


class SegmentRecipe(Recipe):
    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, SegmentConfig)
        if config.arch not in ARCHS:
            raise ValueError(f"unknown arch {config.arch!r}; known: {ARCHS}")
        return DynamicUnet(len(spec["classes"]), config.arch, weights=config.weights, width=config.width)

    def param_groups(self, net: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        assert isinstance(config, SegmentConfig)
        if config.encoder_lr_mult == 1.0 or not isinstance(net, DynamicUnet):
            return super().param_groups(net, config)
        encoder = {id(p) for p in net.encoder_parameters()}
        return [
            {"params": [p for p in net.parameters() if id(p) in encoder], "lr": config.lr * config.encoder_lr_mult},
            {"params": [p for p in net.parameters() if id(p) not in encoder], "lr": config.lr},
        ]

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Pixel cross-entropy over the pixels that are not ``IGNORE`` (Void)."""
        target = target.long()
        counted = (target != IGNORE).sum()
        total = F.cross_entropy(output, target, ignore_index=IGNORE, reduction="sum")
        return total / counted.clamp(min=1)
