"""The live loop's parts on their own: drift profiles and scores, canary buckets and budgets, the capture store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from models import capture as store
from models.drift import profile, psi, scores
from models.settings import Settings, SettingsError


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    ref = profile({"x": rng.normal(size=5000), "id": rng.integers(1, 50, size=5000)}, {"id"})
    same = scores(ref, {"x": rng.normal(size=2000), "id": rng.integers(1, 50, size=2000)})
    assert same["x"] < 0.05 and same["id"] < 0.05, same
    assert psi(ref["x"], rng.normal(loc=1.0, size=2000)) > 0.25
    assert psi(ref["id"], np.zeros(500)) > 1.0  # every id unknown (index 0): its own bin, empty in training
    assert ref["id"]["values"][0] == 0 and json.loads(json.dumps(ref)) == ref


def test_the_training_profile_and_live_inputs_go_through_one_observe() -> None:
    from models.registry import get_serving
    from models.serving import Limits
    from models.text import SPECIAL_TOKENS

    hooks = get_serving("sentiment")({"vocab": [*SPECIAL_TOKENS, "good"], "labels": ["neg", "pos"], "max_tokens": 8}, Limits())
    tokens = np.array([[2, 9, 0, 1], [2, 0, 0, 0]])
    seen = hooks.observe((tokens, np.array([3, 4])), ["tokens", "lengths"])
    assert seen["length"].tolist() == [3, 4] and seen["unknown_rate"].tolist() == pytest.approx([1 / 3, 3 / 4])
    images = get_serving("segment")
    assert {"red", "green", "blue", "brightness", "contrast"} <= set(images.observe(images.__new__(images), (np.zeros((2, 3, 4, 4)),), ["image"]))


def test_canary_buckets_are_sticky_and_budgets_stop_the_canary_once() -> None:
    from services.traffic import CanaryWindow, bucket

    keys = [f"user:{i}" for i in range(4000)]
    assert [bucket("recommend", k) for k in keys] == [bucket("recommend", k) for k in keys]
    assert abs(np.mean([bucket("recommend", k) < 0.2 for k in keys]) - 0.2) < 0.03
    slow = CanaryWindow("7", size=50, minimum=10, max_error_rate=0.05, p99_ms=100.0)
    assert [slow.record(False, 0.01) for _ in range(9)] == [None] * 9
    assert slow.record(False, 0.5) and "p99" in (slow.stopped or "")
    assert slow.record(True, 0.01) is None  # already stopped: said once
    failing = CanaryWindow("7", size=50, minimum=10, max_error_rate=0.05, p99_ms=1e9)
    reasons = [failing.record(i % 2 == 0, 0.001) for i in range(10)]
    assert reasons[:9] == [None] * 9 and "error rate 50.0%" in (reasons[9] or "")


def test_loop_settings_are_checked() -> None:
    loop = Settings.from_env({"ZOO_SHADOW_SHARE": "0.5", "ZOO_METRICS_URL": "http://a/metrics, http://b/metrics"}).loop
    assert loop.shadow_share == 0.5 and loop.challenger_wanted and loop.metrics_url == ("http://a/metrics", "http://b/metrics")
    for bad in ({"ZOO_CANARY_SHARE": "1.5"}, {"ZOO_CAPTURE_SHARE": "x"}, {"ZOO_SERVE_FAILPOINTS": "champion"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            Settings.from_env(bad)


def test_the_capture_store_is_capped_and_a_failing_disk_loses_records_not_requests(tmp_path: Path) -> None:
    from services.capture import Capture

    settings = Settings.from_env({"ZOO_HOME": str(tmp_path), "ZOO_CAPTURE_SHARE": "1", "ZOO_CAPTURE_MAX_BYTES": str(1 << 16)})
    cap = Capture(settings)
    for i in range(3):  # three old segments of 30 kB each
        segment = cap.root / "classify" / f"2026010{i}T00-1"
        segment.mkdir(parents=True)
        (segment / "x.bin").write_bytes(b"0" * 30_000)
    record, files = cap.record("a" * 32, "classify", "classify", "3", {"image": b"png", "k": 5}, {"image": b"png"}, {"predictions": []})
    cap.offer("classify", record, files)
    cap.drain()
    time.sleep(0.2)
    assert [c.request_id for c in store.records(cap.root, "classify")] == ["a" * 32]
    assert sum(p.stat().st_size for p in cap.root.rglob("*") if p.is_file()) <= 1 << 16  # the oldest segments went
    assert store.find(cap.root, "a" * 32).file("image").read_bytes() == b"png"
    cap.feedback("classify", "a" * 32, ["cat"])
    cap.drain()
    time.sleep(0.2)
    assert [(c.request_id, o) for c, o in store.labelled(cap.root, "classify")] == [("a" * 32, ["cat"])]
    from prometheus_client import REGISTRY

    def dropped() -> float:
        return REGISTRY.get_sample_value("zoo_capture_dropped_total", {"task": "classify", "reason": "disk"}) or 0.0

    before = dropped()
    (tmp_path / "not-a-folder").write_text("")
    cap.root = tmp_path / "not-a-folder" / "capture"  # every write fails: offer() still returns at once
    start = time.perf_counter()
    cap.offer("classify", *cap.record("b" * 32, "classify", "classify", "3", {"k": 1}, {}, {}))
    assert time.perf_counter() - start < 0.1
    cap.drain()
    time.sleep(0.2)
    assert dropped() == before + 1


def test_a_drift_retrain_that_could_not_start_is_tried_again_and_then_cools_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines import drift, live

    settings = Settings.from_env({"ZOO_HOME": str(tmp_path), "ZOO_METRICS_URL": "http://services/metrics", "ZOO_DRIFT_COOLDOWN_S": "60"})
    monkeypatch.setattr(live, "drift_scores", lambda s: {("recommend", "user"): 0.9, ("recommend", "movie"): 0.1, ("sales", "Promo"): 0.05})
    calls: list[str] = []

    def launch(task: str, trigger: str) -> None:
        calls.append(trigger)
        if len(calls) == 1:
            raise RuntimeError("deployment retrain/retrain-recommend not found")  # the scheduler is still registering it

    with pytest.raises(RuntimeError):
        drift.check(settings, ["recommend", "sales"], launch, now=lambda: 1000.0)
    [started] = drift.check(settings, ["recommend", "sales"], launch, now=lambda: 1010.0)
    assert started.started and started.feature == "user" and calls[-1].startswith("drift: user 0.9")
    [cooling] = drift.check(settings, ["recommend", "sales"], launch, now=lambda: 1050.0)
    assert not cooling.started and len(calls) == 2
    [again] = drift.check(settings, ["recommend", "sales"], launch, now=lambda: 1071.0)  # past the cool-down
    assert again.started and len(calls) == 3


def test_shadow_calls_wait_for_no_caller_in_flight_and_are_skipped_past_their_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """The challenger runs only once the worker's callers are gone; a worker that stays busy drops the call, counted."""
    import asyncio
    from types import SimpleNamespace

    from services import traffic
    from services.metrics import zoo_metrics

    monkeypatch.setattr(traffic, "SHADOW_PATIENCE_S", 0.3)
    calls: list[int] = []

    async def handle(endpoint: str, request: dict, seen: object = None) -> dict:
        calls.append(activity.requests)
        return {"rating": [3.0]}

    challenger = SimpleNamespace(handle=handle, version="2", serving=SimpleNamespace(shadow_measure="mad", agreement=lambda e, a, b: 0.5))
    champion = SimpleNamespace(version="1")
    activity = traffic.Activity()
    routing = traffic.Traffic(Settings.from_env({}), activity)
    skipped = zoo_metrics().shadow_skipped.labels("t", "1", "2")

    async def scenario() -> tuple[list[int], list[int], float]:
        activity.enter()  # a caller in flight: the shadow call waits
        routing.shadow("t", "/rate", {}, {"rating": [3.0]}, champion, challenger)  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        waited = list(calls)
        activity.leave()
        await asyncio.sleep(0.05)
        ran = list(calls)
        before = skipped._value.get()
        activity.enter()  # a caller that stays past the patience: skipped, never run
        routing.shadow("t", "/rate", {}, {"rating": [3.0]}, champion, challenger)  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        activity.leave()
        await asyncio.sleep(0.05)
        return waited, ran, skipped._value.get() - before

    waited, ran, dropped = asyncio.run(scenario())
    assert waited == [] and ran == [0], (waited, ran)
    assert calls == [0] and dropped == 1


