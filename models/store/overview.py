"""The registry's view for ``zoo models``: every task's champion and challenger with their runs' metrics."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from models.settings import Settings
from models.store import light
from models.store.names import CHALLENGER, CHAMPION, Tag


def describe_version(tracking: light.Store, version: light.Version | None) -> dict[str, Any] | None:
    """A JSON-friendly view of one model version, with its run's final metrics."""
    if version is None:
        return None
    metrics: dict[str, float] = {}
    if version.run_id:
        metrics = {k: v for k, v in tracking.metrics(version.run_id).items() if not k.startswith(("train_", "val_"))}
    created = datetime.fromtimestamp(version.created_ms / 1000, tz=timezone.utc)
    return {
        "version": version.version,
        "metric_name": version.tags.get(Tag.METRIC),
        "metrics": metrics,
        "data_hash": version.tags.get(Tag.DATA_HASH),
        "git_commit": version.tags.get(Tag.GIT_COMMIT),
        "created": created.isoformat(timespec="seconds"),
    }


def list_models(settings: Settings, tasks: list[str]) -> list[dict[str, Any]]:
    """Every task with its champion and challenger (each ``None`` when absent)."""
    registry = light.connect(settings, settings.registry_uri)
    tracking = registry if settings.tracking_uri == settings.registry_uri else light.connect(settings, settings.tracking_uri)
    return [
        {
            "task": task,
            "champion": describe_version(tracking, registry.by_alias(task, CHAMPION)),
            "challenger": describe_version(tracking, registry.by_alias(task, CHALLENGER)),
        }
        for task in tasks
    ]
