"""Training ``classify``: a torchvision ResNet, cross-entropy; from scratch, or fastai's ``fine_tune`` from pretrained weights.

With ``freeze_epochs`` the run is fastai's ``fine_tune`` in two stages: the
pretrained body frozen (its batch-norm layers kept trainable, as fastai's
``train_bn``) while the new head trains, at ``lr`` for the head and a tenth of
it for the rest; then everything unfrozen at half that ``lr``, spread over the
layer groups from ``lr / lr_mult`` (the stem) to ``lr`` (the head).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as F

from models.images import ImageSpec
from models.task import Dataset, Spec, TrainConfig
from models.tasks.classify import ClassifyConfig
from models.training.loop import EpochListener, FitResult
from models.training.recipe import Recipe, Stage
from models.weights import load_backbone

TOP_LOSSES = 9
"""How many validation images the top-losses figure shows (fastai's ``plot_top_losses(9)``)."""


class Explained(nn.Module):
    """The exported classifier: its logits and every class's activation map (lesson 6).

    ``cam[n, k] = sum_c fc.weight[k, c] * features[n, c]`` over the last convolutional
    features; their spatial mean plus the bias is the logit, so the logits are the
    ResNet's own.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        f = n.layer4(n.layer3(n.layer2(n.layer1(n.maxpool(n.relu(n.bn1(n.conv1(x))))))))
        logits = n.fc(torch.flatten(n.avgpool(f), 1))
        return logits, torch.einsum("nchw,kc->nkhw", f, n.fc.weight)


def top_losses(net: nn.Module, data: Dataset, output: np.ndarray, k: int = TOP_LOSSES) -> Any:
    """fastai's ``plot_top_losses``: the validation images with the highest loss, each under its top class's heatmap."""
    from models.plots import image_grid
    from models.tasks.classify.explain import overlay

    classes = data.spec["classes"]
    logits = torch.from_numpy(output.astype(np.float32))
    losses = F.cross_entropy(logits, torch.from_numpy(data.valid_y), reduction="none").numpy()
    probs = torch.softmax(logits, dim=1).numpy()
    worst = np.argsort(-losses)[:k]
    explained = Explained(net).eval().cpu()
    with torch.no_grad():
        _, cams = explained(torch.from_numpy(data.valid_x[0][worst]))
    image = ImageSpec.from_spec(data.spec)
    pictures, titles = [], []
    for i, cam in zip(worst, cams.numpy()):
        pred = int(output[i].argmax())
        photo = Image.fromarray((image.denormalise(data.valid_x[0][i]) * 255).round().astype(np.uint8))
        pictures.append(np.asarray(overlay(photo, cam[pred]), dtype=np.float32) / 255.0)
        titles.append(f"{classes[pred]}/{classes[data.valid_y[i]]}\n{losses[i]:.2f}/{probs[i, data.valid_y[i]]:.2f}")
    return image_grid(pictures, titles, "Top losses: prediction/actual, loss/probability of actual")


def layer_groups(net: nn.Module) -> list[list[nn.Parameter]]:
    """fastai's split of a ResNet: stem to ``layer2``, ``layer3`` and ``layer4``, the head."""
    parts = [[net.conv1, net.bn1, net.layer1, net.layer2], [net.layer3, net.layer4], [net.fc]]
    return [[p for m in group for p in m.parameters()] for group in parts]


def freeze_body(net: nn.Module, frozen: bool) -> None:
    """Freeze (or unfreeze) everything but the head, batch-norm layers excepted."""
    for name, module in net.named_children():
        if name == "fc":
            continue
        for m in module.modules():
            trainable = not frozen or isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False):
                p.requires_grad_(trainable)


def even_mults(lo: float, hi: float, n: int) -> list[float]:
    """``n`` rates from ``lo`` to ``hi``, evenly spaced on a log scale (fastai's ``even_mults``)."""
    return [float(lo)] if n == 1 else [float(v) for v in np.geomspace(lo, hi, n)]


class ClassifyRecipe(Recipe):
    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, ClassifyConfig)
        net = getattr(torchvision.models, config.arch)(weights=None, num_classes=len(spec["classes"]))
        if config.weights:
            load_backbone(net, config.weights, config.arch)
        return net

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def param_groups(self, net: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        assert isinstance(config, ClassifyConfig)
        if not config.freeze_epochs:
            return super().param_groups(net, config)
        groups = layer_groups(net)
        frozen = not net.conv1.weight.requires_grad
        # fastai: slice(lr) while frozen (the head at lr, the rest a tenth), slice(lr / lr_mult, lr) after
        rates = [config.lr / 10] * (len(groups) - 1) + [config.lr] if frozen else even_mults(config.lr / config.lr_mult, config.lr, len(groups))
        out = []
        for params, lr in zip(groups, rates):
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                out.append({"params": trainable, "lr": lr})
        return out

    def stages(self, data: Dataset) -> Iterator[Stage]:
        config = self.config
        assert isinstance(config, ClassifyConfig)
        if not config.freeze_epochs:
            yield from super().stages(data)
            return
        L.seed_everything(config.seed, workers=True, verbose=False)
        net = self.build(data.spec)
        freeze_body(net, True)
        yield Stage("frozen", self, data, replace(config, epochs=config.freeze_epochs), net=net, checkpoints="frozen")
        freeze_body(net, False)
        yield Stage("unfrozen", self, data, replace(config, lr=config.lr / 2), net=net, checkpoints="unfrozen", epoch_offset=config.freeze_epochs)

    def export_module(self, net: nn.Module) -> nn.Module:
        return Explained(net)

    def figures(self, data: Dataset, result: FitResult) -> dict[str, Any]:
        return {"top_losses.png": top_losses(result.net, data, result.valid_output)}

    def after_fit(self, result: FitResult, data: Dataset, listeners: Sequence[EpochListener]) -> None:
        """One learning curve over both stages."""
        if "frozen" in self.histories:
            offset = len(self.histories["frozen"])
            result.history = self.histories["frozen"] + [{**row, "epoch": row["epoch"] + offset} for row in self.histories["unfrozen"]]
