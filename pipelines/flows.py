"""The Prefect flow that retrains one task.

pull-data -> (skip when data and code are unchanged) -> validate-data -> load-data
-> train -> evaluate -> export (with parity) -> register -> (promote, with auto_promote)
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.tasks import exponential_backoff

from models import modelstore
from models.export import ExportResult, check_task_parity, export_onnx, quantize_task
from models.onnx_model import accelerated_providers
from models.plots import learning_curves
from models.registry import get_task
from models.settings import Settings
from models.task import Dataset, TrainConfig
from models.training import FitResult
from pipelines import ingest, tracking

log = logging.getLogger(__name__)
IO_RETRIES = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=2), "cache_policy": NO_CACHE}


class DataValidationError(ValueError):
    """The task's data does not match its declared schema; nothing was trained."""

    def __init__(self, task: str, problems: list[str]) -> None:
        super().__init__(f"{task} data failed validation:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RetrainResult:
    task: str
    version: str | None
    run_id: str | None
    metric_name: str
    metric: float | None
    baseline: float | None
    max_abs_diff: float | None
    skipped: bool = False
    message: str = ""
    promoted: bool = False


_STEP: dict[str, str] = {}
"""Flow run id -> the step it is in, for failure notifications."""


def _step(name: str) -> None:
    from prefect.runtime import flow_run

    _STEP[str(flow_run.id)] = name


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure`` hook: POST the task, run and failed step to ``ZOO_WEBHOOK_URL``."""
    import json
    import os
    import urllib.request
    from datetime import datetime, timezone

    url = os.environ.get("ZOO_WEBHOOK_URL")
    if not url:
        return
    payload = {
        "event": "retrain_failed",
        "task": flow_run.parameters.get("task"),
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "step": _STEP.get(str(flow_run.id), "unknown"),
        "error": state.message,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as exc:  # a notification must not hide the failure it reports
        log.error("failure webhook %s did not answer: %s", url, exc)


@task(name="pull-data", **IO_RETRIES)
def pull_data(settings: Settings) -> ingest.DataVersion:
    """``dvc pull`` the committed data version."""
    return ingest.pull(settings)


@task(name="validate-data", cache_policy=NO_CACHE)
def validate_data(task_name: str, config: TrainConfig, settings: Settings) -> None:
    """Check the task's data against its schema; a violation fails the flow before training."""
    problems = get_task(task_name).validate(settings.project_root / ingest.DATA_DIR, config)
    if problems:
        raise DataValidationError(task_name, problems)


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(task_name: str, config: TrainConfig, settings: Settings) -> Dataset:
    return get_task(task_name).load(settings.project_root / ingest.DATA_DIR, config)


@task(name="train", cache_policy=NO_CACHE)
def train(task_name: str, data: Dataset, config: TrainConfig, settings: Settings, run_id: str, progress: bool) -> FitResult:
    c = modelstore.client(settings)
    return get_task(task_name).train(
        data,
        config,
        checkpoint_dir=settings.checkpoints / task_name / run_id,
        listeners=[tracking.epoch_logger(c, run_id)],
        progress=progress,
    )


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(
    task_name: str, data: Dataset, result: FitResult, config: TrainConfig, settings: Settings, run_id: str
) -> dict[str, float]:
    """Log the metric beside its baselines and extra metrics, the learning curves and the task's figures."""
    t = get_task(task_name)
    c = modelstore.client(settings)
    metrics = {t.metric_name: result.metric, f"baseline_{t.metric_name}": t.baseline(data)}
    metrics.update(t.extra_metrics(result.valid_output, data.valid_y))
    metrics.update({f"baseline_{name}": value for name, value in t.extra_baselines(data, config).items()})
    for key, value in metrics.items():
        c.log_metric(run_id, key, value)
    c.log_figure(run_id, learning_curves(result.history, t.metric_name), "figures/learning_curves.png")
    for name, fig in t.figures(data, result.valid_output).items():
        c.log_figure(run_id, fig, f"figures/{name}")
    return metrics


@task(name="export", cache_policy=NO_CACHE)
def export(task_name: str, data: Dataset, result: FitResult, settings: Settings, run_id: str, out_dir: Path) -> ExportResult:
    """Export to ONNX and check parity on held-out inputs; a failure stops the flow."""
    t = get_task(task_name)
    path = export_onnx(t, result.net, data.spec, data.valid_x, out_dir / "model.onnx")
    checked = check_task_parity(t, result.net, path, data.spec, data)
    c = modelstore.client(settings)
    c.log_metric(run_id, "onnx_max_abs_diff", checked.max_abs_diff)
    accelerated = accelerated_providers()
    c.set_tag(run_id, "onnx_accelerated_providers", ",".join(accelerated) or "none (CPU provider only)")
    if accelerated:  # the same check on the GPU engine the services will build (TensorRT FP16, or CUDA)
        on_gpu = check_task_parity(t, result.net, path, data.spec, data, accelerate=True)
        c.log_metric(run_id, "onnx_gpu_max_abs_diff", on_gpu.max_abs_diff)
    if not t.quantize_ops:
        return checked
    if os.environ.get("ZOO_QUANTIZE", "0") != "1":  # opt-in: see the README's sentiment section
        c.set_tag(run_id, "onnx_quantized", "no: dynamic INT8 is opt-in (ZOO_QUANTIZE=1)")
        return checked
    q = quantize_task(t, path, data)
    m = t.metric_name
    c.log_metric(run_id, f"onnx_float_{m}", q.float_metric)
    c.log_metric(run_id, f"onnx_int8_{m}", q.int8_metric)
    c.log_metric(run_id, "onnx_int8_max_abs_diff", q.max_abs_diff)
    ops = ", ".join(t.quantize_ops)
    if not q.accepted:
        c.set_tag(run_id, "onnx_quantized", f"no: {q.why}; the float model is registered")
        print(f"{task_name}: INT8 not used: {q.why}")
        return checked
    c.set_tag(run_id, "onnx_quantized", f"dynamic INT8 ({ops}): {q.why}")
    c.log_metric(run_id, f"torch_{m}", result.metric)
    c.log_metric(run_id, m, q.int8_metric, step=1)  # the registered (served) model's metric
    print(f"{task_name}: registering the dynamic INT8 model: {q.why}")
    return ExportResult(q.path, checked.max_abs_diff, checked.checked, served_metric=q.int8_metric)


@task(name="register", **IO_RETRIES)
def register(task_name: str, data: Dataset, exported: ExportResult, settings: Settings, run_id: str, tags: dict[str, str]) -> str:
    return tracking.register(settings, get_task(task_name), run_id, exported.path, data.spec, data.valid_x, tags)


@flow(name="retrain", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def retrain(
    task: str,
    config: str = "demo",
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    force: bool = False,
    auto_promote: bool = False,
) -> Any:
    """Retrain ``task`` with a named config and register the result as ``challenger``.

    Ends early (state ``Skipped``) when the champion or challenger was trained on
    the same data and code, unless ``force``. With ``auto_promote`` the new
    version is promoted when it passes the promotion gates.
    """
    from prefect.states import Completed

    from pipelines import promotion, versions

    settings = Settings.from_env()
    settings.apply()
    t = get_task(task)
    cfg = t.config(config, **(overrides or {}))
    _step("pull-data")
    version = pull_data(settings)
    data_hash, code_hash = versions.task_data_hash(settings, task), versions.code_hash(task, cfg)
    same = None if force else versions.already_trained(settings, task, data_hash, code_hash)
    if same is not None:
        message = f"skipped: no new data or code (version {same} was trained on the same)"
        print(f"{task}: {message}")
        skipped = RetrainResult(task, same, None, t.metric_name, None, None, None, skipped=True, message=message)
        return Completed(name="Skipped", message=message, data=skipped)
    _step("validate-data")
    validate_data(task, cfg, settings)
    exp = tracking.experiment_id(settings)
    c = modelstore.client(settings)
    tags = {
        "task": task,
        "config": config,
        "data_hash": version.data_hash,
        "task_data_hash": data_hash,
        "code_hash": code_hash,
        "git_commit": version.git_commit,
        "git_dirty": str(version.git_dirty).lower(),
    }
    run = c.create_run(exp, run_name=f"{task}-{config}", tags=tags)
    run_id = run.info.run_id
    try:
        tracking.log_config(c, run_id, cfg, config)
        _step("load-data")
        data = load_data(task, cfg, settings)
        _step("train")
        result = train(task, data, cfg, settings, run_id, progress)
        _step("evaluate")
        metrics = evaluate(task, data, result, cfg, settings, run_id)
        with tempfile.TemporaryDirectory(dir=settings.home) as tmp:
            _step("export")
            exported = export(task, data, result, settings, run_id, Path(tmp))
            _step("register")
            model_version = register(task, data, exported, settings, run_id, {**tags, "run_id": run_id})
            if exported.served_metric is not None:  # e.g. INT8: the registered model's own metric
                metrics[t.metric_name] = exported.served_metric
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    c.set_terminated(run_id, "FINISHED")
    promoted = False
    if auto_promote:
        _step("promote")
        try:
            promotion.promote(settings, task, model_version, reason="scheduled retrain (auto_promote)", operator_name="scheduler")
            promoted = True
        except promotion.PromotionBlocked as exc:
            print(f"{task} v{model_version} stays challenger: {exc}")
    return RetrainResult(
        task,
        model_version,
        run_id,
        t.metric_name,
        metrics[t.metric_name],
        metrics[f"baseline_{t.metric_name}"],
        exported.max_abs_diff,
        promoted=promoted,
    )
