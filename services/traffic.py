"""The challenger on live traffic: shadow requests, compared with the champion's answers, and a canary that rolls
itself back.

* Shadow (``ZOO_SHADOW_SHARE``): after the champion answered, that share of requests also runs on the challenger,
  off the response path; the two answers are compared with the task's measure
  (:attr:`models.serving.Serving.shadow_measure`) into ``zoo_shadow_agreement``. Shadow work runs on spare
  capacity only, so that it never slows the callers: one queue per worker, drained one call at a time whenever
  no caller's request is inside the worker's ASGI app (:data:`ACTIVITY`, counted by the middleware from the first
  byte read to the last byte sent), and within a time budget of ``SHADOW_TIME_SHARE`` of the worker's time. A
  request is not shadowed (counted in ``zoo_shadow_skipped``) when ``SHADOW_IN_FLIGHT`` shadow calls are waiting,
  the worker stays busy for ``SHADOW_PATIENCE_S`` or the budget is spent.
* Canary (``ZOO_CANARY_SHARE``): that share of request keys (the task's :meth:`~models.serving.Serving.request_key`,
  else the ``X-Request-Key`` header, else each request on its own) is answered by the challenger for real. A
  challenger failure is answered by the champion; when the challenger's error rate or p99 over its last
  ``ZOO_CANARY_WINDOW`` requests breaks the task's budget, the worker stops routing to that version at once, and
  says why in its log, in ``zoo_canary_rollbacks`` and in the audit trail.

``ZOO_SERVE_FAILPOINTS=challenger`` (chaos testing) makes every challenger call fail, ``challenger_slow`` adds a
second to each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import threading
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any

import numpy as np

from models.inputs import InvalidInput
from models.settings import LoopSettings, Settings
from services.batching import Overloaded
from services.metrics import zoo_metrics
from services.runtime import TaskRunner

log = logging.getLogger("course_zoo.services.traffic")
SHADOW_IN_FLIGHT = 4
"""Shadow calls waiting at most per worker."""
SHADOW_PATIENCE_S = 1.0
"""How long a shadow call waits for the worker to have no request in flight; past it, it is dropped (skipped)."""
SHADOW_TIME_SHARE = 0.05
"""Shadow calls take at most this share of a worker's time (a budget earned per second, spent by each call's
duration): on a saturated CPU there is no spare capacity, and idle moments alone would let shadow work add its
own cost to the callers' latency."""
SHADOW_BURST_S = 0.25
"""Budget that an idle worker saves up at most (seconds of shadow work)."""
KEY_HEADER = "x-request-key"


class Activity:
    """Callers' requests inside this worker's ASGI app now; shadow work waits for none."""

    def __init__(self) -> None:
        self.requests = 0
        self._idle: asyncio.Event | None = None

    def enter(self) -> None:
        self.requests += 1

    def leave(self) -> None:
        self.requests -= 1
        if self.requests <= 0 and self._idle is not None:
            self._idle.set()

    async def until_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for no request in flight; whether it came."""
        if self.requests <= 0:
            return True
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return False
        return True


ACTIVITY = Activity()
"""This worker's callers (one per process: the middleware counts, :class:`Traffic` waits)."""


class ChallengerFailpoint(RuntimeError):
    """``ZOO_SERVE_FAILPOINTS=challenger``: the challenger was made to fail."""


