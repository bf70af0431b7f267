"""The audit trail: every promotion and rollback, kept in the tracking server so every operator sees the same.

Each action is one run of the experiment ``<experiment>-audit``, its fields as
tags; ``zoo history`` reads them back from any machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlflow.entities import RunTag

from models.settings import Settings
from models.store.connect import client

FIELDS = ("action", "task", "version", "previous", "registry", "operator", "at", "reason", "forced", "gates")


@dataclass(frozen=True)
class Record:
    """One promotion or rollback."""

    action: str
    task: str
    version: str
    previous: str | None
    registry: str
    operator: str
    at: str
    reason: str
    forced: bool
    gates: list[dict[str, Any]]


def _experiment(settings: Settings) -> str:
    return f"{settings.experiment}-audit"


def append(settings: Settings, record: Record) -> None:
    """Record ``record`` as a finished run of the audit experiment."""
    from models.store.runs import experiment_id

    c = client(settings)
    run = c.create_run(experiment_id(replace(settings, experiment=_experiment(settings)), c), run_name=f"{record.action}-{record.task}-v{record.version}")
    values = asdict(record)
    tags = [RunTag(f"zoo.audit.{k}", json.dumps(values[k])) for k in FIELDS]
    c.log_batch(run.info.run_id, tags=tags)
    c.set_terminated(run.info.run_id, "FINISHED")


def history(settings: Settings, task: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of ``task``, oldest first."""
    c = client(settings)
    exp = c.get_experiment_by_name(_experiment(settings))
    if exp is None:
        return []
    runs = c.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`zoo.audit.task` = '{json.dumps(task)}'",
        order_by=["attributes.start_time ASC"],
        max_results=50_000,
    )
    rows = []
    for run in runs:
        tags = run.data.tags
        if all(f"zoo.audit.{k}" in tags for k in FIELDS):
            rows.append({k: json.loads(tags[f"zoo.audit.{k}"]) for k in FIELDS})
    return rows
