"""Bearer tokens: who may call the task and inference routes, and ``/metrics``.

Off until tokens are configured (``ZOO_API_TOKENS``, ``ZOO_METRICS_TOKENS``, or
their ``_FILE`` variants). A request is let in when its ``Authorization: Bearer``
token equals one of them; every configured token is compared, in constant time,
whatever the request sends. Tokens appear in no log, repr or response.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from starlette.responses import JSONResponse

from services.base import REJECTION_HEADER
from services.metrics import zoo_metrics


class Tokens:
    """One set of accepted bearer tokens (empty: every caller is let in)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens)

    def __repr__(self) -> str:
        return f"Tokens({len(self._tokens)} configured)"

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def admit(self, headers: dict[bytes, bytes]) -> bool:
        """Whether the request's ``Authorization`` header carries one of the tokens (always, when none is configured)."""
        if not self._tokens:
            return True
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        given = given.strip()
        match = False
        for token in self._tokens:  # no early exit: the time does not tell which, or how many, tokens matched
            match |= hmac.compare_digest(token, given)
        return match and scheme.lower() == b"bearer"


def unauthorized(route: str) -> Any:
    """The answer to a request without a valid token: 401, JSON, and the scheme to use; counted by ``route`` (a task, ``metrics``)."""
    reason = "unauthorized"
    zoo_metrics().unauthorized.labels(route).inc()
    return JSONResponse(
        {"error": "this route needs a valid bearer token: send 'Authorization: Bearer <token>'", "reason": reason},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="course-zoo"', REJECTION_HEADER: reason},
    )
