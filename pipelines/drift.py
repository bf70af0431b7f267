"""Drift that starts a retrain: the scheduler polls the services' ``zoo_drift_score`` and, for a task past
``ZOO_DRIFT_THRESHOLD``, runs its retrain deployment, recorded as started by drift, at most once per
``ZOO_DRIFT_COOLDOWN_S`` (the cool-down survives restarts: it is kept under ``ZOO_HOME/drift``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from models.settings import Settings
from pipelines import live

log = logging.getLogger(__name__)
POLL_SECONDS = 60.0


@dataclass(frozen=True)
class Drifted:
    """A task past the threshold, and what was done about it."""

    task: str
    feature: str
    score: float
    started: bool
    why: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Launch = Callable[[str, str], Any]
"""``(task, trigger)``: start a retrain of ``task``, recorded as started by ``trigger``."""


def run_deployment_launch(task: str, trigger: str) -> Any:
    """Run the task's ``retrain-<task>`` deployment (served by ``zoo schedule``) without waiting for it."""
    from prefect.deployments import run_deployment

    return run_deployment(f"retrain/retrain-{task}", parameters={"trigger": trigger}, timeout=0, tags=["course-zoo", task, "drift"])


def check(settings: Settings, tasks: list[str], launch: Launch, now: Callable[[], float] = time.time) -> list[Drifted]:
    """One poll: every task of ``tasks`` with a feature past the threshold, started unless in its cool-down."""
    scores = live.drift_scores(settings)
    if scores is None:
        raise live.LiveUnavailable("ZOO_METRICS_URL is not set: there is no drift score to read")
    threshold, cooldown = settings.loop.drift_threshold, settings.loop.drift_cooldown_s
    worst: dict[str, tuple[str, float]] = {}
    for (task, feature), score in scores.items():
        if score > threshold and score > worst.get(task, ("", -1.0))[1]:
            worst[task] = (feature, score)
    out = []
    for task, (feature, score) in sorted(worst.items()):
        if task not in tasks:
            out.append(Drifted(task, feature, score, False, "not scheduled here"))
            continue
        folder = settings.home / "drift"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{task}.json").open("a+") as state:
            fcntl.flock(state, fcntl.LOCK_EX)  # two schedulers: one start
            state.seek(0)
            text = state.read()
            last = json.loads(text).get("started_at", 0.0) if text.strip() else 0.0
            if now() - last < cooldown:
                out.append(Drifted(task, feature, score, False, f"in its cool-down: a drift retrain started {now() - last:.0f} s ago (ZOO_DRIFT_COOLDOWN_S={cooldown:g})"))
                continue
            trigger = f"drift: {feature} {score:.3g} (threshold {threshold:g})"
            log.warning("%s drifted (%s); starting a retrain", task, trigger)
            launch(task, trigger)  # under the lock: a second scheduler waits, then finds the cool-down
            state.seek(0)  # only once started: a launch that failed (no deployment yet) is tried at the next poll
            state.truncate()
            state.write(json.dumps({"started_at": now(), "trigger": trigger}))
            state.flush()
        out.append(Drifted(task, feature, score, True, trigger))
    return out


HEARTBEAT = "watch.alive"
"""Under ``ZOO_HOME/drift``: touched after every poll, good or failed (the containers' health checks read its age)."""


def watch(settings: Settings, tasks: list[str], stop: threading.Event, every: float = POLL_SECONDS, launch: Launch = run_deployment_launch) -> None:
    """Poll until ``stop`` is set (``zoo schedule``'s thread, ``zoo drift watch``); a failed poll is logged and tried again."""
    beat = settings.home / "drift" / HEARTBEAT
    beat.parent.mkdir(parents=True, exist_ok=True)
    beat.touch()
    while not stop.wait(every):
        try:
            check(settings, tasks, launch)
        except Exception as exc:  # never let the watcher die
            log.error("drift check failed: %s: %s", type(exc).__name__, exc)
        beat.touch()
