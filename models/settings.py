"""Every setting of course-zoo, read once from the environment and checked.

Everything the platform writes lives under ``ZOO_HOME`` (default ``.zoo/`` in
the checkout): the MLflow database and artifacts, the DVC remote and cache,
the Prefect home, the serving cache. Production swaps servers in through the
standard variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``,
``PREFECT_API_URL``) without code changes.

Each ``ZOO_*`` variable is read here and nowhere else: :meth:`Settings.from_env`
parses all of them, and a malformed value raises :class:`SettingsError`, one
line that names the variable, before any work starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

PROJECT_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
FAILPOINTS = ("train", "rank1", "export", "register")
"""Where a retrain can be made to die for chaos testing: after the first epoch (``rank1``: only the training
process of global rank 1, in a distributed run), after the ONNX file is written, and after the model version
is created but before ``challenger`` points at it."""
STRATEGIES = ("auto", "ddp", "fsdp")
PRECISIONS = ("auto", "bf16-mixed", "16-mixed", "32-true")
SERVE_FAILPOINTS = ("challenger", "challenger_slow")


class SettingsError(ValueError):
    """A ``ZOO_*`` variable with a value that cannot be used; the message names it."""


class _Reader:
    """Typed reads of one environment mapping; every failure names its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str = "") -> str:
        return self.env.get(name, default).strip() or default

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not {what}") from None

    def integer(self, name: str, default: int, minimum: int = 0) -> int:
        value = self._parsed(name, default, int, "a whole number")
        if value < minimum:
            raise SettingsError(f"{name}={value} is below its minimum of {minimum}")
        return value

    def optional_integer(self, name: str, minimum: int = 1) -> int | None:
        if not self.env.get(name, "").strip():
            return None
        return self.integer(name, minimum, minimum)

    def number(self, name: str, default: float, minimum: float = 0.0) -> float:
        value = self._parsed(name, default, float, "a number")
        if not value >= minimum:  # also refuses nan
            raise SettingsError(f"{name}={value} is below its minimum of {minimum}")
        return value

    def share(self, name: str, default: float = 0.0) -> float:
        value = self.number(name, default)
        if value > 1.0:
            raise SettingsError(f"{name}={value} is not a share between 0 and 1")
        return value

    def flag(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)

        return self._parsed(name, default, parse, "a flag (1 or 0)")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default)
        if value not in choices:
            raise SettingsError(f"{name}={value!r} is not one of {', '.join(choices)}")
        return value

    def names(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.env.get(name, "").split(",") if part.strip())

    def subset(self, name: str, known: tuple[str, ...]) -> tuple[str, ...]:
        values = self.names(name)
        unknown = [v for v in values if v not in known]
        if unknown:
            raise SettingsError(f"{name}: {', '.join(map(repr, unknown))} not among {', '.join(known)}")
        return values

    def tokens(self, name: str, min_length: int = 16) -> frozenset[str]:
        """Secrets from ``name`` (comma-separated) and from the file ``<name>_FILE`` (one a line, ``#`` comments).

        The message of a failure names the variable, never a token.
        """
        found = list(self.names(name))
        file = self.text(f"{name}_FILE")
        if file:
            try:
                lines = Path(file).expanduser().read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{name}_FILE={file!r} cannot be read ({type(exc).__name__})") from None
            from_file = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if not from_file:
                raise SettingsError(f"{name}_FILE={file!r} holds no token")
            found += from_file
        for i, token in enumerate(found, 1):
            if len(token) < min_length or any(c.isspace() or not c.isprintable() for c in token):
                raise SettingsError(f"token {i} of {name} is not a token: at least {min_length} printable characters without spaces")
        return frozenset(found)


