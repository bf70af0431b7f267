"""ONNX export with a parity check against the PyTorch model."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from models.onnx_model import make_session
from models.task import Spec, Task
from models.training import predict

log = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """ONNX Runtime disagrees with PyTorch beyond the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    checked: int


def export_onnx(task: Task, net: nn.Module, spec: Spec, example: tuple[np.ndarray, ...], path: Path) -> Path:
    """Export ``net`` with a dynamic batch axis on every input and output."""
    net = net.eval().cpu()
    inputs = task.inputs(spec)
    outputs = task.outputs(spec)
    args = tuple(torch.from_numpy(np.ascontiguousarray(a[: max(2, min(len(a), 4))])) for a in example)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    dynamic_shapes = tuple({0: batch} for _ in inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        net,
        args,
        input_names=[t.name for t in inputs],
        output_names=[t.name for t in outputs],
        dynamic_shapes=dynamic_shapes,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    program.save(str(path))
    onnx.checker.check_model(str(path))
    return path


def check_parity(
    net: nn.Module,
    path: Path,
    input_names: list[str],
    x: tuple[np.ndarray, ...],
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Compare ONNX Runtime and PyTorch on held-out inputs, at batch sizes 1 and n."""
    session = make_session(path.read_bytes())
    worst = 0.0
    n = len(x[0])
    for batch in ([a[:1] for a in x], list(x)):
        expected = predict(net, tuple(batch))
        got = session.run(None, dict(zip(input_names, batch)))[0]
        if got.shape != expected.shape:
            raise ParityError(f"ONNX output shape {got.shape} != PyTorch {expected.shape}")
        diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
        worst = max(worst, diff)
        if not np.allclose(got, expected, atol=atol, rtol=rtol):
            raise ParityError(f"ONNX Runtime differs from PyTorch by up to {diff:.3g} (atol {atol}, rtol {rtol})")
    log.info("ONNX parity: max |diff| %.3g over %d inputs", worst, n)
    return ExportResult(path, worst, n)
