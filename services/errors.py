"""BentoML's own error answers on the task routes, made to match the schema its OpenAPI document declares.

BentoML answers a request its pydantic types refuse with ``{"error", "detail":
[...]}`` (a list, where the declared schema says a string), some 4xx as a JSON
array, and a malformed multipart body as 500 (Starlette's 400 is caught as an
unexpected error). The middleware holds such an answer and sends instead
``{"error": str, "reason": str, "detail": str}`` with the right status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser


def _fields(errors: list[Any]) -> str:
    """Pydantic's errors in one line: ``k: Input should be a valid integer; image: Field required``."""
    parts = []
    for e in errors:
        if isinstance(e, dict):
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request does not match the API's schema"


async def multipart_problem(scope: dict[str, Any], chunks: list[bytes]) -> str | None:
    """Why the multipart body in ``chunks`` cannot be parsed, or ``None`` when it can."""

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    try:
        form = await MultiPartParser(Headers(scope=scope), stream()).parse()
    except MultiPartException as exc:
        return exc.message
    await form.close()
    return None


def rewritten(status: int, body: bytes, multipart_error: str | None) -> tuple[int, dict[str, str]] | None:
    """The status and body to send instead of BentoML's error answer, or ``None`` to send it unchanged."""
    if status == 500 and multipart_error is not None:
        return 400, {"error": f"the multipart/form-data body is malformed: {multipart_error}", "reason": "bad_multipart", "detail": multipart_error}
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None
    detail = data.get("detail")
    if status == 400 and isinstance(detail, list):
        text = _fields(detail)
        if detail and all(isinstance(e, dict) and e.get("type") == "too_short" for e in detail):  # an empty list (minItems 1)
            names = " and ".join(".".join(str(p) for p in e.get("loc", ())) for e in detail)
            verb = "are" if len(detail) > 1 else "is"
            return 400, {"error": f"{names} {verb} empty; send at least one item", "reason": "empty", "detail": text}
        return 400, {"error": f"invalid request: {text}", "reason": "invalid_request", "detail": text}
    if (detail is None or isinstance(detail, str)) and body.lstrip().startswith(b"{"):
        return None  # already the declared shape
    return status, {"error": data["error"], "reason": "invalid_request" if status < 500 else "internal", "detail": str(detail or data["error"])}
