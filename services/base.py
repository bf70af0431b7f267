"""What every course-zoo service shares: loading champions, readiness, errors, headers."""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from starlette.responses import JSONResponse

from models import modelstore
from models.inputs import InvalidInput
from models.onnx_model import ChecksumError, OnnxModel
from models.settings import Settings
from services.batching import MicroBatcher
from services.metrics import zoo_metrics

log = logging.getLogger("course_zoo.services")
VERSION_HEADER = "X-Model-Version"
REJECTION_HEADER = "X-Zoo-Rejection"
INLINE_ROWS = 256
"""Requests of up to this many rows may run a tiny model inline (see :meth:`TaskRunner.run`)."""
LOADED_VERSIONS: dict[str, str] = {}
"""Task -> version loaded in this worker process (for headers on responses BentoML writes)."""


def collect(cls: type, attr: str) -> dict[str, Any]:
    """Merge the dict class attribute ``attr`` over every API mixin in ``cls``'s MRO."""
    merged: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        merged.update(base.__dict__.get(attr, {}))
    return merged


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class RegistryUnavailable(RuntimeError):
    """The model registry could not be read."""


def _cached(settings: Settings, task: str) -> bool:
    return modelstore.champion_record(settings, modelstore.registered_name(task)).is_file()


class TaskRunner:
    """One loaded model version of one task, with its batcher."""

    task: ClassVar[str]

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.spec: dict[str, Any] = model.spec["preprocess"]
        metrics = zoo_metrics()
        self.batcher = MicroBatcher(
            model.run,
            max_batch_size=env_int("ZOO_MAX_BATCH_SIZE", 32),
            on_batch=metrics.batch_size.labels(self.task).observe,
        )
        self._predicted = metrics.predictions.labels(self.task, model.version)
        self._observe_batch = metrics.batch_size.labels(self.task).observe
        self.call_seconds = model.seconds_per_call()
        self.inline = self.call_seconds * 1000 < float(os.environ.get("ZOO_INLINE_MS", "0.25"))

    @property
    def version(self) -> str:
        return self.model.version

    async def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run the model on one request's rows: inline when it is tiny, else through the shared batcher.

        Tuned in issue 6: a model that answers a reference row in under ``ZOO_INLINE_MS``
        (0.25 ms; recommend ~0.015 ms and sales ~0.1 ms on 2 cores) costs less than the hop to a
        worker thread and gains nothing from batching, so small requests run it on the event loop.
        """
        if self.inline and len(inputs[0]) <= INLINE_ROWS:
            out = self.model.run(*inputs)
            self._observe_batch(1)
        else:
            out = await self.batcher.submit(*inputs)
        self._predicted.inc(len(out))
        return out


class ZooService:
    """Mixin for BentoML service classes: serves each task's champion and follows the alias.

    A background thread re-reads the ``champion`` alias every ``ZOO_POLL_SECONDS``.
    A new version is downloaded, checked against its sha256, warmed and checked
    for a compatible spec before it replaces the old one in a single assignment:
    requests already running finish on the old model. A version that fails any
    step is not loaded and the old one keeps serving. With the registry down the
    service keeps what it has and retries with backoff; starting with it down, it
    loads the last verified champion from ``ZOO_HOME``'s cache.
    """

    served: ClassVar[tuple[str, ...] | None] = None
    """Tasks this service serves; ``None``: ``ZOO_TASKS``, else every task with a champion."""
    compute_bound: ClassVar[bool] = False
    """Only compute-bound models (one worker, every CPU for ONNX Runtime): see :func:`serving_workers`."""

    def __init__(self) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.settings = Settings.from_env()
        self.settings.apply()
        # Each worker's ONNX Runtime sessions get their share of the CPUs (models.onnx_model reads it).
        os.environ["ZOO_ORT_THREADS"] = str(ort_threads(serving_workers(self.compute_bound)))
        self.runners: dict[str, TaskRunner] = {}
        self.problems: dict[str, str] = {}
        self.runner_types: dict[str, type[TaskRunner]] = collect(type(self), "runner_types")
        self.poll_seconds = float(os.environ.get("ZOO_POLL_SECONDS", "5"))
        self._failed: dict[str, str] = {}
        discover = self.served is None and not os.environ.get("ZOO_TASKS", "").strip()
        try:
            self.tasks = self._wanted()
        except Exception as exc:  # registry down at start: serve what the cache has
            log.error("registry unreachable at start (%s); using cached champions", exc)
            self.tasks = [t for t in self.runner_types if _cached(self.settings, t)]
        # The all-tasks service also watches tasks that have no champion yet.
        self.watched = list(self.runner_types) if discover else list(self.tasks)
        metrics = zoo_metrics()
        for task in self.watched:  # export the counters at 0 from the start: increase() misses a series' first value
            metrics.load_failures.labels(task)
            metrics.registry_errors.labels(task)
        for task in self.tasks:
            try:
                self.refresh(task)
            except RegistryUnavailable as exc:
                self._load_cached(task, exc)
            metrics.model_ready.labels(task).set(float(task in self.runners))
        if not self.tasks:
            self.problems["*"] = f"no task has a champion in the registry at {self.settings.registry_uri}"
            log.error(self.problems["*"])
        self._stop = threading.Event()
        threading.Thread(target=self._follow, name="zoo-registry-poll", daemon=True).start()
        # Tuned in issue 6 (bench/): what is loaded by now (torch, MLflow, the specs) is frozen out of
        # the garbage collector's reach. Measured on 2 CPUs (make bench, /rate, wrk): full collections
        # of that heap stopped the event loop for 300-430 ms every ~8 s under load, p99 ~300 ms at c1 and
        # ~410 ms at c32; frozen: pauses of 50-85 ms, p99 7-74 ms at c1, ~225 ms at c32, c32 throughput
        # 656 -> 860 requests/s. (What is left: BentoML's TimeoutMiddleware keeps every request's
        # future and context alive for the traffic timeout, 60 s.) ZOO_GC_FREEZE=0 turns it off.
        if os.environ.get("ZOO_GC_FREEZE", "1") != "0":
            gc.collect()
            gc.freeze()

    def _wanted(self) -> list[str]:
        if self.served is not None:
            return list(self.served)
        env = os.environ.get("ZOO_TASKS", "").strip()
        if env:
            return [t.strip() for t in env.split(",") if t.strip() in self.runner_types]
        c = modelstore.client(self.settings)
        return [t for t in self.runner_types if modelstore.by_alias(c, modelstore.registered_name(t), modelstore.CHAMPION)]

    def _load_cached(self, task: str, why: Exception) -> None:
        try:
            model = modelstore.load_remembered(self.settings, modelstore.registered_name(task))
        except Exception as exc:
            self.problems[task] = f"registry unreachable ({why}) and no verified champion cached: {exc}"
            log.error("cannot serve %s: %s", task, self.problems[task])
            return
        log.warning("registry unreachable (%s); serving cached %s version %s", why, task, model.version)
        self._install(task, model)

    def refresh(self, task: str) -> bool:
        """Load the champion of ``task`` if it changed; returns whether a new version was installed.

        Raises :class:`RegistryUnavailable` when the registry cannot be read.
        """
        name = modelstore.registered_name(task)
        try:
            c = modelstore.client(self.settings)
            mv = modelstore.by_alias(c, name, modelstore.CHAMPION)
        except Exception as exc:
            zoo_metrics().registry_errors.labels(task).inc()
            raise RegistryUnavailable(modelstore.explain(exc, self.settings.registry_uri)) from exc
        if mv is None:
            if task not in self.runners and task in self.tasks:
                self.problems[task] = f"{name} has no champion in the registry at {self.settings.registry_uri}"
            return False
        version = str(mv.version)
        current = self.runners.get(task)
        if current is not None and current.version == version:
            return False
        if self._failed.get(task) == version:
            return False  # refused before; wait for the alias to move
        try:
            model = modelstore.open_version(self.settings, c, mv)
            model.warm()
            if current is not None and not model.compatible_with(current.model):
                raise ValueError(f"version {version} takes different inputs than version {current.version}")
        except Exception as exc:
            if isinstance(exc, (ChecksumError, ValueError)):
                self._failed[task] = version  # will not get better: wait for the alias to move
            zoo_metrics().load_failures.labels(task).inc()
            log.error("not loading %s version %s: %s: %s", task, version, type(exc).__name__, exc)
            if current is None:
                self.problems[task] = f"version {version} could not be loaded: {exc}"
            return False
        self._install(task, model)
        modelstore.remember(self.settings, mv)
        return True

    def _install(self, task: str, model: OnnxModel) -> None:
        self.runners[task] = self.runner_types[task](model)  # the swap: one assignment
        self.problems.pop(task, None)
        self.problems.pop("*", None)
        self._failed.pop(task, None)
        LOADED_VERSIONS[task] = model.version
        zoo_metrics().model_version.labels(task).set(float(model.version))
        zoo_metrics().model_ready.labels(task).set(1.0)
        log.info("serving %s version %s", task, model.version)

    def _follow(self) -> None:
        delay = self.poll_seconds
        while not self._stop.wait(delay):
            healthy = True
            for task in self.watched:
                try:
                    self.refresh(task)
                except RegistryUnavailable as exc:
                    healthy = False
                    log.warning("registry unreachable, keeping %s version %s: %s", task, LOADED_VERSIONS.get(task), exc)
                except Exception:  # never let the poller die
                    healthy = False
                    log.exception("polling the registry for %s failed", task)
            delay = self.poll_seconds if healthy else min(max(delay, self.poll_seconds) * 2, 60.0)

    def __is_ready__(self) -> bool:
        return bool(self.runners) and not self.problems

    async def serve(self, task: str, ctx: Any, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``call(runner)`` for ``task``; bad input and a missing model become clear JSON errors."""
        runner = self.runners.get(task)
        if runner is None:
            why = self.problems.get(task) or self.problems.get("*") or "this server was not started for it"
            return self._error(ctx, 503, f"task {task!r} is not being served: {why}", "not_served", None)
        try:
            result = await call(runner)
        except InvalidInput as exc:
            zoo_metrics().rejections.labels(task, exc.reason).inc()
            return self._error(ctx, exc.status, str(exc), exc.reason, runner.version)
        ctx.response.headers[VERSION_HEADER] = runner.version
        return result

    @staticmethod
    def _error(ctx: Any, status: int, message: str, reason: str, version: str | None) -> JSONResponse:
        ctx.response.status_code = status
        ctx.response.headers[REJECTION_HEADER] = reason
        if version is not None:
            ctx.response.headers[VERSION_HEADER] = version
        return JSONResponse({"error": message, "reason": reason}, status_code=status)


