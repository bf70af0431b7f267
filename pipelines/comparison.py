"""The metric gate compares like with like.

A version's stored validation metric was measured on the data of its own
retrain. When the candidate and the champion were measured on different task
data (a retrain on new data, or an imported version), their stored figures do
not compare: the gate then scores both ONNX models, each through its own spec,
on the validation split of the data in ``data/`` (when that is the candidate's)
and says which comparison it made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.settings import Settings
from models.store.names import Tag


@dataclass(frozen=True)
class Comparison:
    candidate: float | None
    champion: float | None
    how: str
    """Which comparison was made, for the gate's detail and the audit record."""


def compare(settings: Settings, task: str, candidate: Any, champion: Any, stored: Callable[[Any], float | None]) -> Comparison:
    """The candidate's and the champion's metric, on the same data where their stored figures are not."""
    from models.registry import get_task
    from models.scoring import SCORED, platform_metric
    from models.store.reading import load_version
    from pipelines.versions import task_data_hash

    mine, theirs = candidate.tags.get(Tag.TASK_DATA_HASH), champion.tags.get(Tag.TASK_DATA_HASH)
    kept = Comparison(stored(candidate), stored(champion), "")
    if mine and mine == theirs:
        return Comparison(kept.candidate, kept.champion, f"stored validation metrics, both measured on task data {mine[:12]}")
    differ = f"stored metrics of different data (candidate {(mine or 'imported')[:12]}, champion {(theirs or 'imported')[:12]})"
    t = get_task(task)
    if task not in SCORED:
        return Comparison(kept.candidate, kept.champion, f"{differ}: {task} versions cannot be rescored on one split yet")
    try:
        current = task_data_hash(settings, t)
    except Exception as exc:  # no data here (an ops host): say so, compare what is stored
        return Comparison(kept.candidate, kept.champion, f"{differ}; data/ could not be read to rescore both ({type(exc).__name__})")
    if mine and mine != current:
        return Comparison(kept.candidate, kept.champion, f"{differ}; data/ holds task data {current[:12]}, not the candidate's, so neither was rescored")
    config = candidate.tags.get(Tag.CONFIG)
    config = config if config in t.configs else "demo"
    data_dir = settings.project_root / "data"
    a, where = platform_metric(load_version(settings, task, candidate.version), task, data_dir, config)
    b, _ = platform_metric(load_version(settings, task, champion.version), task, data_dir, config)
    if a is None or b is None:
        return Comparison(kept.candidate, kept.champion, f"{differ}; rescoring gave no figure ({where})")
    return Comparison(a, b, f"both rescored on the candidate's validation split ({where}, task data {current[:12]}), as their {differ}")
