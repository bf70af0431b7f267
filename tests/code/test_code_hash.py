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
    cfg = get_task("segment").config("tiny")
    before = versions.code_hash("segment", cfg)
    assert versions.code_hash("segment", cfg) == before  # deterministic
    with (tmp_path / "models" / "unet.py").open("a") as f:
        f.write("\n# a change to the shared U-Net\n")
    assert versions.code_hash("segment", cfg) != before
    assert versions.code_hash("segment", get_task("segment").config("tiny", epochs=99)) != versions.code_hash("segment", cfg)
