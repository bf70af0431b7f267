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


import pytest  # noqa: E402

from models.settings import SettingsError  # noqa: E402


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ZOO_MAX_TEXTS", "ten", "ZOO_MAX_TEXTS='ten' is not a whole number"),
        ("ZOO_MAX_TEXTS", "0", "ZOO_MAX_TEXTS=0 is below its minimum of 1"),
        ("ZOO_POLL_SECONDS", "soon", "ZOO_POLL_SECONDS='soon' is not a number"),
        ("ZOO_POLL_SECONDS", "nan", "ZOO_POLL_SECONDS=nan is below"),
        ("ZOO_GC_FREEZE", "maybe", "ZOO_GC_FREEZE='maybe' is not a flag"),
        ("ZOO_SERVE_REGISTRY", "staging", "ZOO_SERVE_REGISTRY='staging' is not one of dev, prod"),
        ("ZOO_WORKERS", "-2", "ZOO_WORKERS=-2 is below its minimum of 1"),
        ("ZOO_SERVE_MODEL_PREFIX", "prod.", "ZOO_SERVE_REGISTRY=prod"),
        ("ZOO_FAILPOINTS", "train,fit", "ZOO_FAILPOINTS: 'fit' not among train, rank1, export, register"),
    ],
)
def test_a_malformed_variable_is_refused_in_one_line_naming_it(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"ZOO_HOME": str(tmp_path), name: value})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_serving_setting_is_read_typed(tmp_path: Path) -> None:
    s = Settings.from_env(
        {"ZOO_HOME": str(tmp_path), "ZOO_TASKS": " classify, rate ,", "ZOO_MAX_TEXTS": "5", "ZOO_GC_FREEZE": "0", "ZOO_SERVE_REGISTRY": "prod", "ZOO_QUANTIZE": "1"}
    ).serving
    assert s.tasks == ("classify", "rate") and s.max_texts == 5 and s.gc_freeze is False and s.registry == "prod"
    assert Settings.from_env({"ZOO_HOME": str(tmp_path), "ZOO_QUANTIZE": "1"}).quantize is True
    assert s.workers is None and s.max_records == 10_000  # unset: the defaults


def test_the_readme_documents_every_setting() -> None:
    import re

    from models.settings import PROJECT_ROOT

    read = set(re.findall(r'"(ZOO_[A-Z0-9_]+)"', (PROJECT_ROOT / "models" / "settings.py").read_text())) - {"ZOO_SERVE_MODEL_PREFIX"}
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert read and not [v for v in sorted(read) if f"`{v}`" not in readme]


def test_bearer_tokens_from_a_variable_and_a_file(tmp_path: Path) -> None:
    import pytest

    from models.settings import SettingsError

    a, b, c = "a" * 16, "token-from-file-0123", "metrics-token-0123456"
    file = tmp_path / "tokens"
    file.write_text(f"# comment\n\n  {b}  \n")
    s = Settings.from_env({"ZOO_HOME": str(tmp_path), "ZOO_API_TOKENS": f"{a}, ", "ZOO_API_TOKENS_FILE": str(file), "ZOO_METRICS_TOKENS": c})
    assert s.serving.api_tokens == {a, b} and s.serving.metrics_tokens == {c}
    assert not {a, b, c} & set(repr(s).split("'"))  # no token in a repr (nor in a log line made from one)
    assert Settings.from_env({"ZOO_HOME": str(tmp_path)}).serving.api_tokens == frozenset()
    for env, message in (
        ({"ZOO_API_TOKENS": "short"}, "token 1 of ZOO_API_TOKENS"),
        ({"ZOO_API_TOKENS": "has a space inside it"}, "token 1 of ZOO_API_TOKENS"),
        ({"ZOO_API_TOKENS_FILE": str(tmp_path / "missing")}, "ZOO_API_TOKENS_FILE="),
        ({"ZOO_METRICS_TOKENS_FILE": str(tmp_path)}, "ZOO_METRICS_TOKENS_FILE="),  # a folder
    ):
        with pytest.raises(SettingsError, match=message) as refused:
            Settings.from_env({"ZOO_HOME": str(tmp_path), **env})
        assert "short" not in str(refused.value) and "inside" not in str(refused.value)
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(SettingsError, match="holds no token"):
        Settings.from_env({"ZOO_HOME": str(tmp_path), "ZOO_API_TOKENS_FILE": str(tmp_path / "empty")})
