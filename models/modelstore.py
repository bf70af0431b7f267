"""Reading registered models from MLflow: resolve an alias, download, verify sha256.

Both the services and the CLI load models through here. The sha256 of each
artifact is recorded as a tag on the model version at registration
(``sha256.model.onnx``, ``sha256.spec.json``) and checked before use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from models.onnx_model import MODEL_FILE, SPEC_FILE, OnnxModel
from models.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
ARTIFACT_PATHS = {MODEL_FILE: MODEL_FILE, SPEC_FILE: f"extra_files/{SPEC_FILE}"}
"""Where each verified artifact lies inside an MLflow ONNX model folder."""
SHA_TAG = "sha256.{}"


def client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def by_alias(c: MlflowClient, task: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias``, or ``None`` when the model or alias does not exist."""
    try:
        return c.get_model_version_by_alias(task, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def checksums(version: ModelVersion) -> dict[str, str]:
    """The sha256 recorded for each artifact of ``version``."""
    return {name: version.tags.get(SHA_TAG.format(name), "") for name in ARTIFACT_PATHS}


def download(settings: Settings, c: MlflowClient, version: ModelVersion, root: Path | None = None) -> Path:
    """Download the artifacts of ``version`` under ``root`` (default: the cache), atomically."""
    import mlflow.artifacts

    dest = (root or settings.cache / "models") / version.name / str(version.version)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    uri = c.get_model_version_download_uri(version.name, version.version)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        for name, rel in ARTIFACT_PATHS.items():
            got = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/{rel}", dst_path=tmp, tracking_uri=settings.tracking_uri))
            if got != Path(tmp) / name:
                shutil.move(str(got), Path(tmp) / name)
        for extra in Path(tmp).iterdir():
            if extra.name not in ARTIFACT_PATHS:
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
        Path(tmp).rename(dest)
        Path(tmp).mkdir()  # let TemporaryDirectory clean up an empty folder
    return dest


def load_version(settings: Settings, task: str, version: str | int) -> OnnxModel:
    """Download, verify and open one registered version of ``task``."""
    c = client(settings)
    return open_version(settings, c, c.get_model_version(task, str(version)))


def load_alias(settings: Settings, task: str, alias: str = CHAMPION) -> OnnxModel:
    """Download, verify and open the version behind ``alias``."""
    c = client(settings)
    mv = by_alias(c, task, alias)
    if mv is None:
        raise LookupError(f"task {task!r} has no {alias!r} version in the registry at {settings.registry_uri}")
    return open_version(settings, c, mv)


def registered_name(task: str) -> str:
    """The registered model a service follows: ``ZOO_SERVE_MODEL_PREFIX`` + task (``prod.`` in production)."""
    import os

    return os.environ.get("ZOO_SERVE_MODEL_PREFIX", "") + task


def open_version(settings: Settings, c: MlflowClient, version: ModelVersion) -> OnnxModel:
    """Download (or reuse the cached copy of) ``version``, verify it, open it."""
    folder = download(settings, c, version)
    return OnnxModel.load(folder, checksums(version), version=str(version.version))


def champion_record(settings: Settings, name: str) -> Path:
    """Where the last verified champion of registered model ``name`` is recorded."""
    return settings.cache / "models" / name / "champion.json"


def remember(settings: Settings, version: ModelVersion) -> None:
    """Record ``version`` as the last verified champion, for a cold start with the registry down."""
    import json

    path = champion_record(settings, version.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": str(version.version), "checksums": checksums(version)}))
    tmp.replace(path)


def load_remembered(settings: Settings, name: str) -> OnnxModel:
    """The last verified champion from the local cache, checked against its recorded sha256."""
    import json

    path = champion_record(settings, name)
    if not path.is_file():
        raise LookupError(f"no cached champion for {name} under {path.parent}")
    meta = json.loads(path.read_text())
    return OnnxModel.load(path.parent / meta["version"], meta["checksums"], version=meta["version"])


def explain(exc: BaseException, uri: str | None = None) -> str:
    """A registry error in words an operator can act on (401/403 name the variables to fix)."""
    import re

    text = str(exc).strip().strip('"')
    match = re.search(r"error code (\d{3})", text)
    code = int(match.group(1)) if match else None
    where = f"the MLflow server at {uri}" if uri else "the MLflow server"
    if code == 401:
        return (
            f"{where} refused the credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    if code == 403:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "this user")
        return f"{where} denied {user} this operation (HTTP 403): an admin must grant it EDIT or MANAGE permission"
    return text
