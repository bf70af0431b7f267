"""``POST /feedback``: the true outcome of a captured request, checked by the task's hooks and kept beside it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, StrictFloat, StrictInt, StringConstraints

from models import capture as store
from models.inputs import InvalidInput

if TYPE_CHECKING:
    from services.base import ZooService

Value = StrictFloat | StrictInt | Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
RequestId = Annotated[str, Field(pattern=store.REQUEST_ID, description="the X-Request-Id header of the answer being corrected")]
Outcome = Annotated[
    Value | Annotated[list[Value], Field(min_length=1, max_length=10_000)],
    Field(description="the true outcome: a class or label, a rating, a sales figure; a list, one per item, for a request of several"),
]


class Feedback(BaseModel):
    request_id: str
    task: str
    endpoint: str
    outcomes: int = Field(description="how many outcomes were kept (one per item of the request)")


async def take_feedback(service: "ZooService", ctx: Any, request_id: str, outcome: Any) -> Any:
    """Check ``outcome`` against the captured request ``request_id`` and queue it for the capture store."""
    found = service.capture.recent.get(request_id)
    if found is None:
        try:
            captured = await asyncio.to_thread(store.find, service.capture.root, request_id)
        except OSError as exc:
            return service._error(ctx, 503, f"the capture store under ZOO_HOME cannot be read ({exc}); try again later", "capture_unavailable", None)
        if captured is not None:
            found = (str(captured.record["task"]), str(captured.record["endpoint"]), captured.record["request"])
    if found is None:
        off = "" if service.capture.share > 0 else "; capture is off on this server (ZOO_CAPTURE_SHARE=0)"
        why = f"request {request_id} was not captured: only the ZOO_CAPTURE_SHARE of requests that were captured take feedback{off}"
        return service._error(ctx, 404, why, "not_captured", None)
    task, endpoint, request = found
    runner = service.runners.get(task)
    if runner is None:
        return service._error(ctx, 503, f"task {task!r} is not being served here, so its feedback cannot be checked", "not_served", None)
    try:
        values = runner.serving.outcome(endpoint, outcome, request)
    except InvalidInput as exc:
        return service._error(ctx, exc.status, str(exc), exc.reason, runner.version)
    service.capture.feedback(task, request_id, values)
    return Feedback(request_id=request_id, task=task, endpoint=endpoint, outcomes=len(values))
