"""Training ``superres``: the luma residual over bicubic (``resps`` or the U-Net), L1 + SSIM or the feature loss.

After the fit, :func:`~models.tasks.superres.sources.held_out_report` scores the
model on the numbered validation inputs and on images from other sources, and
the run stops (nothing registered) when the model does harm there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from models.task import Dataset, Spec
from models.tasks.superres import SuperresConfig
from models.tasks.superres.networks import FeatureLoss, LumaResidual, ResidualPS, l1_ssim
from models.tasks.superres.sources import check_no_harm, held_out_report
from models.training.loop import EpochListener, FitResult, predict
from models.training.recipe import Recipe, notify
from models.unet import ARCHS, DynamicUnet


class SuperresRecipe(Recipe):
    def __init__(self, task, config) -> None:  # noqa: ANN001 - the Recipe signature
        super().__init__(task, config)
        assert isinstance(config, SuperresConfig)
        self.feature_loss = FeatureLoss(Path(config.feature_weights)) if config.feature_weights else None

    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, SuperresConfig)
        if config.colour not in ("luma", "rgb"):
            raise ValueError(f"unknown colour {config.colour!r}; known: luma, rgb")
        ch = 1 if config.colour == "luma" else 3
        if config.arch == "unet":
            if config.encoder not in ARCHS:
                raise ValueError(f"unknown encoder {config.encoder!r}; known: {ARCHS}")
            body: nn.Module = DynamicUnet(ch, config.encoder, in_channels=ch, upscale=config.scale, width=config.width)
        elif config.arch == "resps":
            body = ResidualPS(config.scale, features=max(8, int(64 * config.width)), blocks=config.blocks, channels=ch, res_scale=config.res_scale)
        else:
            raise ValueError(f"unknown arch {config.arch!r}; known: unet, resps")
        last = [m for m in body.modules() if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.mul_(config.residual_init)
        return LumaResidual(body, config.scale, luma=config.colour == "luma", gamut_limit=config.gamut_limit)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.config, SuperresConfig)
        if self.feature_loss is not None:
            self.feature_loss = self.feature_loss.to(output.device)
            return self.feature_loss(output, target)
        return l1_ssim(output, target, self.config.ssim_weight)

    def after_fit(self, result: FitResult, data: Dataset, listeners: Sequence[EpochListener]) -> None:
        """Score the numbered inputs and other sources against bicubic; stop the run when the model does harm."""
        config = self.config
        assert isinstance(config, SuperresConfig)
        self.report = held_out_report(lambda x: predict(result.net, (x,)), data, config)
        notify(listeners, {"epoch": float(config.epochs), **self.report})
        check_no_harm(self.report, config.max_harm_db)
