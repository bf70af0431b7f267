"""Bearer tokens on a real ``bentoml serve``: task and inference routes ask for one, health stays open, ``/metrics`` has its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import live_server

from models.settings import Settings

pytestmark = pytest.mark.slow

TOKEN = "zoo-test-token-0123456789abcdef"
OTHER = "zoo-test-token-second-caller-42"
METRICS = "zoo-test-metrics-token-98765432"
PAIRS = {"user_ids": [100], "movie_ids": [1000]}


@pytest.fixture(scope="module")
def guarded(project: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("auth")
    tokens = root / "tokens"
    tokens.write_text(f"# one token a line\n{TOKEN}\n\n{OTHER}\n")
    log = root / "serve.log"
    # Its own BENTOML_HOME: a starting server clears the Prometheus files there, which the session's server writes too.
    env = {"ZOO_API_TOKENS_FILE": str(tokens), "ZOO_METRICS_TOKENS": METRICS, "BENTOML_HOME": str(root / "bentoml")}
    with live_server(project, log, task="recommend", env=env) as url:
        yield url, log


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_task_route_asks_for_a_token(guarded: tuple[str, Path]) -> None:
    url, _ = guarded
    for headers in ({}, bearer("not-a-token-of-this-server"), {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"}, bearer(TOKEN[:-1])):
        r = httpx.post(f"{url}/rate", json=PAIRS, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer") and "bearer token" in r.json()["error"]
    for token in (TOKEN, OTHER):
        r = httpx.post(f"{url}/rate", json=PAIRS, headers=bearer(token), timeout=30)
        assert r.status_code == 200, r.text
        assert len(r.json()["ratings"]) == 1


def test_bentoml_client_with_a_token(guarded: tuple[str, Path]) -> None:
    import bentoml

    url, _ = guarded
    with bentoml.SyncHTTPClient(url, token=TOKEN, timeout=60) as client:
        assert len(client.rate(user_ids=[100, 101], movie_ids=[1000, 1001])["ratings"]) == 2


def test_the_inference_protocol_asks_too(guarded: tuple[str, Path]) -> None:
    url, _ = guarded
    assert httpx.get(f"{url}/v2/models/recommend", timeout=30).status_code == 401
    assert httpx.get(f"{url}/v2/models/no-such-model", timeout=30).status_code == 401  # nothing learnt without a token
    assert httpx.get(f"{url}/v2/models/recommend", headers=bearer(TOKEN), timeout=30).status_code == 200


def test_health_stays_open_and_metrics_has_its_own_token(guarded: tuple[str, Path]) -> None:
    url, _ = guarded
    for path in ("/livez", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert httpx.get(f"{url}{path}", timeout=30).status_code == 200, path
    assert httpx.get(f"{url}/metrics", timeout=30).status_code == 401
    assert httpx.get(f"{url}/metrics", headers=bearer(TOKEN), timeout=30).status_code == 401  # an API token is not a metrics token
    metrics = httpx.get(f"{url}/metrics", headers=bearer(METRICS), timeout=30)
    assert metrics.status_code == 200
    refused = {line.split("{")[1].split("}")[0]: float(line.split()[-1]) for line in metrics.text.splitlines() if line.startswith("zoo_unauthorized_requests_total{")}
    assert refused['route="recommend"'] >= 1 and refused['route="metrics"'] >= 2


def test_no_token_is_logged(guarded: tuple[str, Path]) -> None:
    url, log = guarded
    httpx.post(f"{url}/rate", json=PAIRS, headers=bearer(TOKEN), timeout=30)
    httpx.post(f"{url}/rate", json=PAIRS, headers=bearer(f"{TOKEN}-wrong"), timeout=30)
    text = log.read_text()
    assert "/rate" in text  # the access log is on, and the requests are in it
    for secret in (TOKEN, OTHER, METRICS):
        assert secret not in text
