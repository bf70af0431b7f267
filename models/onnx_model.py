"""A verified ONNX model plus its JSON spec, run with ONNX Runtime."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

MODEL_FILE = "model.onnx"
SPEC_FILE = "spec.json"


class ChecksumError(RuntimeError):
    """An artifact's bytes do not match the sha256 recorded at registration."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def providers() -> list[str]:
    """Execution providers to use, best first: TensorRT and CUDA when present, else CPU."""
    available = ort.get_available_providers()
    wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    return [*wanted, "CPUExecutionProvider"]


def make_session(model: bytes, threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session with full graph optimisation and no thread spinning."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    threads = threads or int(os.environ.get("ZOO_ORT_THREADS", "0"))
    if threads:
        opts.intra_op_num_threads = threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=opts, providers=providers())


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


@dataclass
class OnnxModel:
    """An ONNX Runtime session and the spec it was exported with."""

    session: ort.InferenceSession
    spec: dict[str, Any]
    version: str = "local"

    @classmethod
    def load(cls, folder: Path, checksums: dict[str, str], version: str = "local") -> "OnnxModel":
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
        return cls(make_session(blobs[MODEL_FILE]), json.loads(blobs[SPEC_FILE]), version)

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def warm(self, rounds: int = 3) -> None:
        """Run the reference input a few times so the first request pays no set-up cost."""
        x = reference_inputs(self.spec)
        for _ in range(rounds):
            self.run(*x)

    def compatible_with(self, other: "OnnxModel") -> bool:
        """Same task and same input names and dtypes: a service can swap one for the other."""
        def sig(m: OnnxModel) -> list[tuple[str, str]]:
            return [(t["name"], t["dtype"]) for t in m.spec["inputs"]]

        return self.spec["task"] == other.spec["task"] and sig(self) == sig(other)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run the first output for inputs given in the spec's order."""
        return self.session.run(None, dict(zip(self.input_names, inputs)))[0]
