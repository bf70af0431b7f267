"""MLflow: the experiment, per-epoch logging, registration and the registry views."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import onnx
from mlflow import MlflowClient
from mlflow.models import infer_signature

from models import modelstore
from models.modelstore import ARTIFACT_PATHS, CHALLENGER, CHAMPION, SHA_TAG
from models.onnx_model import MODEL_FILE, SPEC_FILE, ChecksumError, sha256_bytes, sha256_file
from models.registry import task_names
from models.settings import Settings
from models.task import Task


def experiment_id(settings: Settings) -> str:
    """Point MLflow at the configured servers and return the experiment id (created if missing)."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    existing = mlflow.get_experiment_by_name(settings.experiment)
    if existing is not None:
        return existing.experiment_id
    embedded = settings.tracking_uri.startswith(("sqlite:", "file:", "/"))
    location = settings.artifact_root.as_uri() if embedded else None
    return mlflow.create_experiment(settings.experiment, artifact_location=location)


def epoch_logger(c: MlflowClient, run_id: str):
    """A training listener that logs each epoch's metrics with the epoch as step."""

    def log(row: dict[str, float]) -> None:
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and np.isfinite(value):
                c.log_metric(run_id, key, value, step=step)

    return log


def log_config(c: MlflowClient, run_id: str, config: Any, config_name: str) -> None:
    for key, value in asdict(config).items():
        c.log_param(run_id, key, "None" if value is None else value)
    c.log_param(run_id, "config_name", config_name)


def register(
    settings: Settings,
    task: Task,
    run_id: str,
    onnx_path: Path,
    spec: dict[str, Any],
    example: tuple[np.ndarray, ...],
    tags: dict[str, str],
) -> str:
    """Log the ONNX model with its spec, verify the stored bytes, register it and tag ``challenger``.

    Returns the new version number.
    """
    c = modelstore.client(settings)
    proto = onnx.load(str(onnx_path))
    model_bytes = proto.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / SPEC_FILE
        spec_path.write_text(json.dumps(task.describe(spec), indent=1, sort_keys=True))
        names = [t.name for t in task.inputs(spec)]
        sample = {n: a[:2] for n, a in zip(names, example)}
        from models.onnx_model import make_session

        output = make_session(model_bytes).run(None, sample)[0]
        signature = infer_signature(sample, output)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                proto,
                name="model",
                signature=signature,
                input_example=sample,
                extra_files=[str(spec_path)],
                save_as_external_data=False,
            )
        expected = {MODEL_FILE: sha256_bytes(model_bytes), SPEC_FILE: sha256_file(spec_path)}
    stored = _stored_checksums(settings, c.get_logged_model(info.model_id).artifact_location)
    if stored != expected:
        raise ChecksumError(f"artifacts stored in MLflow differ from what was exported: {stored} != {expected}")
    version_tags = {**tags, **{SHA_TAG.format(k): v for k, v in expected.items()}}
    mv = mlflow.register_model(info.model_uri, task.name, tags=version_tags)
    c.set_registered_model_alias(task.name, CHALLENGER, mv.version)
    return str(mv.version)


def _stored_checksums(settings: Settings, location: str) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, str] = {}
        for name, rel in ARTIFACT_PATHS.items():
            got = mlflow.artifacts.download_artifacts(artifact_uri=f"{location.rstrip('/')}/{rel}", dst_path=tmp, tracking_uri=settings.tracking_uri)
            out[name] = sha256_file(Path(got))
        return out


def describe_version(c: MlflowClient, version: Any) -> dict[str, Any] | None:
    """A JSON-friendly view of one model version, with its run's final metrics."""
    if version is None:
        return None
    metrics: dict[str, float] = {}
    if version.run_id:
        run = c.get_run(version.run_id)
        metrics = {k: v for k, v in run.data.metrics.items() if not k.startswith(("train_", "val_"))}
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=timezone.utc)
    return {
        "version": str(version.version),
        "metrics": metrics,
        "data_hash": version.tags.get("data_hash"),
        "git_commit": version.tags.get("git_commit"),
        "created": created.isoformat(timespec="seconds"),
    }


def list_models(settings: Settings) -> list[dict[str, Any]]:
    """Every task with its champion and challenger (each ``None`` when absent)."""
    c = modelstore.client(settings)
    return [
        {
            "task": task,
            "champion": describe_version(c, modelstore.by_alias(c, task, CHAMPION)),
            "challenger": describe_version(c, modelstore.by_alias(c, task, CHALLENGER)),
        }
        for task in task_names()
    ]
