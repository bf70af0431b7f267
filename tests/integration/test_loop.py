"""The live loop on a real ``bentoml serve`` of ``recommend`` with a champion and a challenger registered:
drift, shadow, canary (and its automatic rollback), captured traffic with feedback becoming a new data version."""

from __future__ import annotations

import csv
import random
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from conftest import live_server, make_project, project_env, zoo_cli
from prometheus_client.parser import text_string_to_metric_families

from models.settings import Settings
from models.task import PromotionPolicy

pytestmark = pytest.mark.slow
LIVE_ENV = {
    "ZOO_WORKERS": "1",
    "ZOO_POLL_SECONDS": "0.5",
    "ZOO_SHADOW_SHARE": "1",
    "ZOO_CANARY_SHARE": "0.3",
    "ZOO_CAPTURE_SHARE": "1",
    "ZOO_DRIFT_WINDOW": "500",
    "ZOO_DRIFT_MIN_ROWS": "300",
}


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, mirror: Path, prefect_harness: None) -> Iterator[tuple[Settings, str, str]]:
    """A project whose recommend has a champion (v1) and a challenger (v2)."""
    from pipelines import ingest, promotion
    from pipelines.flows import retrain

    with project_env(make_project(tmp_path_factory.mktemp("loop"), mirror)) as settings:
        ingest.ingest(settings, ["movie_lens_sample"])  # recommend's data only
        champion = retrain("recommend", "tiny", progress=False).version
        promotion.promote(settings, "recommend", champion, reason="test fixture")
        challenger = retrain("recommend", "tiny", progress=False, force=True).version
        yield settings, champion, challenger


