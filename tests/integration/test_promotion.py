"""Promotion gates, the audit trail, rollback and the production registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import zoo_cli

from models.settings import Settings
from models.store import audit, connect, reading
from models.store.names import CHALLENGER, CHAMPION, Tag
from models.task import PromotionPolicy
from pipelines import promotion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def versions(project: Settings) -> Iterator[dict[str, str]]:
    """A second recommend version (same config) and a classify version with another input size.

    Restores the session project's aliases afterwards.
    """
    from pipelines.flows import retrain

    c = connect.client(project)
    saved = {(t, a): reading.by_alias(c, t, a) for t in ("classify", "recommend") for a in (CHAMPION, CHALLENGER)}
    rec = retrain("recommend", "tiny", progress=False, force=True)
    cls = retrain("classify", "tiny", overrides={"image_size": 32}, progress=False, force=True)
    yield {
        "recommend_old": str(saved[("recommend", CHAMPION)].version),
        "recommend_new": rec.version,
        "classify_old": str(saved[("classify", CHAMPION)].version),
        "classify_32": cls.version,
    }
    for (task, alias), mv in saved.items():
        c.set_registered_model_alias(task, alias, mv.version)


def champion(settings: Settings, task: str) -> str:
    return str(reading.by_alias(connect.client(settings), task, CHAMPION).version)


def test_a_good_version_passes_every_gate(project: Settings, versions: dict[str, str]) -> None:
    gates = promotion.check_gates(project, "recommend", versions["recommend_new"])
    assert [g.name for g in gates] == ["metric", "integrity", "latency", "signature", "online"]
    assert all(g.passed for g in gates), gates


@pytest.mark.parametrize(
    "gate, policy",
    [
        ("metric", PromotionPolicy(tolerance=-10.0, latency_budget_ms=1000)),  # must beat the champion by 10
        ("latency", PromotionPolicy(tolerance=0.01, latency_budget_ms=1e-6)),
        ("integrity", PromotionPolicy(tolerance=0.01, latency_budget_ms=1000, max_abs_diff=-1.0)),
    ],
)
def test_each_failing_gate_blocks_and_leaves_the_alias(project: Settings, versions: dict[str, str], gate: str, policy: PromotionPolicy) -> None:
    before = champion(project, "recommend")
    with pytest.raises(promotion.PromotionBlocked) as info:
        promotion.promote(project, "recommend", versions["recommend_new"], "try", policy=policy)
    failed = [g.name for g in info.value.gates if not g.passed]
    assert failed == [gate]
    assert champion(project, "recommend") == before


def test_signature_change_must_be_declared(project: Settings, versions: dict[str, str]) -> None:
    c = connect.client(project)
    c.set_registered_model_alias("classify", CHAMPION, versions["classify_old"])
    gates = promotion.check_gates(project, "classify", versions["classify_32"], PromotionPolicy(tolerance=1.0, latency_budget_ms=1000))
    assert [g.name for g in gates if not g.passed] == ["signature"]
    with pytest.raises(promotion.PromotionBlocked):
        promotion.promote(project, "classify", versions["classify_32"], "bigger input", policy=PromotionPolicy(tolerance=1.0, latency_budget_ms=1000))
    record, _ = promotion.promote(
        project, "classify", versions["classify_32"], "bigger input", allow_signature_change=True, policy=PromotionPolicy(tolerance=1.0, latency_budget_ms=1000)
    )
    assert champion(project, "classify") == versions["classify_32"] and not record.forced
    c.set_registered_model_alias("classify", CHAMPION, versions["classify_old"])


def test_force_needs_a_reason_and_is_recorded(project: Settings, versions: dict[str, str]) -> None:
    strict = PromotionPolicy(tolerance=0.01, latency_budget_ms=1e-6)
    with pytest.raises(ValueError, match="reason"):
        promotion.promote(project, "recommend", versions["recommend_new"], "  ", force=True, policy=strict)
    record, gates = promotion.promote(project, "recommend", versions["recommend_new"], "hotfix, latency known", force=True, policy=strict)
    assert record.forced and not all(g.passed for g in gates)
    mv = connect.client(project).get_model_version("recommend", versions["recommend_new"])
    assert mv.tags["zoo.promote.forced"] == "true" and mv.tags["zoo.promote.reason"] == "hotfix, latency known"
    assert mv.tags[Tag.PREVIOUS_CHAMPION] == versions["recommend_old"]
    last = promotion.history(project, "recommend")[-1]
    assert last["forced"] is True and last["version"] == versions["recommend_new"] and last["operator"]


def test_rollback_returns_to_the_previous_champion(project: Settings, versions: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    alice = replace(project, operator="ops-alice")  # ZOO_OPERATOR=ops-alice
    promotion.promote(alice, "recommend", versions["recommend_new"], "new data")
    assert champion(project, "recommend") == versions["recommend_new"]
    record = promotion.rollback(alice, "recommend", "bad online metrics")
    assert champion(project, "recommend") == versions["recommend_old"]
    assert record.action == "rollback" and record.previous == versions["recommend_new"] and record.operator == "ops-alice"
    result = zoo_cli("history", "recommend", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["action"] for r in rows[-2:]] == ["promote", "rollback"]
    assert rows[-1]["reason"] == "bad online metrics"
    table = zoo_cli("history", "recommend")  # piped, not a terminal: whole cells, one line per row
    assert table.exit_code == 0, table.output
    line = next(line for line in table.stdout.splitlines() if "bad online metrics" in line)
    assert rows[-1]["at"] in line and "rollback" in line and "ops-alice" in line


def test_a_promotion_failing_halfway_leaves_the_aliases(project: Settings, versions: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    c = connect.client(project)
    c.set_registered_model_alias("recommend", CHAMPION, versions["recommend_old"])
    entries = len(promotion.history(project, "recommend"))

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(audit, "append", disk_full)
    with pytest.raises(OSError):
        promotion.promote(project, "recommend", versions["recommend_new"], "will fail")
    assert champion(project, "recommend") == versions["recommend_old"]
    assert len(promotion.history(project, "recommend")) == entries


def test_corrupted_artifact_is_refused(project: Settings, versions: dict[str, str]) -> None:
    c = connect.client(project)
    mv = c.get_model_version("recommend", versions["recommend_new"])
    stored = Path(c.get_model_version_download_uri("recommend", mv.version).removeprefix("file://")) / "model.onnx"
    original = stored.read_bytes()
    stored.write_bytes(original[:-8] + b"tampered")
    try:
        gates = promotion.check_gates(project, "recommend", mv.version)
        integrity = next(g for g in gates if g.name == "integrity")
        assert not integrity.passed and "sha256" in integrity.detail
    finally:
        stored.write_bytes(original)


def test_promote_to_prod_in_the_same_registry(project: Settings, versions: dict[str, str]) -> None:
    record, _ = promotion.promote(project, "recommend", versions["recommend_old"], "release", to="prod")
    assert record.registry == "prod"
    c = connect.client(project)
    prod = reading.by_alias(c, "prod.recommend", CHAMPION)
    assert prod is not None and str(prod.version) == record.version
    assert prod.tags["sha256.model.onnx"] == c.get_model_version("recommend", versions["recommend_old"]).tags["sha256.model.onnx"]
    model = reading.open_version(project, c, prod)
    assert model.spec["task"] == "recommend"


def test_promote_to_a_separate_prod_registry(project: Settings, versions: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'prod.db'}"
    record, _ = promotion.promote(replace(project, prod_registry_uri=uri), "recommend", versions["recommend_old"], "release", to="prod")
    prod_settings = Settings.from_env({**dict(__import__("os").environ), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri})
    c = connect.client(prod_settings)
    mv = reading.by_alias(c, "prod.recommend", CHAMPION)
    assert mv is not None and str(mv.version) == record.version == "1"
    model = reading.open_version(prod_settings, c, mv)
    assert model.input_names == ["user", "movie"]


def test_the_metric_gate_rescores_both_when_they_were_measured_on_different_data(project: Settings, versions: dict[str, str]) -> None:
    from models.scoring import platform_metric

    c = connect.client(project)
    new, old = versions["recommend_new"], versions["recommend_old"]
    c.set_registered_model_alias("recommend", CHAMPION, old)
    lenient = PromotionPolicy(tolerance=10.0, latency_budget_ms=1000)
    same = promotion.check_gates(project, "recommend", new, lenient)[0]
    assert same.name == "metric" and "stored validation metrics, both measured on task data" in same.detail
    tags = {v: c.get_model_version("recommend", v).tags[Tag.TASK_DATA_HASH] for v in (new, old)}
    try:
        c.set_model_version_tag("recommend", old, Tag.TASK_DATA_HASH, "0" * 64)  # the champion trained on other data
        gate = promotion.check_gates(project, "recommend", new, lenient)[0]
        data = project.project_root / "data"
        a, _ = platform_metric(reading.load_version(project, "recommend", new), "recommend", data, "tiny")
        b, _ = platform_metric(reading.load_version(project, "recommend", old), "recommend", data, "tiny")
        assert "both rescored on the candidate's validation split" in gate.detail
        assert gate.detail.startswith(f"mse {a:.4f} vs champion v{old} {b:.4f}")
        c.set_model_version_tag("recommend", new, Tag.TASK_DATA_HASH, "1" * 64)  # and data/ no longer holds the candidate's
        moved = promotion.check_gates(project, "recommend", new, lenient)[0]
        assert "not the candidate's, so neither was rescored" in moved.detail
    finally:
        for v, value in tags.items():
            c.set_model_version_tag("recommend", v, Tag.TASK_DATA_HASH, value)