@dataclass(frozen=True)
class ServingSettings:
    """What the services read: which models, how many workers, and the per-request limits."""

    tasks: tuple[str, ...] = ()
    """``ZOO_TASKS``: serve only these tasks; empty: every task with a champion."""
    registry: str = "dev"
    """``ZOO_SERVE_REGISTRY``: follow ``<task>`` (dev) or the production copy ``<prefix><task>`` (prod)."""
    workers: int | None = None
    """``ZOO_WORKERS``: worker processes; unset: one per CPU (one for compute-bound services)."""
    ort_threads: int | None = None
    """``ZOO_ORT_THREADS``: ONNX Runtime threads per worker; unset: the CPUs shared out among the workers."""
    poll_seconds: float = 5.0
    """``ZOO_POLL_SECONDS``: how often the champion alias is re-read."""
    max_batch_size: int = 32
    """``ZOO_MAX_BATCH_SIZE``: requests merged into one model call at most."""
    inline_ms: float = 0.25
    """``ZOO_INLINE_MS``: a model faster than this on one row runs small requests on the event loop."""
    max_body_bytes: int = 20 * 1024 * 1024
    """``ZOO_MAX_BODY_BYTES``: the largest request body."""
    max_image_pixels: int = 25_000_000
    """``ZOO_MAX_IMAGE_PIXELS``: the largest image, in pixels, checked before decoding."""
    superres_max_pixels: int = 4_000_000
    """``ZOO_SUPERRES_MAX_PIXELS``: the largest image super-resolution takes (never above the image cap)."""
    max_texts: int = 64
    """``ZOO_MAX_TEXTS``: texts per sentiment request."""
    max_records: int = 10_000
    """``ZOO_MAX_RECORDS``: records per sales request."""
    max_pairs: int = 10_000
    """``ZOO_MAX_PAIRS``: (user, movie) pairs per rate request."""
    max_infer_rows: int = 1024
    """``ZOO_MAX_INFER_ROWS``: rows per Open Inference Protocol request."""
    queue_limit: int | None = None
    """``ZOO_QUEUE_LIMIT``: requests waiting per model at most, past it 503 (unset: each task's own limit)."""
    wait_budget_ms: float | None = None
    """``ZOO_WAIT_BUDGET_MS``: how long a request may wait for the model before 503 (unset: each task's own budget)."""
    gc_freeze: bool = True
    """``ZOO_GC_FREEZE``: freeze the start-up heap out of the garbage collector's reach."""
    access_log: bool = True
    """``ZOO_ACCESS_LOG``: BentoML's access log."""
    tracing: bool = False
    """``ZOO_TRACING``: BentoML's OpenTelemetry spans (off: every route excluded; BentoML samples none by default)."""
    direct_routes: bool = True
    """``ZOO_DIRECT_ROUTES``: JSON APIs answered by their methods below the middleware (:mod:`services.direct`)."""
    api_tokens: frozenset[str] = field(default=frozenset(), repr=False)
    """``ZOO_API_TOKENS`` and ``ZOO_API_TOKENS_FILE``: bearer tokens the task and inference routes ask for (none: open)."""
    metrics_tokens: frozenset[str] = field(default=frozenset(), repr=False)
    """``ZOO_METRICS_TOKENS`` and ``ZOO_METRICS_TOKENS_FILE``: bearer tokens ``/metrics`` asks for (none: open)."""

    @classmethod
    def read(cls, r: _Reader) -> "ServingSettings":
        if r.text("ZOO_SERVE_MODEL_PREFIX"):
            raise SettingsError("ZOO_SERVE_MODEL_PREFIX is gone: set ZOO_SERVE_REGISTRY=prod to follow the production models")
        return cls(
            tasks=r.names("ZOO_TASKS"),
            registry=r.choice("ZOO_SERVE_REGISTRY", "dev", ("dev", "prod")),
            workers=r.optional_integer("ZOO_WORKERS"),
            ort_threads=r.optional_integer("ZOO_ORT_THREADS"),
            poll_seconds=r.number("ZOO_POLL_SECONDS", 5.0, minimum=0.05),
            max_batch_size=r.integer("ZOO_MAX_BATCH_SIZE", 32, minimum=1),
            inline_ms=r.number("ZOO_INLINE_MS", 0.25),
            max_body_bytes=r.integer("ZOO_MAX_BODY_BYTES", 20 * 1024 * 1024, minimum=1),
            max_image_pixels=r.integer("ZOO_MAX_IMAGE_PIXELS", 25_000_000, minimum=1),
            superres_max_pixels=r.integer("ZOO_SUPERRES_MAX_PIXELS", 4_000_000, minimum=1),
            max_texts=r.integer("ZOO_MAX_TEXTS", 64, minimum=1),
            max_records=r.integer("ZOO_MAX_RECORDS", 10_000, minimum=1),
            max_pairs=r.integer("ZOO_MAX_PAIRS", 10_000, minimum=1),
            max_infer_rows=r.integer("ZOO_MAX_INFER_ROWS", 1024, minimum=1),
            queue_limit=r.optional_integer("ZOO_QUEUE_LIMIT"),
            wait_budget_ms=r.number("ZOO_WAIT_BUDGET_MS", 0.0, minimum=0.0) or None,
            gc_freeze=r.flag("ZOO_GC_FREEZE", True),
            access_log=r.flag("ZOO_ACCESS_LOG", True),
            direct_routes=r.flag("ZOO_DIRECT_ROUTES", True),
            tracing=r.flag("ZOO_TRACING", False),
            api_tokens=r.tokens("ZOO_API_TOKENS"),
            metrics_tokens=r.tokens("ZOO_METRICS_TOKENS"),
        )


