"""One generic runner serves any task from its serving hooks: prepare, run the model (batched), answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

from models.inputs import InvalidInput
from models.onnx_model import OnnxModel
from models.serving import Limits, Prepared, Serving
from models.settings import ServingSettings
from services.batching import MicroBatcher
from services.metrics import zoo_metrics

INLINE_ROWS = 256
"""Requests of up to this many rows may run a tiny model inline (see :meth:`TaskRunner.run`)."""
GROUP_WINDOW = 16
"""Model calls of one request in flight at once (a super-resolution image's tiles)."""


class TaskRunner:
    """One loaded model version of one task: its serving hooks and its batcher."""

    def __init__(self, task: str, model: OnnxModel, hooks: type[Serving], config: ServingSettings) -> None:
        self.task, self.model = task, model
        self.serving = hooks(model.spec["preprocess"], Limits.of(config))
        self.serving.rows_alone = model.rows_alone
        self.endpoints = self.serving.endpoints()
        metrics = zoo_metrics()
        self._observe_batch = metrics.batch_size.labels(task).observe
        self.batcher = MicroBatcher(
            model.run,
            max_batch_size=config.max_batch_size,
            on_batch=self._observe_batch,
            max_queue=config.queue_limit or hooks.queue_limit,
            max_wait_s=(config.wait_budget_ms / 1000) if config.wait_budget_ms else hooks.wait_budget_s,
        )
        self._predicted = metrics.predictions.labels(task, model.version)
        self._unknown = metrics.unknown_inputs
        for name in hooks.unknown_fields:  # exported at 0 from the start
            self._unknown.labels(task, name)
        # A model that answers a reference row faster than the hop to a worker thread runs small requests inline.
        self.inline = model.seconds_per_call() * 1000 < config.inline_ms

    @property
    def version(self) -> str:
        return self.model.version

    async def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run the model on one group of rows: inline when it is tiny, else through the shared batcher."""
        if self.inline and len(inputs[0]) <= INLINE_ROWS:
            out = self.model.run(*inputs)
            self._observe_batch(1)
            return out
        return await self.batcher.submit(*inputs)

    async def _outputs(self, prepared: Prepared) -> list[np.ndarray]:
        groups = list(prepared.inputs)
        if prepared.outputs:
            return await self._named_outputs(prepared, groups)
        outputs: list[np.ndarray] = []
        for start in range(0, len(groups), GROUP_WINDOW):
            window = await asyncio.gather(*(self.run(*g) for g in groups[start : start + GROUP_WINDOW]))
            if prepared.sink is None:
                outputs.extend(window)
            else:
                for i, out in enumerate(window, start=start):
                    prepared.sink(i, out)
        return outputs

    async def _named_outputs(self, prepared: Prepared, groups: list[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
        """Every output a request names, for its one group, in a worker thread (not batched: explanations are rare)."""
        names = self.model.output_names
        missing = [n for n in prepared.outputs if n not in names]
        if missing:
            needs = f" ({prepared.needs})" if prepared.needs else ""
            raise InvalidInput(
                "not_supported",
                f"{self.task} version {self.version} has no {', '.join(map(repr, missing))} output, which this request needs{needs}; "
                "the model was exported without it: retrain and promote a version that has it",
            )
        if len(groups) != 1:
            raise ValueError("a request that names outputs has one group of inputs")
        return await asyncio.to_thread(self.model.run_outputs, [names[0], *prepared.outputs], *groups[0])

    async def handle(self, endpoint: str, request: dict[str, Any], seen: Callable[[Prepared], None] | None = None) -> Any:
        """Answer one request of ``endpoint``; bad input raises :class:`models.inputs.InvalidInput`.

        ``seen`` gets the prepared request (the drift window)."""
        ep = self.endpoints[endpoint]
        prepared = ep.prepare(**request) if ep.cheap(**request) else await asyncio.to_thread(ep.prepare, **request)
        if seen is not None:
            seen(prepared)
        for name in prepared.unknown:
            self._unknown.labels(self.task, name).inc()
        outputs = await self._outputs(prepared)
        self._predicted.inc(prepared.count)
        if ep.heavy_answer(prepared) if callable(ep.heavy_answer) else ep.heavy_answer:
            return await asyncio.to_thread(ep.answer, prepared, outputs, self.version)
        return ep.answer(prepared, outputs, self.version)
