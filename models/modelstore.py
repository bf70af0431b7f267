"""Reading registered models from MLflow: resolve an alias, download, verify sha256.

Both the services and the CLI load models through here. The sha256 of each
artifact is recorded as a tag on the model version at registration
(``sha256.model.onnx``, ``sha256.spec.json``) and checked before use.
"""

from __future__ import annotations

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


def download(settings: Settings, c: MlflowClient, version: ModelVersion) -> Path:
    """Download the artifacts of ``version`` into the cache (atomically) and return the folder."""
    import mlflow.artifacts

    dest = settings.cache / "models" / version.name / str(version.version)
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
    mv = c.get_model_version(task, str(version))
    folder = download(settings, c, mv)
    return OnnxModel.load(folder, checksums(mv), version=str(mv.version))


def load_alias(settings: Settings, task: str, alias: str = CHAMPION) -> OnnxModel:
    """Download, verify and open the version behind ``alias``."""
    c = client(settings)
    mv = by_alias(c, task, alias)
    if mv is None:
        raise LookupError(f"task {task!r} has no {alias!r} version in the registry at {settings.registry_uri}")
    folder = download(settings, c, mv)
    return OnnxModel.load(folder, checksums(mv), version=str(mv.version))
