"""The task registry and the layering rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from models.registry import UnknownTask, all_tasks, get_task, task_names


def test_registry_lists_every_task_module() -> None:
    assert {"classify", "recommend"} <= set(task_names())
    assert [t.name for t in all_tasks()] == task_names()


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(UnknownTask) as info:
        get_task("segmentz")
    assert "classify" in str(info.value) and "segmentz" in str(info.value)


@pytest.mark.parametrize("name", task_names())
def test_configs_build(name: str) -> None:
    task = get_task(name)
    assert {"demo", "tiny"} <= set(task.configs)
    tiny = task.config("tiny", epochs=2)
    assert tiny.epochs == 2
    with pytest.raises(KeyError):
        task.config("huge")


def test_models_imports_neither_prefect_nor_bentoml() -> None:
    code = (
        "import sys, models.registry, models.training.loop, models.export, models.store.reading, models.store.writing, models.images;"
        "[models.registry.get_task(n).recipe(models.registry.get_task(n).config('tiny')) for n in models.registry.task_names()];"
        "[models.registry.get_serving(n) for n in models.registry.task_names()];"
        "bad = [m for m in ('prefect', 'bentoml') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_importing_the_services_does_no_io(tmp_path) -> None:
    """Importing the service modules must not touch the registry or ZOO_HOME."""
    home = tmp_path / "home"
    code = "import services.zoo, services.classify, services.recommend"
    env = {"PATH": "", "ZOO_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home}/x.db", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not home.exists()


def test_the_task_contract_and_its_serving_hooks_import_no_torch() -> None:
    """Reading the registry (``zoo models``, promotion gates) and serving need no PyTorch."""
    code = (
        "import sys, models.registry as r;"
        "[(r.get_task(n), r.get_serving(n)) for n in r.task_names()];"
        "import models.store.reading, models.store.writing, models.onnx_model;"
        "bad = [m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_bentos_requirements_are_generated_from_the_pins() -> None:
    """services/requirements.txt is what infra/tools/bento_requirements.py derives from pyproject and constraints.txt."""
    from models.settings import PROJECT_ROOT

    proc = subprocess.run([sys.executable, str(PROJECT_ROOT / "infra" / "tools" / "bento_requirements.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    pinned = dict(line.split("==") for line in (PROJECT_ROOT / "services" / "requirements.txt").read_text().splitlines() if "==" in line)
    assert {"bentoml", "onnxruntime", "mlflow", "numpy", "pillow"} <= set(pinned) and "torch" not in pinned
