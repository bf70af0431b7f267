"""Services follow the registry live: under load, through corruption, with the registry down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.settings import Settings
from models.store import connect, reading
from models.store.names import CHAMPION
from pipelines import promotion
from pipelines.serving import free_port, running_server

pytestmark = pytest.mark.slow
POLL = "1"


def wait_ready(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready in {timeout} s")


def served_version(url: str) -> str:
    return httpx.post(f"{url}/rate", json={"user_ids": [100], "movie_ids": [1000]}, timeout=10).headers["x-model-version"]


def wait_for_version(url: str, version: str, timeout: float = 30) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if served_version(url) == version:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{url} still serves {served_version(url)}, not {version}, after {timeout} s")


@pytest.fixture(scope="module")
def two_versions(project: Settings) -> Iterator[tuple[str, str]]:
    """recommend's champion and a newer version; the champion is restored afterwards."""
    from pipelines.flows import retrain

    c = connect.client(project)
    old = str(reading.by_alias(c, "recommend", CHAMPION).version)
    new = retrain("recommend", "tiny", progress=False, force=True).version
    yield old, new
    c.set_registered_model_alias("recommend", CHAMPION, old)


@pytest.fixture(scope="module")
def server(project: Settings, two_versions: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("follow") / "serve.log"
    with running_server(project, task="recommend", log=log, extra_env={"ZOO_POLL_SECONDS": POLL}) as url:
        wait_ready(url)
        yield url


def test_follows_promotion_and_rollback_under_load_without_a_failed_request(project: Settings, two_versions: tuple[str, str], server: str) -> None:
    old, new = two_versions
    assert served_version(server) == old
    results: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    r = http.post(f"{server}/rate", json={"user_ids": [100, 101], "movie_ids": [1000, 1001]})
                    body_version = r.json().get("model_version") if r.status_code == 200 else None
                    results.append((r.status_code, r.headers.get("x-model-version"), body_version))
                except httpx.HTTPError as exc:
                    results.append((0, None, repr(exc)))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        promotion.promote(project, "recommend", new, "follow test")
        to_new = wait_for_version(server, new)
        time.sleep(1)
        promotion.rollback(project, "recommend", "follow test rollback")
        to_old = wait_for_version(server, old)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failures = [r for r in results if r[0] != 200]
    assert len(results) > 50 and not failures, failures[:5]
    assert all(header and header == body for _, header, body in results)
    assert {header for _, header, _ in results} == {old, new}
    assert to_new < 15 and to_old < 15  # poll interval (1 s) plus download, verify and warm-up


def test_a_corrupted_version_is_not_loaded(project: Settings, two_versions: tuple[str, str], server: str) -> None:
    from pipelines.flows import retrain

    old, _ = two_versions
    c = connect.client(project)
    c.set_registered_model_alias("recommend", CHAMPION, old)
    wait_for_version(server, old)
    bad = retrain("recommend", "tiny", progress=False, force=True).version
    stored = Path(c.get_model_version_download_uri("recommend", bad).removeprefix("file://")) / "model.onnx"
    stored.write_bytes(stored.read_bytes()[:-8] + b"tampered")
    with pytest.raises(promotion.PromotionBlocked):
        promotion.promote(project, "recommend", bad, "corrupt")
    promotion.promote(project, "recommend", bad, "forced past integrity to test the service", force=True)
    time.sleep(5)  # several poll intervals
    assert served_version(server) == old
    metrics = httpx.get(f"{server}/metrics").text
    assert 'zoo_model_load_failures_total{task="recommend"}' in metrics
    assert httpx.get(f"{server}/readyz").status_code == 200
    c.set_registered_model_alias("recommend", CHAMPION, old)


@pytest.fixture()
def mlflow_server(project: Settings, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", project.tracking_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=(tmp_path / "mlflow.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240  # as live_server waits: a loaded 2-CPU machine starts it slowly
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        raise TimeoutError((tmp_path / "mlflow.log").read_text()[-3000:])
    yield url, proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_registry_down_mid_run_and_at_cold_start(project: Settings, two_versions: tuple[str, str], mlflow_server, tmp_path: Path) -> None:
    url, proc = mlflow_server
    old, _ = two_versions
    over_http = {"MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url, "ZOO_POLL_SECONDS": POLL}
    settings = Settings.from_env({**os.environ, **over_http})
    with running_server(settings, task="recommend", log=tmp_path / "a.log", extra_env=over_http) as svc:
        wait_ready(svc)
        assert served_version(svc) == old
        os.killpg(proc.pid, signal.SIGKILL)  # the registry goes away
        proc.wait()
        time.sleep(4)
        for _ in range(20):
            assert httpx.post(f"{svc}/rate", json={"user_ids": [100], "movie_ids": [1000]}).status_code == 200
        assert httpx.get(f"{svc}/readyz").status_code == 200
        assert 'zoo_registry_errors_total{task="recommend"}' in httpx.get(f"{svc}/metrics").text

    # Cold start with the registry still down: the last verified champion comes from the cache.
    with running_server(settings, task="recommend", log=tmp_path / "b.log", extra_env=over_http) as svc:
        wait_ready(svc)
        assert served_version(svc) == old

    # Cold start with the registry down and nothing cached: not ready, and it says why.
    empty = {**over_http, "ZOO_HOME": str(tmp_path / "empty-home")}
    with running_server(Settings.from_env({**os.environ, **empty}), task="recommend", log=tmp_path / "c.log", extra_env=empty) as svc:
        time.sleep(1)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                r = httpx.post(f"{svc}/rate", json={"user_ids": [1], "movie_ids": [1]}, timeout=5)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert r.status_code == 503
        assert "no verified champion cached" in r.json()["error"]
        assert httpx.get(f"{svc}/readyz").status_code == 503
