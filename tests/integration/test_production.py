"""Production mode on loopback: MLflow (basic auth) and Prefect servers on the machine's PostgreSQL.

Configuration alone switches the platform to servers: the same CLI and services
run with ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` and
``PREFECT_API_URL`` pointing at real servers. One retrain goes through the
Prefect server, is promoted through the authenticated MLflow server, and two
service replicas (each with its own ``ZOO_HOME``, as on two hosts) follow the
registry's champion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from conftest import make_project

from models.settings import Settings
from pipelines.output import ExitCode
from pipelines.serving import free_port, running_server, stop_group

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PG = "postgresql://postgres@127.0.0.1:5432"
ADMIN = "admin"
PASSWORD = "zoo-test-admin-password"
ZOO = str(Path(sys.executable).with_name("zoo"))


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def databases() -> Iterator[dict[str, str]]:
    """Three fresh PostgreSQL databases (MLflow store, MLflow users, Prefect), dropped afterwards."""
    import psycopg

    suffix = uuid.uuid4().hex[:8]
    names = {key: f"zoo_test_{key}_{suffix}" for key in ("mlflow", "auth", "prefect")}
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'CREATE DATABASE "{name}"')
    yield names
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        for name in names.values():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def servers(databases: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``mlflow server`` (basic auth, artifacts proxied) and ``prefect server``, both on PostgreSQL."""
    root = tmp_path_factory.mktemp("servers")
    auth_ini = root / "basic_auth.ini"
    auth_ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {PG}/{databases['auth']}\n"
        f"admin_username = {ADMIN}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    mlflow_port, prefect_port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    mlflow_env = {
        **base,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
    }
    prefect_env = {
        **base,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases['prefect']}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    bin_dir = Path(sys.executable).parent
    with ExitStack() as stack:
        procs = []
        for name, cmd, env in (
            (
                "mlflow",
                [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
                 "--backend-store-uri", f"{PG}/{databases['mlflow']}", "--serve-artifacts",
                 "--artifacts-destination", str(root / "artifacts"), "--app-name", "basic-auth"],
                mlflow_env,
            ),
            ("prefect", [str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)], prefect_env),
        ):
            log = root / f"{name}.log"
            out = stack.enter_context(log.open("wb"))
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            stack.callback(stop_group, proc)
            procs.append((proc, log))
        urls = {"mlflow": f"http://127.0.0.1:{mlflow_port}", "prefect": f"http://127.0.0.1:{prefect_port}/api"}
        _wait_http(f"{urls['mlflow']}/health", *procs[0])
        _wait_http(f"{urls['prefect']}/health", *procs[1])
        yield urls


