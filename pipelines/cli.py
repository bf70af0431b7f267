"""``zoo``: the course-zoo command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from models.settings import Settings

app = typer.Typer(help="Train, register, promote and serve the fast.ai course models.", no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Course datasets, versioned with DVC.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line in logs, whatever the width


@app.callback()
def _setup() -> None:
    """Train, register, promote and serve the fast.ai course models."""
    # Before any command imports MLflow, ONNX Runtime or Prefect: their state goes under ZOO_HOME.
    Settings.from_env().apply()


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.apply()
    return settings


def _fail(message: str | BaseException) -> typer.Exit:
    if isinstance(message, BaseException):
        from models import modelstore

        message = modelstore.explain(message, os.environ.get("MLFLOW_TRACKING_URI"))
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


def _known_errors() -> tuple[type[BaseException], ...]:
    from mlflow.exceptions import MlflowException

    from models.export import ParityError
    from models.onnx_model import ChecksumError
    from models.registry import UnknownTask
    from pipelines.flows import DataValidationError
    from pipelines.ingest import IngestError
    from models.training import TrainingDiverged
    from pipelines.promotion import PromotionBlocked

    return (IngestError, UnknownTask, LookupError, MlflowException, ParityError, ChecksumError, FileNotFoundError, ValueError, OSError, PromotionBlocked, DataValidationError, TrainingDiverged)


@data_app.command("ingest")
def data_ingest(
    dataset: Annotated[list[str] | None, typer.Option(help="Only this dataset (repeatable).")] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even when present.")] = False,
) -> None:
    """Fetch the course sample data into data/, version it with DVC and push it to the remote."""
    from pipelines import ingest

    settings = _settings()
    try:
        digest = ingest.ingest(settings, dataset, force=force)
    except _known_errors() as exc:
        raise _fail(exc) from None
    source = settings.data_mirror or "fast.ai's S3"
    console.print(f"data/ ingested from {source}: data.dvc md5 [bold]{digest}[/], pushed to the DVC remote")


@data_app.command("status")
def data_status() -> None:
    """Which datasets are present, and the data version recorded in data.dvc."""
    from pipelines import ingest

    rows = ingest.status(_settings())
    table = Table("dataset", "present", "files", "data.dvc md5")
    for row in rows:
        table.add_row(str(row["dataset"]), "yes" if row["present"] else "[red]no[/]", str(row["files"]), str(row["data_hash"]))
    console.print(table)


@app.command()
def train(
    task: Annotated[str, typer.Argument(help="Task name, e.g. classify.")],
    config: Annotated[str, typer.Option(help="Named config: demo or tiny.")] = "demo",
    epochs: Annotated[int | None, typer.Option(help="Override the config's epochs.")] = None,
    force: Annotated[bool, typer.Option(help="Train even when the data and code are unchanged.")] = False,
) -> None:
    """Run the retrain flow for TASK: pull data, validate, train, evaluate, export, register as challenger."""
    _settings()
    from models.registry import get_task

    try:
        get_task(task).config(config)
    except (_known_errors() + (KeyError,)) as exc:
        raise _fail(exc) from None
    from pipelines.flows import retrain

    overrides: dict[str, Any] = {"epochs": epochs} if epochs else {}
    try:
        result = retrain(task, config, overrides, force=force)
    except _known_errors() as exc:
        raise _fail(exc) from None
    if result.skipped:
        console.print(f"[bold]{task}[/]: {result.message}; use --force to train anyway")
        return
    console.print(
        f"[bold green]{task}[/] version {result.version} registered as challenger: "
        f"{result.metric_name} {result.metric:.4f} (baseline {result.baseline:.4f}), ONNX max |diff| {result.max_abs_diff:.2g}"
    )


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False) -> None:
    """Champion and challenger of every task, with metrics."""
    from pipelines.tracking import list_models

    try:
        rows = list_models(_settings())
    except _known_errors() as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("task", "champion", "challenger", "metric", "baseline", "data", "created")

    def metric_of(v: dict[str, Any] | None, task: str) -> tuple[str, float | None, float | None]:
        if v is None:
            return "", None, None
        name = _metric_name(task, v)
        return name, v["metrics"].get(name), v["metrics"].get(f"baseline_{name}")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    for row in rows:
        champ, chall = row["champion"], row["challenger"]
        name, c_val, c_base = metric_of(champ, row["task"])
        name2, n_val, n_base = metric_of(chall, row["task"])
        shown = champ or chall
        table.add_row(
            row["task"],
            f"v{champ['version']}" if champ else "[dim]-[/]",
            f"v{chall['version']}" if chall else "[dim]-[/]",
            f"{name or name2} {fmt(c_val)} / {fmt(n_val)}" if shown else "",
            fmt(c_base if champ else n_base) if shown else "",
            (shown["data_hash"] or "")[:8] if shown else "",
            shown["created"].replace("T", " ")[:16] if shown else "",
        )
    table.caption = "metric: champion / challenger on their validation splits; baseline: the champion's run"
    console.print(table)


def _metric_name(task: str, version: dict[str, Any]) -> str:
    """The task's main metric (tasks log extra metrics beside it)."""
    from models.registry import UnknownTask, get_task

    try:
        return get_task(task).metric_name
    except UnknownTask:
        return next((k for k in version["metrics"] if not k.startswith(("baseline_", "onnx_"))), "")


def _gate_table(gates: list[Any]) -> Table:
    table = Table("gate", "result", "detail", title="promotion gates")
    for g in gates:
        table.add_row(g.name, "[green]pass[/]" if g.passed else "[red]FAIL[/]", g.detail)
    return table


