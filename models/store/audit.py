"""The audit trail: every promotion and rollback, kept in the tracking server so every operator sees the same.

Each action is one run of the experiment ``<experiment>-audit``, its fields as
tags; ``zoo history`` reads them back from any machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from models.settings import Settings
from models.store import light

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
    values = asdict(record)
    tags = {f"zoo.audit.{k}": json.dumps(values[k]) for k in FIELDS}
    light.connect(settings, settings.tracking_uri).log_run(_experiment(settings), f"{record.action}-{record.task}-v{record.version}", tags)


def history(settings: Settings, task: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of ``task``, oldest first."""
    runs = light.connect(settings, settings.tracking_uri).tagged_runs(_experiment(settings), "zoo.audit.task", json.dumps(task))
    return [{k: json.loads(tags[f"zoo.audit.{k}"]) for k in FIELDS} for tags in runs if all(f"zoo.audit.{k}" in tags for k in FIELDS)]
