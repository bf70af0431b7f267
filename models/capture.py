"""Reading the capture store (written by :mod:`services.capture`): captured requests, and the feedback on them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECORDS_FILE = "records.jsonl"
FEEDBACK_DIR = "feedback"
REQUEST_ID = r"^[0-9a-f]{32}$"
"""The request ids the services give out (``X-Request-Id``): 32 hex digits."""


def jsonable(value: Any) -> Any:
    """``json.dumps``'s ``default``: pydantic models, paths and numpy values as JSON."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True)
class Captured:
    """One captured request, and the folder its uploaded files lie in."""

    record: dict[str, Any]
    folder: Path

    @property
    def request_id(self) -> str:
        return str(self.record["request_id"])

    def file(self, field: str) -> Path:
        """The raw bytes of an uploaded file of the request (e.g. ``image``)."""
        return self.folder / str(self.record["request"][field]["file"])


def _segments(root: Path, task: str | None) -> list[Path]:
    pattern = f"{task}/*/{RECORDS_FILE}" if task else f"*/*/{RECORDS_FILE}"
    return sorted(root.glob(pattern), key=lambda p: p.parent.name, reverse=True)


def records(root: Path, task: str) -> Iterator[Captured]:
    """Every captured request of ``task``, newest segment first."""
    for path in _segments(root, task):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a full disk
            if isinstance(record, dict) and "request_id" in record:
                yield Captured(record, path.parent)


def find(root: Path, request_id: str) -> Captured | None:
    """The captured request with this id, in any task."""
    needle = f'"request_id":"{request_id}"'
    for path in _segments(root, None):
        for line in path.read_text(errors="replace").splitlines():
            if needle in line:
                try:
                    return Captured(json.loads(line), path.parent)
                except ValueError:
                    return None
    return None


def feedback(root: Path, task: str) -> dict[str, dict[str, Any]]:
    """The latest feedback on each request id of ``task``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((root / task / FEEDBACK_DIR).glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and "request_id" in item and (item["request_id"] not in out or item["time"] >= out[item["request_id"]]["time"]):
                out[item["request_id"]] = item
    return out


def labelled(root: Path, task: str) -> list[tuple[Captured, list[Any]]]:
    """Captured requests of ``task`` with feedback, each with its outcomes, oldest first."""
    given = feedback(root, task)
    found = [(c, given[c.request_id]["outcome"]) for c in records(root, task) if c.request_id in given]
    return sorted(found, key=lambda pair: str(pair[0].record.get("time", "")))
