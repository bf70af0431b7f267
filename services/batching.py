"""Adaptive micro-batching of already-validated inputs, with a bounded queue and a wait budget.

BentoML's ``batchable`` APIs take lists and batch before the API code runs, so
one bad input would fail every request merged with it, and the public API
would have to be list-shaped. Here each request is validated on its own first;
only good inputs are queued. Whatever queued while the model was busy runs as
the next batch (up to ``max_batch_size`` requests), so a lone request waits for
nothing and batches grow with load.

Backpressure: past ``max_queue`` waiting requests a new one is refused at once,
and a request that waited longer than ``max_wait_s`` for its batch to start is
refused then; both raise :class:`Overloaded` (the services answer 503 with
``Retry-After``), so the requests admitted keep their latency under overload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Arrays = tuple[np.ndarray, ...]


class Overloaded(RuntimeError):
    """The model's queue is full, or a request waited past its budget; try again after ``retry_after`` seconds."""

    def __init__(self, reason: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason, self.retry_after = reason, retry_after


def _shape_key(inputs: Arrays) -> tuple[tuple[int, ...], ...]:
    return tuple(a.shape[1:] for a in inputs)


def _take_alike(queue: list, limit: int) -> tuple[list, list]:
    """Split off up to ``limit`` queued requests whose inputs have the first one's row shape.

    Requests of other shapes (image sizes, text lengths) keep their place for a later batch.
    """
    key = _shape_key(queue[0][0])
    batch, rest = [], []
    for item in queue:
        (batch if len(batch) < limit and _shape_key(item[0]) == key else rest).append(item)
    return batch, rest


@dataclass
class MicroBatcher:
    """Runs ``fn`` over concatenated inputs; each request gets its own rows back."""

    fn: Callable[..., np.ndarray]
    max_batch_size: int = 32
    on_batch: Callable[[int], None] | None = None
    max_queue: int | None = None
    """Requests waiting at most; past it a new request is refused (``None``: unbounded)."""
    max_wait_s: float | None = None
    """How long a request may wait for its batch to start before it is refused (``None``: forever)."""
    _queue: list[tuple[Arrays, asyncio.Future[np.ndarray], float]] = field(default_factory=list, init=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False)
    _batch_seconds: float = field(default=0.01, init=False)
    """A running average of one batch's time: the Retry-After hint."""

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def _retry_after(self) -> float:
        return max(1.0, round(self._batch_seconds * (1 + len(self._queue) / max(self.max_batch_size, 1)), 1))

    async def submit(self, *inputs: np.ndarray) -> np.ndarray:
        """Queue one request's inputs (leading axis = rows) and await its outputs."""
        if self.max_queue is not None and len(self._queue) >= self.max_queue:
            raise Overloaded("queue_full", f"{len(self._queue)} requests are waiting for this model (the limit is {self.max_queue})", self._retry_after())
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((inputs, fut, time.monotonic()))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await fut

    def _expire(self) -> None:
        """Drop requests whose callers are gone (hung up: cancelled) and fail those past the wait budget."""
        now, kept = time.monotonic(), []
        for item in self._queue:
            waited = now - item[2]
            if item[1].done():
                continue
            if self.max_wait_s is not None and waited > self.max_wait_s:
                item[1].set_exception(Overloaded("wait_budget", f"waited {waited:.2f} s for the model (the budget is {self.max_wait_s:g} s)", self._retry_after()))
            else:
                kept.append(item)
        self._queue = kept

    async def _drain(self) -> None:
        while self._queue:
            self._expire()
            if not self._queue:
                break
            batch, self._queue = _take_alike(self._queue, self.max_batch_size)
            sizes = [len(inputs[0]) for inputs, _, _ in batch]
            start = time.monotonic()
            try:
                joined = tuple(np.concatenate(parts) for parts in zip(*(inputs for inputs, _, _ in batch)))
                out = await asyncio.to_thread(self.fn, *joined)
            except Exception as exc:  # every waiting request learns of the failure
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * (time.monotonic() - start)
            if self.on_batch is not None:
                self.on_batch(len(batch))
            offset = 0
            for (_, fut, _), n in zip(batch, sizes):
                if not fut.done():
                    fut.set_result(out[offset : offset + n])
                offset += n
