"""Where course-zoo keeps its state, read from the environment.

Everything the platform writes lives under ``ZOO_HOME`` (default ``.zoo/`` in
the checkout): the MLflow database and artifacts, the DVC remote and cache,
the Prefect home, the serving cache. Production swaps servers in through the
standard variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``,
``PREFECT_API_URL``) without code changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; build it with :meth:`from_env`."""

    home: Path
    project_root: Path
    tracking_uri: str
    registry_uri: str
    experiment: str
    data_mirror: Path | None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Read the settings from ``env`` (default: ``os.environ``)."""
        env = dict(os.environ if env is None else env)
        root = Path(env.get("ZOO_PROJECT_ROOT", PROJECT_ROOT)).resolve()
        home = Path(env.get("ZOO_HOME", root / ".zoo")).expanduser().resolve()
        tracking = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        mirror = env.get("ZOO_DATA_MIRROR")
        return cls(
            home=home,
            project_root=root,
            tracking_uri=tracking,
            registry_uri=env.get("MLFLOW_REGISTRY_URI") or tracking,
            experiment=env.get("ZOO_EXPERIMENT", "course-zoo"),
            data_mirror=Path(mirror).expanduser().resolve() if mirror else None,
        )

    @property
    def artifact_root(self) -> Path:
        """Local artifact store used when MLflow runs embedded on SQLite."""
        return self.home / "mlartifacts"

    @property
    def dvc_remote(self) -> Path:
        return self.home / "dvc-remote"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    def tool_env(self) -> dict[str, str]:
        """Variables that keep third-party tools' state under ``ZOO_HOME``."""
        return {
            "ZOO_HOME": str(self.home),
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_REGISTRY_URI": self.registry_uri,
            "PREFECT_HOME": str(self.home / "prefect"),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "MPLCONFIGDIR": str(self.cache / "matplotlib"),
            "XDG_CACHE_HOME": str(self.cache),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "share"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "DVC_NO_ANALYTICS": "1",
            "DVC_SITE_CACHE_DIR": str(self.home / "dvc-site"),
            "TORCHINDUCTOR_CACHE_DIR": str(self.cache / "torchinductor"),
            "BENTOML_DO_NOT_TRACK": "True",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "DO_NOT_TRACK": "1",
        }

    def apply(self) -> None:
        """Export :meth:`tool_env` into this process (existing values win)."""
        self.home.mkdir(parents=True, exist_ok=True)
        for key, value in self.tool_env().items():
            os.environ.setdefault(key, value)
