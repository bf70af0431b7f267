"""What a retrain would train on: each task's own data hash and its code hash."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict
from pathlib import Path

from models import modelstore
from models.modelstore import CHALLENGER, CHAMPION
from models.registry import get_task
from models.settings import Settings
from models.task import TrainConfig
from pipelines import ingest

ROOT = Path(__file__).resolve().parent.parent
CODE_DIR = "models"
"""Shared code (every module of ``models/`` outside ``models/tasks/``: the contract, training, export,
and what tasks build on, e.g. ``unet.py``, ``text.py``) changes what a task trains; so does its own module."""


def dir_manifest(settings: Settings, digest: str) -> list[dict[str, str]]:
    """DVC's manifest of ``data/`` (relpath and md5 of every file) for a ``.dir`` hash."""
    value = digest.removesuffix(".dir")
    cache = settings.home / "dvc-cache" / "files" / "md5" / value[:2] / (value[2:] + ".dir")
    if not cache.is_file():
        with ingest.dvc_repo(settings.project_root, settings) as repo:
            repo.fetch(targets=[str(settings.project_root / ingest.DVC_FILE)])
    return json.loads(cache.read_text())


def task_data_hash(settings: Settings, task: str) -> str:
    """sha256 of the manifest entries under the task's own datasets, from ``data.dvc``'s manifest."""
    entries = dir_manifest(settings, ingest.data_hash(settings.project_root))
    prefixes = tuple(f"{d}/" for d in get_task(task).datasets)
    mine = sorted((e["relpath"], e["md5"]) for e in entries if e["relpath"].startswith(prefixes))
    if not mine:
        raise ingest.IngestError(f"data.dvc has no files for {task} (datasets {get_task(task).datasets})")
    return hashlib.sha256(json.dumps(mine).encode()).hexdigest()


def code_hash(task: str, config: TrainConfig) -> str:
    """sha256 of the shared training code, the task's module and its resolved config."""
    h = hashlib.sha256()
    for path in sorted((ROOT / CODE_DIR).glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(inspect.getsource(inspect.getmodule(type(get_task(task)))).encode())
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    return h.hexdigest()


def already_trained(settings: Settings, task: str, data: str, code: str) -> str | None:
    """The champion or challenger version trained on exactly this data and code, if any."""
    c = modelstore.client(settings)
    for alias in (CHAMPION, CHALLENGER):
        mv = modelstore.by_alias(c, task, alias)
        if mv is not None and mv.tags.get("task_data_hash") == data and mv.tags.get("code_hash") == code:
            return str(mv.version)
    return None
