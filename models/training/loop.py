"""The training loop: one Lightning fit of a recipe's network, the course's one-cycle AdamW recipe."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from models.errors import GuardFailed
from models.task import Dataset, TrainConfig

if TYPE_CHECKING:
    from models.training.distributed import Plan
    from models.training.recipe import Recipe

EpochListener = Callable[[dict[str, float]], None]


class TrainingDiverged(GuardFailed, ArithmeticError):
    """The loss stopped being a finite number."""


@dataclass
class FitResult:
    net: nn.Module
    history: list[dict[str, float]]
    valid_output: np.ndarray
    """Network outputs on the validation split, after training."""
    metric: float


class LitRecipe(L.LightningModule):
    """Wraps a network with its recipe's loss, metric and optimiser groups for Lightning's Trainer."""

    def __init__(self, recipe: "Recipe", net: nn.Module, config: TrainConfig, total_steps: int) -> None:
        super().__init__()
        self.recipe, self.net, self.config, self.total_steps = recipe, net, config, total_steps
        self._outputs: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return self.net(*x)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        *x, y = batch
        loss = self.recipe.loss(self.net(*x), y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the training loss became {loss.item()} at step {self.global_step}; lower the learning rate")
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        *x, y = batch
        out = self.net(*x)
        self.log("val_loss", self.recipe.loss(out, y), on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self._outputs.append(out.detach().float().cpu())
        self._targets.append(y.detach().cpu())

    def on_validation_epoch_end(self) -> None:
        if self._outputs:
            out, target = torch.cat(self._outputs), torch.cat(self._targets)
            if self.trainer.world_size > 1:  # every rank scores the whole split, not its own shard
                total = len(self.trainer.val_dataloaders.dataset)
                out, target = (unsharded(self.all_gather(t.to(self.device)).cpu(), total) for t in (out, target))
            metric = self.recipe.metric(out.numpy(), target.numpy())
            self.log(f"val_{self.recipe.metric_name}", metric, prog_bar=True)
        self._outputs.clear()
        self._targets.clear()

    def configure_optimizers(self):  # type: ignore[override]
        groups = self.recipe.param_groups(self.net, self.config)
        opt = torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)
        max_lr = [g["lr"] for g in groups]
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(self.total_steps, 1))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def unsharded(gathered: torch.Tensor, total: int) -> torch.Tensor:
    """Undo ``DistributedSampler``'s split of an unshuffled split: rank ``r``'s ``i``-th row is row ``i * world + r``.

    ``gathered`` is ``all_gather``'s ``(world, rows_per_rank, ...)``; the sampler's padding rows are dropped.
    """
    return gathered.transpose(0, 1).reshape(-1, *gathered.shape[2:])[:total]


class _History(L.Callback):
    """Collects per-epoch metrics and hands each epoch to the listeners."""

    def __init__(self, listeners: Sequence[EpochListener]) -> None:
        self.rows: list[dict[str, float]] = []
        self.listeners = listeners

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": float(trainer.current_epoch + 1)}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train_", "val_"))})
        self.rows.append(row)
        for listener in self.listeners:
            listener(row)


def loader(x: tuple[np.ndarray, ...], y: np.ndarray, batch_size: int, shuffle: bool, seed: int, workers: int = 0) -> DataLoader:
    """In-memory arrays -> a seeded DataLoader yielding ``(*inputs, target)``.

    ``workers`` > 0 (GPU hosts): that many worker processes collate batches into pinned memory,
    so the copy to the GPU overlaps the step. Under DDP Lightning swaps in its ``DistributedSampler``.
    """
    tensors = [torch.from_numpy(np.array(a, copy=True)) for a in (*x, y)]
    gen = torch.Generator().manual_seed(seed)
    fast = {"num_workers": workers, "pin_memory": True, "persistent_workers": True} if workers else {}
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle, generator=gen, **fast)


def loader_workers(plan: "Plan") -> int:
    """Data-loading processes per training process: none on the CPU (they would take its cores), else the CPUs shared out, at most 4."""
    if plan.accelerator != "gpu":
        return 0
    return max(1, min(4, len(os.sched_getaffinity(0)) // plan.devices - 1))


def first(output: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A network's first output (an export module may return more, e.g. the classifier's activation maps)."""
    return output[0] if isinstance(output, (tuple, list)) else output


@torch.no_grad()
def predict(net: nn.Module, x: tuple[np.ndarray, ...], batch_size: int = 256) -> np.ndarray:
    """Run ``net`` in eval mode over arrays on the CPU; returns numpy outputs."""
    net = net.eval().cpu()
    n = len(x[0])
    outs = [first(net(*(torch.from_numpy(a[i : i + batch_size]) for a in x))).float().numpy() for i in range(0, n, batch_size)]
    return np.concatenate(outs) if outs else np.empty((0,), dtype=np.float32)


def fit(
    recipe: "Recipe",
    data: Dataset,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    listeners: Sequence[EpochListener] = (),
    progress: bool = True,
    net: nn.Module | None = None,
) -> FitResult:
    """Train with ``recipe`` on ``data`` with ``config``; deterministic for a given seed on CPU.

    ``net`` continues training a given network (a later stage of a multi-stage
    recipe); without it the recipe builds a fresh one once the seed is set.
    Where it trains is the config's :func:`models.training.distributed.plan`;
    a plan of several processes applies in a rank that ``torchrun`` started,
    elsewhere (a baseline's fit in the flow's process) the fit takes one device.
    """
    from models.training.distributed import plan as resolve
    from models.training.distributed import under_torchrun

    plan = resolve(config)
    if plan.distributed and not under_torchrun():
        plan = plan.single()
    L.seed_everything(config.seed, workers=True, verbose=False)
    net = net if net is not None else recipe.build(data.spec)
    workers = loader_workers(plan)
    train = loader(data.train_x, data.train_y, config.batch_size, True, config.seed, workers)
    valid = loader(data.valid_x, data.valid_y, max(config.batch_size, 256), False, config.seed, workers)
    per_rank = math.ceil(len(data.train_y) / plan.world_size)  # DistributedSampler's share of each rank
    lit = LitRecipe(recipe, net, config, total_steps=math.ceil(per_rank / config.batch_size) * config.epochs)
    history = _History(listeners)
    callbacks: list[L.Callback] = [history, *recipe.callbacks()]
    if progress:
        callbacks.append(L.pytorch.callbacks.RichProgressBar())
    if checkpoint_dir is not None:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=0))
    chatter = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = chatter.level
    chatter.setLevel(logging.WARNING)  # hardware banners and a product tip on every fit
    try:
        gpu = plan.accelerator == "gpu"
        trainer = L.Trainer(
            max_epochs=config.epochs,
            **plan.trainer_args(),
            logger=False,
            callbacks=callbacks,
            enable_checkpointing=checkpoint_dir is not None,
            enable_progress_bar=progress,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=True if not gpu else "warn",  # some CUDA kernels (upsampling's backward) have no deterministic version
            default_root_dir=checkpoint_dir,
        )
        trainer.fit(lit, train, valid)
    finally:
        chatter.setLevel(level)
    recipe.finalize(net, data)
    output = predict(net, data.valid_x)
    return FitResult(net.eval(), history.rows, output, recipe.metric(output, data.valid_y))
