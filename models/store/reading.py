"""Reading the model store: versions behind aliases, verified downloads, the cached champion.

The services and the CLI load models through here. The sha256 of each
artifact is recorded as a tag on the model version at registration and checked
before use; a version is only its expected artifacts, nothing else is read.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from models.onnx_model import OnnxModel
from models.settings import Settings
from models.store.connect import client
from models.store.names import ARTIFACT_PATHS, CHAMPION, Tag


def by_alias(c: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version behind ``alias`` of registered model ``name``, or ``None`` when the model or alias does not exist."""
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def checksums(version: ModelVersion) -> dict[str, str]:
    """The sha256 recorded for each artifact of ``version``."""
    return {name: version.tags.get(Tag.sha256(name), "") for name in ARTIFACT_PATHS}


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
        try:
            Path(tmp).rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
            # Another worker (or replica on this cache) downloaded the same version meanwhile: its copy is used,
            # checked against the sha256 like this one would have been; this one goes with the temporary folder.
        else:
            Path(tmp).mkdir()  # let TemporaryDirectory clean up an empty folder
    return dest


def open_version(settings: Settings, c: MlflowClient, version: ModelVersion, threads: int | None = None) -> OnnxModel:
    """Download (or reuse the cached copy of) ``version``, verify it, open it."""
    folder = download(settings, c, version)
    return OnnxModel.load(folder, checksums(version), version=str(version.version), threads=threads)


def load_version(settings: Settings, name: str, version: str | int) -> OnnxModel:
    """Download, verify and open one registered version of registered model ``name``."""
    c = client(settings)
    return open_version(settings, c, c.get_model_version(name, str(version)))


def load_alias(settings: Settings, name: str, alias: str = CHAMPION) -> OnnxModel:
    """Download, verify and open the version behind ``alias``."""
    c = client(settings)
    mv = by_alias(c, name, alias)
    if mv is None:
        raise LookupError(f"{name!r} has no {alias!r} version in the registry at {settings.registry_uri}")
    return open_version(settings, c, mv)


def champion_record(settings: Settings, name: str) -> Path:
    """Where the last verified champion of registered model ``name`` is recorded."""
    return settings.cache / "models" / name / "champion.json"


def remember(settings: Settings, version: ModelVersion) -> None:
    """Record ``version`` as the last verified champion, for a cold start with the registry down."""
    path = champion_record(settings, version.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": str(version.version), "checksums": checksums(version)}))
    tmp.replace(path)


def load_remembered(settings: Settings, name: str, threads: int | None = None) -> OnnxModel:
    """The last verified champion from the local cache, checked against its recorded sha256."""
    path = champion_record(settings, name)
    if not path.is_file():
        raise LookupError(f"no cached champion for {name} under {path.parent}")
    meta = json.loads(path.read_text())
    return OnnxModel.load(path.parent / meta["version"], meta["checksums"], version=meta["version"], threads=threads)