@dataclass(frozen=True)
class LoopSettings:
    """Live traffic meeting the challenger, and flowing back: shadow, canary, capture, drift (docs/operating.md)."""

    shadow_share: float = 0.0
    """``ZOO_SHADOW_SHARE``: the share of requests also sent to the ``challenger``, off the response path."""
    canary_share: float = 0.0
    """``ZOO_CANARY_SHARE``: the share of request keys the ``challenger`` answers for real."""
    canary_window: int = 100
    """``ZOO_CANARY_WINDOW``: the challenger's last requests its error rate and p99 are judged over."""
    canary_min_requests: int = 20
    """``ZOO_CANARY_MIN_REQUESTS``: requests in the window before the canary is judged."""
    capture_share: float = 0.0
    """``ZOO_CAPTURE_SHARE``: the share of requests (and responses) written under ``ZOO_HOME/capture``."""
    capture_max_bytes: int = 1 << 30
    """``ZOO_CAPTURE_MAX_BYTES``: the capture store's size cap; past it the oldest segments are deleted."""
    drift_window: int = 1000
    """``ZOO_DRIFT_WINDOW``: live input rows the drift score is computed over (per task and worker)."""
    drift_min_rows: int = 100
    """``ZOO_DRIFT_MIN_ROWS``: rows in the window before a drift score is exported."""
    drift_threshold: float = 0.25
    """``ZOO_DRIFT_THRESHOLD``: the population stability index past which a feature has drifted."""
    drift_cooldown_s: float = 86400.0
    """``ZOO_DRIFT_COOLDOWN_S``: at most one drift-started retrain of a task in this many seconds."""
    metrics_url: tuple[str, ...] = ()
    """``ZOO_METRICS_URL``: where the live figures are read: services' ``/metrics`` URLs, or a Prometheus server."""
    failpoints: tuple[str, ...] = ()
    """``ZOO_SERVE_FAILPOINTS``: chaos testing only: ``challenger`` or ``challenger_slow`` (:mod:`services.traffic`)."""

    @classmethod
    def read(cls, r: _Reader) -> "LoopSettings":
        return cls(
            shadow_share=r.share("ZOO_SHADOW_SHARE"),
            canary_share=r.share("ZOO_CANARY_SHARE"),
            canary_window=r.integer("ZOO_CANARY_WINDOW", 100, minimum=1),
            canary_min_requests=r.integer("ZOO_CANARY_MIN_REQUESTS", 20, minimum=1),
            capture_share=r.share("ZOO_CAPTURE_SHARE"),
            capture_max_bytes=r.integer("ZOO_CAPTURE_MAX_BYTES", 1 << 30, minimum=1 << 16),
            drift_window=r.integer("ZOO_DRIFT_WINDOW", 1000, minimum=10),
            drift_min_rows=r.integer("ZOO_DRIFT_MIN_ROWS", 100, minimum=1),
            drift_threshold=r.number("ZOO_DRIFT_THRESHOLD", 0.25),
            drift_cooldown_s=r.number("ZOO_DRIFT_COOLDOWN_S", 86400.0),
            metrics_url=r.names("ZOO_METRICS_URL"),
            failpoints=r.subset("ZOO_SERVE_FAILPOINTS", SERVE_FAILPOINTS),
        )

    @property
    def challenger_wanted(self) -> bool:  # the services load each task's challenger
        return self.shadow_share > 0 or self.canary_share > 0


