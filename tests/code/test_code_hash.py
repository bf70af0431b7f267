"""The retrain skip check sees changes to shared model code, not only to the task's own module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.registry import get_task
from pipelines import versions


def test_a_change_to_shared_model_code_changes_the_code_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(versions.ROOT / "models", tmp_path / "models", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(versions, "ROOT", tmp_path)
    task = get_task("segment")
    cfg = task.config("tiny")
    before = versions.code_hash(task, cfg)
    assert versions.code_hash(task, cfg) == before  # deterministic
    with (tmp_path / "models" / "unet.py").open("a") as f:
        f.write("\n# a change to the shared U-Net\n")
    after_unet = versions.code_hash(task, cfg)
    assert after_unet != before
    assert versions.code_hash(task, task.config("tiny", epochs=99)) != versions.code_hash(task, cfg)
    with (tmp_path / "models" / "training" / "loop.py").open("a") as f:
        f.write("\n# a change to the training loop\n")
    assert versions.code_hash(task, cfg) != after_unet
