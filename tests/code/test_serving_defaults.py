"""Worker and thread defaults of the services: from the CPUs a process may use, overridable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services import base


@pytest.mark.parametrize(("cpu_max", "expected"), [("max 100000", 8), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("junk", 8)])
def test_a_containers_cpu_quota_caps_the_cpus(cpu_max: str, expected: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert base.available_cpus(tmp_path / "cpu.max") == expected
    assert base.available_cpus(tmp_path / "missing") == 8


def test_workers_follow_the_cpus_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOO_WORKERS", raising=False)
    monkeypatch.delenv("ZOO_ORT_THREADS", raising=False)
    for cpus, workers in ((1, 1), (2, 2), (16, base.MAX_DEFAULT_WORKERS)):
        monkeypatch.setattr(base, "available_cpus", lambda cpus=cpus: cpus)
        assert base.serving_workers() == workers
        assert base.serving_workers(compute_bound=True) == 1
        assert base.ort_threads(workers) == max(1, cpus // workers)
        assert base.ort_threads(1) == cpus  # a compute-bound service's one worker gets every CPU
    monkeypatch.setenv("ZOO_WORKERS", "3")
    monkeypatch.setenv("ZOO_ORT_THREADS", "5")
    assert base.serving_workers() == base.serving_workers(compute_bound=True) == 3
    assert base.ort_threads(3) == 5
    assert base.service_options()["workers"] == 3
