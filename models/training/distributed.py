"""Where a run trains: one process, or Lightning's DDP/FSDP over processes that ``torchrun`` starts.

:func:`plan` resolves a config's ``devices``, ``num_nodes``, ``strategy`` and
``precision`` against the machine. A plan of one process trains in the
calling process (:func:`models.training.loop.fit`). A larger one is handed to
``torchrun`` (``torch.distributed.run``, PyTorch's own launcher): every rank
runs :mod:`models.training.rank` on the same data and seed, Lightning's
strategy synchronises the gradients, and rank 0 alone logs the epochs to
MLflow and writes the trained weights (safetensors, with their sha256) for
the calling process to export and register. A rank that dies makes
``torchrun`` stop the others and exit non-zero: :class:`DistributedTrainingFailed`,
and nothing is registered.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from models.errors import ZooError
from models.settings import DistributedSettings
from models.task import TrainConfig

RESULT = "result.json"
WEIGHTS = "weights.safetensors"


class DistributedTrainingFailed(ZooError, RuntimeError):
    """A training process of a distributed run failed; the run stopped and registered nothing."""


@dataclass(frozen=True)
class Plan:
    """Lightning ``Trainer`` arguments for one run: accelerator, processes per node, nodes, strategy, precision."""

    accelerator: str
    devices: int
    num_nodes: int
    strategy: str
    precision: str

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes

    @property
    def distributed(self) -> bool:
        """More than one process: the run goes through ``torchrun``."""
        return self.world_size > 1

    def single(self) -> "Plan":
        """The same on one device of this node."""
        return Plan(self.accelerator, 1, 1, "auto", self.precision)

    def trainer_args(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes, "strategy": self.strategy, "precision": self.precision}

    def figures(self, config: TrainConfig) -> dict[str, str]:
        """What the run records about its hardware: world size, global batch size, the learning rate used."""
        return {
            "accelerator": self.accelerator,
            "world_size": str(self.world_size),
            "devices_per_node": str(self.devices),
            "num_nodes_used": str(self.num_nodes),
            "strategy_used": self.strategy,
            "precision_used": self.precision,
            "global_batch_size": str(config.batch_size * self.world_size),
            "lr_used": str(config.lr),
        }


def plan(config: TrainConfig, gpus: int | None = None, bf16: bool | None = None) -> Plan:
    """Resolve ``config``'s hardware fields on this machine (``gpus`` and ``bf16``: what it has; default: ask CUDA)."""
    import torch

    gpus = torch.cuda.device_count() if gpus is None else gpus
    if config.num_nodes < 1 or (config.devices is not None and config.devices < 1):
        raise ValueError(f"devices ({config.devices}) and num_nodes ({config.num_nodes}) must be at least 1")
    devices = config.devices or max(gpus, 1)
    if gpus and devices > gpus:
        raise ValueError(f"devices={devices} but this node has {gpus} GPU(s) (ZOO_DEVICES or the config's devices)")
    world = devices * config.num_nodes
    strategy = config.strategy
    if strategy == "auto":
        strategy = "ddp" if world > 1 else "auto"
    if strategy not in ("auto", "ddp", "fsdp"):
        raise ValueError(f"strategy {strategy!r} is not one of auto, ddp, fsdp")
    precision = config.precision
    if precision == "auto":
        if gpus:
            precision = "bf16-mixed" if (torch.cuda.is_bf16_supported() if bf16 is None else bf16) else "16-mixed"
        else:
            precision = "32-true"
    return Plan("gpu" if gpus else "cpu", devices, config.num_nodes, strategy, precision)


def under_torchrun() -> bool:
    """Whether this process is a rank that ``torchrun`` started (the variables Lightning's TorchElasticEnvironment reads)."""
    return all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK"))


def torchrun_command(p: Plan, rank_args: list[str], node: DistributedSettings) -> list[str]:
    """The ``torchrun`` command that starts this node's ``p.devices`` ranks of :mod:`models.training.rank`.

    One node: torchrun's ``--standalone`` (it picks a free local port); several: static rendezvous at node 0's address.
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={p.devices}", f"--nnodes={p.num_nodes}"]
    if p.num_nodes == 1:
        cmd.append("--standalone")
    else:
        cmd += [f"--node-rank={node.node_rank}", f"--master-addr={node.master_addr}", f"--master-port={node.master_port}"]
    return [*cmd, "-m", "models.training.rank", *rank_args]


def rank_args(task: str, config: TrainConfig, data_dir: Path, out: Path | None, run_id: str | None, checkpoint_dir: Path | None) -> list[str]:
    """Arguments of :mod:`models.training.rank`: the task, its resolved config and where rank 0 reports."""
    args = ["--task", task, "--values", json.dumps(asdict(config)), "--data-dir", str(data_dir)]
    if out is not None:
        args += ["--out", str(out)]
    if run_id:
        args += ["--run-id", run_id]
    if checkpoint_dir is not None:
        args += ["--checkpoints", str(checkpoint_dir)]
    return args


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (torchrun then stops its ranks)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_torchrun(command: list[str], on_start: Callable[[], None] = lambda: None) -> None:
    """Run ``command`` (from :func:`torchrun_command`) to its end; a non-zero exit raises :class:`DistributedTrainingFailed`."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        on_start()
        code = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if code != 0:
        what = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        raise DistributedTrainingFailed(f"distributed training failed: torchrun exited with {what} (its report of the failed rank is above); nothing was registered")


def train(recipe: Any, data: Any, command: list[str], out: Path, on_start: Callable[[], None] = lambda: None) -> Any:
    """Train ``recipe`` on the ranks ``command`` starts (:func:`torchrun_command`, rank 0 writing to ``out``);
    returns the :class:`~models.training.loop.FitResult` of rank 0's network, scored here on the whole validation split."""
    from models.training.loop import FitResult, predict

    run_torchrun(command, on_start)
    net = recipe.build(data.spec)
    summary = read_result(out, net)
    recipe.histories, recipe.report = summary["histories"], summary["report"]
    output = predict(net, data.valid_x)
    return FitResult(net.eval(), summary["history"], output, recipe.metric(output, data.valid_y))


def write_result(out: Path, net: Any, summary: dict[str, Any]) -> None:
    """Rank 0: the trained weights and what the calling process needs of the run, the weights' sha256 included."""
    from safetensors.torch import save_model

    out.mkdir(parents=True, exist_ok=True)
    save_model(net, str(out / WEIGHTS))
    summary = {**summary, "weights_sha256": hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()}
    (out / f"{RESULT}.tmp").write_text(json.dumps(summary))
    (out / f"{RESULT}.tmp").replace(out / RESULT)


def read_result(out: Path, net: Any) -> dict[str, Any]:
    """Load rank 0's weights into ``net`` (checked against their sha256 first); returns its summary."""
    from safetensors.torch import load_model

    try:
        summary = json.loads((out / RESULT).read_text())
    except (OSError, ValueError) as exc:
        raise DistributedTrainingFailed(f"distributed training ended without rank 0's result in {out}: {exc}") from None
    digest = hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()
    if digest != summary.get("weights_sha256"):
        raise DistributedTrainingFailed(f"{out / WEIGHTS}: sha256 {digest[:12]} is not the {str(summary.get('weights_sha256'))[:12]} rank 0 wrote")
    load_model(net, str(out / WEIGHTS), strict=True)
    return summary
