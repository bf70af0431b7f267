"""A training recipe: everything one training run of a task needs, owned by that run.

:meth:`models.task.Task.recipe` builds a new :class:`Recipe` for each run, so a
run's state (its loss module, the histories of its stages, what it measured
after the fit) lives on the recipe, never on the shared task object. A
multi-stage recipe (a language model, then a classifier on its encoder;
gradual unfreezing) yields one :class:`Stage` per Lightning fit from
:meth:`Recipe.stages`; the code after a ``yield`` runs once that stage has
trained, like fastai's ``after_fit`` event. Lightning callbacks
(:meth:`Recipe.callbacks`) hook the events inside a fit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from models.task import Dataset, Spec, Task, TrainConfig
from models.training.loop import EpochListener, FitResult, fit


@dataclass
class Stage:
    """One Lightning fit of a run: whose loss and metric, on which data, with which config and network."""

    name: str
    recipe: "Recipe"
    data: Dataset
    config: TrainConfig
    net: nn.Module | None = None
    """The network to train; ``None``: the recipe builds a fresh one after the seed is set."""
    checkpoints: str | None = None
    """Sub-folder of the run's checkpoint folder for this fit (``None``: the folder itself)."""
    log_prefix: str = ""
    """Prefix of this fit's metric names in the epoch logs (e.g. ``lm_``)."""
    epoch_offset: int = 0
    """Added to the epoch numbers this fit logs (stages that continue one curve)."""


class Recipe(ABC):
    """How a task trains: network, loss, optimiser groups, the stages of a run and what follows them."""

    def __init__(self, task: Task, config: TrainConfig) -> None:
        self.task, self.config = task, config
        self.histories: dict[str, list[dict[str, float]]] = {}
        """Each stage's per-epoch rows, by stage name."""
        self.results: dict[str, FitResult] = {}
        self.report: dict[str, float] = {}
        """Figures measured after training (logged as metrics), e.g. a held-out check."""

    # ---------------------------------------------------------------- per fit

    @property
    def metric_name(self) -> str:
        return self.task.metric_name

    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        return self.task.metric(output, target)

    @abstractmethod
    def build(self, spec: Spec) -> nn.Module:
        """A fresh network; ``forward`` takes the ONNX inputs in order."""

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss."""

    def param_groups(self, net: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
        """Optimizer parameter groups, each with its own ``lr`` (discriminative rates)."""
        return [{"params": [p for p in net.parameters() if p.requires_grad], "lr": config.lr}]

    def callbacks(self) -> list[L.Callback]:
        """Lightning callbacks for every fit of this recipe (fastai's ``before_fit``, ``after_epoch``, ... events)."""
        return []

    def finalize(self, net: nn.Module, data: Dataset) -> None:
        """Adjust a trained network before evaluation and export (default: nothing)."""

    # --------------------------------------------------------------- per run

    def stages(self, data: Dataset) -> Iterator[Stage]:
        """The fits of a run, in order; default one, on a network built after the seed."""
        yield Stage("fit", self, data, self.config)

    def after_fit(self, result: FitResult, data: Dataset, listeners: Sequence[EpochListener]) -> None:
        """Runs once every stage has trained: checks and reports (raise to stop the run). Default: nothing."""

    def export_module(self, net: nn.Module) -> nn.Module:
        """The module to export to ONNX (e.g. an inference copy without weight dropout)."""
        return net

    def figures(self, data: Dataset, result: FitResult) -> dict[str, Any]:
        """Figures of the trained network or of the training itself (e.g. a language model's curve), by file name; default none."""
        return {}

    def train(
        self,
        data: Dataset,
        *,
        checkpoint_dir: Path | None = None,
        listeners: Sequence[EpochListener] = (),
        progress: bool = True,
    ) -> FitResult:
        """Run every stage, then :meth:`after_fit`; returns the last stage's result."""
        result: FitResult | None = None
        for stage in self.stages(data):
            folder = checkpoint_dir if checkpoint_dir is None or stage.checkpoints is None else checkpoint_dir / stage.checkpoints
            result = fit(
                stage.recipe,
                stage.data,
                stage.config,
                checkpoint_dir=folder,
                listeners=[_relabelled(f, stage.log_prefix, stage.epoch_offset) for f in listeners],
                progress=progress,
                net=stage.net,
            )
            self.histories[stage.name] = result.history
            self.results[stage.name] = result
        if result is None:
            raise ValueError(f"{type(self).__name__}.stages() yielded no stage")
        self.after_fit(result, data, listeners)
        return result


def _relabelled(listener: EpochListener, prefix: str, offset: int) -> EpochListener:
    if not prefix and not offset:
        return listener

    def relabel(row: dict[str, float]) -> None:
        listener({k if k == "epoch" else f"{prefix}{k}": (v + offset if k == "epoch" else v) for k, v in row.items()})

    return relabel


def notify(listeners: Sequence[Callable[[dict[str, float]], None]], row: dict[str, float]) -> None:
    """Hand one row of figures to every epoch listener (the run's MLflow log)."""
    for listener in listeners:
        listener(row)
