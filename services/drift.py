"""Live input drift: each task's recent model inputs against the reference profile in its spec (:mod:`models.drift`).

The request path only appends a few numbers per row to a bounded window; the registry poller thread scores the
windows every ``ZOO_POLL_SECONDS`` into ``zoo_drift_score{task,feature}``.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from models.drift import psi
from models.serving import Prepared
from services.metrics import zoo_metrics
from services.runtime import TaskRunner

log = logging.getLogger("course_zoo.services.drift")
ROWS_PER_REQUEST = 64
"""At most this many rows of one request enter the window (a large batch would flush it)."""


def usable(profile: Any) -> dict[str, dict[str, Any]]:
    """The features of a spec's ``drift`` profile that have the shape :mod:`models.drift` writes; others are left out."""
    out = {}
    for name, ref in (profile or {}).items() if isinstance(profile, dict) else ():
        shares = ref.get("shares") if isinstance(ref, dict) else None
        if not isinstance(shares, list) or not all(isinstance(s, (int, float)) for s in shares):
            continue
        bins = ref.get("values" if ref.get("kind") == "categorical" else "edges")
        # categorical: a bin per value and one for the others; numeric: one more bin than edges
        if isinstance(bins, list) and all(isinstance(b, (int, float)) for b in bins) and len(shares) == len(bins) + 1:
            out[str(name)] = ref
    return out


class Drift:
    """The drift windows of one worker."""

    def __init__(self, window: int, min_rows: int) -> None:
        self.size, self.min_rows = window, min_rows
        self.windows: dict[str, dict[str, deque[float]]] = {}
        self.references: dict[str, dict[str, dict[str, Any]]] = {}

    def reference(self, task: str, runner: TaskRunner) -> None:
        """Use the profile of the model now serving ``task``."""
        self.references[task] = usable(runner.model.spec.get("drift"))
        if not self.references[task]:
            log.info("%s version %s has no drift profile in its spec: no drift score for it", task, runner.version)

    def observe(self, task: str, runner: TaskRunner, prepared: Prepared) -> None:
        """Add a request's model inputs (its first group) to the task's window."""
        if not self.references.get(task) or not prepared.inputs:
            return
        group = tuple(np.asarray(x)[:ROWS_PER_REQUEST] for x in prepared.inputs[0])
        windows = self.windows.setdefault(task, {})
        for name, values in runner.serving.observe(group, runner.model.input_names).items():
            windows.setdefault(name, deque(maxlen=self.size)).extend(np.asarray(values, dtype=np.float64).ravel().tolist())
        for name, value in prepared.features.items():
            windows.setdefault(name, deque(maxlen=self.size)).append(float(value))

    def score(self) -> dict[tuple[str, str], float]:
        """Every feature's index over its window (those with enough rows), exported as ``zoo_drift_score``."""
        gauge = zoo_metrics().drift_score
        out = {}
        for task, windows in list(self.windows.items()):
            reference = self.references.get(task, {})
            for name, window in list(windows.items()):
                values = np.asarray(list(window))
                if name in reference and len(values) >= self.min_rows:
                    out[(task, name)] = value = psi(reference[name], values)
                    gauge.labels(task, name).set(value)
        return out
