"""`zoo schedule` against a real `prefect server` subprocess on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def test_a_deployment_fires_on_its_own_and_survives_a_restart(project: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schedules = tmp_path / "schedules.yaml"
    others = "".join(f"  {t}: only recommend runs in this test\n" for t in task_names() if t != "recommend")
    schedules.write_text(f"recommend:\n  cron: '0 2 * * *'\n  config: tiny\n  auto_promote: false\nunscheduled:\n{others}")
    env = {**os.environ, "ZOO_SCHEDULES": str(schedules)}
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
        deadline = time.monotonic() + 240
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
