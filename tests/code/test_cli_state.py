"""The CLI keeps every tool's state under ZOO_HOME, never in the user's home directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_commands_write_nothing_outside_zoo_home(tmp_path: Path) -> None:
    home, zoo_home = tmp_path / "user-home", tmp_path / "zoo-home"
    home.mkdir()
    keep = ("PATH", "LANG", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"HOME": str(home), "ZOO_HOME": str(zoo_home)})
    # promote imports MLflow and ONNX Runtime, whose telemetry would write to ~/.cache and ~/.config
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "promote", "nope", "1", "--reason", "x"], env=env, capture_output=True, text=True)
    assert proc.returncode == 5 and "error:" in proc.stderr  # ExitCode.NOT_FOUND: no such model version
    assert list(home.iterdir()) == []
    assert zoo_home.is_dir()


def test_serve_becomes_the_server_so_signals_reach_it(tmp_path: Path, monkeypatch) -> None:
    """``zoo serve`` replaces itself with ``bentoml serve``: SIGTERM or Ctrl-C to it leaves no server behind."""
    from typer.testing import CliRunner

    from pipelines import cli

    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def fake_execve(path: str, argv: list[str], env: dict[str, str]) -> None:
        calls.append((path, argv, env))
        raise SystemExit(0)

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo-home"))
    monkeypatch.setattr(cli.os, "execve", fake_execve)
    result = CliRunner().invoke(cli.app, ["serve", "--task", "classify", "--port", "3999"])
    assert result.exit_code == 0, result.output
    [(path, argv, env)] = calls
    assert path.endswith("bentoml") and argv[:3] == [path, "serve", "services.classify:Service"]
    assert argv[argv.index("--port") + 1] == "3999"
    assert env["MLFLOW_TRACKING_URI"]  # the project's tool settings travel to the server
    assert CliRunner().invoke(cli.app, ["serve", "--task", "nope"]).exit_code != 0 and len(calls) == 1
