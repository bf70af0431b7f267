"""The Prefect flow that retrains one task.

pull-data -> (skip when data and code are unchanged) -> validate-data -> load-data
-> train -> baselines -> evaluate -> export (with parity) -> register -> (promote, with auto_promote)

One :class:`RunContext` (the task, its config and recipe, the MLflow run, the
settings) is built at the start and handed to every step. Each retrain leaves
a Markdown artifact in Prefect (metric, baselines, parity, data version).
"""

from __future__ import annotations

import json
import logging
import tempfile
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.tasks import exponential_backoff

from models.errors import DataProblem
from models.export import ExportResult, check_task_parity, export_onnx, quantize_task
from models.faults import failpoint
from models.onnx_model import accelerated_providers
from models.plots import learning_curves
from models.registry import get_task
from models.settings import Settings
from models.store import writing
from models.store.names import Tag
from models.store.runs import RunLog
from models.task import Dataset, Task, TrainConfig
from models.training import distributed
from models.training.loop import FitResult
from models.training.recipe import Recipe
from pipelines import ingest, recovery, versions

log = logging.getLogger(__name__)
IO_RETRIES = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=2), "cache_policy": NO_CACHE}
STEP = {"cache_policy": NO_CACHE}


class DataValidationError(DataProblem, ValueError):
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


