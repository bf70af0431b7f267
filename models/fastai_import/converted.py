"""What a converter hands back: the network to export, the task's spec, and probes with fastai's own answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn


@dataclass
class Probe:
    """One request to the task's serving hooks, and what fastai answered for the same input."""

    endpoint: str
    request: dict[str, Any]
    """Keyword arguments of the endpoint's ``prepare``; files as paths relative to the output folder."""
    expected: Any
    """fastai's answer: ``{label: probability}`` (classify), ``[rating, ...]`` (rate)."""

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "request": self.request, "expected": self.expected}


@dataclass
class Converted:
    net: nn.Module
    """Takes the task's ONNX inputs in order; returns its first output."""
    spec: dict[str, Any]
    """The task's spec (``preprocess`` in ``spec.json``), as far as the Learner knows it."""
    example: tuple[np.ndarray, ...]
    """Model inputs for the export and the PyTorch-vs-ONNX check."""
    probes: list[Probe] = field(default_factory=list)
    learner: dict[str, str] = field(default_factory=dict)
    """What the Learner was (model class, loss, transforms), for the run's parameters."""
