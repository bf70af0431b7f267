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
    assert proc.returncode == 1 and "error:" in proc.stderr
    assert list(home.iterdir()) == []
    assert zoo_home.is_dir()
