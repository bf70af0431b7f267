"""How the services run: their settings (checked once at start-up), worker processes and ONNX Runtime threads."""

from __future__ import annotations

import math
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from models.settings import ServingSettings, Settings, SettingsError

MAX_DEFAULT_WORKERS = 4
"""Without ``ZOO_WORKERS``, at most this many workers (each holds its own copy of the models)."""
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""cgroup v2's CPU quota and period: what a container's CPU limit becomes."""


@cache
def settings() -> Settings:
    """Every setting, read and checked once; a malformed ``ZOO_*`` variable stops the server with one line naming it."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"course-zoo: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def serving() -> ServingSettings:
    return settings().serving


def available_cpus(cpu_max: Path = CPU_MAX) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's CPU limit)."""
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def serving_workers(config: ServingSettings, compute_bound: bool = False) -> int:
    """Worker processes: ``ZOO_WORKERS``, else one per CPU (at most ``MAX_DEFAULT_WORKERS``), or one for a
    service of compute-bound models only (they use every CPU through ONNX Runtime; docs/benchmarks.md)."""
    if config.workers is not None:
        return config.workers
    return 1 if compute_bound else max(1, min(available_cpus(), MAX_DEFAULT_WORKERS))


def ort_threads(config: ServingSettings, workers: int) -> int:
    """ONNX Runtime intra-op threads per worker: ``ZOO_ORT_THREADS``, else the CPUs shared out among the workers."""
    if config.ort_threads is not None:
        return config.ort_threads
    return max(1, available_cpus() // workers)


def service_options(name: str, compute_bound: bool = False) -> dict[str, Any]:
    """``@bentoml.service`` options shared by every service."""
    config = serving()
    return {
        "name": name,
        "traffic": {"timeout": 60},
        "workers": serving_workers(config, compute_bound),
        "metrics": {"enabled": True},
        "logging": {"access": {"enabled": config.access_log}},
        **({} if config.tracing else {"tracing": {"excluded_urls": [".*"]}}),
    }