@dataclass(frozen=True)
class DistributedSettings:
    """How a retrain spreads over devices and nodes; each field overrides the task config's (``None``: the config's)."""

    devices: int | None = None
    """``ZOO_DEVICES``: training processes per node (GPUs, or CPU processes); unset: the config's, else every visible GPU."""
    num_nodes: int | None = None
    """``ZOO_NUM_NODES``: nodes one retrain runs on."""
    strategy: str | None = None
    """``ZOO_STRATEGY``: ``auto`` (DDP when there is more than one process), ``ddp`` or ``fsdp``."""
    precision: str | None = None
    """``ZOO_PRECISION``: ``auto`` (``bf16-mixed`` on GPUs that have it, else ``16-mixed``; ``32-true`` on the CPU), or one of Lightning's."""
    node_rank: int = 0
    """``ZOO_NODE_RANK``: this node's index among ``num_nodes`` (0 runs the flow and registers)."""
    master_addr: str = "127.0.0.1"
    """``ZOO_MASTER_ADDR``: the host of node 0, where the ranks meet (torchrun's static rendezvous)."""
    master_port: int = 29500
    """``ZOO_MASTER_PORT``: the port on node 0 they meet at (a single-node run takes a free port instead)."""

    @classmethod
    def read(cls, r: _Reader) -> "DistributedSettings":
        def optional_choice(name: str, choices: tuple[str, ...]) -> str | None:
            return r.choice(name, choices[0], choices) if r.text(name) else None

        return cls(
            devices=r.optional_integer("ZOO_DEVICES"),
            num_nodes=r.optional_integer("ZOO_NUM_NODES"),
            strategy=optional_choice("ZOO_STRATEGY", STRATEGIES),
            precision=optional_choice("ZOO_PRECISION", PRECISIONS),
            node_rank=r.integer("ZOO_NODE_RANK", 0),
            master_addr=r.text("ZOO_MASTER_ADDR", "127.0.0.1"),
            master_port=r.integer("ZOO_MASTER_PORT", 29500, minimum=1),
        )

    def overrides(self) -> dict[str, object]:
        """The task config fields these settings replace."""
        values = {"devices": self.devices, "num_nodes": self.num_nodes, "strategy": self.strategy, "precision": self.precision}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; build it with :meth:`from_env`."""

    home: Path
    project_root: Path
    tracking_uri: str
    registry_uri: str
    experiment: str = "course-zoo"
    data_mirror: Path | None = None
    """``ZOO_DATA_MIRROR``: a folder of the unpacked course datasets, read instead of downloading."""
    schedules: Path | None = None
    """``ZOO_SCHEDULES``: the retraining schedules file (default ``pipelines/schedules.yaml``)."""
    dvc_remote_url: str = ""
    """``ZOO_DVC_REMOTE``: the DVC remote (a folder or ``s3://...``); default a folder under ``ZOO_HOME``."""
    dvc_s3_endpoint: str = ""
    """``ZOO_DVC_S3_ENDPOINT``: an S3-compatible server (MinIO) for an ``s3://`` remote."""
    webhook_url: str = ""
    """``ZOO_WEBHOOK_URL``: where a failed retrain is reported (POST, JSON)."""
    operator: str = ""
    """``ZOO_OPERATOR``: who promotes and rolls back (default: the OS user)."""
    quantize: bool = False
    """``ZOO_QUANTIZE``: try dynamic INT8 at export for tasks that declare it."""
    prod_registry_uri: str = ""
    """``ZOO_PROD_REGISTRY_URI``: the registry ``zoo promote --to prod`` copies into (default: the registry)."""
    prod_model_prefix: str = "prod."
    """``ZOO_PROD_MODEL_PREFIX``: the name prefix of production registered models."""
    sales_data: Path | None = None
    """``ZOO_SALES_DATA``: Kaggle's Rossmann files to ingest instead of the generated sample."""
    failpoints: tuple[str, ...] = ()
    """``ZOO_FAILPOINTS``: chaos testing only: the retrain kills itself with SIGKILL at these points (see :mod:`models.faults`)."""
    serving: ServingSettings = ServingSettings()
    loop: LoopSettings = LoopSettings()
    distributed: DistributedSettings = DistributedSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read and check every setting from ``env`` (default: ``os.environ``); raises :class:`SettingsError`."""
        r = _Reader(dict(os.environ if env is None else env))
        root = Path(r.text("ZOO_PROJECT_ROOT", str(PROJECT_ROOT))).resolve()
        home = Path(r.text("ZOO_HOME", str(root / ".zoo"))).expanduser().resolve()
        tracking = r.text("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        registry = r.text("MLFLOW_REGISTRY_URI") or tracking

        def path(name: str) -> Path | None:
            value = r.text(name)
            return Path(value).expanduser().resolve() if value else None

        return cls(
            home=home,
            project_root=root,
            tracking_uri=tracking,
            registry_uri=registry,
            experiment=r.text("ZOO_EXPERIMENT", "course-zoo"),
            data_mirror=path("ZOO_DATA_MIRROR"),
            schedules=path("ZOO_SCHEDULES"),
            dvc_remote_url=r.text("ZOO_DVC_REMOTE") or str(home / "dvc-remote"),
            dvc_s3_endpoint=r.text("ZOO_DVC_S3_ENDPOINT"),
            webhook_url=r.text("ZOO_WEBHOOK_URL"),
            operator=r.text("ZOO_OPERATOR"),
            quantize=r.flag("ZOO_QUANTIZE", False),
            prod_registry_uri=r.text("ZOO_PROD_REGISTRY_URI") or registry,
            prod_model_prefix=r.text("ZOO_PROD_MODEL_PREFIX", "prod."),
            sales_data=path("ZOO_SALES_DATA"),
            failpoints=r.subset("ZOO_FAILPOINTS", FAILPOINTS),
            serving=ServingSettings.read(r),
            loop=LoopSettings.read(r),
            distributed=DistributedSettings.read(r),
        )

    @property
    def artifact_root(self) -> Path:
        """Local artifact store used when MLflow runs embedded on SQLite."""
        return self.home / "mlartifacts"

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
            # the project's own log lines reach the flow run's logs in Prefect (INFO and up)
            "PREFECT_LOGGING_EXTRA_LOGGERS": "models,pipelines",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
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
