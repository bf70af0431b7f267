"""The contract every course task implements.

A task bundles what training, export and serving must agree on: its data (the
schema check and the loader that fits the spec), the metric and its baselines,
the ONNX inputs and outputs, and two companions found through it:

* :meth:`Task.recipe`, the training recipe (network, loss, optimiser groups,
  stages), which needs PyTorch and is imported only to train;
* the serving hooks (``models/tasks/<name>/serving.py``, see
  :mod:`models.serving`), which need neither PyTorch nor BentoML.

Importing a task imports no PyTorch. Concrete tasks live in
``models/tasks/<name>/`` and expose a module-level ``TASK``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from models.training.recipe import Recipe

Spec = dict[str, Any]
"""The JSON-serialisable preprocessing spec that travels with a model."""


@dataclass(frozen=True)
class TensorSpec:
    """One ONNX input or output: name, dtype and shape.

    A string in ``shape`` is a dynamic axis: ``"batch"`` first, then any other
    named axis (``"height"``, ``"length"``, ...); the task's ``reference_sizes``
    gives each named axis a size for warm-up and latency checks.
    """

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters shared by every task; tasks subclass it for their own."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 42
    limit: int | None = None
    """Use at most this many training and validation examples (tiny configs)."""
    devices: int | None = None
    """Training processes per node (``None``: every visible GPU, else one on the CPU); ``batch_size`` is per process."""
    num_nodes: int = 1
    strategy: str = "auto"
    """Lightning's strategy: ``auto`` (DDP when there is more than one process), ``ddp`` or ``fsdp``."""
    precision: str = "auto"
    """``auto``: ``bf16-mixed`` on GPUs that have bfloat16, else ``16-mixed``; ``32-true`` on the CPU."""


HARDWARE_FIELDS = ("devices", "num_nodes", "strategy", "precision")
"""The fields of :class:`TrainConfig` that say where a run trains, not what: left out of its code hash."""


@dataclass(frozen=True)
class PromotionPolicy:
    """What ``zoo promote`` demands of a candidate version of a task."""

    tolerance: float = 0.0
    """How much worse than the champion's validation metric the candidate may be."""
    latency_budget_ms: float = 100.0
    """p95 latency budget at batch 1 on the reference input, ONNX Runtime on this machine."""
    max_abs_diff: float = 1e-3
    """The largest ONNX-vs-PyTorch difference the export's parity check may have logged."""
    online_min_requests: int = 100
    """Where the services shadowed the candidate: the compared requests the online gate needs at least."""
    online_limit: float | None = None
    """The shadow agreement the online gate needs, in the task's measure (``None``: the measure's default,
    :data:`models.serving.ONLINE_LIMITS`)."""


@dataclass
class Dataset:
    """Preprocessed arrays for one split of a task, plus the fitted spec."""

    train_x: tuple[np.ndarray, ...]
    train_y: np.ndarray
    valid_x: tuple[np.ndarray, ...]
    valid_y: np.ndarray
    spec: Spec
    extras: dict[str, Any] = field(default_factory=dict)
    """Task-specific material for figures and baselines (e.g. raw images); never written during training."""

    def limited(self, limit: int | None) -> "Dataset":
        """Return the first ``limit`` examples of each split (all when ``None``)."""
        if limit is None:
            return self
        return Dataset(
            tuple(a[:limit] for a in self.train_x),
            self.train_y[:limit],
            tuple(a[:limit] for a in self.valid_x),
            self.valid_y[:limit],
            self.spec,
            self.extras,
        )


def missing_dataset(root: Path) -> str:
    """The problem of a dataset folder that is not there, with the command that fetches it."""
    return f"{root} does not exist: run `zoo data ingest --dataset {root.name}` (offline: put its unpacked folder in ZOO_DATA_MIRROR first)"


