"""``zoo capture export``: captured requests with feedback become the task's training data, a new DVC data version."""

from __future__ import annotations

import json
from dataclasses import dataclass

from models import capture
from models.registry import get_task
from models.settings import Settings
from pipelines import ingest

STATE_FILE = "exported.json"
"""Under ``ZOO_HOME/capture/<task>/``: the request ids already exported (an export never adds one twice)."""


@dataclass(frozen=True)
class Exported:
    task: str
    requests: int
    """Captured requests with feedback added by this export."""
    examples: int
    """Training examples they became (a /rate request of n pairs: n ratings)."""
    data_hash: str | None
    """The new data version (``data.dvc``'s md5); ``None`` when nothing new arrived."""
    message: str


def export(settings: Settings, task: str) -> Exported:
    """Add the captured requests of ``task`` that got feedback since the last export to its dataset, ``dvc add``
    and push it; the next ``zoo train`` or scheduled retrain of the task trains on it (its data hash changed)."""
    t = get_task(task)
    root = settings.home / "capture"
    state = root / task / STATE_FILE
    done = set(json.loads(state.read_text())) if state.is_file() else set()
    fresh = [(c, outcome) for c, outcome in capture.labelled(root, task) if c.request_id not in done]
    if not fresh:
        where = root / task
        return Exported(task, 0, 0, None, f"{task}: nothing new to export: no captured request got feedback since the last export (store: {where})")
    ingest.pull(settings)  # data/ as the committed data.dvc has it
    examples = t.absorb(settings.project_root / ingest.DATA_DIR, fresh)
    with ingest.dvc_repo(settings.project_root, settings) as repo:
        repo.add(str(settings.project_root / ingest.DATA_DIR))
        repo.push(targets=[str(settings.project_root / ingest.DVC_FILE)])
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps(sorted(done | {c.request_id for c, _ in fresh})))
    tmp.replace(state)
    data_hash = ingest.data_hash(settings.project_root)
    message = (
        f"{task}: {len(fresh)} captured request(s) with feedback became {examples} training example(s); "
        f"new data version {data_hash[:12]} (commit data.dvc to share it). The next retrain of {task} trains on it."
    )
    return Exported(task, len(fresh), examples, data_hash, message)
