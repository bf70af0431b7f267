"""`zoo schedule` against a real `prefect server` subprocess on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import zoo_cli

from models.registry import task_names
from models.settings import Settings

pytestmark = pytest.mark.slow


def listed(monkeypatch: pytest.MonkeyPatch, schedules: Path) -> list[dict]:
    """``zoo schedule --list --json``, run in this process."""
    monkeypatch.setenv("ZOO_SCHEDULES", str(schedules))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = zoo_cli("schedule", "--list", "--json")
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.stdout)


def kill_everything(proc: subprocess.Popen, project: Settings) -> None:
    """After a scheduler that did not stop: kill it, its flow runs and its Prefect server."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = project.home / "prefect" / "server.json"
    if state.is_file():
        try:
            os.killpg(json.loads(state.read_text())["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def drifted_metrics() -> Iterator[str]:
    """A ``/metrics`` endpoint whose recommend has drifted (as a service's would, see test_loop.py for a real one)."""
    body = b'# TYPE zoo_drift_score gauge\nzoo_drift_score{feature="user",task="recommend"} 0.9\n'

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()


def drift_runs(project: Settings) -> list[dict]:
    """The flow runs tagged ``drift`` on the scheduler's Prefect server, with their trigger."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = json.loads((project.home / "prefect" / "server.json").read_text())["url"]
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["drift"])))
    return [{"trigger": (r.parameters or {}).get("trigger", ""), "state": r.state_name} for r in runs]


def test_a_deployment_fires_on_its_own_and_survives_a_restart(project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with drifted_metrics() as metrics:
        _fires_and_survives(project, tmp_path, monkeypatch, metrics)


def _fires_and_survives(project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics: str) -> None:
    schedules = tmp_path / "schedules.yaml"
    others = "".join(f"  {t}: only recommend runs in this test\n" for t in task_names() if t != "recommend")
    schedules.write_text(f"recommend:\n  cron: '0 2 * * *'\n  config: tiny\n  auto_promote: false\nunscheduled:\n{others}")
    # ZOO_METRICS_URL: the scheduler's drift watcher reads the scores there and starts the deployment once (cool-down)
    env = {**os.environ, "ZOO_SCHEDULES": str(schedules), "ZOO_METRICS_URL": metrics, "ZOO_DRIFT_COOLDOWN_S": "3600"}
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "schedule.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "schedule", "--task", "recommend", "--interval", "3"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    rows: list[dict] = []
    try:
        deadline = time.monotonic() + 480  # a Prefect server, a deployment and a tiny retrain, on 2 CPUs maybe shared
        while time.monotonic() < deadline:
            time.sleep(3)
            assert proc.poll() is None, (tmp_path / "schedule.log").read_text()[-3000:]
            if not (project.home / "prefect" / "server.json").exists():
                continue  # the scheduler's server is still starting
            rows = listed(monkeypatch, schedules)
            if rows and rows[0]["last_run_state"] in ("Completed", "Skipped"):
                break
        else:
            pytest.fail(f"no completed run: {rows}\n" + (tmp_path / "schedule.log").read_text()[-3000:])
        assert rows[0]["deployment"] == "retrain-recommend" and rows[0]["task"] == "recommend", rows
        assert rows[0]["active"] and rows[0]["next_run"], rows
        runs: list[dict] = []
        while time.monotonic() < deadline and not runs:
            runs = drift_runs(project)
            time.sleep(1)
        time.sleep(7)  # two more polls of the watcher (every 3 s here): still one run, in its cool-down
        runs = drift_runs(project)
        assert len(runs) == 1 and runs[0]["trigger"].startswith("drift: user 0.9"), runs
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_everything(proc, project)
            raise
    assert code == 0, (tmp_path / "schedule.log").read_text()[-3000:]
    assert not (project.home / "prefect" / "server.json").exists()  # the server was stopped
    again = listed(monkeypatch, schedules)
    assert again and again[0]["deployment"] == "retrain-recommend" and again[0]["active"], again  # not paused on shutdown
