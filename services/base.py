"""What every course-zoo service shares: loading champions, readiness, errors, headers."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import numpy as np
from starlette.responses import JSONResponse

from models import modelstore
from models.inputs import InvalidInput
from models.onnx_model import OnnxModel
from models.settings import Settings
from services.batching import MicroBatcher
from services.metrics import zoo_metrics

log = logging.getLogger("course_zoo.services")
VERSION_HEADER = "X-Model-Version"
REJECTION_HEADER = "X-Zoo-Rejection"
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

    @property
    def version(self) -> str:
        return self.model.version

    async def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run the model on one request's rows through the shared batcher."""
        out = await self.batcher.submit(*inputs)
        self._predicted.inc(len(out))
        return out


class ZooService:
    """Mixin for BentoML service classes: loads each served task's champion at start."""

    served: ClassVar[tuple[str, ...] | None] = None
    """Tasks this service serves; ``None``: ``ZOO_TASKS``, else every task with a champion."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()
        self.settings.apply()
        self.runners: dict[str, TaskRunner] = {}
        self.problems: dict[str, str] = {}
        metrics = zoo_metrics()
        self.runner_types: dict[str, type[TaskRunner]] = collect(type(self), "runner_types")
        for task in self._wanted():
            try:
                model = modelstore.load_alias(self.settings, task)
                self.runners[task] = self.runner_types[task](model)
                metrics.model_version.labels(task).set(float(model.version))
                LOADED_VERSIONS[task] = model.version
                log.info("serving %s version %s", task, model.version)
            except Exception as exc:  # the service stays up and says why it is not ready
                self.problems[task] = f"{type(exc).__name__}: {exc}"
                metrics.load_failures.labels(task).inc()
                log.error("cannot load %s: %s", task, self.problems[task])
        if not self.runners and not self.problems:
            self.problems["*"] = f"no task has a champion in the registry at {self.settings.registry_uri}"
            log.error(self.problems["*"])

    def _wanted(self) -> list[str]:
        if self.served is not None:
            return list(self.served)
        env = os.environ.get("ZOO_TASKS", "").strip()
        if env:
            return [t.strip() for t in env.split(",") if t.strip() in self.runner_types]
        c = modelstore.client(self.settings)
        return [t for t in self.runner_types if modelstore.by_alias(c, t, modelstore.CHAMPION) is not None]

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


def service_options() -> dict[str, Any]:
    """``@bentoml.service`` options shared by every service (tuned in issue 6)."""
    return {
        "traffic": {"timeout": 60},
        "workers": env_int("ZOO_WORKERS", 1),
        "metrics": {"enabled": True},
    }


def with_middleware(service: Any) -> Any:
    """Attach :class:`ZooMiddleware` with the routes of every API mixin of ``service``."""
    routes = collect(service.inner, "routes")
    service.add_asgi_middleware(ZooMiddleware, routes=routes, max_body_bytes=env_int("ZOO_MAX_BODY_BYTES", 20 * 1024 * 1024))
    return service
