"""Promotion with gates, rollback, the audit trail, and copying to the production registry."""

from __future__ import annotations

import getpass
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from models import modelstore
from models.modelstore import CHAMPION
from models.onnx_model import ChecksumError, OnnxModel, reference_inputs
from models.registry import get_task
from models.settings import Settings
from models.task import PromotionPolicy

PREVIOUS_TAG = "zoo.previous_champion"


class PromotionBlocked(RuntimeError):
    """A gate failed and ``--force`` was not given."""

    def __init__(self, gates: list["Gate"]) -> None:
        failed = ", ".join(f"{g.name} ({g.detail})" for g in gates if not g.passed)
        super().__init__(f"promotion blocked by failing gates: {failed}")
        self.gates = gates


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Record:
    """One line of the audit log."""

    action: str
    task: str
    version: str
    previous: str | None
    registry: str
    operator: str
    at: str
    reason: str
    forced: bool
    gates: list[dict[str, Any]]


def operator(name: str | None = None) -> str:
    """Who is acting: ``name`` when given, else ``ZOO_OPERATOR``, else the OS user."""
    return name or os.environ.get("ZOO_OPERATOR") or getpass.getuser()


def _metric(c: MlflowClient, mv: ModelVersion, name: str) -> float | None:
    return c.get_run(mv.run_id).data.metrics.get(name) if mv.run_id else None


def check_gates(
    settings: Settings,
    task: str,
    version: str,
    policy: PromotionPolicy | None = None,
    allow_signature_change: bool = False,
    latency_runs: int = 50,
) -> list[Gate]:
    """Evaluate every gate for promoting ``version`` of ``task`` over the current champion."""
    t = get_task(task)
    policy = policy or t.promotion
    c = modelstore.client(settings)
    mv = c.get_model_version(task, version)
    champion = modelstore.by_alias(c, task, CHAMPION)
    gates: list[Gate] = []

    value = _metric(c, mv, t.metric_name)
    best = _metric(c, champion, t.metric_name) if champion else None
    if value is None:
        gates.append(Gate("metric", False, f"version {version} has no {t.metric_name} logged"))
    elif best is None:
        gates.append(Gate("metric", True, f"{t.metric_name} {value:.4f}; no champion to compare with"))
    else:
        ok = value >= best - policy.tolerance if t.higher_is_better else value <= best + policy.tolerance
        gates.append(Gate("metric", ok, f"{t.metric_name} {value:.4f} vs champion v{champion.version} {best:.4f} (tolerance {policy.tolerance})"))

    model: OnnxModel | None = None
    diff = _metric(c, mv, "onnx_max_abs_diff")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = modelstore.download(settings, c, mv, root=Path(tmp))
            model = OnnxModel.load(folder, modelstore.checksums(mv), version=str(mv.version))
        if diff is None or diff > policy.max_abs_diff:
            gates.append(Gate("integrity", False, f"ONNX parity max |diff| {diff} (limit {policy.max_abs_diff})"))
        else:
            gates.append(Gate("integrity", True, f"sha256 of model.onnx and spec.json match; parity max |diff| {diff:.2g}"))
    except (ChecksumError, OSError) as exc:
        gates.append(Gate("integrity", False, str(exc)))

    if model is None:
        gates.append(Gate("latency", False, "not measured: the model could not be loaded"))
    else:
        p95 = p95_latency_ms(model, latency_runs)
        gates.append(Gate("latency", p95 <= policy.latency_budget_ms, f"p95 {p95:.2f} ms at batch 1 (budget {policy.latency_budget_ms} ms)"))

    if model is None:
        gates.append(Gate("signature", False, "not checked: the model could not be loaded"))
    elif champion is None:
        gates.append(Gate("signature", True, "no champion to compare with"))
    else:
        current = modelstore.load_version(settings, task, champion.version)
        same = [current.spec[k] for k in ("inputs", "outputs")] == [model.spec[k] for k in ("inputs", "outputs")]
        detail = "inputs and outputs match the champion's" if same else "inputs or outputs differ from the champion's"
        if not same and allow_signature_change:
            detail += " (change declared)"
        gates.append(Gate("signature", same or allow_signature_change, detail))
    return gates


def p95_latency_ms(model: OnnxModel, runs: int = 50) -> float:
    """p95 of ``runs`` timed single-example runs on the reference input, after warming up."""
    x = reference_inputs(model.spec)
    model.warm()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(*x)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 95))


def audit_log(settings: Settings) -> Path:
    return settings.home / "audit" / "promotions.jsonl"


