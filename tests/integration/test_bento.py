"""`bentoml build` packages one Bento with every task's API (all six tasks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_bentoml_build(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"}
    bentoml = Path(sys.executable).with_name("bentoml")
    proc = subprocess.run([str(bentoml), "build", str(PROJECT_ROOT)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (bento,) = [p for p in (tmp_path / "bentos" / "course-zoo").iterdir() if p.name != "latest"]
    meta = yaml.safe_load((bento / "bento.yaml").read_text())
    routes = {r["route"] for r in meta["schema"]["routes"]}
    assert {"/classify", "/recommend", "/rate", "/segment", "/sentiment", "/sales", "/superres"} <= routes
    assert (bento / "src" / "models" / "tasks" / "classify.py").is_file()
    assert not (bento / "src" / "pipelines").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "torch==2.14.1" in requirements
