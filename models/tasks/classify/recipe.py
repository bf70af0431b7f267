"""Training ``classify``: a torchvision ResNet from scratch (or from local weights), cross-entropy."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from models.task import Spec
from models.tasks.classify import ClassifyConfig
from models.training.recipe import Recipe
from models.weights import load_weights


class ClassifyRecipe(Recipe):
    def build(self, spec: Spec) -> nn.Module:
        config = self.config
        assert isinstance(config, ClassifyConfig)
        net = getattr(torchvision.models, config.arch)(weights=None, num_classes=len(spec["classes"]))
        if config.weights:
            state = {k: v for k, v in load_weights(Path(config.weights)).items() if not k.startswith("fc.")}
            net.load_state_dict(state, strict=False)
        return net

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)