@app.command()
def promote(
    task: str,
    version: str,
    reason: Annotated[str, typer.Option(help="Why; recorded on the version and in the audit log.")] = "",
    force: Annotated[bool, typer.Option(help="Promote even when gates fail (needs --reason; recorded).")] = False,
    allow_signature_change: Annotated[bool, typer.Option(help="Declare that the inputs/outputs change.")] = False,
    to: Annotated[str, typer.Option(help="dev, or prod: copy into the production registry and promote there.")] = "dev",
) -> None:
    """Move TASK's champion alias to VERSION when it passes the gates; services follow within seconds."""
    from pipelines.promotion import PromotionBlocked
    from pipelines.promotion import promote as do_promote

    if not reason.strip():
        raise _fail("give a --reason; it is recorded with the promotion")
    try:
        record, gates = do_promote(_settings(), task, version, reason, force=force, allow_signature_change=allow_signature_change, to=to)
    except PromotionBlocked as exc:
        console.print(_gate_table(exc.gates))
        raise _fail("promotion blocked; the champion is unchanged (fix the version, or --force with a --reason)") from None
    except _known_errors() as exc:
        raise _fail(exc) from None
    console.print(_gate_table(gates))
    forced = " [yellow](forced past failing gates)[/]" if record.forced else ""
    console.print(f"{task}: {record.registry} champion -> version {record.version} (was {record.previous or 'none'}){forced}")


@app.command()
def rollback(
    task: str,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "rollback",
) -> None:
    """Point TASK's champion back at the previous champion."""
    from pipelines.promotion import rollback as do_rollback

    try:
        record = do_rollback(_settings(), task, reason)
    except _known_errors() as exc:
        raise _fail(exc) from None
    console.print(f"{task}: champion -> version {record.version} (was {record.previous})")


@app.command()
def history(task: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every promotion and rollback of TASK: who, when, why, gates."""
    from pipelines.promotion import history as read_history

    rows = read_history(_settings(), task)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("when (UTC)", "action", "version", "previous", "registry", "who", "forced", "reason", "gates")
    for r in rows:
        failed = [g["name"] for g in r["gates"] if not g["passed"]]
        gates = ("failed: " + ", ".join(failed)) if failed else ("all passed" if r["gates"] else "-")
        table.add_row(r["at"], r["action"], r["version"], r["previous"] or "-", r["registry"], r["operator"], "yes" if r["forced"] else "", r["reason"], gates)
    console.print(table if rows else f"no promotions recorded for {task}")


@app.command()
def serve(
    task: Annotated[str | None, typer.Option(help="Serve only this task.")] = None,
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "0.0.0.0",
) -> None:
    """Serve every task that has a champion (or one task) over HTTP with BentoML."""
    from pipelines.serving import serve_command, serve_env

    settings = _settings()
    try:
        cmd = serve_command(task, port, host)
    except _known_errors() as exc:
        raise _fail(exc) from None
    console.print(f"serving {task or 'all tasks with a champion'} on http://{host}:{port} (Ctrl-C to stop)")
    try:
        sys.exit(subprocess.call(cmd, env=serve_env(settings)))
    except KeyboardInterrupt:
        pass


@app.command()
def schedule(
    show: Annotated[bool, typer.Option("--list", help="Show each deployment, its schedule, next run and last run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: print JSON.")] = False,
    task: Annotated[list[str] | None, typer.Option(help="Only this task (repeatable).")] = None,
    interval: Annotated[float | None, typer.Option(help="Run every N seconds instead of the cron (to try it out).")] = None,
) -> None:
    """Run scheduled retraining on Prefect (a local server under ZOO_HOME unless PREFECT_API_URL is set)."""
    from pipelines import schedule as sched

    settings = _settings()
    if show:
        url = sched.running_server_url(settings)
        try:
            if url is None:
                with sched.prefect_server(settings) as temporary:
                    rows = sched.list_deployments(temporary)
            else:
                rows = sched.list_deployments(url)
        except (RuntimeError, OSError) as exc:
            raise _fail(exc) from None
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table("deployment", "schedule", "active", "next run (UTC)", "last run", "finished (UTC)")
        for r in rows:
            table.add_row(
                r["deployment"],
                r["schedule"],
                "yes" if r["active"] else "[yellow]paused[/]",
                (r["next_run"] or "-")[:19],
                r["last_run_state"] or "-",
                (r["last_run_at"] or "-")[:19],
            )
        console.print(table if rows else "no deployments yet: start `zoo schedule`")
        return
    try:
        schedules = sched.load_schedules()
        for name in task or []:
            if name not in schedules:
                raise ValueError(f"no schedule for {name!r}; scheduled tasks: {', '.join(schedules)}")
    except _known_errors() as exc:
        raise _fail(exc) from None
    where = os.environ.get("PREFECT_API_URL") or "a local Prefect server under ZOO_HOME"
    console.print(f"scheduling {', '.join(task or schedules)} on {where}; Ctrl-C stops (schedules stay active)")
    try:
        sched.serve(settings, task, interval)
    except KeyboardInterrupt:
        pass
    console.print("scheduler stopped")


@app.command()
def demo(
    config: Annotated[str, typer.Option(help="Named config to train with.")] = "demo",
) -> None:
    """Ingest, train, register, promote, serve and query every task, timing each step."""
    from pipelines.demo import run_demo

    try:
        run_demo(_settings(), config, console)
    except _known_errors() as exc:
        raise _fail(exc) from None


if __name__ == "__main__":
    app()