class Task(ABC):
    """Base class of a course task. Subclasses fill in the class attributes."""

    name: ClassVar[str]
    datasets: ClassVar[tuple[str, ...]]
    """Sample datasets (folders under ``data/``) this task trains on."""
    downloads: ClassVar[dict[str, str]] = {}
    """Full datasets a named config trains on (e.g. Oxford-IIIT Pets): folder name -> the URL of the tarball that
    unpacks to it. Not fetched by default: ``zoo data ingest --dataset NAME`` (or the mirror's folder of that name)."""
    metric_name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    config_class: ClassVar[type[TrainConfig]] = TrainConfig
    configs: ClassVar[dict[str, dict[str, Any]]]
    """Named configs, at least ``demo`` and ``tiny``: overrides of ``config_class``."""
    promotion: ClassVar[PromotionPolicy] = PromotionPolicy()
    parity_atol: ClassVar[float] = 1e-4
    parity_rtol: ClassVar[float] = 1e-3
    """ONNX-vs-PyTorch tolerance, applied to ``parity_view`` of the outputs."""
    quantize_ops: ClassVar[tuple[str, ...]] = ()
    """ONNX operators to quantize dynamically to INT8 after export (e.g. ``LSTM``, ``MatMul``); empty: none."""
    quantize_max_change: ClassVar[float] = 0.0
    """How much worse the validation metric may get through quantization; beyond it the float model is served."""

    def config(self, name: str = "demo", **overrides: Any) -> TrainConfig:
        """Build a named config, with optional field overrides."""
        if name not in self.configs:
            raise KeyError(f"task {self.name!r} has no config {name!r}; known: {sorted(self.configs)}")
        return self.config_class(**{**self.configs[name], **overrides})

    def dataset_of(self, config: TrainConfig) -> tuple[str, ...]:
        """The datasets a run with ``config`` reads: the config's ``dataset`` where it has one, else :attr:`datasets`."""
        name = getattr(config, "dataset", None)
        return (name,) if isinstance(name, str) else self.datasets

    def generate(self, name: str, target: Path) -> bool:
        """Create dataset ``name`` (one of ``datasets``) in the new folder ``target``, e.g. a seeded synthetic sample.

        Returns False, the default, when this task does not generate it: ingest then
        copies it from the mirror or downloads it. Must give the same bytes each time.
        """
        return False

    # ------------------------------------------------------------------ data

    @abstractmethod
    def validate(self, data_dir: Path, config: TrainConfig) -> list[str]:
        """Check the task's raw data against its declared schema; returns the problems found."""

    @abstractmethod
    def load(self, data_dir: Path, config: TrainConfig) -> Dataset:
        """Read the task's data under ``data_dir``, split it, fit the spec, preprocess."""

    def absorb(self, data_dir: Path, labelled: list[tuple[Any, list[Any]]]) -> int:
        """Add captured requests with their true outcomes (:func:`models.capture.labelled`) to the task's training
        data under ``data_dir``, in its dataset's own layout; returns the examples added (``zoo capture export``).
        Default: this task takes none."""
        raise ValueError(f"{self.name} does not turn captured traffic into training data")

    # -------------------------------------------------------------- training

    @abstractmethod
    def recipe(self, config: TrainConfig) -> "Recipe":
        """A new training recipe for one run with ``config`` (imports PyTorch)."""

    # ------------------------------------------------------------ evaluation

    @abstractmethod
    def metric(self, output: np.ndarray, target: np.ndarray) -> float:
        """Validation metric on raw network outputs."""

    @abstractmethod
    def baseline(self, data: Dataset) -> float:
        """The metric of a simple baseline on the same validation split."""

    def extra_baselines(self, data: Dataset, config: TrainConfig) -> dict[str, float]:
        """More baselines of the main metric on the same split, by name (some may train a model); default none."""
        return {}

    def extra_metrics(self, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
        """Metrics logged beside the main one (e.g. mean IoU, SSIM); default none."""
        return {}

    def figures(self, data: Dataset, output: np.ndarray) -> dict[str, Any]:
        """Matplotlib figures worth looking at, by file name (default: none)."""
        return {}

    # ------------------------------------------------------------------ ONNX

    @abstractmethod
    def inputs(self, spec: Spec) -> list[TensorSpec]:
        """ONNX inputs, in ``forward`` order."""

    @abstractmethod
    def outputs(self, spec: Spec) -> list[TensorSpec]:
        """ONNX outputs."""

    def parity_view(self, output: np.ndarray) -> np.ndarray:
        """What the parity check compares (e.g. probabilities instead of logits)."""
        return output

    def parity_inputs(self, data: Dataset) -> list[tuple[np.ndarray, ...]]:
        """Held-out inputs for the parity check: batch 1 and a larger batch, plus other sizes."""
        return [tuple(a[:1] for a in data.valid_x), tuple(a[:64] for a in data.valid_x)]

    def reference_sizes(self, spec: Spec) -> dict[str, int]:
        """A size for every named dynamic axis other than ``batch``; default none."""
        return {}

    def describe(self, spec: Spec) -> Spec:
        """The full JSON spec saved next to the ONNX file."""
        return {
            "task": self.name,
            "format": 1,
            "metric": self.metric_name,
            "higher_is_better": self.higher_is_better,
            "inputs": [t.to_json() for t in self.inputs(spec)],
            "outputs": [t.to_json() for t in self.outputs(spec)],
            "reference_sizes": self.reference_sizes(spec),
            "preprocess": spec,
        }
