"""Input drift: a reference profile of a model's training inputs, and the population stability index of live ones.

Both sides describe the same thing, the model's inputs after preprocessing, through one function of the task's
serving hooks (:meth:`models.serving.Serving.observe`): at training over the training split, in the service over
its live requests. Each feature is one number per row, numeric or categorical:

* numeric (brightness, a continuous column, a text's length): the reference's deciles are the bins;
* categorical (an id, a category index): the reference's most frequent values each get a bin, the rest share one,
  and index 0 (the unknown-id row of the embeddings) always has its own.

The score of a feature is the population stability index, ``sum((live - ref) * ln(live / ref))`` over its bins:
under 0.1 no real change, 0.1 to 0.25 some, past 0.25 (the default ``ZOO_DRIFT_THRESHOLD``) a shift worth a retrain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NUMERIC_BINS = 10
TOP_VALUES = 20
FLOOR = 1e-4
"""Every bin's share is at least this (an empty bin would make the index infinite)."""
UNKNOWN = 0
"""The index of an unknown id in the embeddings (always its own bin)."""


def profile_feature(values: np.ndarray, categorical: bool) -> dict[str, Any]:
    """The reference of one feature, from its training values."""
    values = np.asarray(values).ravel()
    if categorical:
        ids, counts = np.unique(values.astype(np.int64), return_counts=True)
        order = np.argsort(-counts, kind="stable")[:TOP_VALUES]
        top = sorted({int(ids[i]) for i in order} | {UNKNOWN})
        return {"kind": "categorical", "values": top, "shares": _shares(_categorical_counts(values, top)).tolist()}
    edges = np.unique(np.quantile(values.astype(np.float64), np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]))
    return {"kind": "numeric", "edges": edges.tolist(), "shares": _shares(_numeric_counts(values, edges)).tolist()}


def profile(features: dict[str, np.ndarray], categorical: frozenset[str] | set[str]) -> dict[str, Any]:
    """The reference profile: every feature's bins and shares (JSON, stored in the spec as ``drift``)."""
    return {name: profile_feature(values, name in categorical) for name, values in features.items() if len(values)}


def _categorical_counts(values: np.ndarray, top: list[int]) -> np.ndarray:
    values = values.astype(np.int64)
    known = np.asarray(top, dtype=np.int64)
    where = np.searchsorted(known, values)
    hit = (where < len(known)) & (known[np.minimum(where, len(known) - 1)] == values)
    counts = np.bincount(where[hit], minlength=len(known)).astype(np.float64)
    return np.append(counts, float((~hit).sum()))  # the last bin: every other value


def _numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values.astype(np.float64), side="right"), minlength=len(edges) + 1).astype(np.float64)


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts


def live_shares(reference: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """The shares of live ``values`` in the bins of ``reference``."""
    values = np.asarray(values).ravel()
    if reference["kind"] == "categorical":
        return _shares(_categorical_counts(values, reference["values"]))
    return _shares(_numeric_counts(values, np.asarray(reference["edges"], dtype=np.float64)))


def psi(reference: dict[str, Any], values: np.ndarray) -> float:
    """The population stability index of live ``values`` against one feature's reference."""
    expected = np.maximum(np.asarray(reference["shares"], dtype=np.float64), FLOOR)
    actual = np.maximum(live_shares(reference, values), FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def scores(reference: dict[str, dict[str, Any]], window: dict[str, np.ndarray]) -> dict[str, float]:
    """The index of every feature with a reference and live values."""
    return {name: psi(reference[name], values) for name, values in window.items() if name in reference and len(values)}


def training_profile(task: Any, spec: dict[str, Any], inputs: tuple[np.ndarray, ...], extras: dict[str, Any] | None = None, rows: int = 5000) -> dict[str, Any]:
    """The reference profile of a training split's model inputs, through the task's serving hooks' ``observe``,
    and of the numeric features in ``extras["drift"]`` (those the inputs do not show, e.g. an image's size)."""
    from models.registry import get_serving
    from models.serving import Limits

    hooks = get_serving(task.name)(spec, Limits())
    names = [t.name for t in task.inputs(spec)]
    per_row = sum(np.asarray(x)[:1].nbytes for x in inputs) or 1
    rows = min(rows, max(64, int(256e6 // per_row)))  # at most ~256 MB of inputs (224 px photos: ~425 of them)
    sample = tuple(np.asarray(x)[:rows] for x in inputs)
    features = {**hooks.observe(sample, names), **{k: np.asarray(v, dtype=np.float64) for k, v in ((extras or {}).get("drift") or {}).items()}}
    return profile(features, hooks.categorical(names, sample))
