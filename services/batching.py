"""Adaptive micro-batching of already-validated inputs.

BentoML's ``batchable`` APIs take lists and batch before the API code runs, so
one bad input would fail every request merged with it, and the public API
would have to be list-shaped. Here each request is validated on its own first;
only good inputs are queued. Whatever queued while the model was busy runs as
the next batch (up to ``max_batch_size`` requests), so a lone request waits for
nothing and batches grow with load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Arrays = tuple[np.ndarray, ...]


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
    _queue: list[tuple[Arrays, asyncio.Future[np.ndarray]]] = field(default_factory=list, init=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False)

    async def submit(self, *inputs: np.ndarray) -> np.ndarray:
        """Queue one request's inputs (leading axis = rows) and await its outputs."""
        fut: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((inputs, fut))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = _take_alike(self._queue, self.max_batch_size)
            sizes = [len(inputs[0]) for inputs, _ in batch]
            try:
                joined = tuple(np.concatenate(parts) for parts in zip(*(inputs for inputs, _ in batch)))
                out = await asyncio.to_thread(self.fn, *joined)
            except Exception as exc:  # every waiting request learns of the failure
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            start = 0
            for (_, fut), n in zip(batch, sizes):
                if not fut.done():
                    fut.set_result(out[start : start + n])
                start += n
