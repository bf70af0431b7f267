"""``zoo import fastai``: a Learner saved with ``learn.export()`` becomes a registered version, ``challenger``.

Steps: refuse without ``--trust-pickle``; hash the file; let
:mod:`models.fastai_import.child` read and convert it in a process of its own
(no registry credentials in its environment); check what it wrote as untrusted
data (the ONNX model and spec load as every version does, and the served path
must answer its probes as fastai did); measure the task's metric on the
platform's validation split; log an MLflow run and register the model as the
task's ``challenger``, tagged ``source=fastai`` with the file's sha256.
Promotion then goes through the same gates as a retrain's version.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.errors import GuardFailed, ZooError
from models.fastai_import import CONVERTERS, NOT_SUPPORTED
from models.onnx_model import MODEL_FILE, SPEC_FILE, OnnxModel, parse_spec, reference_inputs, sha256_bytes, sha256_file
from models.settings import Settings
from models.store.names import Tag

log = logging.getLogger(__name__)
CHILD_ENV = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
)
"""The only variables the child process gets: nothing of the registry, the tracking server, object stores or tokens."""
CHILD_TIMEOUT_S = 1800.0
UNSUPPORTED_EXIT = 3


class ImportRefused(ZooError, ValueError):
    """The import will not read this file (no ``--trust-pickle``), or not as this task."""


class ImportFailed(GuardFailed, RuntimeError):
    """Reading or converting the Learner failed, or its output failed a check: nothing was registered."""


@dataclass(frozen=True)
class ImportResult:
    task: str
    version: str
    sha256: str
    metric_name: str
    metric: float | None
    measured_on: str
    served_max_abs_diff: float
    onnx_max_abs_diff: float
    probes: int
    differences: list[str]
    """Where the served preprocessing differs from fastai's on a probe (sentiment's tokens), and by how much."""


def child_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in CHILD_ENV if k in os.environ}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def convert_in_child(path: Path, task: str, out: Path, data_dir: Path, timeout_s: float = CHILD_TIMEOUT_S) -> None:
    """Run the child on ``path``; its output lands in ``out``. Raises with the child's one-line reason."""
    command = [sys.executable, "-m", "models.fastai_import.child", str(path), task, str(out), str(data_dir)]
    try:
        done = subprocess.run(command, env=child_env(), cwd=out, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ImportFailed(f"reading {path.name} took over {timeout_s:.0f} s: stopped, nothing registered") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        log.debug("the import's child process said:\n%s", done.stderr)
        why = lines[-1] if lines else f"exit status {done.returncode}"
        raise (ImportRefused if done.returncode == UNSUPPORTED_EXIT else ImportFailed)(f"{path.name}: {why}")


def read_outputs(task: str, out: Path, spec: dict[str, object]) -> OnnxModel:
    """The child's model and spec, checked as any version is before it serves (sha256 taken here, spec shape, I/O names)."""
    from models.registry import get_task

    t = get_task(task)
    described = t.describe(spec)
    (out / SPEC_FILE).write_text(json.dumps(described, indent=1, sort_keys=True))
    parse_spec((out / SPEC_FILE).read_bytes())
    checksums = {MODEL_FILE: sha256_file(out / MODEL_FILE), SPEC_FILE: sha256_bytes((out / SPEC_FILE).read_bytes())}
    return OnnxModel.load(out, checksums, version="import")


def import_fastai(settings: Settings, path: Path, task: str, reason: str = "", trust_pickle: bool = False, config_name: str = "demo") -> ImportResult:
    """Import the Learner at ``path`` as a new version of ``task`` (``challenger``); see the module's docstring."""
    from models.fastai_import.checks import complete_spec, served_parity
    from models.registry import get_task
    from models.scoring import platform_metric
    from models.store import writing
    from models.store.runs import RunLog

    if not trust_pickle:
        raise ImportRefused(
            f"not reading {path}: a fastai .pkl runs code when it is read (fastai issue 4163); "
            "pass --trust-pickle if you trust whoever made it (it is read in a separate process without registry credentials)"
        )
    t = get_task(task)
    if task not in CONVERTERS:
        raise ImportRefused(f"fastai Learners cannot be imported as {task}: {NOT_SUPPORTED.get(task, 'no converter')}; importable: {', '.join(CONVERTERS)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data_dir = settings.project_root / "data"
    dataset = t.dataset_of(t.config(config_name))[0]
    if not (data_dir / dataset).is_dir():
        raise ImportFailed(f"{data_dir} has no {dataset}/: run `zoo data ingest` first (the import measures the model on it)")
    digest = sha256_file(path)
    with tempfile.TemporaryDirectory(prefix="zoo-fastai-") as tmp:
        out = Path(tmp)
        convert_in_child(path.resolve(), task, out, data_dir)
        try:
            spec = complete_spec(task, json.loads((out / SPEC_FILE).read_text()), data_dir, config_name)
            probes = json.loads((out / "probes.json").read_text())
            learner = json.loads((out / "learner.json").read_text())
            model = read_outputs(task, out, spec)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ImportFailed(f"the converted Learner does not load as a {task} model: {exc}") from exc
        served, notes = served_parity(model, task, probes, out)
        metric, measured_on = platform_metric(model, task, data_dir, config_name)
        tags = {Tag.TASK: task, Tag.CONFIG: "fastai-import", Tag.ORIGIN: "fastai", Tag.ORIGIN_SHA256: digest}
        run = RunLog.start(settings, f"{task}-fastai-import", tags)
        try:
            run.more_params({**{f"fastai_{k}": str(v)[:500] for k, v in learner.items()}, "file": path.name, "reason": reason, "measured_on": measured_on})
            if notes:
                run.tags({"served_differences": " | ".join(notes)[:4000]})
            onnx_diff = float(learner.get("onnx_max_abs_diff", 0.0))
            run.metrics({t.metric_name: metric, "onnx_max_abs_diff": onnx_diff, "served_max_abs_diff": served})
            example = tuple(reference_inputs(model.spec, batch=2))
            version = writing.register(settings, t, run.run_id, out / MODEL_FILE, spec, example, {**tags, Tag.RUN_ID: run.run_id})
        except BaseException:
            run.finish("FAILED")
            raise
        run.finish()
    return ImportResult(task, version, digest, t.metric_name, metric, measured_on, served, onnx_diff, len(probes), notes)
