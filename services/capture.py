"""Captured traffic: a sample of requests and their answers, written off the request path under ``ZOO_HOME/capture``.

``ZOO_CAPTURE_SHARE`` of the requests are handed to one writer thread per worker through a bounded queue; a
request never waits for the disk, and never fails because of it: when the queue is full or a write fails
(a slow or full disk) the record is dropped and counted in ``zoo_capture_dropped``.

The store, per task (:mod:`models.capture` reads it)::

    capture/<task>/<YYYYMMDDTHH>-<pid>/records.jsonl   one JSON line per request: request_id, time, task,
                                                      endpoint, model_version, request, response
    capture/<task>/<YYYYMMDDTHH>-<pid>/<request_id>.<field>   the raw bytes of an uploaded file
    capture/<task>/feedback/<pid>.jsonl               POST /feedback: request_id, time, outcome

Past ``ZOO_CAPTURE_MAX_BYTES`` the oldest segments are deleted.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import shutil
import threading
import time
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from models.capture import FEEDBACK_DIR, RECORDS_FILE, jsonable
from models.settings import Settings
from services.metrics import zoo_metrics

log = logging.getLogger("course_zoo.services.capture")
QUEUE_SIZE = 1024
RECENT = 10_000
"""Request ids of this worker's captures kept in memory, for feedback that comes before the record is written."""


class Capture:
    """One worker's capture writer."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.home / "capture"
        self.share = settings.loop.capture_share
        self.max_bytes = settings.loop.capture_max_bytes
        self._queue: queue.Queue[tuple[str, str, dict[str, Any], dict[str, bytes]]] = queue.Queue(QUEUE_SIZE)
        self._random = random.Random()
        self._thread: threading.Thread | None = None
        self._size: int | None = None
        self.recent: OrderedDict[str, tuple[str, str, dict[str, Any]]] = OrderedDict()

    def record(
        self, request_id: str, task: str, endpoint: str, version: str, request: dict[str, Any], files: dict[str, bytes], response: Any
    ) -> tuple[dict[str, Any], dict[str, bytes]]:
        """One request's record and the files beside it; remembered for feedback."""
        req = {k: ({"file": f"{request_id}.{k}"} if k in files else v) for k, v in request.items()}
        out = {f"{request_id}.{k}": v for k, v in files.items()}
        if isinstance(response, bytes):  # an image: beside the record
            out[f"{request_id}.response"] = response
            response = {"file": f"{request_id}.response"}
        self.recent[request_id] = (task, endpoint, json.loads(json.dumps(req, default=jsonable)))
        while len(self.recent) > RECENT:
            self.recent.popitem(last=False)
        record = {"request_id": request_id, "time": now(), "task": task, "endpoint": endpoint, "model_version": version, "request": req, "response": response}
        return record, out

    def sampled(self) -> bool:
        return self.share > 0 and self._random.random() < self.share

    def offer(self, task: str, record: dict[str, Any], files: dict[str, bytes]) -> None:
        """Queue one request's record (never blocks)."""
        self._put(task, "record", record, files)

    def feedback(self, task: str, request_id: str, outcome: list[Any]) -> None:
        self._put(task, "feedback", {"request_id": request_id, "time": now(), "outcome": outcome}, {})

    def _put(self, task: str, kind: str, record: dict[str, Any], files: dict[str, bytes]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name="zoo-capture", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((task, kind, record, files))
        except queue.Full:
            zoo_metrics().capture_dropped.labels(task, "queue_full").inc()

    def _write_forever(self) -> None:
        while True:
            task, kind, record, files = self._queue.get()
            try:
                written = self._write(task, kind, record, files)
                zoo_metrics().captured.labels(task, kind).inc()
                self._trim(written)
            except OSError as exc:  # a full or failing disk: this record is lost, the requests are not
                zoo_metrics().capture_dropped.labels(task, "disk").inc()
                log.warning("capture of a %s request not written: %s", task, exc)
            except Exception:
                zoo_metrics().capture_dropped.labels(task, "error").inc()
                log.exception("capture of a %s request not written", task)

    def _write(self, task: str, kind: str, record: dict[str, Any], files: dict[str, bytes]) -> int:
        folder = self.root / task
        if kind == "feedback":
            path = folder / FEEDBACK_DIR / f"{os.getpid()}.jsonl"
        else:
            path = folder / f"{datetime.now(timezone.utc):%Y%m%dT%H}-{os.getpid()}" / RECORDS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        for name, data in files.items():
            (path.parent / name).write_bytes(data)
            size += len(data)
        line = (json.dumps(record, default=jsonable, separators=(",", ":")) + "\n").encode()
        with path.open("ab") as out:
            out.write(line)
        return size + len(line)

    def _trim(self, written: int) -> None:
        """Delete the oldest segments while the store is over its cap."""
        if self._size is None:
            self._size = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        self._size += written
        if self._size <= self.max_bytes:
            return
        segments = sorted((p for p in self.root.glob("*/*") if p.is_dir() and p.name != FEEDBACK_DIR), key=lambda p: p.name)
        for segment in segments[:-1]:  # never the one being written
            if self._size <= self.max_bytes:
                break
            freed = sum(p.stat().st_size for p in segment.rglob("*") if p.is_file())
            shutil.rmtree(segment, ignore_errors=True)
            self._size -= freed
            log.info("capture store over ZOO_CAPTURE_MAX_BYTES (%d): deleted segment %s", self.max_bytes, segment)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until what is queued is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
