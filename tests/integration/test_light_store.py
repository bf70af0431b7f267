"""The ops commands' registry stores (SQLite tables, REST API) against MLflow's own client on the same registry.

Each store reads what MLflow wrote and writes what MLflow then reads: the
SQLite store on the embedded database file, the REST store through a real
``mlflow server`` on a database of its own.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.errors import NotFound
from models.settings import Settings
from models.store import light
from models.store.light.client import ClientStore
from models.store.light.rest import RestStore
from models.store.light.sqlite import KNOWN_REVISIONS, SqliteStore
from pipelines.serving import free_port, stop_group

pytestmark = pytest.mark.slow


def _fill(uri: str) -> None:
    """Two versions of ``toy`` (champion 1, challenger 2), their runs' metrics, and two audit runs, written by MLflow."""
    from mlflow import MlflowClient

    c = MlflowClient(uri, uri)
    exp = c.create_experiment("light")
    c.create_registered_model("toy")
    for i, accuracy in ((1, 0.5), (2, float("nan"))):
        run = c.create_run(exp, run_name=f"train-{i}")
        c.log_metric(run.info.run_id, "accuracy", 0.1, step=0)
        c.log_metric(run.info.run_id, "accuracy", accuracy, step=1)
        c.log_metric(run.info.run_id, "baseline_accuracy", 0.25)
        c.set_terminated(run.info.run_id)
        c.create_model_version("toy", f"{run.info.artifact_uri}/model", run_id=run.info.run_id, tags={"metric_name": "accuracy", "n": str(i)})
    c.set_registered_model_alias("toy", "champion", "1")
    c.set_registered_model_alias("toy", "challenger", "2")
    audit = c.create_experiment("light-audit")
    for task in ("toy", "other", "toy"):
        run = c.create_run(audit, run_name=f"promote-{task}", tags={"zoo.audit.task": json.dumps(task)})
        c.set_terminated(run.info.run_id)
        time.sleep(0.01)