@dataclass
class RunContext:
    """What every step of one retrain shares, built once when the flow starts."""

    settings: Settings
    task: Task
    config_name: str
    config: TrainConfig
    recipe: Recipe
    run: RunLog
    tags: dict[str, str] = field(default_factory=dict)
    lock: recovery.RetrainLock | None = None
    """The task's retrain lock: processes the run starts are recorded in it."""

    @property
    def data_dir(self) -> Path:
        return self.settings.project_root / ingest.DATA_DIR


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure`` hook: POST the task, run and failed step (from Prefect's task run states) to ``ZOO_WEBHOOK_URL``."""
    url = Settings.from_env().webhook_url
    if not url:
        return
    payload = {
        "event": "retrain_failed",
        "task": flow_run.parameters.get("task"),
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "step": failed_step(flow_run.id),
        "error": state.message,
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10):
            pass
    except OSError as exc:  # a notification must not hide the failure it reports
        log.error("failure webhook %s did not answer: %s", url, exc)


def failed_step(flow_run_id: Any) -> str:
    """The name of the flow run's task run that failed or crashed, as Prefect recorded it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))),
            )
    except Exception as exc:  # the API is down: still report the failure
        log.error("could not read the flow run's task runs: %s", exc)
        return "unknown"
    return runs[-1].name.rsplit("-", 1)[0] if runs else "unknown"


@task(name="pull-data", **IO_RETRIES)
def pull_data(settings: Settings) -> ingest.DataVersion:
    """``dvc pull`` the committed data version."""
    return ingest.pull(settings)


@task(name="validate-data", **STEP)
def validate_data(t: Task, config: TrainConfig, settings: Settings) -> None:
    """Check the task's data against its schema; a violation fails the flow before training (no run is started)."""
    problems = t.validate(settings.project_root / ingest.DATA_DIR, config)
    if problems:
        raise DataValidationError(t.name, problems)


@task(name="load-data", **STEP)
def load_data(ctx: RunContext) -> Dataset:
    return ctx.task.load(ctx.data_dir, ctx.config)


@task(name="train", **STEP)
def train(ctx: RunContext, data: Dataset, progress: bool) -> FitResult:
    """Fit the recipe here, or on every rank of a distributed plan (``torchrun``, see :mod:`models.training.distributed`)."""
    checkpoints = ctx.settings.checkpoints / ctx.task.name / ctx.run.run_id
    plan = distributed.plan(ctx.config)
    ctx.run.more_params(plan.figures(ctx.config))
    if not plan.distributed:
        return ctx.recipe.train(data, checkpoint_dir=checkpoints, listeners=[ctx.run.epoch_listener, lambda _: failpoint(ctx.settings, "train")], progress=progress)
    out = recovery.scratch_dir(ctx.settings, ctx.task.name) / "rank0"
    args = distributed.rank_args(ctx.task.name, ctx.config, ctx.data_dir, out, ctx.run.run_id, checkpoints)
    command = distributed.torchrun_command(plan, args, ctx.settings.distributed)
    log.info("%s: training on %d processes (%d per node, %s, %s)", ctx.task.name, plan.world_size, plan.devices, plan.strategy, plan.precision)
    return distributed.train(ctx.recipe, data, command, out, on_start=ctx.lock.record if ctx.lock else lambda: None)


@task(name="baselines", **STEP)
def baselines(ctx: RunContext, data: Dataset) -> dict[str, float]:
    """The task's baselines of its metric on the same validation split (``baseline_<name>``)."""
    name = ctx.task.metric_name
    out = {f"baseline_{name}": ctx.task.baseline(data)}
    out.update({f"baseline_{k}": v for k, v in ctx.task.extra_baselines(data, ctx.config).items()})
    ctx.run.metrics(out)
    return out


@task(name="evaluate", **STEP)
def evaluate(ctx: RunContext, data: Dataset, result: FitResult) -> dict[str, float]:
    """Log the metric and extra metrics, the learning curves, the task's and the recipe's figures."""
    t = ctx.task
    metrics = {t.metric_name: result.metric, **t.extra_metrics(result.valid_output, data.valid_y)}
    ctx.run.metrics(metrics)
    ctx.run.figure(learning_curves(result.history, t.metric_name), "figures/learning_curves.png")
    for name, fig in {**t.figures(data, result.valid_output), **ctx.recipe.figures(data, result)}.items():
        ctx.run.figure(fig, f"figures/{name}")
    return metrics


@task(name="export", **STEP)
def export(ctx: RunContext, data: Dataset, result: FitResult, out_dir: Path) -> ExportResult:
    """Export to ONNX and check parity on held-out inputs; a failure stops the flow."""
    t, module = ctx.task, ctx.recipe.export_module(result.net)
    path = export_onnx(t, module, data.spec, data.valid_x, out_dir / "model.onnx")
    failpoint(ctx.settings, "export")
    checked = check_task_parity(t, module, path, data.spec, data)
    figures = {"onnx_max_abs_diff": checked.max_abs_diff}
    accelerated = accelerated_providers()
    tags = {Tag.ACCELERATED: ",".join(accelerated) or "none (CPU provider only)"}
    if accelerated:  # the same check on the GPU engine the services will build (TensorRT FP16, or CUDA)
        figures["onnx_gpu_max_abs_diff"] = check_task_parity(t, module, path, data.spec, data, accelerate=True).max_abs_diff
    exported = checked
    if t.quantize_ops and not ctx.settings.quantize:
        tags[Tag.QUANTIZED] = "no: dynamic INT8 is opt-in (ZOO_QUANTIZE=1)"
    elif t.quantize_ops:
        q = quantize_task(t, path, data)
        m = t.metric_name
        figures.update({f"onnx_float_{m}": q.float_metric, f"onnx_int8_{m}": q.int8_metric, "onnx_int8_max_abs_diff": q.max_abs_diff})
        if q.accepted:
            tags[Tag.QUANTIZED] = f"dynamic INT8 ({', '.join(t.quantize_ops)}): {q.why}"
            figures[f"torch_{m}"] = result.metric
            exported = ExportResult(q.path, checked.max_abs_diff, checked.checked, served_metric=q.int8_metric, rows_alone=True)
            log.info("%s: registering the dynamic INT8 model: %s", t.name, q.why)
        else:
            tags[Tag.QUANTIZED] = f"no: {q.why}; the float model is registered"
            log.info("%s: INT8 not used: %s", t.name, q.why)
    ctx.run.metrics(figures)
    ctx.run.tags(tags)
    if exported.served_metric is not None:  # the registered (served) model's own metric
        ctx.run.metrics({t.metric_name: exported.served_metric}, step=1)
    return exported


@task(name="register", **IO_RETRIES)
def register(ctx: RunContext, data: Dataset, exported: ExportResult) -> str:
    from models.drift import training_profile

    try:
        drift = training_profile(ctx.task, data.spec, data.train_x, data.extras)
    except Exception as exc:  # a version without a profile serves, without a drift score
        log.warning("%s: no drift profile for this version: %s: %s", ctx.task.name, type(exc).__name__, exc)
        drift = None
    tags = {**ctx.tags, Tag.RUN_ID: ctx.run.run_id}
    return writing.register(ctx.settings, ctx.task, ctx.run.run_id, exported.path, data.spec, data.valid_x, tags, drift, rows_alone=exported.rows_alone)


def _summary(ctx: RunContext, version: str, metrics: dict[str, float], exported: ExportResult, data_version: ingest.DataVersion) -> str:
    name = ctx.task.metric_name
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items()))
    return (
        f"# {ctx.task.name} v{version} registered as challenger\n\n"
        f"Config `{ctx.config_name}`, MLflow run `{ctx.run.run_id}`, data `{data_version.data_hash}` "
        f"(task data `{ctx.tags[Tag.TASK_DATA_HASH][:12]}`), commit `{data_version.git_commit[:12]}`.\n\n"
        f"| metric | value |\n| --- | --- |\n{rows}\n\n"
        f"Main metric: **{name} {metrics[name]:.4f}** ({'higher' if ctx.task.higher_is_better else 'lower'} is better). "
        f"ONNX parity: max |diff| {exported.max_abs_diff:.2g} over {exported.checked} inputs.\n"
    )


