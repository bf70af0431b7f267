"""Writing the model store: registering a version, copying it to the production registry."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from models.faults import failpoint
from models.onnx_model import MODEL_FILE, SPEC_FILE, ChecksumError, OnnxModel, sha256_bytes, sha256_file
from models.settings import Settings
from models.store.connect import client
from models.store.names import ARTIFACT_PATHS, CHALLENGER, COPIED_TO_PROD, Tag, model_name
from models.store.reading import checksums, download
from models.task import Spec, Task


def signature(task: Task, spec: Spec) -> Any:
    """The MLflow signature of the task's ONNX model: every named axis dynamic (-1)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    def schema(tensors: list[Any]) -> Schema:
        return Schema([TensorSpec(np.dtype(t.dtype), tuple(-1 if isinstance(d, str) else int(d) for d in t.shape), t.name) for t in tensors])

    return ModelSignature(inputs=schema(task.inputs(spec)), outputs=schema(task.outputs(spec)))


def register(
    settings: Settings,
    task: Task,
    run_id: str,
    onnx_path: Path,
    spec: Spec,
    example: tuple[np.ndarray, ...],
    tags: dict[str, str],
    drift: Spec | None = None,
    rows_alone: bool = False,
) -> str:
    """Log the ONNX model with its spec in run ``run_id``, verify the stored bytes, register it and point ``challenger`` at it.

    ``drift``, the training inputs' reference profile (:mod:`models.drift`), goes into the spec beside the rest.
    ``rows_alone`` (a dynamic INT8 model) tells the services to run each row in a call of its own.

    Moving the alias is the commit: a version whose alias could not be set is deleted again.

    Returns the new version number.
    """
    import mlflow
    import onnx

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.registry_uri)
    c = client(settings)
    proto = onnx.load(str(onnx_path))
    model_bytes = proto.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / SPEC_FILE
        described = {**task.describe(spec), **({"drift": drift} if drift else {}), **({"rows_alone": True} if rows_alone else {})}
        spec_path.write_text(json.dumps(described, indent=1, sort_keys=True))
        sample = {t.name: a[:2] for t, a in zip(task.inputs(spec), example)}
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(
                proto,
                name="model",
                signature=signature(task, spec),
                input_example=sample,
                extra_files=[str(spec_path)],
                save_as_external_data=False,
            )
        c.update_run(run_id, status="RUNNING")  # leaving start_run's block ended the run; the retrain marks it when it ends
        expected = {MODEL_FILE: sha256_bytes(model_bytes), SPEC_FILE: sha256_file(spec_path)}
    stored = _stored_checksums(settings, c.get_logged_model(info.model_id).artifact_location)
    if stored != expected:
        raise ChecksumError(f"artifacts stored in MLflow differ from what was exported: {stored} != {expected}")
    version_tags = {**tags, Tag.METRIC: task.metric_name, Tag.HIGHER_IS_BETTER: str(task.higher_is_better).lower()}
    version_tags.update({Tag.sha256(k): v for k, v in expected.items()})
    mv = mlflow.register_model(info.model_uri, task.name, tags=version_tags)
    try:
        failpoint(settings, "register")
        c.set_registered_model_alias(task.name, CHALLENGER, mv.version)
    except BaseException:  # no version without its alias; a SIGKILL here is cleared up by the next retrain
        c.delete_model_version(task.name, mv.version)
        raise
    return str(mv.version)


def _stored_checksums(settings: Settings, location: str) -> dict[str, str]:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, str] = {}
        for name, rel in ARTIFACT_PATHS.items():
            got = mlflow.artifacts.download_artifacts(artifact_uri=f"{location.rstrip('/')}/{rel}", dst_path=tmp, tracking_uri=settings.tracking_uri)
            out[name] = sha256_file(Path(got))
        return out


def copy_to_prod(settings: Settings, task: str, version: str) -> tuple[str, str]:
    """Copy a dev version into the production registry; returns (model name, new version)."""
    import mlflow

    dev = client(settings)
    mv = dev.get_model_version(task, version)
    target_uri = settings.prod_registry_uri
    name = model_name(task, "prod", settings.prod_model_prefix)
    tags = {k: v for k, v in mv.tags.items() if k.startswith("sha256.") or k in COPIED_TO_PROD}
    tags[Tag.SOURCE] = f"{settings.registry_uri}#{task}/{version}"
    if target_uri == settings.registry_uri:
        copied = dev.copy_model_version(f"models:/{task}/{version}", name)
        for key, value in tags.items():
            dev.set_model_version_tag(name, copied.version, key, value)
        return name, str(copied.version)
    # Different servers: re-upload the verified artifacts into the prod server.
    prod = client(settings, target_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = download(settings, dev, mv, root=Path(tmp))
        OnnxModel.load(folder, checksums(mv))  # verify before copying
        exp = prod.get_experiment_by_name("course-zoo-promotions")
        exp_id = exp.experiment_id if exp else prod.create_experiment(
            "course-zoo-promotions", artifact_location=(settings.home / "prod-artifacts").as_uri() if target_uri.startswith("sqlite") else None
        )
        run = prod.create_run(exp_id, run_name=f"{task}-v{version}", tags=tags)
        for name_, rel in ARTIFACT_PATHS.items():
            prod.log_artifact(run.info.run_id, str(folder / name_), artifact_path=str(Path("model") / Path(rel).parent) if "/" in rel else "model")
        prod.set_terminated(run.info.run_id)
    try:
        prod.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{prod.get_run(run.info.run_id).info.artifact_uri}/model"
    created = prod.create_model_version(name, source, run_id=run.info.run_id, tags=tags)
    return name, str(created.version)


