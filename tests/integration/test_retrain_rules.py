"""The retrain flow does only the work it needs, validates first, and leaves nothing on failure."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_project, project_env, zoo_cli
from mlflow import MlflowClient

from models.registry import get_task
from models.settings import Settings
from models.store import connect, reading
from models.store.names import CHALLENGER, CHAMPION
from pipelines import flows, ingest, recovery
from pipelines.output import ExitCode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, mirror: Path, prefect_harness: None) -> Iterator[Settings]:
    """A project of its own (its data gets changed), with recommend and classify trained once."""
    own_mirror = tmp_path_factory.mktemp("mirror-copy")
    shutil.copytree(mirror, own_mirror, dirs_exist_ok=True)
    with project_env(make_project(tmp_path_factory.mktemp("fresh"), own_mirror)) as settings:
        ingest.ingest(settings)
        for task in ("recommend", "classify"):
            assert not flows.retrain(task, "tiny", progress=False).skipped
        yield settings


def versions(settings: Settings, task: str) -> set[str]:
    return {str(v.version) for v in connect.client(settings).search_model_versions(f"name='{task}'")}


def ratings(settings: Settings) -> Path:
    return settings.project_root / "data" / "movie_lens_sample" / "ratings.csv"


def reingest(settings: Settings) -> None:
    with ingest.dvc_repo(settings.project_root, settings) as repo:
        repo.add(str(settings.project_root / "data"))
        repo.push(targets=[str(settings.project_root / "data.dvc")])


def test_unchanged_data_and_code_is_skipped(fresh: Settings) -> None:
    before = versions(fresh, "recommend")
    result = flows.retrain("recommend", "tiny", progress=False)
    assert result.skipped and "skipped: no new data or code" in result.message
    assert versions(fresh, "recommend") == before
    forced = flows.retrain("recommend", "tiny", progress=False, force=True)
    assert not forced.skipped and forced.version not in before


def test_zoo_train_says_it_skipped(fresh: Settings) -> None:
    result = zoo_cli("train", "recommend", "--config", "tiny")
    assert result.exit_code == 0, result.output[-2000:]
    assert "skipped: no new data or code" in result.stdout and "--force" in result.stdout


def test_new_data_retrains_only_its_own_task(fresh: Settings) -> None:
    rec_before, cls_before = versions(fresh, "recommend"), versions(fresh, "classify")
    original = ratings(fresh).read_text()
    ratings(fresh).write_text(original + "100,1000,4.5,1999999\n")
    try:
        reingest(fresh)
        assert not flows.retrain("recommend", "tiny", progress=False).skipped
        assert flows.retrain("classify", "tiny", progress=False).skipped  # its images did not change
        assert len(versions(fresh, "recommend")) == len(rec_before) + 1
        assert versions(fresh, "classify") == cls_before
    finally:
        ratings(fresh).write_text(original)
        reingest(fresh)


def test_schema_violation_fails_before_training(fresh: Settings) -> None:
    c = connect.client(fresh)
    before = versions(fresh, "recommend")
    runs_before = len(c.search_runs([c.get_experiment_by_name(fresh.experiment).experiment_id]))
    original = ratings(fresh).read_text()
    ratings(fresh).write_text(original + "101,1001,9.0,2000000\n102,,3.0,2000001\n")
    try:
        reingest(fresh)
        with pytest.raises(flows.DataValidationError) as info:
            flows.retrain("recommend", "tiny", progress=False)
        report = str(info.value)
        assert "in_range(0.5, 5.0)" in report and "movie" in report
        assert versions(fresh, "recommend") == before
        assert len(c.search_runs([c.get_experiment_by_name(fresh.experiment).experiment_id])) == runs_before  # nothing trained
    finally:
        ratings(fresh).write_text(original)
        reingest(fresh)


def _boom(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("step", ["load-data", "train", "evaluate", "export", "register", "alias"])
def test_a_failure_at_any_step_registers_nothing(fresh: Settings, step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    targets = {
        "load-data": (type(get_task("recommend")), "load"),
        "train": (type(get_task("recommend").recipe(get_task("recommend").config("tiny"))), "train"),
        "evaluate": (flows, "learning_curves"),
        "export": (flows, "export_onnx"),
        "register": (flows.writing, "register"),
        "alias": (MlflowClient, "set_registered_model_alias"),  # the version exists by then: it is deleted again
    }
    owner, name = targets[step]
    monkeypatch.setattr(owner, name, _boom)
    monkeypatch.setattr(flows, "register", flows.register.with_options(retries=0))
    c = connect.client(fresh)
    before = versions(fresh, "recommend")
    aliases = {a: reading.by_alias(c, "recommend", a).version for a in (CHAMPION, CHALLENGER) if reading.by_alias(c, "recommend", a)}
    with pytest.raises(RuntimeError, match="injected failure"):
        flows.retrain("recommend", "tiny", progress=False, force=True)
    assert versions(fresh, "recommend") == before
    assert {a: reading.by_alias(c, "recommend", a).version for a in aliases} == aliases
    last = c.search_runs([c.get_experiment_by_name(fresh.experiment).experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert last.info.status == "FAILED"


def test_failure_notifies_the_webhook(fresh: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ZOO_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hook")
    monkeypatch.setattr(flows, "export_onnx", _boom)
    try:
        with pytest.raises(RuntimeError):
            flows.retrain("recommend", "tiny", progress=False, force=True)
    finally:
        server.shutdown()
    assert len(received) == 1
    msg = received[0]
    assert msg["task"] == "recommend" and msg["step"] == "export" and msg["flow_run_id"]
    assert "injected failure" in msg["error"]


def test_auto_promote_only_through_the_gates(fresh: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.task import PromotionPolicy
    from pipelines import promotion

    c = connect.client(fresh)
    task_cls = type(get_task("recommend"))
    monkeypatch.setattr(task_cls, "promotion", PromotionPolicy(tolerance=0.01, latency_budget_ms=1e-6))
    blocked = flows.retrain("recommend", "tiny", progress=False, force=True, auto_promote=True)
    assert not blocked.promoted
    assert str(reading.by_alias(c, "recommend", CHALLENGER).version) == blocked.version
    assert str(getattr(reading.by_alias(c, "recommend", CHAMPION), "version", None)) != blocked.version

    monkeypatch.setattr(task_cls, "promotion", PromotionPolicy(tolerance=10.0, latency_budget_ms=10_000))
    passed = flows.retrain("recommend", "tiny", progress=False, force=True, auto_promote=True)
    assert passed.promoted
    assert str(reading.by_alias(c, "recommend", CHAMPION).version) == passed.version
    last = promotion.history(fresh, "recommend")[-1]
    assert last["operator"] == "scheduler" and last["version"] == passed.version


def alive(children: list[list[float]]) -> list[int]:
    import psutil

    out = []
    for pid, started in children:
        try:
            proc = psutil.Process(int(pid))
            if abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(int(pid))
        except psutil.Error:
            pass
    return out


def test_a_retrain_killed_at_registration_is_cleared_up_by_the_next(fresh: Settings, tmp_path: Path) -> None:
    """SIGKILL after the version is created and before challenger moves: the next retrain deletes it and starts clean."""
    c = connect.client(fresh)
    before = versions(fresh, "recommend")
    aliases = {a: mv.version for a in (CHAMPION, CHALLENGER) if (mv := reading.by_alias(c, "recommend", a))}
    zoo = Path(sys.executable).with_name("zoo")
    log = tmp_path / "killed.log"
    with log.open("wb") as out:  # a file, not a pipe: what the killed process started may hold a pipe open
        killed = subprocess.run([str(zoo), "train", "recommend", "--config", "tiny", "--force"], env={**os.environ, "ZOO_FAILPOINTS": "register"},
                                stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    left = versions(fresh, "recommend") - before
    assert len(left) == 1  # created, never aliased
    assert {a: reading.by_alias(c, "recommend", a).version for a in aliases} == aliases
    dead_run = c.get_model_version("recommend", left.pop()).run_id
    assert c.get_run(dead_run).info.status == "RUNNING"
    record = json.loads(recovery.lock_path(fresh, "recommend").read_text())
    assert record["run_id"] == dead_run
    orphans = alive(record["children"])
    assert orphans  # its temporary Prefect server outlived it

    result = flows.retrain("recommend", "tiny", progress=False, force=True)
    assert versions(fresh, "recommend") == before | {result.version}
    assert str(reading.by_alias(c, "recommend", CHALLENGER).version) == result.version
    assert getattr(reading.by_alias(c, "recommend", CHAMPION), "version", None) == aliases.get(CHAMPION)
    assert c.get_run(dead_run).info.status == "KILLED"
    assert not alive(record["children"])
    assert recovery.lock_path(fresh, "recommend").read_text() == ""  # a finished retrain leaves nothing to clear up
    assert not recovery.scratch_dir(fresh, "recommend").exists()


def test_a_second_retrain_of_a_task_is_refused_while_one_runs(fresh: Settings) -> None:
    with recovery.retrain_lock(fresh, "recommend"):
        before = versions(fresh, "recommend")
        result = zoo_cli("train", "recommend", "--config", "tiny", "--force")
        assert result.exit_code == ExitCode.BLOCKED
        assert "another retrain of recommend is running" in result.stderr and f"pid {os.getpid()}" in result.stderr
    assert versions(fresh, "recommend") == before
