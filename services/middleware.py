"""The ASGI middleware of the task routes: bearer tokens, the body-size cap, the version header, rejection counts.

A JSON request to an API that takes no files goes to its direct route (:mod:`services.direct`) instead of BentoML's router.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from models.settings import ServingSettings
from services.auth import Tokens, unauthorized
from services.base import LOADED_VERSIONS, REJECTION_HEADER, VERSION_HEADER
from services.direct import direct_routes, is_json
from services.errors import multipart_problem, rewritten
from services.hangup import Hangups, read_body, replay
from services.metrics import watch_event_loop, zoo_metrics
from services.openapi import amend
from services.pages import PAGES, describe, page
from services.traffic import ACTIVITY


class ZooMiddleware:
    """Asks for a bearer token where configured; caps request bodies (by ``Content-Length`` and by the bytes that arrive, chunked or not); names the model version."""

    def __init__(
        self,
        app: Any,
        routes: dict[str, str],
        max_body_bytes: int,
        tasks: list[str] | tuple[str, ...] = (),
        api_tokens: Tokens | None = None,
        metrics_tokens: Tokens | None = None,
        direct: dict[str, Any] | None = None,
        protocol: Any = None,
    ) -> None:
        self.app, self.routes, self.max_body_bytes, self.tasks = app, routes, max_body_bytes, set(tasks)
        self.protocol = protocol
        """The Open Inference Protocol's ASGI app: ``/v2`` paths go to it directly, not through BentoML's router
        (a mount there matched no path with a newline in it, and its router answered those in plain text)."""
        self.direct = direct or {}
        self.api_tokens, self.metrics_tokens = api_tokens or Tokens(()), metrics_tokens or Tokens(())

    def task_of(self, path: str) -> str | None:
        """The task a path belongs to: a task route, or ``/v2/models/<task>/...`` of the inference protocol."""
        if path in self.routes:
            return self.routes[path]
        parts = path.split("/")
        if len(parts) > 3 and parts[1] == "v2" and parts[2] == "models" and parts[3] in self.tasks:
            return parts[3]
        return None

    def _too_large(self, task: str, size: str) -> JSONResponse:
        reason = "too_large"
        zoo_metrics().rejections.labels(task, reason).inc()
        message = f"request body is {size} bytes; the limit is {self.max_body_bytes}"
        return JSONResponse({"error": message, "reason": reason}, status_code=413, headers={REJECTION_HEADER: reason})

    async def _documented(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """BentoML's OpenAPI document, with the task routes' 413, 503 and 401 declared (:mod:`services.openapi`)."""
        start: dict[str, Any] = {}
        parts: list[bytes] = []

        async def held(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(parts)
            if start.get("status") == 200:
                body = amend(body, set(self.routes), bool(self.api_tokens), describe(self.routes, sorted(self.tasks)), sorted(self.tasks))
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, held)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/v2":  # the protocol's server metadata, without a redirect
            scope = {**scope, "path": "/v2/", "raw_path": b"/v2/"}
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        watch_event_loop()
        path: str = scope.get("path", "")
        app = self.app
        if self.protocol is not None and path.startswith("/v2/"):
            app, scope = self.protocol, {**scope, "root_path": scope.get("root_path", "") + "/v2"}  # as a mount at /v2
        task = self.task_of(path)
        headers = dict(scope.get("headers", []))
        tokens = self.metrics_tokens if path == "/metrics" else self.api_tokens if task or path.startswith("/v2/models") else None
        if tokens is not None and not tokens.admit(headers):
            return await unauthorized("metrics" if path == "/metrics" else task or "inference-protocol")(scope, receive, send)
        if path == "/docs.json":
            return await self._documented(scope, receive, send)
        if path in PAGES and scope.get("method") in ("GET", "HEAD"):
            return await page(path, self.routes, sorted(self.tasks))(scope, receive, send)
        if task is None:
            return await app(scope, receive, send)
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return await self._too_large(task, str(int(length)))(scope, receive, send)
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        if ctype.startswith("multipart/form-data") and "boundary=" not in ctype:
            reason = "bad_multipart"
            zoo_metrics().rejections.labels(task, reason).inc()
            message = "a multipart/form-data body needs its boundary in Content-Type (multipart/form-data; boundary=...)"
            return await JSONResponse({"error": message, "reason": reason}, status_code=400, headers={REJECTION_HEADER: reason})(scope, receive, send)
        link = Hangups(receive, send)  # a client gone before its answer stops the request's work
        receive, send = link.receive, link.send
        received = 0
        started = rejected = False
        multipart = ctype.startswith("multipart/form-data")
        chunks: list[bytes] = []  # a multipart body, kept to tell a malformed one from a server error
        held: dict[str, Any] | None = None  # BentoML's own error answer, until its body is read
        held_body: list[bytes] = []

        async def counted_receive() -> dict[str, Any]:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if multipart:
                    chunks.append(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Answer 413 now; the app sees the client gone and whatever it sends is dropped.
                    rejected = True
                    if not started:
                        await self._too_large(task, f"over {self.max_body_bytes}")(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message: dict[str, Any]) -> None:
            nonlocal started, held
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
                out = list(message.get("headers", []))
                names = {k.lower() for k, _ in out}
                if VERSION_HEADER.lower().encode() not in names:
                    out.append((VERSION_HEADER.lower().encode(), LOADED_VERSIONS.get(task, "none").encode()))
                message = {**message, "headers": out}
                if message["status"] >= 400 and REJECTION_HEADER.lower().encode() not in names:
                    held = message  # BentoML's own answer: sent once its body shows whether it needs rewriting
                    return
            elif message["type"] == "http.response.body" and held is not None:
                held_body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                start, body, held = held, b"".join(held_body), None
                problem = await multipart_problem(scope, chunks) if multipart and start["status"] == 500 else None
                answer = rewritten(start["status"], body, problem)
                status = answer[0] if answer else start["status"]
                if 400 <= status < 500:
                    zoo_metrics().rejections.labels(task, answer[1]["reason"] if answer else "invalid_request").inc()
                if answer is None:
                    await send(start)
                    return await send({"type": "http.response.body", "body": body})
                reply = JSONResponse(answer[1], status_code=status, headers={REJECTION_HEADER: answer[1]["reason"]})
                headers = [*reply.raw_headers, (VERSION_HEADER.lower().encode(), LOADED_VERSIONS.get(task, "none").encode())]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                return await send({"type": "http.response.body", "body": reply.body})
            await send(message)

        direct = self.direct.get(path) if scope.get("method") == "POST" and is_json(headers) else None
        app_receive = counted_receive
        if direct is None:  # BentoML's router gets the whole body: a client gone mid-upload is not its 500 and traceback
            body = await read_body(counted_receive)
            if body is None:
                if not rejected:  # (else the 413 was the answer)
                    await link.end_unanswered()
                return
            app_receive = replay(body, counted_receive)
        ACTIVITY.enter()  # shadow work waits for no caller in flight
        try:
            await link.run((direct or app)(scope, app_receive, send_with_headers))
        except Exception:
            if not rejected:  # the app's own failure: not ours to hide
                raise
        finally:
            ACTIVITY.leave()
        if link.hung_up:
            zoo_metrics().abandoned.labels(task).inc()

def with_middleware(service: Any, routes: dict[str, str], settings: ServingSettings, tasks: list[str], protocol: Any = None) -> Any:
    """Attach :class:`ZooMiddleware` to a BentoML service for ``routes`` (route -> task), ``/feedback`` and the tasks'
    protocol routes (``protocol``: the protocol's app, which answers every ``/v2`` path)."""
    service.add_asgi_middleware(
        ZooMiddleware,
        routes={**routes, "/feedback": "feedback"},
        max_body_bytes=settings.max_body_bytes,
        tasks=tasks,
        api_tokens=Tokens(settings.api_tokens),
        metrics_tokens=Tokens(settings.metrics_tokens),
        direct=direct_routes(service) if settings.direct_routes else {},
        protocol=protocol,
    )
    return service
