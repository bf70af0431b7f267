"""ONNX export with a parity check against the PyTorch model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from models.errors import GuardFailed
from models.onnx_model import make_session
from models.task import Dataset, Spec, Task
from models.training.loop import predict

log = logging.getLogger(__name__)


class ParityError(GuardFailed, RuntimeError):
    """ONNX Runtime disagrees with PyTorch beyond the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float
    checked: int
    served_metric: float | None = None
    """The validation metric of the model at ``path`` when it is not the PyTorch model's (INT8)."""
    rows_alone: bool = False
    """Whether the model at ``path`` must run each row in a call of its own (dynamic INT8; the spec says so)."""


@dataclass(frozen=True)
class Quantized:
    """The outcome of dynamic INT8 quantization: both validation metrics and whether the INT8 model is served."""

    path: Path
    float_metric: float
    int8_metric: float
    max_abs_diff: float
    """Largest difference of ``parity_view`` between the INT8 and the float model on the validation inputs."""
    accepted: bool
    why: str


def onnx_outputs(task: Task, path: Path, spec: Spec, x: tuple[np.ndarray, ...], batch: int = 32) -> np.ndarray:
    """ONNX Runtime's (CPU provider) first output on ``x``, in batches."""
    session = make_session(path.read_bytes(), accelerate=False)
    names = [t.name for t in task.inputs(spec)]
    n = len(x[0])
    return np.concatenate([session.run(None, dict(zip(names, (a[i : i + batch] for a in x))))[0] for i in range(0, n, batch)])


def quantize_int8(task: Task, src: Path, dst: Path) -> Path:
    """Dynamic INT8 of ``task.quantize_ops`` in the ONNX model ``src`` (INT8 weights, activations per call), to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=list(task.quantize_ops))
    onnx.checker.check_model(str(dst))
    return dst


def quantize_task(task: Task, path: Path, data: Dataset) -> Quantized:
    """Quantize ``task.quantize_ops`` of the exported float model to INT8 (dynamic: weights ahead of time,
    activations per call) and compare the validation metric of both ONNX models.

    The INT8 model is accepted when its metric is at most ``task.quantize_max_change`` worse. It is measured
    as it is served: one row per call (dynamic quantization scales a call's activations together, so a row's
    answer would otherwise depend on the rows batched with it; the registered spec says ``rows_alone``).
    """
    out = quantize_int8(task, path, path.with_name(path.stem + ".int8.onnx"))
    float_out = onnx_outputs(task, path, data.spec, data.valid_x)
    int8_out = onnx_outputs(task, out, data.spec, data.valid_x, batch=1)
    float_metric, int8_metric = task.metric(float_out, data.valid_y), task.metric(int8_out, data.valid_y)
    worse = float_metric - int8_metric if task.higher_is_better else int8_metric - float_metric
    diff = float(np.max(np.abs(task.parity_view(int8_out) - task.parity_view(float_out))))
    accepted = worse <= task.quantize_max_change + 1e-12
    why = (
        f"validation {task.metric_name} {float_metric:.4f} (float) -> {int8_metric:.4f} (INT8), "
        f"{'within' if accepted else 'beyond'} the allowed change of {task.quantize_max_change}"
    )
    log.info("dynamic INT8 quantization of %s: %s", ", ".join(task.quantize_ops), why)
    return Quantized(out, float_metric, int8_metric, diff, accepted, why)


def dynamic_shapes(task: Task, spec: Spec) -> tuple[dict[int, object], ...]:
    """torch.export dynamic axes from the task's input spec: ``batch`` and every other named axis."""
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    axes = []
    for tensor in task.inputs(spec):
        axes.append(
            {i: batch if d == "batch" else torch.export.Dim.DYNAMIC for i, d in enumerate(tensor.shape) if isinstance(d, str)}
        )
    return tuple(axes)


def export_onnx(task: Task, net: nn.Module, spec: Spec, example: tuple[np.ndarray, ...], path: Path) -> Path:
    """Export ``net`` (the recipe's export module) with every named axis of the task's input spec dynamic."""
    net = net.eval().cpu()
    inputs = task.inputs(spec)
    outputs = task.outputs(spec)
    args = tuple(torch.from_numpy(np.ascontiguousarray(a[: max(2, min(len(a), 4))])) for a in example)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        net,
        args,
        input_names=[t.name for t in inputs],
        output_names=[t.name for t in outputs],
        dynamic_shapes=dynamic_shapes(task, spec),
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
    x: tuple[np.ndarray, ...] | list[tuple[np.ndarray, ...]],
    atol: float = 1e-4,
    rtol: float = 1e-3,
    view: Callable[[np.ndarray], np.ndarray] = lambda a: a,
    accelerate: bool = False,
) -> ExportResult:
    """Compare ONNX Runtime and PyTorch on held-out inputs.

    ``x`` is either one group of inputs (checked at batch 1 and at its full size)
    or a list of groups (each checked as given: other batch sizes, other image
    sizes or lengths). ``view`` maps both outputs before comparing them.
    ``accelerate`` runs ONNX Runtime on TensorRT/CUDA where present (else on the CPU).
    """
    groups = [tuple(a[:1] for a in x), tuple(x)] if isinstance(x, tuple) else list(x)
    session = make_session(path.read_bytes(), accelerate=accelerate)
    worst = 0.0
    checked = 0
    for group in groups:
        expected = view(predict(net, tuple(group)))
        got = view(session.run(None, dict(zip(input_names, group)))[0])
        if got.shape != expected.shape:
            raise ParityError(f"ONNX output shape {got.shape} != PyTorch {expected.shape} for inputs {[a.shape for a in group]}")
        diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
        worst = max(worst, diff)
        checked = max(checked, len(group[0]))
        if not np.allclose(got, expected, atol=atol, rtol=rtol):
            raise ParityError(
                f"ONNX Runtime differs from PyTorch by up to {diff:.3g} (atol {atol}, rtol {rtol}) for inputs {[a.shape for a in group]}"
            )
    log.info("ONNX parity: max |diff| %.3g over %d input groups", worst, len(groups))
    return ExportResult(path, worst, checked)


FP16_TOLERANCE = 100.0
"""How much looser the parity check is on a TensorRT FP16 engine than in float32."""


def check_task_parity(
    task: Task, net: nn.Module, path: Path, spec: Spec, data: Dataset, accelerate: bool = False
) -> ExportResult:
    """The export step's check of ``net`` (the recipe's export module): the task's parity inputs, view and tolerance.

    With ``accelerate`` the check runs on TensorRT (FP16) or CUDA where present,
    with a tolerance ``FP16_TOLERANCE`` times looser; the CPU check is the gate.
    """
    names = [t.name for t in task.inputs(spec)]
    scale = FP16_TOLERANCE if accelerate else 1.0
    return check_parity(
        net.eval().cpu(),
        path,
        names,
        task.parity_inputs(data),
        atol=task.parity_atol * scale,
        rtol=task.parity_rtol * scale,
        view=task.parity_view,
        accelerate=accelerate,
    )
