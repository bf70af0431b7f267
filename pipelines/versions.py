"""What a retrain would train on: each task's own data hash (through DVC's API) and its code hash."""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict
from pathlib import Path

from models.settings import Settings
from models.store.connect import client
from models.store.names import CHALLENGER, CHAMPION, Tag
from models.store.reading import by_alias
from models.task import HARDWARE_FIELDS, Task, TrainConfig
from pipelines import ingest

ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("models", "models/training")
"""Shared code (the contract, training, export, and what tasks build on, e.g. ``unet.py``, ``text.py``)
changes what a task trains; so does its own package."""


def task_data_hash(settings: Settings, task: Task) -> str:
    """sha256 of (path, md5) of every file under the task's own datasets, as the committed ``data.dvc`` records them.

    Read through DVC's file system (``dvc.api.DVCFileSystem``), after the pull.
    """
    from dvc.api import DVCFileSystem

    root = settings.project_root
    mine: list[tuple[str, str]] = []
    with ingest.dvc_repo(root, settings) as repo:
        fs = DVCFileSystem(repo=repo)
        for dataset in task.datasets:
            folder = f"/{ingest.DATA_DIR}/{dataset}"
            if not fs.isdir(folder):
                continue
            for path, info in fs.find(folder, detail=True).items():
                md5 = (info.get("dvc_info") or {}).get("md5")
                if md5:
                    mine.append((path.removeprefix(f"/{ingest.DATA_DIR}/"), md5))
    if not mine:
        raise ingest.IngestError(f"data.dvc has no files for {task.name} (datasets {task.datasets})")
    return hashlib.sha256(json.dumps(sorted(mine)).encode()).hexdigest()


def code_hash(task: Task, config: TrainConfig) -> str:
    """sha256 of the shared training code, the task's own modules (not its serving hooks) and its resolved config.

    The config's devices, nodes, strategy and precision are left out: a retrain on other hardware of the same
    data and code is skipped like any other."""
    h = hashlib.sha256()
    for folder in CODE_DIRS:
        for path in sorted((ROOT / folder).glob("*.py")):
            h.update(path.relative_to(ROOT).as_posix().encode())
            h.update(path.read_bytes())
    module = inspect.getmodule(type(task))
    assert module is not None and module.__file__
    own = Path(module.__file__)
    files = [p for p in sorted(own.parent.glob("*.py")) if p.name != "serving.py"] if own.name == "__init__.py" else [own]
    for path in files:  # the task's package, less its serving hooks (they change no training)
        h.update(path.name.encode())
        h.update(path.read_bytes())
    what = {k: v for k, v in asdict(config).items() if k not in HARDWARE_FIELDS}  # where it trains is not what it trains
    h.update(json.dumps(what, sort_keys=True).encode())
    return h.hexdigest()


def already_trained(settings: Settings, task: str, data: str, code: str) -> str | None:
    """The champion or challenger version trained on exactly this data and code, if any."""
    c = client(settings)
    for alias in (CHAMPION, CHALLENGER):
        mv = by_alias(c, task, alias)
        if mv is not None and mv.tags.get(Tag.TASK_DATA_HASH) == data and mv.tags.get(Tag.CODE_HASH) == code:
            return str(mv.version)
    return None