class ZooMiddleware:
    """ASGI middleware for the task routes: body-size cap, version header, rejection counts."""

    def __init__(self, app: Any, routes: dict[str, str], max_body_bytes: int) -> None:
        self.app, self.routes, self.max_body_bytes = app, routes, max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        task = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if task is None:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body_bytes:
            exc = InvalidInput("too_large", f"request body is {int(length)} bytes; the limit is {self.max_body_bytes}", status=413)
            zoo_metrics().rejections.labels(task, exc.reason).inc()
            resp = JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=413, headers={REJECTION_HEADER: exc.reason})
            return await resp(scope, receive, send)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", []))
                names = {k.lower() for k, _ in out}
                status = message["status"]
                if 400 <= status < 500 and REJECTION_HEADER.lower().encode() not in names:
                    zoo_metrics().rejections.labels(task, "invalid_request").inc()
                if VERSION_HEADER.lower().encode() not in names:
                    out.append((VERSION_HEADER.lower().encode(), LOADED_VERSIONS.get(task, "none").encode()))
                message = {**message, "headers": out}
            await send(message)

        await self.app(scope, receive, send_with_headers)


MAX_DEFAULT_WORKERS = 4
"""Without ``ZOO_WORKERS``, at most this many workers (each holds its own copy of the models)."""


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota and period: what a container's CPU limit becomes."""


