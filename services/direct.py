"""The JSON task routes, answered by their API methods without BentoML's request layers below the project's middleware.

For a ``POST`` with a JSON body (``Content-Type: application/json`` or none) to an API that takes no files,
:class:`services.middleware.ZooMiddleware` hands the request to :class:`DirectRoute` instead of BentoML's router:
the API's own pydantic input model (``@bentoml.api``'s ``input_spec``) validates the body once, the API method
runs with a small context (the request in; response headers and status out), and pydantic-core encodes the
answer. It is the work BentoML's ``api_endpoint`` does for JSON, in the same order, with the same error bodies
(a 400 ``{"error", "detail": [...]}`` that the middleware rewrites, a 500 that says to check the log), without
the router, the request-context middleware, the serde's body parsing or the iterable response.
Everything outside (the project's middleware, BentoML's metrics, tracing, access log and timeout) still runs.
``ZOO_DIRECT_ROUTES=0`` sends every request through BentoML's router instead.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from services.hangup import read_body
from services.inference_protocol import INSTANCES

log = logging.getLogger("course_zoo.services")
JSON_TYPES = ("", "application/json")


class Reply:
    """What an API method sets on ``ctx.response``: headers and a status code."""

    __slots__ = ("headers", "status_code", "cookies")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.status_code = 200
        self.cookies: list[Any] = []


class DirectContext:
    """The ``ctx`` an API method gets on a direct route: ``ctx.request`` (Starlette's, its body already read) and ``ctx.response``."""

    __slots__ = ("request", "response")

    def __init__(self, scope: dict[str, Any]) -> None:
        self.request = Request(scope)
        self.response = Reply()


def takes_json(method: Any) -> bool:
    """Whether a ``@bentoml.api`` method is a coroutine that takes a JSON body only (no files) and answers once (no stream, no batching)."""
    spec = method.input_spec
    plain = not getattr(spec, "multipart_fields", None) and not getattr(spec, "__root_input__", False)
    return plain and inspect.iscoroutinefunction(method.func) and not method.is_stream and not method.batchable


def direct_routes(service: Any) -> dict[str, "DirectRoute"]:
    """Route -> :class:`DirectRoute` for each of ``service``'s APIs that :func:`takes_json`."""
    return {m.route: DirectRoute(m) for m in service.apis.values() if takes_json(m)}


def is_json(headers: dict[bytes, bytes]) -> bool:
    """Whether a request's ``Content-Type`` is JSON (or absent, which BentoML reads as JSON)."""
    return headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower() in JSON_TYPES


async def _send(send: Any, status: int, body: bytes, headers: dict[str, str], content_type: bytes = b"application/json") -> None:
    raw = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class DirectRoute:
    """One JSON API answered directly (an ASGI app for its route)."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.fields = tuple(method.input_spec.model_fields)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_body(receive)
        if body is None:
            return
        if not INSTANCES:
            return await _send(send, 503, b'{"error": "the service is still starting"}', {"Retry-After": "1"})
        try:
            data = self.method.input_spec.model_validate_json(body or b"{}")
        except ValidationError as exc:  # BentoML's answer, which the project's middleware rewrites
            detail = {"error": f"{exc.error_count()} validation error for {exc.title}", "detail": exc.errors(include_context=False, include_input=False)}
            return await _send(send, 400, json.dumps(detail).encode(), {})
        ctx = DirectContext(scope)
        kwargs = {name: getattr(data, name) for name in self.fields}
        if self.method.ctx_param is not None:
            kwargs[self.method.ctx_param] = ctx
        try:
            output = await self.method.func(INSTANCES[-1], **kwargs)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            return await _send(send, 500, b'{"error": "An unexpected error has occurred, please check the server log."}', {})
        if isinstance(output, Response):  # as BentoML does: the context's status and headers win
            output.status_code = ctx.response.status_code
            output.headers.update(ctx.response.headers)
            return await output(scope, receive, send)
        if isinstance(output, BaseModel):
            return await _send(send, ctx.response.status_code, output.model_dump_json().encode(), ctx.response.headers)
        from _bentoml_impl.serde import JSONSerde

        response = await self.method.output_spec.to_http_response(output, JSONSerde())
        response.status_code = ctx.response.status_code
        response.headers.update(ctx.response.headers)
        await response(scope, receive, send)

