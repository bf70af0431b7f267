"""The project's Prometheus metrics, served on ``/metrics`` beside BentoML's own."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache

from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class ZooMetrics:
    predictions: Counter
    model_version: Gauge
    rejections: Counter
    load_failures: Counter
    registry_errors: Counter
    batch_size: Histogram
    unknown_inputs: Counter
    model_ready: Gauge
    overloads: Counter
    unauthorized: Counter
    loop_tasks: Gauge
    shadow_requests: Counter
    shadow_agreement: Histogram
    shadow_errors: Counter
    shadow_skipped: Counter
    canary_requests: Counter
    canary_rollbacks: Counter
    canary_active: Gauge
    captured: Counter
    capture_dropped: Counter
    drift_score: Gauge
    abandoned: Counter


SHADOW = ["task", "champion_version", "challenger_version"]
AGREEMENT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0)
"""One set of buckets for every measure: shares and IoU (0 to 1), rating differences, PSNR in dB."""


@cache
def zoo_metrics() -> ZooMetrics:
    """Create the metrics once per process (after BentoML set up multiprocess mode)."""
    return ZooMetrics(
        predictions=Counter("zoo_predictions", "Predictions served (items, not requests)", ["task", "model_version"]),
        model_version=Gauge("zoo_model_version", "Registry version of the loaded model", ["task"], multiprocess_mode="livemax"),
        rejections=Counter("zoo_input_rejections", "Requests refused for bad input", ["task", "reason"]),
        load_failures=Counter("zoo_model_load_failures", "Model versions refused: download, sha256, warm-up or spec check failed", ["task"]),
        registry_errors=Counter("zoo_registry_errors", "Failed reads of the model registry", ["task"]),
        batch_size=Histogram("zoo_batch_size", "Requests per model batch", ["task"], buckets=(1, 2, 4, 8, 16, 32, 64)),
        unknown_inputs=Counter(
            "zoo_unknown_inputs",
            "Requests that sent an id the loaded model does not know (served from the unknown-id embedding), by field",
            ["task", "field"],
        ),
        model_ready=Gauge("zoo_model_ready", "1 when a model of the task is loaded and serving, else 0", ["task"], multiprocess_mode="livemin"),
        overloads=Counter("zoo_overload_rejections", "Requests refused with 503: the model's queue was full or the wait budget ran out", ["task", "reason"]),
        unauthorized=Counter("zoo_unauthorized_requests", "Requests refused with 401: no valid bearer token", ["route"]),
        loop_tasks=Gauge("zoo_event_loop_tasks", "asyncio tasks alive in the worker's event loop (sampled every 5 s)", multiprocess_mode="liveall"),
        shadow_requests=Counter("zoo_shadow_requests", "Requests answered by the champion and compared with the challenger's answer", SHADOW),
        shadow_agreement=Histogram(
            "zoo_shadow_agreement",
            "Agreement of the challenger's answer with the champion's, in the task's measure (top-1 agreement, mean IoU, "
            "mean absolute difference, PSNR): sum/count is the mean",
            SHADOW,
            buckets=AGREEMENT_BUCKETS,
        ),
        shadow_errors=Counter("zoo_shadow_errors", "Shadow requests the challenger failed (the caller had the champion's answer)", SHADOW),
        shadow_skipped=Counter("zoo_shadow_skipped", "Requests not shadowed: the worker stayed busy with callers, or too many shadow calls were waiting", SHADOW),
        canary_requests=Counter("zoo_canary_requests", "Requests routed to the challenger by the canary, by outcome", ["task", "challenger_version", "outcome"]),
        canary_rollbacks=Counter("zoo_canary_rollbacks", "Canaries stopped: the challenger broke the task's error-rate or p99 budget", ["task", "challenger_version"]),
        canary_active=Gauge("zoo_canary_active", "1 while the canary routes to the challenger, 0 once it was rolled back", ["task"], multiprocess_mode="livemin"),
        captured=Counter("zoo_captured", "Records written to the capture store (requests and feedback)", ["task", "kind"]),
        capture_dropped=Counter("zoo_capture_dropped", "Captured records dropped (queue full, disk full or failing)", ["task", "reason"]),
        drift_score=Gauge(
            "zoo_drift_score", "Population stability index of a feature's live inputs against the training profile", ["task", "feature"], multiprocess_mode="livemax"
        ),
        abandoned=Counter("zoo_abandoned_requests", "Requests whose client hung up after sending them, before the answer: their work was stopped", ["task"]),
    )


_sampler: set[asyncio.Task[None]] = set()
LOOP_SAMPLE_SECONDS = 5.0


def watch_event_loop() -> None:
    """Sample this worker's asyncio task count into ``zoo_event_loop_tasks`` (started once, from a request)."""
    if not _sampler:
        _sampler.add(asyncio.get_running_loop().create_task(_sample_tasks(zoo_metrics().loop_tasks)))


async def _sample_tasks(gauge: Gauge) -> None:
    while True:
        gauge.set(len(asyncio.all_tasks()) - 1)  # not counting this sampler
        await asyncio.sleep(LOOP_SAMPLE_SECONDS)