def _append(settings: Settings, record: Record) -> None:
    path = audit_log(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(asdict(record), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def history(settings: Settings, task: str) -> list[dict[str, Any]]:
    """Every promotion and rollback of ``task``, oldest first."""
    path = audit_log(settings)
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["task"] == task]


def _move_alias(
    settings: Settings,
    c: MlflowClient,
    name: str,
    task: str,
    version: str,
    action: str,
    reason: str,
    forced: bool,
    gates: list[Gate],
    registry: str,
    operator_name: str | None = None,
) -> Record:
    """Point ``champion`` of registered model ``name`` at ``version``, tag it and audit it.

    The alias moves only after every check; if tagging fails after it moved, it
    is put back, so a failure leaves the aliases as they were.
    """
    previous = modelstore.by_alias(c, name, CHAMPION)
    prev_version = None if previous is None else str(previous.version)
    record = Record(
        action=action,
        task=task,
        version=str(version),
        previous=prev_version,
        registry=registry,
        operator=operator(operator_name),
        at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        reason=reason,
        forced=forced,
        gates=[asdict(g) for g in gates],
    )
    c.set_registered_model_alias(name, CHAMPION, version)
    try:
        tags = {
            f"zoo.{action}.by": record.operator,
            f"zoo.{action}.at": record.at,
            f"zoo.{action}.reason": reason,
            f"zoo.{action}.forced": str(forced).lower(),
            f"zoo.{action}.gates": json.dumps(record.gates)[:4900],
        }
        if action == "promote" and prev_version is not None and prev_version != str(version):
            tags[PREVIOUS_TAG] = prev_version
        for key, value in tags.items():
            c.set_model_version_tag(name, str(version), key, value)
        _append(settings, record)
    except BaseException:
        if prev_version is None:
            c.delete_registered_model_alias(name, CHAMPION)
        else:
            c.set_registered_model_alias(name, CHAMPION, prev_version)
        raise
    return record


def promote(
    settings: Settings,
    task: str,
    version: str,
    reason: str,
    force: bool = False,
    allow_signature_change: bool = False,
    to: str = "dev",
    policy: PromotionPolicy | None = None,
    operator_name: str | None = None,
) -> tuple[Record, list[Gate]]:
    """Check the gates and move ``champion`` to ``version`` (in the prod registry with ``to="prod"``)."""
    if not reason.strip():
        raise ValueError("a promotion needs a reason (--reason)")
    c = modelstore.client(settings)
    c.get_model_version(task, version)  # a clear error for an unknown version
    gates = check_gates(settings, task, version, policy, allow_signature_change)
    if not all(g.passed for g in gates) and not force:
        raise PromotionBlocked(gates)
    forced = not all(g.passed for g in gates)
    if to == "dev":
        return _move_alias(settings, c, task, task, version, "promote", reason, forced, gates, "dev", operator_name), gates
    if to != "prod":
        raise ValueError(f"--to must be dev or prod, not {to!r}")
    prod, name, prod_version = copy_to_prod(settings, task, version)
    return _move_alias(settings, prod, name, task, prod_version, "promote", reason, forced, gates, "prod", operator_name), gates


def rollback(settings: Settings, task: str, reason: str = "rollback") -> Record:
    """Point ``champion`` back at the champion before the current one."""
    c = modelstore.client(settings)
    current = modelstore.by_alias(c, task, CHAMPION)
    if current is None:
        raise LookupError(f"task {task!r} has no champion to roll back")
    previous = current.tags.get(PREVIOUS_TAG)
    if not previous:
        raise LookupError(f"{task} v{current.version} has no previous champion recorded; promote a version instead")
    return _move_alias(settings, c, task, task, previous, "rollback", reason, False, [], "dev")


def prod_registry_uri(settings: Settings) -> str:
    return os.environ.get("ZOO_PROD_REGISTRY_URI") or settings.registry_uri


def prod_model_name(task: str) -> str:
    return os.environ.get("ZOO_PROD_MODEL_PREFIX", "prod.") + task


def copy_to_prod(settings: Settings, task: str, version: str) -> tuple[MlflowClient, str, str]:
    """Copy a dev version into the production registry; returns (client, model name, new version)."""
    dev = modelstore.client(settings)
    mv = dev.get_model_version(task, version)
    target_uri = prod_registry_uri(settings)
    name = prod_model_name(task)
    tags = {k: v for k, v in mv.tags.items() if k.startswith(("sha256.", "data_hash", "git_commit", "run_id", "task"))}
    tags["zoo.source"] = f"{settings.registry_uri}#{task}/{version}"
    if target_uri == settings.registry_uri:
        prod = dev
        copied = dev.copy_model_version(f"models:/{task}/{version}", name)
        for key, value in tags.items():
            dev.set_model_version_tag(name, copied.version, key, value)
        return prod, name, str(copied.version)
    # Different servers: re-upload the verified artifacts into the prod server.
    import mlflow

    prod = MlflowClient(tracking_uri=target_uri, registry_uri=target_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = modelstore.download(settings, dev, mv, root=Path(tmp))
        OnnxModel.load(folder, modelstore.checksums(mv))  # verify before copying
        exp = prod.get_experiment_by_name("course-zoo-promotions")
        exp_id = exp.experiment_id if exp else prod.create_experiment(
            "course-zoo-promotions", artifact_location=(settings.home / "prod-artifacts").as_uri() if target_uri.startswith("sqlite") else None
        )
        run = prod.create_run(exp_id, run_name=f"{task}-v{version}", tags=tags)
        for name_, rel in modelstore.ARTIFACT_PATHS.items():
            prod.log_artifact(run.info.run_id, str(folder / name_), artifact_path=str(Path("model") / Path(rel).parent) if "/" in rel else "model")
        prod.set_terminated(run.info.run_id)
    try:
        prod.create_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{prod.get_run(run.info.run_id).info.artifact_uri}/model"
    created = prod.create_model_version(name, source, run_id=run.info.run_id, tags=tags)
    return prod, name, str(created.version)
