"""The embedded registry (MLflow on SQLite) read and written through MLflow's own tables, without importing MLflow.

Only at a schema revision listed in :data:`KNOWN_REVISIONS`: MLflow migrates
its schema with Alembic and records the revision in ``alembic_version``; at
any other revision :func:`~models.store.light.connect` uses MLflow's client.
Each write is one transaction, and does what MLflow's SQL store does for the
same call (``tests/unit/test_light_store.py`` checks both against each other).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path

from models.errors import NotFound
from models.settings import Settings
from models.store.light import Version

KNOWN_REVISIONS = frozenset({"dc11669786a5"})
"""Alembic revisions of MLflow's schema this module was tested against (MLflow 3.17)."""
WORKSPACE = "default"
"""The workspace MLflow uses when workspaces are off (``MLFLOW_ENABLE_WORKSPACES`` unset)."""


class SqliteStore:
    """MLflow's SQLite tables, for the calls of :class:`~models.store.light.Store`."""

    def __init__(self, settings: Settings, uri: str, path: Path) -> None:
        self.settings, self.uri, self.path = settings, uri, path

    @classmethod
    def open(cls, settings: Settings, uri: str) -> SqliteStore | None:
        """The store for ``uri``, or ``None`` when MLflow's client must serve it (no database yet, workspaces, another schema)."""
        path = Path(uri.removeprefix("sqlite:///"))
        if "?" in uri or not path.is_file() or os.environ.get("MLFLOW_ENABLE_WORKSPACES") or os.environ.get("MLFLOW_WORKSPACE"):
            return None
        try:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)) as db:
                (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
        except sqlite3.Error:
            return None
        return cls(settings, uri, path) if revision in KNOWN_REVISIONS else None

    @contextmanager
    def _db(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection whose block is one transaction (taking the write lock at once when ``write``): committed when it ends, rolled back on an error."""
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _version(self, db: sqlite3.Connection, name: str, version: int) -> Version:
        row = db.execute(
            "SELECT run_id, creation_time FROM model_versions WHERE workspace = ? AND name = ? AND version = ? AND current_stage != 'Deleted_Internal'",
            (WORKSPACE, name, version),
        ).fetchone()
        if row is None:
            raise NotFound(f"registered model {name!r} has no version {version} in {self.uri}")
        tags = dict(db.execute("SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? AND version = ?", (WORKSPACE, name, version)))
        return Version(name=name, version=str(version), run_id=row[0] or None, tags=tags, created_ms=int(row[1] or 0))

    def version(self, name: str, version: str) -> Version:
        number = _number(version)
        with self._db() as db:
            return self._version(db, name, number)

    def by_alias(self, name: str, alias: str) -> Version | None:
        with self._db() as db:
            row = db.execute("SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? AND alias = ?", (WORKSPACE, name, alias)).fetchone()
            return None if row is None else self._version(db, name, int(row[0]))

    def metrics(self, run_id: str) -> dict[str, float]:
        with self._db() as db:
            rows = db.execute("SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,)).fetchall()
        return {key: float("nan") if is_nan else float(value) for key, value, is_nan in rows}

    def _write_version(self, name: str, version: int, sql: str, rows: list[tuple[object, ...]]) -> None:
        """Run ``sql`` over ``rows`` in one transaction, once the version is known to exist."""
        with self._db(write=True) as db:
            self._version(db, name, version)
            db.executemany(sql, rows)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        number = _number(version)
        self._write_version(
            name,
            number,
            "INSERT INTO registered_model_aliases (workspace, name, alias, version) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (workspace, name, alias) DO UPDATE SET version = excluded.version",
            [(WORKSPACE, name, alias, number)],
        )

    def delete_alias(self, name: str, alias: str) -> None:
        with self._db(write=True) as db:
            db.execute("DELETE FROM registered_model_aliases WHERE workspace = ? AND name = ? AND alias = ?", (WORKSPACE, name, alias))

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        number = _number(version)
        self._write_version(
            name,
            number,
            "INSERT INTO model_version_tags (workspace, key, name, version, value) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (workspace, key, name, version) DO UPDATE SET value = excluded.value",
            [(WORKSPACE, key, name, number, value) for key, value in tags.items()],
        )

    def _experiment(self, db: sqlite3.Connection, experiment: str) -> tuple[int, str] | None:
        row = db.execute("SELECT experiment_id, artifact_location FROM experiments WHERE workspace = ? AND name = ? AND lifecycle_stage = 'active'", (WORKSPACE, experiment)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def tagged_runs(self, experiment: str, key: str, value: str) -> list[dict[str, str]]:
        with self._db() as db:
            found = self._experiment(db, experiment)
            if found is None:
                return []
            runs = db.execute(
                "SELECT runs.run_uuid FROM runs JOIN tags ON tags.run_uuid = runs.run_uuid "
                "WHERE runs.experiment_id = ? AND runs.lifecycle_stage = 'active' AND tags.key = ? AND tags.value = ? "
                "ORDER BY runs.start_time ASC, runs.run_uuid ASC",
                (found[0], key, value),
            ).fetchall()
            return [dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", run)) for run in runs]

    def log_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> None:
        with self._db(write=True) as db:
            found = self._experiment(db, experiment)
            if found is not None:
                experiment_id, location = found
                run_id = uuid.uuid4().hex
                now = int(time.time() * 1000)
                db.execute(
                    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time, "
                    "source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time) "
                    "VALUES (?, ?, 'UNKNOWN', '', '', 'unknown', 'FINISHED', ?, ?, '', 'active', ?, ?, NULL)",
                    (run_id, run_name, now, now, f"{location.rstrip('/')}/{run_id}/artifacts", experiment_id),
                )
                db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", [(k, v, run_id) for k, v in {"mlflow.runName": run_name, **tags}.items()])
                return
        from models.store.light.client import ClientStore  # the first record: MLflow creates the experiment

        ClientStore(self.settings, self.uri).log_run(experiment, run_name, tags)


def _number(version: str) -> int:
    """A version number; :class:`NotFound` for anything else (MLflow's versions are whole numbers)."""
    if not str(version).isdigit():
        raise NotFound(f"{version!r} is not a model version number")
    return int(version)

