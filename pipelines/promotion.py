"""Promotion with gates, and rollback: who may move the ``champion`` alias, and what is recorded."""

from __future__ import annotations

import getpass
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import Blocked
from models.settings import Settings
from models.store import audit, light
from models.store.champion import move_champion
from models.store.names import CHAMPION, Tag

if TYPE_CHECKING:  # gates load models (ONNX Runtime) and MLflow; a rollback and the history need neither
    from models.onnx_model import OnnxModel
    from models.task import PromotionPolicy


class PromotionBlocked(Blocked, RuntimeError):
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


def operator(settings: Settings, name: str | None = None) -> str:
    """Who is acting: ``name`` when given, else ``ZOO_OPERATOR``, else the OS user."""
    return name or settings.operator or getpass.getuser()


def check_gates(
    settings: Settings,
    task: str,
    version: str,
    policy: PromotionPolicy | None = None,
    allow_signature_change: bool = False,
    latency_runs: int = 50,
) -> list[Gate]:
    """Evaluate every gate for promoting ``version`` of ``task`` over the current champion."""
    from models.onnx_model import ChecksumError, OnnxModel
    from models.registry import get_task
    from models.store.connect import client
    from models.store.reading import by_alias, checksums, download, load_version

    t = get_task(task)
    policy = policy or t.promotion
    c = client(settings)
    mv = c.get_model_version(task, version)
    champion = by_alias(c, task, CHAMPION)
    gates: list[Gate] = []

    def metric(version_: object, name: str) -> float | None:
        run_id = getattr(version_, "run_id", None)
        return c.get_run(run_id).data.metrics.get(name) if run_id else None

    value = metric(mv, t.metric_name)
    best = metric(champion, t.metric_name) if champion else None
    how = ""
    if champion is not None and value is not None and str(champion.version) != str(mv.version):
        from pipelines.comparison import compare

        compared = compare(settings, task, mv, champion, lambda v: metric(v, t.metric_name))
        value, best, how = compared.candidate, compared.champion, f"; {compared.how}"
    if value is None:
        gates.append(Gate("metric", False, f"version {version} has no {t.metric_name} logged"))
    elif best is None or champion is None:
        gates.append(Gate("metric", True, f"{t.metric_name} {value:.4f}; no champion to compare with"))
    else:
        ok = value >= best - policy.tolerance if t.higher_is_better else value <= best + policy.tolerance
        gates.append(Gate("metric", ok, f"{t.metric_name} {value:.4f} vs champion v{champion.version} {best:.4f} (tolerance {policy.tolerance}){how}"))

    model: OnnxModel | None = None
    diff = metric(mv, "onnx_max_abs_diff")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = download(settings, c, mv, root=Path(tmp))
            model = OnnxModel.load(folder, checksums(mv), version=str(mv.version))
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
        current = load_version(settings, task, champion.version)
        same, detail = same_signature(current.spec, model.spec)
        if not same and allow_signature_change:
            detail += " (change declared)"
        gates.append(Gate("signature", same or allow_signature_change, detail))
    gates.append(online_gate(settings, task, version, None if champion is None else str(champion.version), policy))
    return gates


