"""Work stops for a client that hung up: once a request's body is read, its connection is watched, and a
disconnect before the answer was sent cancels the request's work (waiting in a batcher's queue, or being
prepared); a batch already running in ONNX Runtime finishes, its rows for that request are dropped.

Without it, a server that clients time out on keeps computing every answer nobody waits for, and its queue
and memory grow with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

CLIENT_CLOSED = 499


class Hangups:
    """One request's link to its client, for :class:`services.middleware.ZooMiddleware`."""

    def __init__(self, receive: Any, send: Any) -> None:
        self._receive, self._send = receive, send
        self._body_read = asyncio.Event()
        self.answered = self._started = False
        self.hung_up = False
        """The client went away before its answer, and the work was cancelled."""
        self._gone = False

    async def receive(self) -> dict[str, Any]:
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self._body_read.set()
        elif message["type"] == "http.disconnect":
            self._gone = True
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self._send(message)
        if message["type"] == "http.response.start":
            self._started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered = True

    async def run(self, work: Awaitable[None]) -> None:
        """Run the app's ``work`` for this request; returns early (``hung_up``) when the client left first."""
        job = asyncio.ensure_future(work)
        watch = asyncio.ensure_future(self._watch(job))
        try:
            await job
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.hung_up or (task is not None and task.cancelling()):
                raise  # the server's own cancellation (shutdown), not a client gone
            await self.end_unanswered()
        else:
            if self._gone and not self.answered:  # the app saw the client gone before its body and answered nothing
                await self.end_unanswered()
        finally:
            watch.cancel()

    async def end_unanswered(self) -> None:
        """Answer 499 (nginx's "client closed request") into the closed connection: the server drops it, and the
        layers around this one (BentoML's access log and request timeout) see the request end."""
        if self.answered:
            return
        if not self._started:  # else the answer was under way: only its end is missing
            await self._send({"type": "http.response.start", "status": CLIENT_CLOSED, "headers": [(b"content-length", b"0")]})
        await self._send({"type": "http.response.body", "body": b""})

    async def _watch(self, job: asyncio.Future[None]) -> None:
        await self._body_read.wait()  # before that, the app reads the body itself and sees a disconnect
        while not job.done():
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if not self.answered and not job.done():
                    self.hung_up = True
                    job.cancel()
                return


async def read_body(receive: Any) -> bytes | None:
    """The whole request body, or ``None`` when the client left before sending it."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def replay(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` that gives ``body`` (read already) as one message, then what ``receive`` gives."""
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