def test_shadow_work_stays_within_its_share_of_the_workers_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a worker that is never idle long, shadow calls stop once they spent their budget; the rest are skipped."""
    import asyncio
    from types import SimpleNamespace

    from services import traffic
    from services.metrics import zoo_metrics

    monkeypatch.setattr(traffic, "SHADOW_BURST_S", 0.1)
    monkeypatch.setattr(traffic, "SHADOW_TIME_SHARE", 0.01)
    calls: list[float] = []

    async def handle(endpoint: str, request: dict, seen: object = None) -> dict:
        calls.append(time.monotonic())
        await asyncio.sleep(0.04)  # each call costs 40 ms of the worker's time
        return {"rating": [3.0]}

    challenger = SimpleNamespace(handle=handle, version="2", serving=SimpleNamespace(shadow_measure="mad", agreement=lambda e, a, b: 0.5))
    champion = SimpleNamespace(version="1")
    routing = traffic.Traffic(Settings.from_env({}), traffic.Activity())
    skipped = zoo_metrics().shadow_skipped.labels("b", "1", "2")
    before = skipped._value.get()

    async def scenario() -> None:
        for _ in range(12):
            routing.shadow("b", "/rate", {}, {"rating": [3.0]}, champion, challenger)  # type: ignore[arg-type]
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    # a 100 ms budget pays for 3 calls of 40 ms (the third overdraws it); 0.6 s at 1% earns 6 ms more: no fourth
    assert 2 <= len(calls) <= 3, calls  # 2 on a machine slow enough to stretch the 40 ms
    assert skipped._value.get() - before == 12 - len(calls)