def bucket(task: str, key: str) -> float:
    """Where ``key`` falls in [0, 1): the same place every time, on every worker and replica."""
    digest = hashlib.sha256(f"{task}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class CanaryWindow:
    """One challenger version's last canary requests: whether each failed, and how long it took."""

    def __init__(self, version: str, size: int, minimum: int, max_error_rate: float, p99_ms: float) -> None:
        self.version, self.minimum = version, minimum
        self.max_error_rate, self.p99_ms = max_error_rate, p99_ms
        self.outcomes: deque[tuple[bool, float]] = deque(maxlen=size)
        self.stopped: str | None = None

    def record(self, failed: bool, seconds: float) -> str | None:
        """Add one request; returns why the canary must stop when this one broke the budget (once)."""
        self.outcomes.append((failed, seconds))
        if self.stopped is not None or len(self.outcomes) < self.minimum:
            return None
        errors = sum(f for f, _ in self.outcomes) / len(self.outcomes)
        p99 = float(np.percentile([s for _, s in self.outcomes], 99)) * 1000
        n = len(self.outcomes)
        if errors > self.max_error_rate:
            self.stopped = f"error rate {errors:.1%} over its last {n} requests (budget {self.max_error_rate:.1%})"
        elif p99 > self.p99_ms:
            self.stopped = f"p99 {p99:.0f} ms over its last {n} requests (budget {self.p99_ms:.0f} ms)"
        return self.stopped


class Traffic:
    """Shadow and canary routing of one worker, for every task it serves."""

    def __init__(self, settings: Settings, activity: Activity = ACTIVITY) -> None:
        self.settings, self.activity = settings, activity
        self.config: LoopSettings = settings.loop
        self.canaries: dict[str, CanaryWindow] = {}
        self._pending: deque[tuple[float, str, dict[str, Any], Any, tuple[str, str, str], TaskRunner]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._budget, self._budget_at = SHADOW_BURST_S, time.monotonic()
        self._random = random.Random()

    # ------------------------------------------------------------------ canary

    def canary_window(self, task: str, challenger: TaskRunner) -> CanaryWindow:
        window = self.canaries.get(task)
        if window is None or window.version != challenger.version:
            hooks = challenger.serving
            window = CanaryWindow(challenger.version, self.config.canary_window, self.config.canary_min_requests, hooks.canary_max_error_rate, hooks.canary_p99_ms)
            self.canaries[task] = window
            zoo_metrics().canary_active.labels(task).set(1.0)
        return window

    def picks_challenger(self, task: str, endpoint: str, request: dict[str, Any], headers: Any, challenger: TaskRunner | None) -> bool:
        """Whether this request goes to the challenger (sticky per request key)."""
        share = self.config.canary_share
        if challenger is None or share <= 0 or self.canary_window(task, challenger).stopped is not None:
            return False
        key = challenger.serving.request_key(endpoint, request) or (headers.get(KEY_HEADER) if headers is not None else None)
        return (bucket(task, str(key)) if key else self._random.random()) < share

    async def call_challenger(self, challenger: TaskRunner, endpoint: str, request: dict[str, Any], seen: Any = None) -> Any:
        if "challenger" in self.config.failpoints:
            raise ChallengerFailpoint("ZOO_SERVE_FAILPOINTS=challenger: the challenger was made to fail")
        if "challenger_slow" in self.config.failpoints:
            await asyncio.sleep(1.0)
        return await challenger.handle(endpoint, request, seen)

    async def canary(self, task: str, endpoint: str, request: dict[str, Any], champion: TaskRunner, challenger: TaskRunner, seen: Any = None) -> tuple[Any, TaskRunner]:
        """Answer with the challenger; on its failure, with the champion. Returns the answer and who gave it."""
        window = self.canary_window(task, challenger)
        metrics = zoo_metrics()
        start = time.perf_counter()
        try:
            result = await self.call_challenger(challenger, endpoint, request, seen)
        except (InvalidInput, Overloaded):
            raise  # the request's fault, or load: the same for either version
        except Exception as exc:
            metrics.canary_requests.labels(task, challenger.version, "error").inc()
            self._judge(task, window, True, time.perf_counter() - start, champion.version)
            log.warning("canary %s version %s failed a request (%s: %s); answered by the champion", task, challenger.version, type(exc).__name__, exc)
            return await champion.handle(endpoint, request, seen), champion
        metrics.canary_requests.labels(task, challenger.version, "ok").inc()
        self._judge(task, window, False, time.perf_counter() - start, champion.version)
        return result, challenger

    def _judge(self, task: str, window: CanaryWindow, failed: bool, seconds: float, champion_version: str) -> None:
        why = window.record(failed, seconds)
        if why is None:
            return
        log.error("canary rolled back: %s stops routing to challenger version %s: %s", task, window.version, why)
        metrics = zoo_metrics()
        metrics.canary_rollbacks.labels(task, window.version).inc()
        metrics.canary_active.labels(task).set(0.0)
        threading.Thread(target=self._audit, args=(task, window.version, champion_version, why), daemon=True).start()

    def _audit(self, task: str, version: str, champion: str, why: str) -> None:
        """The rollback in the shared audit trail (off the request path; a tracking server that is down is logged)."""
        import os
        import socket

        from models.store import audit

        record = audit.Record(
            action="canary-rollback",
            task=task,
            version=version,
            previous=champion,
            registry=self.settings.serving.registry,
            operator=f"service:{socket.gethostname()}:{os.getpid()}",
            at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            reason=why,
            forced=False,
            gates=[],
        )
        try:
            audit.append(self.settings, record)
        except Exception as exc:
            log.error("canary rollback of %s version %s not recorded in the audit trail: %s", task, version, exc)

    # ------------------------------------------------------------------ shadow

    def shadow_sampled(self, challenger: TaskRunner | None) -> bool:
        """Whether this request is also sent to the challenger (``ZOO_SHADOW_SHARE`` of them)."""
        return challenger is not None and self.config.shadow_share > 0 and self._random.random() < self.config.shadow_share

    def shadow(self, task: str, endpoint: str, request: dict[str, Any], answer: Any, champion: TaskRunner, challenger: TaskRunner) -> None:
        """Queue this request for the challenger too, run once the worker is idle (``request`` holds no temporary file)."""
        labels = (task, champion.version, challenger.version)
        if len(self._pending) >= SHADOW_IN_FLIGHT or not self._afford():  # nothing queued on a spent budget
            zoo_metrics().shadow_skipped.labels(*labels).inc()
            return
        self._pending.append((time.monotonic() + SHADOW_PATIENCE_S, endpoint, request, answer, labels, challenger))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """One shadow call at a time, each when no caller is in flight; what waited past its patience is skipped."""
        while self._pending:
            deadline, endpoint, request, answer, labels, challenger = self._pending[0]
            idle = await self.activity.until_idle(deadline - time.monotonic())
            self._pending.popleft()
            if not idle or not self._afford():
                zoo_metrics().shadow_skipped.labels(*labels).inc()
                continue
            start = time.monotonic()
            await self._compare(endpoint, request, answer, labels, challenger)
            self._budget -= time.monotonic() - start
            await asyncio.sleep(0)  # callers that arrived meanwhile go first

    def _afford(self) -> bool:
        """Whether the time budget (``SHADOW_TIME_SHARE`` of the worker's) allows another shadow call now."""
        now = time.monotonic()
        self._budget = min(SHADOW_BURST_S, self._budget + (now - self._budget_at) * SHADOW_TIME_SHARE)
        self._budget_at = now
        return self._budget > 0

    async def _compare(self, endpoint: str, request: dict[str, Any], answer: Any, labels: tuple[str, str, str], challenger: TaskRunner) -> None:
        metrics = zoo_metrics()
        try:
            theirs = await self.call_challenger(challenger, endpoint, request)
            hooks = challenger.serving
            heavy = hooks.shadow_measure in ("iou", "psnr")  # decoding images: a worker thread
            value = await asyncio.to_thread(hooks.agreement, endpoint, answer, theirs) if heavy else hooks.agreement(endpoint, answer, theirs)
        except Exception as exc:  # the caller has its answer; the challenger's failure is counted
            metrics.shadow_errors.labels(*labels).inc()
            log.info("shadow request to %s version %s failed: %s: %s", labels[0], labels[2], type(exc).__name__, exc)
            return
        metrics.shadow_requests.labels(*labels).inc()
        if value is not None:
            metrics.shadow_agreement.labels(*labels).observe(value)
