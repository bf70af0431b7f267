"""``zoo capture`` and ``zoo drift``: live traffic back into training (docs/operating.md)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from pipelines.output import emit, emit_json

capture_app = typer.Typer(help="Captured traffic (ZOO_CAPTURE_SHARE) and its feedback.", no_args_is_help=True)
drift_app = typer.Typer(help="Input drift against the training profile (zoo_drift_score).", no_args_is_help=True)
JSON = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@capture_app.command("export")
def capture_export(
    task: Annotated[str, typer.Argument(help="The task whose captured requests with feedback become training data.")],
    as_json: JSON = False,
) -> None:
    """Add TASK's captured requests that got feedback to its dataset, as a new DVC data version (nothing new: no version)."""
    from pipelines.capture import export
    from pipelines.cli import _settings, reported

    with reported():
        result = export(_settings(), task)
    if as_json:
        emit_json(asdict(result))
        return
    emit(result.message)


@drift_app.command("show")
def drift_show(as_json: JSON = False) -> None:
    """Each feature's drift score as the services export it (ZOO_METRICS_URL), against ZOO_DRIFT_THRESHOLD."""
    from rich.table import Table

    from pipelines import live
    from pipelines.cli import _settings, fail, reported

    settings = _settings()
    with reported():
        scores = live.drift_scores(settings)
    if scores is None:
        fail("ZOO_METRICS_URL is not set: point it at the services' /metrics (comma-separated) or at Prometheus")
    threshold = settings.loop.drift_threshold
    rows = [{"task": t, "feature": f, "score": s, "drifted": s > threshold} for (t, f), s in sorted(scores.items())]
    if as_json:
        emit_json(rows)
        return
    table = Table("task", "feature", "score", title=f"drift (population stability index; past {threshold:g}: drifted)")
    for r in rows:
        table.add_row(r["task"], r["feature"], f"[red]{r['score']:.3f}[/]" if r["drifted"] else f"{r['score']:.3f}")
    emit(table)


@drift_app.command("watch")
def drift_watch(
    task: Annotated[list[str] | None, typer.Option(help="Only this task (repeatable); default every scheduled task.")] = None,
    every: Annotated[float, typer.Option(help="Seconds between polls of the drift scores.")] = 60.0,
) -> None:
    """Poll the drift scores (ZOO_METRICS_URL) and run a drifted task's retrain deployment on PREFECT_API_URL
    (at most once per ZOO_DRIFT_COOLDOWN_S); `zoo schedule` does the same for its own deployments."""
    import signal
    import threading

    from pipelines import drift
    from pipelines.cli import _settings, fail, reported
    from pipelines.schedule import load_schedules

    settings = _settings()
    if not settings.loop.metrics_url:
        fail("ZOO_METRICS_URL is not set: point it at the services' /metrics (comma-separated) or at Prometheus")
    with reported():
        tasks = task or list(load_schedules())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    emit(f"watching the drift of {', '.join(tasks)} every {every:g} s (threshold {settings.loop.drift_threshold:g}); Ctrl-C stops")
    try:
        drift.watch(settings, tasks, stop, every)
    except KeyboardInterrupt:
        pass
