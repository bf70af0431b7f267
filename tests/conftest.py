"""Shared fixtures: fake data, a throw-away project with its own ZOO_HOME, trained models."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fakes import write_mirror  # noqa: E402

from models.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    import bentoml

# Keep every tool's state of the whole test session in one temporary ZOO_HOME,
# never in the user's home directory or the checkout's .zoo/.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="zoo-test-home-"))
for _key, _value in Settings.from_env({"ZOO_HOME": str(_SESSION_HOME)}).tool_env().items():
    os.environ[_key] = _value

# The services' servers in tests run one worker (the default is one per CPU): with several, each
# worker follows the registry on its own, and the live-reload tests would race between them.
# The session's API server (SERVED_ENV) runs two, as the default does on two CPUs.
os.environ.setdefault("ZOO_WORKERS", "1")

# make test runs two xdist workers (pyproject's addopts): each gets its share of the CPUs for
# PyTorch's OpenMP threads. Two workers of 2 threads each on 2 CPUs made a 4 s overfitting test
# take 57 s (OpenMP threads spin-waiting for cores the other worker holds).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _share = len(os.sched_getaffinity(0)) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

ENV_KEYS = ("ZOO_HOME", "ZOO_PROJECT_ROOT", "ZOO_DATA_MIRROR", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_HOME", "BENTOML_HOME")


@pytest.fixture(scope="session")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake mirror of the course datasets."""
    return write_mirror(tmp_path_factory.mktemp("mirror"))


def zoo_cli(*args: str):
    """Run the ``zoo`` CLI in this process (Typer's test runner); returns the Click result."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    return CliRunner().invoke(app, list(args))


def make_project(root: Path, mirror: Path) -> dict[str, str]:
    """A git repo with DVC, like a fresh clone; returns the environment that points at it."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text("/.zoo/\n/data\n")
    subprocess.run(["git", "-C", str(root), "add", ".gitignore"], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], check=True
    )
    home = root / ".zoo"
    return {
        "ZOO_PROJECT_ROOT": str(root),
        "ZOO_HOME": str(home),
        "ZOO_DATA_MIRROR": str(mirror),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "MLFLOW_REGISTRY_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PREFECT_HOME": str(home / "prefect"),
        "BENTOML_HOME": str(home / "bentoml"),
    }


@contextmanager
def project_env(env: dict[str, str]) -> Iterator[Settings]:
    """Point this process at another project for a while; the previous environment comes back after."""
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ.update(env)
    try:
        settings = Settings.from_env()
        settings.apply()
        yield settings
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server (Prefect's test harness) for every flow run of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory, mirror: Path, prefect_harness: None) -> Iterator[Settings]:
    """A session-wide throw-away project: data ingested, both tasks trained (tiny) and promoted."""
    from pipelines import ingest, promotion
    from pipelines.flows import retrain

    with project_env(make_project(tmp_path_factory.mktemp("project"), mirror)) as settings:
        ingest.ingest(settings)
        for task in ("classify", "recommend", "sales", "segment", "superres", "sentiment"):
            result = retrain(task, "tiny", progress=False)
            promotion.promote(settings, task, result.version, reason="test fixture")
        yield settings


SERVED_ENV = {
    "ZOO_MAX_BODY_BYTES": "300000",
    "ZOO_MAX_IMAGE_PIXELS": "4000000",
    "ZOO_SUPERRES_MAX_PIXELS": "40000",
    "ZOO_MAX_RECORDS": "50",
    "ZOO_MAX_TEXTS": "5",
    "ZOO_WORKERS": "2",  # the default on a 2-CPU machine: the API tests run against two workers
    "PYTHONPATH": str(Path(__file__).parent / "no_torch"),  # the services run without PyTorch, as the Bento does
}
"""Caps of the shared test service (small, so that the tests can cross them cheaply)."""


@contextmanager
def live_server(
    settings: Settings, log: Path, task: str | None = None, env: dict[str, str] | None = None, ready_timeout: float = 240
) -> Iterator[str]:
    """A real ``bentoml serve`` (one task's service, or ``services.zoo:Zoo``) that answers; its log is printed if it does not."""
    import bentoml

    from pipelines.serving import running_server

    with running_server(settings, task=task, log=log, extra_env=env) as url:
        try:
            with bentoml.SyncHTTPClient(url, server_ready_timeout=ready_timeout):
                pass
        except Exception:
            print(log.read_text()[-5000:])
            raise
        yield url


@pytest.fixture(scope="session")
def served(project: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real ``bentoml serve`` of every task (``services.zoo:Zoo``) for the whole session; yields its URL."""
    with live_server(project, tmp_path_factory.mktemp("served") / "serve.log", env=SERVED_ENV) as url:
        yield url


@pytest.fixture(scope="module")
def server(served: str) -> str:
    """The API tests' server: the session's one service of every task, with the caps of ``SERVED_ENV``."""
    return served


@pytest.fixture()
def client(server: str) -> Iterator["bentoml.SyncHTTPClient"]:
    """BentoML's own client of ``server`` (a generous timeout: image requests on 2 busy CPUs)."""
    import bentoml

    with bentoml.SyncHTTPClient(server, timeout=120) as c:
        yield c


def _postgres_up(host: str = "127.0.0.1", port: int = 5432) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


PROJECT_FILES = frozenset(
    f"tests/integration/{name}.py"
    for name in (
        "test_bento", "test_flow", "test_follow", "test_fuzz", "test_inference_protocol", "test_playground", "test_prometheus", "test_promotion", "test_schedule",
        "test_service", "test_service_auth", "test_service_images", "test_service_sales", "test_service_sentiment",
    )
)
"""The test files that use the session's trained ``project`` (and its ``served`` server).

``make test`` runs on two xdist workers; these files all go to one of them, so that the
project is trained and served once, while the other worker takes every other module
(production mode on PostgreSQL, contracts, retrain rules...). A test file that uses
``project`` and is not listed here stops the collection with a message saying so.
"""


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # noqa: ANN001, ANN201 - xdist's hook
    """``--dist loadscope``, with the files of ``PROJECT_FILES`` as one scope.

    (xdist's own ``xdist_group`` marks do not group on pytest 9: its worker renames
    ``item._nodeid``, which pytest 9 no longer reads; so the scope is chosen here, in the
    controller, from the node ids.)
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ProjectScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "project" if nodeid.split("::", 1)[0] in PROJECT_FILES else super()._split_scope(nodeid)

    return ProjectScopeScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test of the session's project is in ``PROJECT_FILES``; production-mode tests need PostgreSQL.

    Without a PostgreSQL server the production-mode tests are skipped, saying why.
    """
    strays = sorted({i.nodeid.split("::", 1)[0] for i in items if "project" in getattr(i, "fixturenames", ())} - PROJECT_FILES)
    if strays:
        raise pytest.UsageError(f"{', '.join(strays)} use the session's project: add them to PROJECT_FILES in tests/conftest.py")
    if any(item.get_closest_marker("postgres") for item in items) and not _postgres_up():
        skip = pytest.mark.skip(reason="PostgreSQL is not listening on 127.0.0.1:5432 (production-mode tests need it)")
        for item in items:
            if item.get_closest_marker("postgres"):
                item.add_marker(skip)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
