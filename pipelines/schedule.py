"""``zoo schedule``: retraining deployments on Prefect's own scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from models.registry import task_names
from models.settings import Settings
from pipelines.serving import free_port, stop_group

DEFAULTS = Path(__file__).with_name("schedules.yaml")


UNSCHEDULED = "unscheduled"
"""The key of a schedules file that lists the tasks deliberately left without a schedule (task: why)."""
COUNTS = ("gpus", "nodes")
"""Optional keys of an entry: GPUs per node and nodes of a retrain on the Kubernetes work pool (infra/prefect/deploy.py)."""


class ScheduleError(ValueError):
    """A schedules file that names an unknown task, lacks a cron, leaves a registered task out, or gives a bad count."""


def load_schedules(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Per scheduled task: ``cron``, ``config``, ``auto_promote`` (and optional ``timezone``, ``gpus``, ``nodes``).

    Every registered task must have an entry, or be listed under ``unscheduled`` with a reason:
    a task added to the registry is never left without retraining unnoticed.
    """
    path = path or Path(os.environ.get("ZOO_SCHEDULES", DEFAULTS))
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ScheduleError(f"{path}: expected a mapping of task names to schedules")
    unscheduled = raw.pop(UNSCHEDULED, None) or {}
    if not isinstance(unscheduled, dict):
        raise ScheduleError(f"{path}: {UNSCHEDULED} must map each task to the reason it has no schedule")
    known = task_names()
    for task in (*raw, *unscheduled):
        if task not in known:
            raise ScheduleError(f"{path}: unknown task {task!r}; known tasks: {', '.join(known)}")
    both = sorted(set(raw) & set(unscheduled))
    if both:
        raise ScheduleError(f"{path}: {', '.join(both)} both scheduled and listed under {UNSCHEDULED}")
    out = {}
    for task, entry in raw.items():
        if not isinstance(entry, dict) or "cron" not in entry:
            raise ScheduleError(f"{path}: {task} has no cron")
        for key in COUNTS:
            value = entry.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScheduleError(f"{path}: {task}: {key} must be an integer of 1 or more, got {value!r}")
        out[task] = {"config": "demo", "auto_promote": False, **entry}
    missing = [t for t in known if t not in out and t not in unscheduled]
    if missing:
        raise ScheduleError(
            f"{path}: no schedule for {', '.join(missing)}; give each a cron, "
            f"or list it under '{UNSCHEDULED}:' with the reason it retrains by hand"
        )
    return out


def deployments(schedules: dict[str, dict[str, Any]], interval: float | None = None) -> list[Any]:
    """One deployment of the ``retrain`` flow per task, one run at a time per task."""
    from pipelines.flows import retrain

    out = []
    for task, entry in schedules.items():
        timing: dict[str, Any] = {"interval": interval} if interval else {"cron": entry["cron"]}
        if not interval and entry.get("timezone"):
            from prefect.schedules import Cron

            timing = {"schedule": Cron(entry["cron"], timezone=entry["timezone"])}
        out.append(
            retrain.to_deployment(
                name=f"retrain-{task}",
                parameters={"task": task, "config": entry["config"], "auto_promote": bool(entry["auto_promote"]), "progress": False, "trigger": "schedule"},
                concurrency_limit=1,
                tags=["course-zoo", task],
                description=f"Retrain {task} ({entry['config']} config) when its data or code changed.",
                **timing,
            )
        )
    return out


def _state_file(settings: Settings) -> Path:
    return settings.home / "prefect" / "server.json"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def prefect_server(settings: Settings) -> Iterator[str]:
    """``PREFECT_API_URL`` when set; else a ``prefect server`` on SQLite under ``ZOO_HOME``, stopped on exit."""
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **settings.tool_env()}
    env.pop("PREFECT_API_URL", None)
    log = settings.home / "logs" / "prefect-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    prefect = Path(sys.executable).with_name("prefect")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {log}")
            time.sleep(0.5)
        _state_file(settings).write_text(json.dumps({"url": url, "pid": proc.pid}))
        yield url
    finally:
        _state_file(settings).unlink(missing_ok=True)
        stop_group(proc)


def running_server_url(settings: Settings) -> str | None:
    """The API of a running ``zoo schedule``'s server, or ``PREFECT_API_URL``."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    path = _state_file(settings)
    if path.is_file():
        url = json.loads(path.read_text())["url"]
        if _healthy(url):
            return url
    return None


def serve(settings: Settings, tasks: list[str] | None = None, interval: float | None = None) -> None:
    """Serve the deployments until Ctrl-C; schedules stay active after shutdown."""
    import threading

    import prefect
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from pipelines import drift

    schedules = load_schedules()
    if tasks:
        schedules = {t: schedules[t] for t in tasks}
    stop = threading.Event()
    with prefect_server(settings) as url:
        os.environ["PREFECT_API_URL"] = url  # for the flow-run subprocesses
        with temporary_settings({PREFECT_API_URL: url}), _ctrl_c_as_sigterm():
            if settings.loop.metrics_url:  # drift past the threshold starts the task's deployment (pipelines/drift.py)
                every = min(interval or drift.POLL_SECONDS, drift.POLL_SECONDS)
                threading.Thread(target=drift.watch, args=(settings, list(schedules), stop, every), name="zoo-drift-watch", daemon=True).start()
            try:
                prefect.serve(*deployments(schedules, interval), pause_on_shutdown=False)
            finally:
                stop.set()
                _drain_prefect_queues()


def _drain_prefect_queues(timeout: float = 10) -> None:
    """Send Prefect's queued logs and events while the server that takes them still runs.

    Left to the interpreter's exit, they go to a server already stopped, and retry.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=timeout)


@contextmanager
def _ctrl_c_as_sigterm() -> Iterator[None]:
    """Ctrl-C takes the runner's SIGTERM path, which cancels in-flight runs and stops its loops.

    Under ``asyncio.run`` a Ctrl-C only cancels the main task, and Prefect's runner can go on
    submitting runs after that; its SIGTERM handler stops it, and a second signal exits at once.
    """
    previous = signal.signal(signal.SIGINT, lambda *_: signal.raise_signal(signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def list_deployments(url: str) -> list[dict[str, Any]]:
    """Each deployment with its schedule, next scheduled run and last finished run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    rows = []
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        for dep in client.read_deployments():
            only = DeploymentFilter(id=DeploymentFilterId(any_=[dep.id]))

            def runs(types: list[StateType], sort: FlowRunSort) -> list[Any]:
                state = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=types)))
                return client.read_flow_runs(deployment_filter=only, flow_run_filter=state, sort=sort, limit=1)

            upcoming = runs([StateType.SCHEDULED], FlowRunSort.EXPECTED_START_TIME_ASC)
            finished = runs([StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED], FlowRunSort.END_TIME_DESC)
            timing = []
            for s in dep.schedules:
                sched = s.schedule
                timing.append(getattr(sched, "cron", None) or f"every {getattr(sched, 'interval', '?')}")
            rows.append(
                {
                    "deployment": dep.name,
                    "task": (dep.parameters or {}).get("task"),
                    "schedule": ", ".join(str(t) for t in timing),
                    "active": all(s.active for s in dep.schedules) and not dep.paused,
                    "next_run": upcoming[0].expected_start_time.isoformat() if upcoming else None,
                    "last_run_state": finished[0].state_name if finished else None,
                    "last_run_at": finished[0].end_time.isoformat() if finished and finished[0].end_time else None,
                }
            )
    return rows