@pytest.fixture(scope="module")
def prod_env(servers: dict[str, str], mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh project whose registry and orchestrator are the servers: only variables change."""
    env = make_project(tmp_path_factory.mktemp("prod-project"), mirror)
    env.pop("MLFLOW_REGISTRY_URI")
    env.pop("PREFECT_HOME")
    env.update(
        {
            "MLFLOW_TRACKING_URI": servers["mlflow"],
            "MLFLOW_TRACKING_USERNAME": ADMIN,
            "MLFLOW_TRACKING_PASSWORD": PASSWORD,
            "PREFECT_API_URL": servers["prefect"],
        }
    )
    return env


def zoo(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the ``zoo`` CLI as an operator would, with only ``env``'s variables changed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "ZOO_"))}
    return subprocess.run([ZOO, *args], env={**clean, **env}, capture_output=True, text=True, timeout=timeout)


def registry(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - an MlflowClient
    """An MLflow client of the server, authenticated as the admin (for this test only)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    return MlflowClient(env["MLFLOW_TRACKING_URI"], env["MLFLOW_TRACKING_URI"])


def flow_runs(api: str) -> list[dict]:
    resp = httpx.post(f"{api}/flow_runs/filter", json={"limit": 50}, timeout=30)
    resp.raise_for_status()
    return resp.json()


@pytest.fixture(scope="module")
def trained(prod_env: dict[str, str]) -> dict[str, str]:
    for args in (("data", "ingest", "--dataset", "movie_lens_sample"), ("train", "recommend", "--config", "tiny")):
        result = zoo(prod_env, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    return prod_env


def test_a_retrain_runs_through_the_prefect_server(
    trained: dict[str, str], servers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [r for r in flow_runs(servers["prefect"]) if r["parameters"].get("task") == "recommend"]
    assert runs, "the Prefect server recorded no retrain flow run"
    assert runs[0]["state_type"] == "COMPLETED"
    c = registry(trained, monkeypatch)
    version = c.get_model_version_by_alias("recommend", "challenger")
    assert version.version == "1"
    # Artifacts are proxied by the tracking server, not written where the client can see them.
    assert c.get_run(version.run_id).info.artifact_uri.startswith("mlflow-artifacts:")


def test_promotion_goes_through_the_authenticated_server(trained: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = zoo(trained, "promote", "recommend", "1", "--reason", "production-mode test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert registry(trained, monkeypatch).get_model_version_by_alias("recommend", "champion").version == "1"
    listed = zoo(trained, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["task"]: row for row in json.loads(listed.stdout)}
    assert rows["recommend"]["champion"]["version"] == "1"
    assert rows["recommend"]["champion"]["metrics"]["mse"] > 0  # the run's metrics, read through the REST API
    history = zoo(trained, "history", "recommend", "--json")
    assert history.returncode == 0, history.stderr
    assert [(r["action"], r["version"], r["reason"]) for r in json.loads(history.stdout)] == [("promote", "1", "production-mode test")]


def test_a_wrong_password_is_refused_with_a_clear_message(trained: dict[str, str]) -> None:
    result = zoo({**trained, "MLFLOW_TRACKING_PASSWORD": "not-the-password"}, "models")
    assert result.returncode == ExitCode.REGISTRY
    assert "refused the credentials (HTTP 401)" in result.stderr
    assert "MLFLOW_TRACKING_PASSWORD" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    # Anonymous writes are refused too: the registry is not open to the network.
    anonymous = {k: v for k, v in trained.items() if k != "MLFLOW_TRACKING_PASSWORD"}
    denied = zoo(anonymous, "promote", "recommend", "1", "--reason", "no credentials")
    assert denied.returncode == ExitCode.REGISTRY and "Traceback" not in denied.stderr


def _version(url: str) -> str | None:
    try:
        resp = httpx.post(f"{url}/recommend", json={"user_id": 100, "k": 3}, timeout=10)
    except httpx.HTTPError:
        return None
    return resp.headers.get("x-model-version") if resp.status_code == 200 else None


def test_two_replicas_follow_the_registry(trained: dict[str, str], tmp_path: Path) -> None:
    replica_env = {**trained, "ZOO_TASKS": "recommend", "ZOO_POLL_SECONDS": "1"}
    with ExitStack() as stack:
        urls = []
        for i in range(2):
            home = tmp_path / f"replica-{i}"
            settings = Settings.from_env({**replica_env, "ZOO_HOME": str(home)})
            env = {**replica_env, "ZOO_HOME": str(home), **{k: v for k, v in trained.items() if k.startswith("MLFLOW_")}}
            urls.append(stack.enter_context(running_server(settings, "recommend", log=tmp_path / f"replica-{i}.log", extra_env=env)))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and [_version(u) for u in urls] != ["1", "1"]:
            time.sleep(1)
        assert [_version(u) for u in urls] == ["1", "1"], [(tmp_path / f"replica-{i}.log").read_text()[-3000:] for i in range(2)]

        for args in (("train", "recommend", "--config", "tiny", "--force"), ("promote", "recommend", "2", "--reason", "replicas follow")):
            result = zoo(trained, *args)
            assert result.returncode == 0, result.stdout + result.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and [_version(u) for u in urls] != ["2", "2"]:
            time.sleep(0.5)
        assert [_version(u) for u in urls] == ["2", "2"]