@flow(name="retrain", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_failure])
def retrain(
    task: str,
    config: str = "demo",
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    force: bool = False,
    auto_promote: bool = False,
    trigger: str = "manual",
) -> Any:
    """Retrain ``task`` with a named config and register the result as ``challenger``.

    Ends early (state ``Skipped``) when the champion or challenger was trained on
    the same data and code, unless ``force``. With ``auto_promote`` the new
    version is promoted when it passes the promotion gates. Holds the task's
    retrain lock (:mod:`pipelines.recovery`): a second retrain of the task refuses
    to start, and one that finds a killed retrain's record clears up after it first. ``trigger`` says what
    started it (``manual``, ``schedule``, ``drift: ...``): tagged on the run and the version.
    """
    settings = Settings.from_env()
    settings.apply()
    t = get_task(task)
    if settings.distributed.node_rank != 0:
        raise ValueError(f"ZOO_NODE_RANK={settings.distributed.node_rank}: the retrain flow runs on node 0; the other nodes run `zoo train-node {task}`")
    cfg = t.config(config, **{**settings.distributed.overrides(), **(overrides or {})})  # the config, ZOO_DEVICES & co., the caller's
    with recovery.retrain_lock(settings, task) as lock:
        return _retrain(settings, t, config, cfg, lock, progress, force, auto_promote, trigger)


def _retrain(
    settings: Settings, t: Task, config: str, cfg: TrainConfig, lock: recovery.RetrainLock, progress: bool, force: bool, auto_promote: bool, trigger: str = "manual"
) -> Any:
    """The body of :func:`retrain`, run while holding the task's retrain lock."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.states import Completed

    from pipelines import promotion

    task = t.name
    data_version = pull_data(settings)
    data_hash, code_hash = versions.task_data_hash(settings, t), versions.code_hash(t, cfg)
    same = None if force else versions.already_trained(settings, task, data_hash, code_hash)
    if same is not None:
        message = f"skipped: no new data or code (version {same} was trained on the same)"
        print(f"{task}: {message} (started by {trigger})")
        skipped = RetrainResult(task, same, None, t.metric_name, None, None, None, skipped=True, message=message)
        return Completed(name="Skipped", message=message, data=skipped)
    tags = {
        Tag.TASK: task,
        Tag.CONFIG: config,
        Tag.DATA_HASH: data_version.data_hash,
        Tag.TASK_DATA_HASH: data_hash,
        Tag.CODE_HASH: code_hash,
        Tag.GIT_COMMIT: data_version.git_commit,
        Tag.GIT_DIRTY: str(data_version.git_dirty).lower(),
        Tag.TRIGGER: trigger[:250],
    }
    validate_data(t, cfg, settings)
    ctx = RunContext(settings, t, config, cfg, t.recipe(cfg), RunLog.start(settings, f"{task}-{config}", tags), tags, lock)
    lock.record(run_id=ctx.run.run_id)
    try:
        ctx.run.params(cfg, config)
        read = t.dataset_of(config)
        ctx.run.dataset(f"{task}:{','.join(read)}", data_hash, f"{settings.project_root / ingest.DVC_FILE}@{data_version.git_commit}", {"datasets": list(read), "data_dvc_md5": data_version.data_hash})
        data = load_data(ctx)
        result = train(ctx, data, progress)
        metrics = {**baselines(ctx, data), **evaluate(ctx, data, result)}
        scratch = recovery.scratch_dir(settings, task)
        scratch.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            exported = export(ctx, data, result, Path(tmp))
            model_version = register(ctx, data, exported)
        if exported.served_metric is not None:  # e.g. INT8: the registered model's own metric
            metrics[t.metric_name] = exported.served_metric
    except BaseException:
        ctx.run.finish("FAILED")
        raise
    ctx.run.finish("FINISHED")
    create_markdown_artifact(_summary(ctx, model_version, metrics, exported, data_version), key=f"retrain-{task}", description=f"{task} v{model_version}")
    promoted = False
    if auto_promote:
        try:
            promotion.promote(settings, task, model_version, reason="scheduled retrain (auto_promote)", operator_name="scheduler")
            promoted = True
        except promotion.PromotionBlocked as exc:
            print(f"{task} v{model_version} stays challenger: {exc}")
    return RetrainResult(
        task, model_version, ctx.run.run_id, t.metric_name, metrics[t.metric_name], metrics[f"baseline_{t.metric_name}"], exported.max_abs_diff, promoted=promoted
    )
