"""What every course-zoo service shares: loading champions, following the alias, readiness, errors, headers.

A task's service file holds one API class, ``class API(ZooService, task="<name>")``,
whose ``@bentoml.api`` methods are its typed schema and endpoints, each a line
over :meth:`ZooService.infer`. The task's serving hooks do the rest.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

import bentoml
from starlette.responses import JSONResponse

from models.errors import out_of_space
from models.inputs import InvalidInput
from models.onnx_model import ChecksumError, OnnxModel
from models.registry import get_serving
from models.settings import Settings
from models.store.connect import client, explain
from models.store.names import CHALLENGER, CHAMPION, model_name
from models.store.reading import by_alias, champion_record, load_remembered, open_version, remember
from services.batching import Overloaded
from services.capture import Capture
from services.drift import Drift
from services.feedback import Feedback, Outcome, RequestId, take_feedback
from services.metrics import zoo_metrics
from services.options import ort_threads, serving_workers, settings
from services.runtime import TaskRunner
from services.traffic import Traffic

log = logging.getLogger("course_zoo.services")
VERSION_HEADER = "X-Model-Version"
REJECTION_HEADER = "X-Zoo-Rejection"
REQUEST_ID_HEADER = "X-Request-Id"
LOADED_VERSIONS: dict[str, str] = {}
"""Task -> version loaded in this worker process (for headers on responses BentoML writes)."""


class RegistryUnavailable(RuntimeError):
    """The model registry could not be read."""


def is_api(value: Any) -> bool:
    """Whether a class attribute is a ``@bentoml.api`` method."""
    return hasattr(value, "route") and hasattr(value, "func") and hasattr(value, "input_spec")


class ZooService:
    """Base of the BentoML service classes: serves each task's champion and follows the alias.

    A background thread re-reads the ``champion`` alias every ``ZOO_POLL_SECONDS``.
    A new version is downloaded, checked against its sha256, warmed and checked
    for a compatible spec before it replaces the old one in a single assignment:
    requests already running finish on the old model. A version that fails any
    step is not loaded and the old one keeps serving. With the registry down the
    service keeps what it has and retries with backoff; starting with it down, it
    loads the last verified champion from ``ZOO_HOME``'s cache.
    """

    task: ClassVar[str | None] = None
    """The task whose API a subclass holds (``class API(ZooService, task="classify")``)."""
    discover: ClassVar[bool] = False
    """The all-tasks service: serve the tasks with a champion (or ``ZOO_TASKS``), and watch the others."""
    compute_bound: ClassVar[bool] = False
    """Only compute-bound models (one worker, every CPU for ONNX Runtime): see :func:`services.options.serving_workers`."""

    def __init_subclass__(cls, task: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if task is not None:
            cls.task = task

    @classmethod
    def endpoints(cls) -> dict[str, str]:
        """API name -> task, over every task API this class is made of."""
        out: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            task = klass.__dict__.get("task")
            if task:
                out.update({name: task for name, value in klass.__dict__.items() if is_api(value)})
        return out

    @classmethod
    def routes(cls) -> dict[str, str]:
        """Route -> task (for the middleware)."""
        tasks = cls.endpoints()
        return {getattr(cls, name).route: task for name, task in tasks.items()}

    @classmethod
    def api_tasks(cls) -> list[str]:
        return sorted(set(cls.endpoints().values()))

    def __init__(self) -> None:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.settings: Settings = settings()
        self.settings.apply()
        self.config = self.settings.serving
        self.threads = ort_threads(self.config, serving_workers(self.config, self.compute_bound))
        self.runners: dict[str, TaskRunner] = {}
        self.challengers: dict[str, TaskRunner] = {}
        """Task -> its ``challenger``, loaded when ``ZOO_SHADOW_SHARE`` or ``ZOO_CANARY_SHARE`` is set."""
        self.traffic = Traffic(self.settings)
        self.capture = Capture(self.settings)
        self.drift = Drift(self.settings.loop.drift_window, self.settings.loop.drift_min_rows)
        self._challenger_failed: dict[str, str] = {}
        self.problems: dict[str, str] = {}
        self.by_endpoint = self.endpoints()
        self.poll_seconds = self.config.poll_seconds
        self._failed: dict[str, str] = {}
        known = self.api_tasks()
        discover = self.discover and not self.config.tasks
        try:
            self.tasks = self._wanted(known)
        except Exception as exc:  # registry down at start: serve what the cache has
            log.error("registry unreachable at start (%s); using cached champions", exc)
            self.tasks = [t for t in known if champion_record(self.settings, self._name(t)).is_file()]
        # The all-tasks service also watches tasks that have no champion yet.
        self.watched = known if discover else list(self.tasks)
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
            self.refresh_challenger(task)
        if not self.tasks:
            self.problems["*"] = f"no task has a champion in the registry at {self.settings.registry_uri}"
            log.error(self.problems["*"])
        from services.inference_protocol import INSTANCES

        INSTANCES.append(self)
        self._stop = threading.Event()
        threading.Thread(target=self._follow, name="zoo-registry-poll", daemon=True).start()
        # What is loaded by now (MLflow, the specs, the models) is frozen out of the garbage collector's reach:
        # full collections of that heap paused the event loop under load (docs/benchmarks.md). ZOO_GC_FREEZE=0: off.
        if self.config.gc_freeze:
            gc.collect()
            gc.freeze()

    def _name(self, task: str) -> str:
        return model_name(task, self.config.registry, self.settings.prod_model_prefix)

    def _wanted(self, known: list[str]) -> list[str]:
        if not self.discover:
            return known
        if self.config.tasks:
            return [t for t in self.config.tasks if t in known]
        c = client(self.settings)
        return [t for t in known if by_alias(c, self._name(t), CHAMPION)]

    def _install(self, task: str, model: OnnxModel) -> None:
        self.runners[task] = runner = TaskRunner(task, model, get_serving(task), self.config)  # the swap: one assignment
        self.drift.reference(task, runner)
        self.problems.pop(task, None)
        self.problems.pop("*", None)
        self._failed.pop(task, None)
        LOADED_VERSIONS[task] = model.version
        zoo_metrics().model_version.labels(task).set(float(model.version))
        zoo_metrics().model_ready.labels(task).set(1.0)
        log.info("serving %s version %s", task, model.version)

    def _load_cached(self, task: str, why: Exception) -> None:
        try:
            model = load_remembered(self.settings, self._name(task), self.threads)
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
        name = self._name(task)
        try:
            c = client(self.settings)
            mv = by_alias(c, name, CHAMPION)
        except Exception as exc:
            zoo_metrics().registry_errors.labels(task).inc()
            raise RegistryUnavailable(explain(exc, self.settings.registry_uri)) from exc
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
            model = open_version(self.settings, c, mv, self.threads)
            model.warm()
            if current is not None and not model.compatible_with(current.model):
                raise ValueError(f"version {version} takes different inputs than version {current.version}")
            self._install(task, model)
        except Exception as exc:
            if isinstance(exc, (ChecksumError, ValueError, KeyError, TypeError)):
                self._failed[task] = version  # will not get better: wait for the alias to move
            zoo_metrics().load_failures.labels(task).inc()
            why = f"out of disk space under ZOO_HOME ({self.settings.home}), tried again at the next poll" if out_of_space(exc) else type(exc).__name__
            log.error("not loading %s version %s: %s: %s", task, version, why, " ".join(str(exc).split()))
            if current is None:
                self.problems[task] = f"version {version} could not be loaded: {exc}"
            return False
        try:
            remember(self.settings, mv)
        except OSError as exc:  # e.g. a full disk: the new version serves, a cold start would find the previous record
            log.error("serving %s version %s, but could not record it in the cache: %s", task, version, exc)
        return True

    def refresh_challenger(self, task: str) -> None:
        """Load the ``challenger`` of ``task`` if it changed (only with a shadow or canary share); never raises."""
        if not self.settings.loop.challenger_wanted or task not in self.runners:
            return
        mv = None
        try:
            c = client(self.settings)
            mv = by_alias(c, self._name(task), CHALLENGER)
            version = None if mv is None else str(mv.version)
            if version is None or version == self.runners[task].version:
                if self.challengers.pop(task, None) is not None:
                    log.info("%s: no challenger to shadow or canary now", task)
                return
            current = self.challengers.get(task)
            if (current is not None and current.version == version) or self._challenger_failed.get(task) == version:
                return
            model = open_version(self.settings, c, mv, self.threads)
            model.warm()
            if not model.compatible_with(self.runners[task].model):
                raise ValueError(f"challenger version {version} takes different inputs than champion version {self.runners[task].version}")
            self.challengers[task] = TaskRunner(task, model, get_serving(task), self.config)
            log.info("%s: challenger version %s loaded for shadow %.0f%%, canary %.0f%%", task, version, 100 * self.settings.loop.shadow_share, 100 * self.settings.loop.canary_share)
        except Exception as exc:
            if mv is not None:
                self._challenger_failed[task] = str(mv.version)
            log.error("not loading the challenger of %s: %s: %s", task, type(exc).__name__, " ".join(str(exc).split()))

    def _follow(self) -> None:
        delay = self.poll_seconds
        while not self._stop.wait(delay):
            healthy = True
            for task in self.watched:
                try:
                    self.refresh(task)
                    self.refresh_challenger(task)
                except RegistryUnavailable as exc:
                    healthy = False
                    log.warning("registry unreachable, keeping %s version %s: %s", task, LOADED_VERSIONS.get(task), exc)
                except Exception:  # never let the poller die
                    healthy = False
                    log.exception("polling the registry for %s failed", task)
            delay = self.poll_seconds if healthy else min(max(delay, self.poll_seconds) * 2, 60.0)
            try:
                self.drift.score()
            except Exception:
                log.exception("scoring input drift failed")

    def __is_ready__(self) -> bool:
        return bool(self.runners) and not self.problems

    async def infer(self, ctx: Any, endpoint: str, **request: Any) -> Any:
        """Answer one request of API ``endpoint``: bad input, overload and a missing model become clear JSON errors.

        The champion answers, or the challenger for the canary's share of request keys; a share of the requests
        is also shadowed on the challenger, or captured, after the answer (:mod:`services.traffic`, :mod:`services.capture`).
        """
        task = self.by_endpoint[endpoint]
        runner = self.runners.get(task)
        if runner is None:
            why = self.problems.get(task) or self.problems.get("*") or "this server was not started for it"
            return self._error(ctx, 503, f"task {task!r} is not being served: {why}", "not_served", None)
        request_id = uuid.uuid4().hex
        ctx.response.headers[REQUEST_ID_HEADER] = request_id
        challenger = self.challengers.get(task)
        shadowed, captured = self.traffic.shadow_sampled(challenger), self.capture.sampled()
        files: dict[str, bytes] = {}
        if shadowed or captured:  # uploaded files are temporary: what runs after the answer needs their bytes
            files = {k: v.read_bytes() for k, v in request.items() if isinstance(v, Path)}
            request = {**request, **files}
        used = runner

        def seen(prepared: Any) -> None:
            self.drift.observe(task, runner, prepared)

        try:
            if self.traffic.picks_challenger(task, endpoint, request, getattr(ctx.request, "headers", None), challenger):
                assert challenger is not None
                result, used = await self.traffic.canary(task, endpoint, request, runner, challenger, seen)
            else:
                result = await runner.handle(endpoint, request, seen)
        except InvalidInput as exc:
            zoo_metrics().rejections.labels(task, exc.reason).inc()
            return self._error(ctx, exc.status, str(exc), exc.reason, runner.version)
        except Overloaded as exc:
            zoo_metrics().overloads.labels(task, exc.reason).inc()
            return self._error(ctx, 503, f"{task} is overloaded: {exc}; retry after {exc.retry_after:g} s", exc.reason, runner.version, exc.retry_after)
        ctx.response.headers[VERSION_HEADER] = used.version
        if shadowed and used is runner and challenger is not None:
            self.traffic.shadow(task, endpoint, request, result, runner, challenger)
        if captured:
            try:
                self.capture.offer(task, *self.capture.record(request_id, task, endpoint, used.version, request, files, result))
            except Exception:  # capture never fails a request
                zoo_metrics().capture_dropped.labels(task, "error").inc()
                log.exception("capture of a %s request failed", task)
        return result

    @bentoml.api(route="/feedback")
    async def feedback(self, request_id: RequestId, outcome: Outcome, ctx: bentoml.Context) -> Feedback:
        """The true outcome of a captured request (its ``X-Request-Id``): a label, a rating, a sales figure, or a
        list with one per item of the request. Kept beside the request for ``zoo capture export``."""
        return await take_feedback(self, ctx, request_id, outcome)

    @staticmethod
    def _error(ctx: Any, status: int, message: str, reason: str, version: str | None, retry_after: float | None = None) -> JSONResponse:
        headers = {REJECTION_HEADER: reason}
        if version is not None:
            headers[VERSION_HEADER] = version
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        ctx.response.status_code = status
        return JSONResponse({"error": message, "reason": reason}, status_code=status, headers=headers)
