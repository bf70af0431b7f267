"""The Prefect flow that retrains one task: pull -> load -> train -> evaluate -> export -> register."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.tasks import exponential_backoff

from models import modelstore
from models.export import ExportResult, check_parity, export_onnx
from models.plots import learning_curves
from models.registry import get_task
from models.settings import Settings
from models.task import Dataset, TrainConfig
from models.training import FitResult, fit
from pipelines import ingest, tracking

log = logging.getLogger(__name__)
IO_RETRIES = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=2), "cache_policy": NO_CACHE}


@dataclass(frozen=True)
class RetrainResult:
    task: str
    version: str
    run_id: str
    metric_name: str
    metric: float
    baseline: float
    max_abs_diff: float


@task(name="pull-data", **IO_RETRIES)
def pull_data(settings: Settings) -> ingest.DataVersion:
    """``dvc pull`` the committed data version."""
    return ingest.pull(settings)


@task(name="load-data", cache_policy=NO_CACHE)
def load_data(task_name: str, config: TrainConfig, settings: Settings) -> Dataset:
    return get_task(task_name).load(settings.project_root / ingest.DATA_DIR, config)


@task(name="train", cache_policy=NO_CACHE)
def train(task_name: str, data: Dataset, config: TrainConfig, settings: Settings, run_id: str, progress: bool) -> FitResult:
    c = modelstore.client(settings)
    return fit(
        get_task(task_name),
        data,
        config,
        checkpoint_dir=settings.checkpoints / task_name / run_id,
        listeners=[tracking.epoch_logger(c, run_id)],
        progress=progress,
    )


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(task_name: str, data: Dataset, result: FitResult, settings: Settings, run_id: str) -> dict[str, float]:
    """Log the metric beside its baseline, the learning curves and the task's figures."""
    t = get_task(task_name)
    c = modelstore.client(settings)
    metrics = {t.metric_name: result.metric, f"baseline_{t.metric_name}": t.baseline(data)}
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
    checked = check_parity(result.net, path, [i.name for i in t.inputs(data.spec)], tuple(a[:64] for a in data.valid_x))
    modelstore.client(settings).log_metric(run_id, "onnx_max_abs_diff", checked.max_abs_diff)
    return checked


@task(name="register", **IO_RETRIES)
def register(task_name: str, data: Dataset, exported: ExportResult, settings: Settings, run_id: str, tags: dict[str, str]) -> str:
    return tracking.register(settings, get_task(task_name), run_id, exported.path, data.spec, data.valid_x, tags)


@flow(name="retrain", log_prints=True)
def retrain(task: str, config: str = "demo", overrides: dict[str, Any] | None = None, progress: bool = True) -> RetrainResult:
    """Retrain ``task`` with a named config and register the result as ``challenger``."""
    settings = Settings.from_env()
    settings.apply()
    t = get_task(task)
    cfg = t.config(config, **(overrides or {}))
    version = pull_data(settings)
    exp = tracking.experiment_id(settings)
    c = modelstore.client(settings)
    tags = {
        "task": task,
        "config": config,
        "data_hash": version.data_hash,
        "git_commit": version.git_commit,
        "git_dirty": str(version.git_dirty).lower(),
    }
    run = c.create_run(exp, run_name=f"{task}-{config}", tags=tags)
    run_id = run.info.run_id
    try:
        tracking.log_config(c, run_id, cfg, config)
        data = load_data(task, cfg, settings)
        result = train(task, data, cfg, settings, run_id, progress)
        metrics = evaluate(task, data, result, settings, run_id)
        with tempfile.TemporaryDirectory(dir=settings.home) as tmp:
            exported = export(task, data, result, settings, run_id, Path(tmp))
            model_version = register(task, data, exported, settings, run_id, {**tags, "run_id": run_id})
    except BaseException:
        c.set_terminated(run_id, "FAILED")
        raise
    c.set_terminated(run_id, "FINISHED")
    return RetrainResult(
        task, model_version, run_id, t.metric_name, metrics[t.metric_name], metrics[f"baseline_{t.metric_name}"], exported.max_abs_diff
    )
