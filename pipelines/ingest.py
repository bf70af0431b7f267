"""Course sample data: fetch (download or mirror), version with DVC, pull for training."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from models.registry import all_tasks
from models.settings import Settings

SAMPLE_URL = "https://s3.amazonaws.com/fast-ai-sample/{name}.tgz"
DATA_DIR = "data"
DVC_FILE = "data.dvc"
REMOTE = "zoo"


class IngestError(RuntimeError):
    """A dataset could not be fetched or versioned."""


@dataclass(frozen=True)
class DataVersion:
    """What a training run read: the ``data.dvc`` hash and the git commit."""

    data_hash: str
    git_commit: str
    git_dirty: bool


def required_datasets() -> list[str]:
    """Every dataset some registered task trains on."""
    return sorted({d for task in all_tasks() for d in task.datasets})


def fetch(name: str, data_dir: Path, mirror: Path | None, force: bool = False) -> Path:
    """Materialise ``data_dir/name`` from the mirror or fast.ai's URL, atomically."""
    target = data_dir / name
    if target.is_dir() and not force:
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=f".{name}-") as tmp:
        staged = Path(tmp) / name
        if mirror is not None:
            source = mirror / name
            if not source.is_dir():
                raise IngestError(f"ZOO_DATA_MIRROR={mirror} has no folder {name}/")
            shutil.copytree(source, staged, copy_function=shutil.copyfile)
            _make_writable(staged)
        else:
            archive = Path(tmp) / f"{name}.tgz"
            download(SAMPLE_URL.format(name=name), archive)
            _extract(archive, Path(tmp) / "unpacked")
            unpacked = Path(tmp) / "unpacked" / name
            if not unpacked.is_dir():
                raise IngestError(f"{archive.name} did not unpack to a folder {name}/")
            unpacked.rename(staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` via a temporary file, checking the length."""
    part = dest.with_suffix(dest.suffix + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            with Progress(*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(), TransferSpeedColumn()) as bar:
                job = bar.add_task(f"download {dest.name}", total=total or None)
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    bar.advance(job, len(chunk))
        if total and part.stat().st_size != total:
            raise IngestError(f"{url}: got {part.stat().st_size} of {total} bytes")
        part.rename(dest)
    except OSError as exc:
        raise IngestError(f"cannot download {url}: {exc}. Set ZOO_DATA_MIRROR to a folder holding the unpacked datasets.") from exc
    finally:
        part.unlink(missing_ok=True)


def _extract(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise IngestError(f"{archive.name} is not a whole tar archive: {exc}") from exc


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _dvc_remote(settings: Settings) -> str:
    return os.environ.get("ZOO_DVC_REMOTE") or str(settings.dvc_remote)


def _remote_config(settings: Settings) -> dict[str, str]:
    """The ``zoo`` DVC remote: a folder under ZOO_HOME, or ``ZOO_DVC_REMOTE`` (e.g. ``s3://bucket/path``).

    ``ZOO_DVC_S3_ENDPOINT`` points an S3 remote at MinIO or another S3-compatible
    server; credentials come from the usual AWS variables, as DVC reads them.
    """
    remote = {"url": _dvc_remote(settings)}
    endpoint = os.environ.get("ZOO_DVC_S3_ENDPOINT")
    if endpoint and remote["url"].startswith("s3://"):
        remote["endpointurl"] = endpoint
    return remote


@contextlib.contextmanager
def dvc_repo(root: Path, settings: Settings) -> Iterator["object"]:
    """Open (initialising if needed) the DVC repo at ``root``, with state under ``ZOO_HOME``."""
    from dvc.repo import Repo

    if not (root / ".dvc").is_dir():
        Repo.init(str(root), no_scm=not (root / ".git").exists())
    repo = Repo(str(root))
    try:
        with repo.config.edit("local") as conf:
            conf.setdefault("core", {})["remote"] = REMOTE
            conf["core"]["site_cache_dir"] = str(settings.home / "dvc-site")
            conf.setdefault("cache", {})["dir"] = str(settings.home / "dvc-cache")
            conf.setdefault("remote", {})[REMOTE] = _remote_config(settings)
        repo.close()
        repo = Repo(str(root))
        yield repo
    finally:
        repo.close()


def ingest(settings: Settings, names: list[str] | None = None, force: bool = False) -> str:
    """Fetch the datasets, ``dvc add data`` and push to the remote; returns the data hash."""
    root = settings.project_root
    names = names or required_datasets()
    for name in names:
        fetch(name, root / DATA_DIR, settings.data_mirror, force=force)
    with dvc_repo(root, settings) as repo:
        repo.add(str(root / DATA_DIR))
        repo.push(targets=[str(root / DVC_FILE)])
    return data_hash(root)


def pull(settings: Settings) -> DataVersion:
    """``dvc pull`` the data the committed ``data.dvc`` names; returns what was read."""
    root = settings.project_root
    if not (root / DVC_FILE).is_file():
        raise IngestError(f"{root / DVC_FILE} is missing: run `zoo data ingest` first")
    with dvc_repo(root, settings) as repo:
        try:
            repo.pull(targets=[str(root / DVC_FILE)])
        except Exception as exc:  # DVC raises many types; say what to do
            raise IngestError(f"dvc pull failed ({exc}); run `zoo data ingest` to restore the data") from exc
    return DataVersion(data_hash(root), *_git_state(root))


def data_hash(root: Path) -> str:
    """The md5 that ``data.dvc`` records for ``data/``."""
    meta = yaml.safe_load((root / DVC_FILE).read_text())
    return str(meta["outs"][0]["md5"])


def status(settings: Settings) -> list[dict[str, object]]:
    """Per dataset: present, file count; plus the recorded hash."""
    root = settings.project_root
    rows: list[dict[str, object]] = []
    recorded = data_hash(root) if (root / DVC_FILE).is_file() else None
    for name in required_datasets():
        folder = root / DATA_DIR / name
        files = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        rows.append({"dataset": name, "present": folder.is_dir(), "files": files, "data_hash": recorded})
    return rows


def _git_state(root: Path) -> tuple[str, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return commit, dirty
