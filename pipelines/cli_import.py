"""``zoo import``: bring models trained elsewhere into the registry (``zoo import fastai``)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from pipelines.output import emit, emit_json

import_app = typer.Typer(help="Bring models trained elsewhere into the registry.", no_args_is_help=True)


@import_app.command("fastai")
def fastai(
    path: Annotated[Path, typer.Argument(help="A Learner saved with learn.export() (a .pkl).")],
    task: Annotated[str, typer.Option(help="The task it becomes a version of: classify, segment, sentiment, sales or recommend.")],
    reason: Annotated[str, typer.Option(help="Why, recorded on the import's MLflow run.")] = "",
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Read the .pkl, which runs code: only for files you trust.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Import a fastai Learner as a new version of TASK (challenger): ONNX plus its spec, checked against fastai's answers."""
    from pipelines.cli import _settings, reported
    from pipelines.fastai_import import import_fastai

    settings = _settings()
    with reported():
        result = import_fastai(settings, path, task, reason=reason, trust_pickle=trust_pickle)
    if as_json:
        emit_json(asdict(result))
        return
    metric = "not measured" if result.metric is None else f"{result.metric:.4f}"
    emit(
        f"[bold green]{task}[/] version {result.version} imported from {path.name} (sha256 {result.sha256[:12]}) as challenger: "
        f"{result.metric_name} {metric} on {result.measured_on}; served answers within {result.served_max_abs_diff:.2g} of fastai's "
        f"on {result.probes} probe(s). Promote it with: zoo promote {task} {result.version} --reason ..."
    )
    for note in result.differences:
        emit(f"  served preprocessing differs from fastai's on {note}")