def _settings(uri: str, root: Path) -> Settings:
    return Settings.from_env({"ZOO_HOME": str(root), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri})


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("embedded")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    _fill(uri)
    return _settings(uri, root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = (root / "mlflow.log").open("wb")
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--default-artifact-root", (root / "artifacts").as_uri()]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, (root / "mlflow.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        _fill(uri)
        yield _settings(uri, root)
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture(params=["sqlite", "rest"])
def stores(request: pytest.FixtureRequest) -> tuple[light.Store, ClientStore]:
    """The store under test, and MLflow's client on the same registry."""
    settings: Settings = request.getfixturevalue("embedded" if request.param == "sqlite" else "server")
    store = light.connect(settings, settings.registry_uri)
    assert isinstance(store, SqliteStore if request.param == "sqlite" else RestStore)
    return store, ClientStore(settings, settings.registry_uri)


def test_reads_agree_with_mlflow(stores: tuple[light.Store, ClientStore]) -> None:
    store, mlflow = stores
    for alias in ("champion", "challenger"):
        assert store.by_alias("toy", alias) == mlflow.by_alias("toy", alias)
    champion = store.by_alias("toy", "champion")
    assert champion is not None and champion.version == "1" and champion.tags["n"] == "1" and champion.run_id
    assert store.version("toy", "2") == mlflow.version("toy", "2")
    assert store.metrics(champion.run_id) == mlflow.metrics(champion.run_id) == {"accuracy": 0.5, "baseline_accuracy": 0.25}
    challenger = store.by_alias("toy", "challenger")
    assert challenger is not None and challenger.run_id
    assert str(store.metrics(challenger.run_id)["accuracy"]) == "nan"  # the last value is NaN, not the first
    tagged = store.tagged_runs("light-audit", "zoo.audit.task", json.dumps("toy"))
    assert tagged == mlflow.tagged_runs("light-audit", "zoo.audit.task", json.dumps("toy"))
    assert [t["mlflow.runName"] for t in tagged] == ["promote-toy", "promote-toy"]


def test_what_is_missing(stores: tuple[light.Store, ClientStore]) -> None:
    store, _ = stores
    assert store.by_alias("toy", "no-such-alias") is None
    assert store.by_alias("no-such-model", "champion") is None
    with pytest.raises(NotFound):
        store.version("toy", "99")
    with pytest.raises(NotFound):
        store.set_alias("toy", "champion", "99")
    with pytest.raises(NotFound):
        store.set_tags("toy", "99", {"k": "v"})
    with pytest.raises(NotFound):
        store.version("toy", "two")
    assert store.tagged_runs("no-such-experiment", "zoo.audit.task", "x") == []


def test_writes_are_what_mlflow_reads(stores: tuple[light.Store, ClientStore]) -> None:
    store, mlflow = stores
    store.set_alias("toy", "canary", "2")
    assert mlflow.by_alias("toy", "canary") == store.by_alias("toy", "canary") and store.by_alias("toy", "canary").version == "2"  # type: ignore[union-attr]
    store.set_alias("toy", "canary", "1")
    assert mlflow.by_alias("toy", "canary").version == "1"  # type: ignore[union-attr]
    store.delete_alias("toy", "canary")
    assert mlflow.by_alias("toy", "canary") is None
    store.set_tags("toy", "1", {"zoo.promote.by": "ops-alice", "n": "one"})
    assert {k: mlflow.version("toy", "1").tags[k] for k in ("zoo.promote.by", "n")} == {"zoo.promote.by": "ops-alice", "n": "one"}
    for experiment in ("light-audit", "new-audit"):  # an existing experiment, and one created by the first record
        store.log_run(experiment, "rollback-toy-v1", {"zoo.audit.task": json.dumps("written"), "zoo.audit.action": json.dumps("rollback")})
        runs = mlflow.tagged_runs(experiment, "zoo.audit.task", json.dumps("written"))
        assert [(r["mlflow.runName"], r["zoo.audit.action"]) for r in runs] == [("rollback-toy-v1", '"rollback"')]
        assert store.tagged_runs(experiment, "zoo.audit.task", json.dumps("written")) == runs


def test_the_embedded_schema_is_one_this_code_knows(embedded: Settings) -> None:
    """Fails when an MLflow upgrade migrates the schema: check the SQL of sqlite.py against the new one, then add the revision."""
    path = embedded.registry_uri.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision in KNOWN_REVISIONS


def test_other_stores_go_through_mlflow(embedded: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("models.store.light.sqlite.KNOWN_REVISIONS", frozenset({"f00dfeedbeef"}))  # as after an MLflow upgrade
    store = light.connect(embedded, embedded.registry_uri)
    assert isinstance(store, ClientStore)
    assert store.by_alias("toy", "champion").version == "1"  # type: ignore[union-attr]
    monkeypatch.undo()
    assert isinstance(light.connect(embedded, embedded.registry_uri), SqliteStore)
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert isinstance(light.connect(embedded, embedded.registry_uri), ClientStore)
    monkeypatch.undo()
    assert isinstance(light.connect(embedded, f"sqlite:///{tmp_path / 'none-yet.db'}"), ClientStore)  # MLflow creates it
    assert isinstance(light.connect(embedded, "https://mlflow.example.org"), RestStore)


def test_an_unreachable_server_is_a_registry_error() -> None:
    store = RestStore(f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(light.RegistryError, match="could not be reached"):
        store.by_alias("toy", "champion")


def test_ops_commands_import_neither_mlflow_nor_onnx_runtime(embedded: Settings) -> None:
    """``zoo models``, ``history`` and ``rollback`` answer without MLflow (about 4 s to import), ONNX Runtime or numpy."""
    probe = (
        "import runpy, sys\n"
        "sys.argv, code = ['zoo', *sys.argv[1:]], None\n"
        "try:\n    runpy.run_module('pipelines.cli', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "heavy = sorted({'mlflow', 'onnxruntime', 'numpy', 'torch', 'prefect'} & set(sys.modules))\n"
        "print('HEAVY', heavy, code, file=sys.stderr)\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": embedded.tracking_uri, "MLFLOW_REGISTRY_URI": embedded.registry_uri, "ZOO_EXPERIMENT": "light"}
    for args, code in ((["models", "--json"], 0), (["history", "toy", "--json"], 0), (["rollback", "toy"], 5)):
        out = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True, timeout=120)
        assert f"HEAVY [] {code}" in out.stderr, out.stderr[-2000:]
