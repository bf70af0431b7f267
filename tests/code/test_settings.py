"""Configuration comes from the environment, with state under ZOO_HOME."""

from __future__ import annotations

from pathlib import Path

from models.settings import Settings


def test_defaults_live_under_zoo_home(tmp_path: Path) -> None:
    s = Settings.from_env({"ZOO_HOME": str(tmp_path / "h")})
    assert s.home == tmp_path / "h"
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert s.registry_uri == s.tracking_uri
    assert all(str(v).startswith(str(s.home)) for k, v in s.tool_env().items() if k.endswith(("HOME", "DIR")) and k != "ZOO_HOME")


def test_servers_come_from_standard_variables(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"ZOO_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://mlflow:5000", "MLFLOW_REGISTRY_URI": "http://prod:5000", "ZOO_DATA_MIRROR": str(tmp_path)}
    )
    assert s.tracking_uri == "http://mlflow:5000"
    assert s.registry_uri == "http://prod:5000"
    assert s.data_mirror == tmp_path


def test_default_home_is_dot_zoo_in_the_checkout() -> None:
    s = Settings.from_env({})
    assert s.home == s.project_root / ".zoo"
