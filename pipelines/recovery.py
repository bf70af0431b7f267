"""One retrain per task at a time, and clearing up after one that was killed.

A retrain holds ``<ZOO_HOME>/retrains/<task>.lock`` (``flock``) while it runs and writes into it
its pid, its MLflow run and its scratch folder. The kernel releases the lock when the process
dies, SIGKILL included, but the record stays: it is emptied only when the retrain ends by
itself (finished or failed with an exception). A retrain that takes the lock and finds a
record there knows the previous one died, and clears up before it starts:

- the dead run is marked ``KILLED`` in MLflow (it would stay ``RUNNING`` for ever), unless a
  version it registered has an alias (its registration finished before the kill);
- model versions the dead run created that no alias points to are deleted (a kill between
  creating the version and moving ``challenger`` to it leaves such a version);
- its scratch folder (the ONNX export) and its checkpoints are removed;
- the processes it had started and that outlived it are stopped (on one machine, Prefect's
  temporary API server: a SIGKILLed parent cannot stop it).

A version an alias points to is never deleted: the registration finished before the kill.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from models.errors import Blocked
from models.settings import Settings

log = logging.getLogger(__name__)


class RetrainRunning(Blocked):
    """Another retrain of the same task holds the lock."""


@dataclass
class Recovered:
    """What was cleared up after a retrain that died."""

    pid: int | None = None
    run_id: str | None = None
    deleted_versions: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)
    run_killed: bool = False

    def __str__(self) -> str:
        parts = [f"a retrain (pid {self.pid}) died without finishing"]
        if self.run_id:
            parts.append(f"its MLflow run {self.run_id} is marked KILLED" if self.run_killed else f"its MLflow run {self.run_id} had registered a version behind an alias: kept")
        if self.deleted_versions:
            parts.append(f"versions it left without an alias were deleted: {', '.join(self.deleted_versions)}")
        if self.removed:
            parts.append(f"its scratch and checkpoint folders were removed ({len(self.removed)})")
        if self.stopped:
            parts.append(f"processes it left running were stopped: {', '.join(map(str, self.stopped))}")
        return "; ".join(parts)


class RetrainLock:
    """The held lock of one task's retrain; :meth:`record` adds to what a successor would clear up."""

    def __init__(self, handle: IO[str], state: dict[str, Any]) -> None:
        self._handle, self.state = handle, state

    def record(self, **values: Any) -> None:
        """Add ``values`` and this process's children (pid, start time) to the record."""
        import psutil

        kids = psutil.Process().children(recursive=True)
        self.state.update(values, children=[[k.pid, k.create_time()] for k in kids])
        self._write(self.state)

    def _write(self, state: dict[str, Any] | None) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        if state:
            self._handle.write(json.dumps(state))
        self._handle.flush()
        os.fsync(self._handle.fileno())


def lock_path(settings: Settings, task: str) -> Path:
    return settings.home / "retrains" / f"{task}.lock"


def scratch_dir(settings: Settings, task: str) -> Path:
    """Where a retrain of ``task`` writes what it throws away (the ONNX export before registration)."""
    return settings.home / "retrains" / f"{task}.scratch"


@contextmanager
def retrain_lock(settings: Settings, task: str) -> Iterator[RetrainLock]:
    """Hold ``task``'s retrain lock for the block, after clearing up what a killed predecessor left.

    Raises :class:`RetrainRunning` when another retrain of ``task`` holds it.
    """
    path = lock_path(settings, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RetrainRunning(f"another retrain of {task} is running ({_describe(handle.read())}; lock {path})") from None
        handle.seek(0)
        left = handle.read().strip()
        if left:
            found = recover(settings, task, _parse(left))
            log.warning("%s: %s", task, found)
            print(f"{task}: {found}")
        lock = RetrainLock(handle, {"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        lock.record()
        try:
            yield lock
        finally:
            shutil.rmtree(scratch_dir(settings, task), ignore_errors=True)
            lock._write(None)  # ended by itself: nothing for a successor to clear up
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe(text: str) -> str:
    state = _parse(text)
    return f"pid {state.get('pid', '?')}, started {state.get('started', '?')}"


def recover(settings: Settings, task: str, state: dict[str, Any]) -> Recovered:
    """Clear up after the dead retrain whose lock record is ``state``."""
    found = Recovered(pid=state.get("pid"), run_id=state.get("run_id"))
    folders = [scratch_dir(settings, task)] + ([settings.checkpoints / task / found.run_id] if found.run_id else [])
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            found.removed.append(str(folder))
    found.stopped = _stop_children(state.get("children") or [])
    if found.run_id:
        found.deleted_versions, found.run_killed = _kill_run(settings, task, found.run_id)
    return found


def _stop_children(children: list[list[float]]) -> list[int]:
    """Stop the recorded processes still alive (the same pid and start time, so never a reused pid)."""
    import psutil

    alive = []
    for pid, started in children:
        try:
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - float(started)) < 0.01:
                alive.append(proc)
        except (psutil.Error, ValueError, TypeError):
            continue
    for proc in alive:
        proc.terminate()
    _, left = psutil.wait_procs(alive, timeout=10)
    for proc in left:
        proc.kill()
    return [p.pid for p in alive]


def _kill_run(settings: Settings, task: str, run_id: str) -> tuple[list[str], bool]:
    """Delete the run's versions without an alias; mark it KILLED unless one has an alias. Returns (deleted, marked)."""
    from mlflow.exceptions import MlflowException

    from models.store.connect import client

    c = client(settings)
    deleted, kept = [], []
    for mv in c.search_model_versions(f"name='{task}' and run_id='{run_id}'"):
        if mv.aliases:
            kept.append(mv.version)
        else:
            c.delete_model_version(task, mv.version)
            deleted.append(str(mv.version))
    if kept:  # a version behind an alias: its registration finished
        return deleted, False
    try:
        c.set_terminated(run_id, "KILLED")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return deleted, False
    return deleted, True
