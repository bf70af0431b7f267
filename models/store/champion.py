"""Moving the ``champion`` alias: the version tags that say who moved it and why, and the audit record, or nothing at all."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from models.settings import Settings
from models.store import audit
from models.store.light import Store
from models.store.names import CHAMPION, Tag


def move_champion(
    settings: Settings,
    store: Store,
    name: str,
    task: str,
    version: str,
    action: str,
    reason: str,
    forced: bool,
    gates: list[dict[str, Any]],
    registry: str,
    operator: str,
) -> audit.Record:
    """Point ``champion`` of registered model ``name`` at ``version``, tag the version and record it in the audit trail.

    The alias moves only after every check; if tagging or the audit record fails after it moved,
    it is put back, so a failure leaves the aliases as they were.
    """
    store.version(name, str(version))  # a clear error for an unknown version, before anything moves
    previous = store.by_alias(name, CHAMPION)
    prev_version = None if previous is None else previous.version
    record = audit.Record(
        action=action,
        task=task,
        version=str(version),
        previous=prev_version,
        registry=registry,
        operator=operator,
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        reason=reason,
        forced=forced,
        gates=gates,
    )
    store.set_alias(name, CHAMPION, str(version))
    try:
        tags = {
            Tag.action(action, "by"): record.operator,
            Tag.action(action, "at"): record.at,
            Tag.action(action, "reason"): reason,
            Tag.action(action, "forced"): str(forced).lower(),
            Tag.action(action, "gates"): json.dumps(record.gates)[:4900],
        }
        if action == "promote" and prev_version is not None and prev_version != str(version):
            tags[Tag.PREVIOUS_CHAMPION] = prev_version
        store.set_tags(name, str(version), tags)
        audit.append(settings, record)
    except BaseException:
        if prev_version is None:
            store.delete_alias(name, CHAMPION)
        else:
            store.set_alias(name, CHAMPION, prev_version)
        raise
    return record
