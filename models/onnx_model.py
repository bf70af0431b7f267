"""A verified ONNX model plus its JSON spec, run with ONNX Runtime."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models.errors import GuardFailed
from models.store.names import MODEL_FILE, SPEC_FILE


class ChecksumError(GuardFailed, RuntimeError):
    """An artifact's bytes do not match the sha256 recorded at registration."""


class UnsafeModel(GuardFailed, ValueError):
    """A model or spec unlike what registration writes (external data, a malformed spec): refused before any use."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU = "CPUExecutionProvider"
log = logging.getLogger(__name__)


@functools.cache
def accelerated_providers() -> tuple[str, ...]:
    """ONNX Runtime's TensorRT and CUDA providers, where installed and a CUDA GPU is present.

    Says once per process when there are none, so that a GPU host without
    ``onnxruntime-gpu`` (or without a visible GPU) does not go unnoticed.
    """
    available = ort.get_available_providers()
    found = tuple(p for p in ACCELERATED if p in available)
    if found and not _cuda_visible():
        found = ()
    if not found:
        log.info("no CUDA GPU with ONNX Runtime's TensorRT or CUDA provider here: serving with the CPU provider")
    return found


def _cuda_visible() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # a serving image without torch: trust ONNX Runtime's own list
        return True


def providers(accelerate: bool = True) -> list[str | tuple[str, dict[str, Any]]]:
    """Execution providers, best first: TensorRT (an FP16 engine, cached under ZOO_HOME), CUDA, then CPU."""
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    for name in accelerated_providers() if accelerate else ():
        if name == "TensorrtExecutionProvider":
            from models.settings import Settings

            cache = Settings.from_env().cache / "tensorrt"
            cache.mkdir(parents=True, exist_ok=True)
            chosen.append(
                (name, {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)})
            )
        else:
            chosen.append(name)
    return [*chosen, CPU]


def make_session(model: bytes, threads: int | None = None, accelerate: bool = True) -> ort.InferenceSession:
    """An ONNX Runtime session with full graph optimisation and no thread spinning; ``threads``: intra-op threads (None: ONNX Runtime's own choice).

    ``accelerate=False`` keeps it on the CPU provider (the export's reference parity check).
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # A registered model is one self-contained file. External data (CVE-2022-25882's path traversal among
    # them) could only come from this empty folder, which ONNX Runtime confines it to: none loads.
    with tempfile.TemporaryDirectory(prefix="zoo-no-external-data-") as empty:
        opts.add_session_config_entry("session.model_external_initializers_file_folder_path", empty)
        try:
            return ort.InferenceSession(model, sess_options=opts, providers=providers(accelerate))
        except Exception as exc:
            text = str(exc)
            if "external data" in text.lower() or "model_path must not be empty" in text:
                raise UnsafeModel("the ONNX model names external data (weights in other files); a registered model is one self-contained file, so it is refused") from None
            raise


def reference_inputs(spec: dict[str, Any], batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Inputs shaped by the spec's ``inputs``: normal floats, and ones for ids (index 1 is known).

    Named axes other than ``batch`` take their size from the spec's ``reference_sizes``.
    """
    rng = np.random.default_rng(seed)
    sizes = {"batch": batch, **spec.get("reference_sizes", {})}
    out = []
    for tensor in spec["inputs"]:
        shape = [sizes[d] if isinstance(d, str) else int(d) for d in tensor["shape"]]
        if tensor["dtype"].startswith("float"):
            out.append(rng.standard_normal(shape).astype(tensor["dtype"]))
        else:
            out.append(np.ones(shape, dtype=tensor["dtype"]))
    return out


def parse_spec(data: bytes) -> dict[str, Any]:
    """``spec.json``, refused with the field that is wrong unless it has the shape every spec has.

    A JSON object with the task's name and its tensors (``name``, a numpy ``dtype``, a ``shape`` of sizes and
    axis names); the task's own fields are checked by its serving hooks, before the model is put in service.
    """

    def refuse(why: str) -> UnsafeModel:
        return UnsafeModel(f"{SPEC_FILE} is refused: {why}")

    try:
        spec = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(f"not JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("task"), str):
        raise refuse("not an object with a task name")
    for group in ("inputs", "outputs"):
        tensors = spec.get(group)
        if not isinstance(tensors, list) or not tensors:
            raise refuse(f"{group} must be a list of tensors")
        for i, t in enumerate(tensors):
            where = f"{group}[{i}]"
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("dtype"), str):
                raise refuse(f"{where} needs a name and a dtype, both strings")
            try:
                np.dtype(t["dtype"])
            except TypeError:
                raise refuse(f"{where}.dtype {t['dtype']!r} is not a numpy dtype") from None
            shape = t.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, str) or (type(d) is int and d >= 0) for d in shape):
                raise refuse(f"{where}.shape must be a list of sizes and axis names")
    sizes = spec.get("reference_sizes", {})
    if not isinstance(sizes, dict) or not all(isinstance(k, str) and type(v) is int and v > 0 for k, v in sizes.items()):
        raise refuse("reference_sizes must map axis names to positive sizes")
    if type(spec.get("rows_alone", False)) is not bool:
        raise refuse("rows_alone must be true or false")
    return spec


@dataclass
class OnnxModel:
    """An ONNX Runtime session and the spec it was exported with."""

    session: ort.InferenceSession
    spec: dict[str, Any]
    version: str = "local"

    @classmethod
    def load(cls, folder: Path, checksums: dict[str, str], version: str = "local", threads: int | None = None) -> "OnnxModel":
        """Load ``model.onnx`` and ``spec.json`` from ``folder`` after checking their sha256."""
        blobs = {}
        for name in (MODEL_FILE, SPEC_FILE):
            expected = checksums.get(name)
            if not expected:
                raise ChecksumError(f"no sha256 recorded for {name}; refusing to load it")
            data = (folder / name).read_bytes()
            if sha256_bytes(data) != expected:
                raise ChecksumError(f"{name} in {folder} does not match its recorded sha256")
            blobs[name] = data
        spec = parse_spec(blobs[SPEC_FILE])
        session = make_session(blobs[MODEL_FILE], threads)
        names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
        declared = [t["name"] for t in spec["inputs"]], [t["name"] for t in spec["outputs"]]
        if names != declared:
            raise UnsafeModel(f"{SPEC_FILE} declares inputs and outputs {declared}, the model has {names}: refused")
        return cls(session, spec, version)

    @cached_property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def warm(self, rounds: int = 3) -> None:
        """Run the reference input a few times so the first request pays no set-up cost."""
        x = reference_inputs(self.spec)
        for _ in range(rounds):
            self.run(*x)

    def seconds_per_call(self, rounds: int = 5) -> float:
        """The fastest of a few runs of the reference input (batch 1), in seconds."""
        x = reference_inputs(self.spec)
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            self.run(*x)
            best = min(best, time.perf_counter() - start)
        return best

    def compatible_with(self, other: "OnnxModel") -> bool:
        """Same task and same input names and dtypes: a service can swap one for the other."""
        def sig(m: OnnxModel) -> list[tuple[str, str]]:
            return [(t["name"], t["dtype"]) for t in m.spec["inputs"]]

        return self.spec["task"] == other.spec["task"] and sig(self) == sig(other)

    @cached_property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    @cached_property
    def rows_alone(self) -> bool:
        """Whether each row runs in a call of its own (the spec's ``rows_alone``: a dynamic INT8 model, which
        scales a call's activations together, so that a row's answer would depend on the rows beside it)."""
        return bool(self.spec.get("rows_alone", False))

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run the first output for inputs given in the spec's order."""
        return self.run_outputs(self.output_names[:1], *inputs)[0]

    def run_outputs(self, names: list[str], *inputs: np.ndarray) -> list[np.ndarray]:
        """Run the named outputs for inputs given in the spec's order (row by row when :attr:`rows_alone`)."""
        if not self.rows_alone or len(inputs[0]) <= 1:
            return self.session.run(names, dict(zip(self.input_names, inputs)))
        rows = [self.session.run(names, {n: a[i : i + 1] for n, a in zip(self.input_names, inputs)}) for i in range(len(inputs[0]))]
        return [np.concatenate(parts) for parts in zip(*rows)]
