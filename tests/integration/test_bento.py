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
    assert (bento / "src" / "models" / "tasks" / "classify" / "serving.py").is_file()
    assert not (bento / "src" / "pipelines").exists()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==" in requirements and "bentoml==" in requirements
    assert "torch" not in {line.split("==")[0] for line in requirements.splitlines()}  # the serving image carries no PyTorch


def test_bentoml_serve_starts_the_bentofile_service(project, tmp_path: Path) -> None:
    """``bentoml serve`` in the checkout, as BentoML users start it: the bentofile's ``service:`` answers."""
    import bentoml

    from pipelines.serving import free_port, serve_env, stop_group

    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    bentoml_cli = Path(sys.executable).with_name("bentoml")
    proc = subprocess.Popen(
        [str(bentoml_cli), "serve", "--port", str(port), "--host", "127.0.0.1"],
        cwd=PROJECT_ROOT,
        env=serve_env(project, {"ZOO_WORKERS": "1", "BENTOML_HOME": str(tmp_path / "bentoml")}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with bentoml.SyncHTTPClient(f"http://127.0.0.1:{port}", server_ready_timeout=240) as client:
            rated = client.rate(user_ids=[100], movie_ids=[1000])
            assert rated["ratings"][0]["known_user"] is True and rated["model_version"]
            assert "/sentiment" in {api.route for api in client.endpoints.values()}
    except Exception:
        print((tmp_path / "serve.log").read_text()[-5000:])
        raise
    finally:
        stop_group(proc)
        log.close()
