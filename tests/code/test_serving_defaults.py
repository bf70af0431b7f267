"""Worker and thread defaults of the services: from the CPUs a process may use, overridable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.settings import ServingSettings
from services import options


@pytest.mark.parametrize(("cpu_max", "expected"), [("max 100000", 8), ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("junk", 8)])
def test_a_containers_cpu_quota_caps_the_cpus(cpu_max: str, expected: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert options.available_cpus(tmp_path / "cpu.max") == expected
    assert options.available_cpus(tmp_path / "missing") == 8


def test_workers_follow_the_cpus_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    default = ServingSettings()
    for cpus, workers in ((1, 1), (2, 2), (16, options.MAX_DEFAULT_WORKERS)):
        monkeypatch.setattr(options, "available_cpus", lambda cpus=cpus: cpus)
        assert options.serving_workers(default) == workers
        assert options.serving_workers(default, compute_bound=True) == 1
        assert options.ort_threads(default, workers) == max(1, cpus // workers)
        assert options.ort_threads(default, 1) == cpus  # a compute-bound service's one worker gets every CPU
    told = ServingSettings(workers=3, ort_threads=5)
    assert options.serving_workers(told) == options.serving_workers(told, compute_bound=True) == 3
    assert options.ort_threads(told, 3) == 5


def test_service_options_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "serving", lambda: ServingSettings(workers=3, access_log=False))
    opts = options.service_options("zoo")
    assert opts["workers"] == 3 and opts["name"] == "zoo" and opts["logging"]["access"]["enabled"] is False


def test_bentomls_tracing_middleware_skips_every_route_unless_tracing_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.util.http import ExcludeList

    monkeypatch.setattr(options, "serving", lambda: ServingSettings())
    excluded = ExcludeList(options.service_options("zoo")["tracing"]["excluded_urls"])
    assert all(excluded.url_disabled(f"http://127.0.0.1:3000{path}") for path in ("/rate", "/classify", "/v2/models/sales/infer", "/metrics"))
    monkeypatch.setattr(options, "serving", lambda: ServingSettings(tracing=True))
    assert "tracing" not in options.service_options("zoo")