def online_gate(settings: Settings, task: str, version: str, champion: str | None, policy: PromotionPolicy) -> Gate:
    """Where the services shadowed ``version`` against the champion: enough compared requests, agreement within policy."""
    from models.registry import get_serving
    from models.serving import MEASURES, ONLINE_LIMITS
    from pipelines import live

    try:
        figures = live.shadow(settings, task)
    except live.LiveUnavailable as exc:
        return Gate("online", False, f"the shadow figures could not be read: {exc}")
    if figures is None:
        return Gate("online", True, "no live figures (ZOO_METRICS_URL is not set): offline gates only")
    mine = [f for f in figures if f.challenger_version == str(version) and (champion is None or f.champion_version == champion)]
    if not mine:
        return Gate("online", True, f"version {version} was not shadowed against the champion: offline gates only")
    measure = get_serving(task).shadow_measure
    what, higher = MEASURES[measure]
    limit = policy.online_limit if policy.online_limit is not None else ONLINE_LIMITS[measure]
    compared = sum(f.compared for f in mine)
    scored = [f for f in mine if f.agreement is not None]
    weight = sum(f.compared for f in scored)
    agreement = sum(f.agreement * f.compared for f in scored) / weight if weight else None  # type: ignore[operator]
    detail = f"{int(compared)} requests shadowed (at least {policy.online_min_requests}); {what} "
    if agreement is None or compared < policy.online_min_requests:
        return Gate("online", False, detail + ("not measured" if agreement is None else f"{agreement:.4g}") + " so far")
    ok = agreement >= limit if higher else agreement <= limit
    return Gate("online", ok, detail + f"{agreement:.4g} ({'at least' if higher else 'at most'} {limit:g})")


def same_signature(champion: dict[str, Any], candidate: dict[str, Any]) -> tuple[bool, str]:
    """Whether a candidate's spec can replace the champion's for every caller, and what differs.

    The same inputs, and the champion's outputs first and unchanged: an output added after them (classify's
    ``cam``) changes nothing for callers of the others.
    """
    before, after = champion["outputs"], candidate["outputs"]
    if champion["inputs"] != candidate["inputs"] or after[: len(before)] != before:
        return False, "inputs or outputs differ from the champion's"
    added = after[len(before) :]
    if added:
        return True, f"inputs and outputs match the champion's; adds output(s) {', '.join(t['name'] for t in added)}"
    return True, "inputs and outputs match the champion's"


def p95_latency_ms(model: OnnxModel, runs: int = 50) -> float:
    """p95 of ``runs`` timed single-example runs on the reference input, after warming up."""
    import numpy as np

    from models.onnx_model import reference_inputs

    x = reference_inputs(model.spec)
    model.warm()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(*x)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 95))


def history(settings: Settings, task: str) -> list[dict[str, object]]:
    """Every promotion and rollback of ``task``, oldest first, from the shared audit trail."""
    return audit.history(settings, task)


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
) -> tuple[audit.Record, list[Gate]]:
    """Check the gates and move ``champion`` to ``version`` (in the prod registry with ``to="prod"``)."""
    if not reason.strip():
        raise ValueError("a promotion needs a reason (--reason)")
    if to not in ("dev", "prod"):
        raise ValueError(f"--to must be dev or prod, not {to!r}")
    store = light.connect(settings, settings.registry_uri)
    store.version(task, version)  # a clear error for an unknown version
    gates = check_gates(settings, task, version, policy, allow_signature_change)
    if not all(g.passed for g in gates) and not force:
        raise PromotionBlocked(gates)
    forced = not all(g.passed for g in gates)
    who = operator(settings, operator_name)
    found = [asdict(g) for g in gates]
    if to == "dev":
        return move_champion(settings, store, task, task, version, "promote", reason, forced, found, "dev", who), gates
    from models.store.writing import copy_to_prod

    name, prod_version = copy_to_prod(settings, task, version)
    prod = light.connect(settings, settings.prod_registry_uri)
    return move_champion(settings, prod, name, task, prod_version, "promote", reason, forced, found, "prod", who), gates


def rollback(settings: Settings, task: str, reason: str = "rollback") -> audit.Record:
    """Point ``champion`` back at the champion before the current one."""
    store = light.connect(settings, settings.registry_uri)
    current = store.by_alias(task, CHAMPION)
    if current is None:
        raise LookupError(f"task {task!r} has no champion to roll back")
    previous = current.tags.get(Tag.PREVIOUS_CHAMPION)
    if not previous:
        raise LookupError(f"{task} v{current.version} has no previous champion recorded; promote a version instead")
    return move_champion(settings, store, task, task, previous, "rollback", reason, False, [], "dev", operator(settings))
