"""Starting the BentoML services as a subprocess (``zoo serve``, the demo, the tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.registry import UnknownTask, task_names
from models.settings import PROJECT_ROOT, Settings


def service_target(task: str | None) -> str:
    """The ``bentoml serve`` import string: one task's service (``services.<task>:Service``), or all of them."""
    if task is None:
        return "services.zoo:Zoo"
    if task not in task_names():
        raise UnknownTask(task)
    return f"services.{task}:Service"


def serve_command(task: str | None, port: int, host: str = "0.0.0.0") -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", service_target(task), "--port", str(port), "--host", host, "--working-dir", str(PROJECT_ROOT)]


def serve_env(settings: Settings, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **settings.tool_env(), **(extra or {})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM a process started with ``start_new_session`` and its children; SIGKILL after ``timeout``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def running_server(settings: Settings, task: str | None = None, port: int | None = None, log: Path | None = None, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start ``bentoml serve`` on loopback; yields its URL and stops it (whole process group) on exit."""
    port = port or free_port()
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        serve_command(task, port, host="127.0.0.1"),
        env=serve_env(settings, extra_env),
        cwd=PROJECT_ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)
        if log:
            out.close()  # type: ignore[union-attr]