@pytest.fixture(scope="module")
def server(loop: tuple[Settings, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = loop[0]
    with live_server(settings, tmp_path_factory.mktemp("live") / "serve.log", task="recommend", env=LIVE_ENV) as url:
        yield url


exported: set[str] = set()
"""Metric names the loop's services exported (the last test checks the rules' and dashboard's)."""


def samples_names(url: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text) for s in f.samples}


def samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {tuple(sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}


def wait_for(check, timeout: float = 20.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def training_pairs(settings: Settings, n: int) -> list[tuple[int, int]]:
    """``n`` (user, movie) pairs of the training data, in random order (the file is sorted by user)."""
    with (settings.project_root / "data" / "movie_lens_sample" / "ratings.csv").open() as f:
        pairs = [(int(r["userId"]), int(r["movieId"])) for r in csv.DictReader(f)]
    random.Random(0).shuffle(pairs)
    return pairs[:n]


def test_a_drifted_input_stream_raises_the_score_and_starts_exactly_one_retrain(loop: tuple[Settings, str, str], server: str) -> None:
    from pipelines import drift

    settings = loop[0]
    pairs = training_pairs(settings, 500)
    assert len(pairs) >= 300
    for start in range(0, len(pairs), 50):  # the inputs the models were trained on
        users, movies = zip(*pairs[start : start + 50])
        assert httpx.post(f"{server}/rate", json={"user_ids": list(users), "movie_ids": list(movies)}).status_code == 200
    score = lambda: samples(server, "zoo_drift_score").get((("feature", "user"), ("task", "recommend")))  # noqa: E731
    calm = wait_for(score)
    assert calm is not None and calm < settings.loop.drift_threshold, calm
    for start in range(0, 500, 50):  # users the models never saw
        unknown = [10**6 + start + i for i in range(50)]
        assert httpx.post(f"{server}/rate", json={"user_ids": unknown, "movie_ids": [pairs[0][1]] * 50}).status_code == 200
    drifted = wait_for(lambda: (score() or 0) > settings.loop.drift_threshold and score())
    assert drifted and drifted > settings.loop.drift_threshold, drifted

    started: list[tuple[str, str]] = []
    watched = replace(settings, loop=replace(settings.loop, metrics_url=(f"{server}/metrics",)))
    first = drift.check(watched, ["recommend"], lambda task, trigger: started.append((task, trigger)))
    again = drift.check(watched, ["recommend"], lambda task, trigger: started.append((task, trigger)))
    assert [d.started for d in first] == [True] and [d.started for d in again] == [False], (first, again)
    assert len(started) == 1 and started[0][0] == "recommend" and started[0][1].startswith("drift: user"), started
    assert "cool-down" in again[0].why


def test_shadow_compares_every_champion_answer_and_the_caller_gets_the_champion(loop: tuple[Settings, str, str], server: str) -> None:
    from pipelines import live, promotion
    from services.traffic import bucket

    settings, champion, challenger = loop
    users = [u for u, _ in training_pairs(settings, 400)]
    served = []
    for user in users[:60]:
        r = httpx.post(f"{server}/rate", json={"user_ids": [user], "movie_ids": [1]})
        assert r.status_code == 200 and r.json()["model_version"] == r.headers["x-model-version"]
        served.append(r.headers["x-model-version"])
    # every caller outside the canary's share of users gets the champion, shadowed or not
    canaried = [bucket("recommend", f"user:{u}") < float(LIVE_ENV["ZOO_CANARY_SHARE"]) for u in users[:60]]
    assert served == [challenger if c else champion for c in canaried] and champion in served
    key = (("challenger_version", challenger), ("champion_version", champion), ("task", "recommend"))
    compared = wait_for(lambda: (samples(server, "zoo_shadow_requests_total").get(key, 0) >= served.count(champion)) and samples(server, "zoo_shadow_requests_total")[key])
    assert compared >= served.count(champion), compared
    agreement = samples(server, "zoo_shadow_agreement_sum")[key] / samples(server, "zoo_shadow_agreement_count")[key]
    assert 0 <= agreement < 0.5, agreement  # mean |rating difference| of two tiny models of the same data

    watched = replace(settings, loop=replace(settings.loop, metrics_url=(f"{server}/metrics",)))
    [figures] = [f for f in live.shadow(watched, "recommend") if f.challenger_version == challenger]
    assert figures.compared >= compared and figures.agreement == pytest.approx(agreement, rel=1e-6)
    passed = promotion.online_gate(watched, "recommend", challenger, champion, PromotionPolicy(online_min_requests=10))
    assert passed.passed and "mean absolute difference" in passed.detail, passed
    too_few = promotion.online_gate(watched, "recommend", challenger, champion, PromotionPolicy(online_min_requests=10**6))
    strict = promotion.online_gate(watched, "recommend", challenger, champion, PromotionPolicy(online_min_requests=10, online_limit=-1.0))
    assert not too_few.passed and not strict.passed, (too_few, strict)
    offline = promotion.online_gate(settings, "recommend", challenger, champion, PromotionPolicy())
    assert offline.passed and "ZOO_METRICS_URL is not set" in offline.detail


def test_canary_splits_by_user_within_five_points_and_stays_sticky(loop: tuple[Settings, str, str], server: str) -> None:
    _, champion, challenger = loop
    versions = {}
    with httpx.Client(base_url=server) as http:
        for user in range(2000, 2300):
            r = http.post("/recommend", json={"user_id": user, "k": 1})
            assert r.status_code == 200, r.text
            versions[user] = r.headers["x-model-version"]
        share = sum(v == challenger for v in versions.values()) / len(versions)
        assert abs(share - 0.3) <= 0.05, share
        for user in list(versions)[:40]:  # the same users again: the same side
            assert http.post("/recommend", json={"user_id": user, "k": 1}).headers["x-model-version"] == versions[user]


def test_a_failing_canary_rolls_itself_back_and_no_request_fails(loop: tuple[Settings, str, str], tmp_path: Path) -> None:
    from models.store import audit

    settings, champion, challenger = loop
    env = {**LIVE_ENV, "ZOO_SHADOW_SHARE": "0", "ZOO_CAPTURE_SHARE": "0", "ZOO_CANARY_SHARE": "0.5", "ZOO_SERVE_FAILPOINTS": "challenger"}
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")  # its own Prometheus folder: a serve empties the one it starts with
    with live_server(settings, tmp_path / "serve.log", task="recommend", env=env) as url:
        answered = []
        with httpx.Client(base_url=url) as http:
            for user in range(3000, 3100):
                r = http.post("/recommend", json={"user_id": user, "k": 1})
                assert r.status_code == 200, r.text  # a failed challenger request is answered by the champion
                answered.append(r.headers["x-model-version"])
        assert set(answered) == {champion}
        assert samples(url, "zoo_canary_rollbacks_total") == {(("challenger_version", challenger), ("task", "recommend")): 1.0}
        assert samples(url, "zoo_canary_active") == {(("task", "recommend"),): 0.0}
        errors = samples(url, "zoo_canary_requests_total")[(("challenger_version", challenger), ("outcome", "error"), ("task", "recommend"))]
        assert errors == settings.loop.canary_min_requests  # judged once the window had enough, then stopped at once
        exported.update(samples_names(url))
        records = wait_for(lambda: [r for r in audit.history(settings, "recommend") if r["action"] == "canary-rollback"])
        assert records and records[0]["version"] == challenger and "error rate" in records[0]["reason"], records


def test_captured_requests_with_feedback_become_a_data_version_a_retrain_trains_on(loop: tuple[Settings, str, str], server: str) -> None:
    from pipelines.flows import retrain

    settings = loop[0]
    pairs = training_pairs(settings, 3)
    r = httpx.post(f"{server}/rate", json={"user_ids": [u for u, _ in pairs], "movie_ids": [m for _, m in pairs]})
    request_id = r.headers["x-request-id"]
    bad = [
        ({"request_id": request_id, "outcome": [4.0, 99, 3.5]}, 400, "bad_rating"),
        ({"request_id": request_id, "outcome": [4.0]}, 400, "length_mismatch"),
        ({"request_id": "f" * 32, "outcome": 4.0}, 404, "not_captured"),
        ({"request_id": "../../etc/passwd", "outcome": 4.0}, 400, None),
    ]
    for body, status, reason in bad:
        answer = httpx.post(f"{server}/feedback", json=body)
        assert answer.status_code == status and "error" in answer.json(), (body, answer.text)
        assert reason is None or answer.json()["reason"] == reason, answer.text
    good = httpx.post(f"{server}/feedback", json={"request_id": request_id, "outcome": [4.5, 1.0, 3.0]})
    assert good.status_code == 200 and good.json()["outcomes"] == 3, good.text
    feedback = settings.home / "capture" / "recommend" / "feedback"
    assert wait_for(lambda: any(request_id in p.read_text() for p in feedback.glob("*.jsonl")))

    before = (settings.project_root / "data.dvc").read_text()
    exported = zoo_cli("capture", "export", "recommend")
    assert exported.exit_code == 0 and "new data version" in exported.output, exported.output
    assert (settings.project_root / "data.dvc").read_text() != before
    rows = (settings.project_root / "data" / "movie_lens_sample" / "ratings.csv").read_text().splitlines()[-3:]
    assert [tuple(row.split(",")[:3]) for row in rows] == [(str(u), str(m), str(x)) for (u, m), x in zip(pairs, (4.5, 1.0, 3.0))]
    nothing = zoo_cli("capture", "export", "recommend")
    assert nothing.exit_code == 0 and "nothing new" in nothing.output, nothing.output
    assert not retrain("recommend", "tiny", progress=False).skipped  # the new data version is trained on
    assert retrain("recommend", "tiny", progress=False).skipped


def test_every_live_loop_series_the_rules_and_dashboard_query_is_exported(server: str) -> None:
    from test_prometheus import LIVE_LOOP, dashboard_targets, metric_names, rules

    exported.update(samples_names(server))
    queried = {n for r in rules() for n in metric_names(r["expr"])} | {n for _, e in dashboard_targets() for n in metric_names(e)}
    assert LIVE_LOOP <= queried and LIVE_LOOP <= exported, (LIVE_LOOP - queried, LIVE_LOOP - exported)