def available_cpus(cpu_max: Path = CPU_MAX) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's CPU limit)."""
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def serving_workers(compute_bound: bool = False) -> int:
    """Worker processes: ``ZOO_WORKERS``, else one per CPU (at most ``MAX_DEFAULT_WORKERS``),
    or one for a service of compute-bound models only.

    Tuned in issue 6 (wrk on the 2-CPU machine, one worker against two with one ONNX Runtime
    thread each): ``/rate`` and ``/sales`` at c32 went from 480-550 to 1,100-1,150 and from
    255-325 to 480-500 requests/s, classify from 198 to 357, sentiment from 247 to 283, segment
    stayed at 42-43; only superres lost (c1 17.5 -> 12.9, c32 19.3 -> 16.7 requests/s), which is
    why the segment and superres services keep one worker with every core for ONNX Runtime.
    """
    if os.environ.get("ZOO_WORKERS", "").strip():
        return env_int("ZOO_WORKERS", 1)
    return 1 if compute_bound else max(1, min(available_cpus(), MAX_DEFAULT_WORKERS))


def ort_threads(workers: int) -> int:
    """ONNX Runtime intra-op threads per worker: ``ZOO_ORT_THREADS``, else the CPUs shared out among the workers."""
    if os.environ.get("ZOO_ORT_THREADS", "").strip():
        return env_int("ZOO_ORT_THREADS", 0)
    return max(1, available_cpus() // workers)


def service_options(compute_bound: bool = False) -> dict[str, Any]:
    """``@bentoml.service`` options shared by every service (tuned in issue 6)."""
    return {
        "traffic": {"timeout": 60},
        "workers": serving_workers(compute_bound),
        "metrics": {"enabled": True},
        "logging": {"access": {"enabled": os.environ.get("ZOO_ACCESS_LOG", "1") != "0"}},
    }


def with_middleware(service: Any) -> Any:
    """Attach :class:`ZooMiddleware` with the routes of every API mixin of ``service``."""
    routes = collect(service.inner, "routes")
    service.add_asgi_middleware(ZooMiddleware, routes=routes, max_body_bytes=env_int("ZOO_MAX_BODY_BYTES", 20 * 1024 * 1024))
    return service
