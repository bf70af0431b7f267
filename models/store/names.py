"""Names in the model store, each defined once: aliases, tags, artifact paths, registered-model names."""

from __future__ import annotations

MODEL_FILE = "model.onnx"
"""The ONNX graph of a model version."""
SPEC_FILE = "spec.json"
"""The JSON spec beside it: the task's preprocessing and postprocessing parameters."""

CHAMPION = "champion"
"""The alias the services follow."""
CHALLENGER = "challenger"
"""The alias of the newest registered version, until it is promoted."""

ARTIFACT_PATHS = {MODEL_FILE: MODEL_FILE, SPEC_FILE: f"extra_files/{SPEC_FILE}"}
"""Where each verified artifact lies inside an MLflow ONNX model folder; nothing else of a version is loaded."""


class Tag:
    """Tags on runs and model versions."""

    TASK = "task"
    CONFIG = "config"
    DATA_HASH = "data_hash"
    """The md5 that ``data.dvc`` records for all of ``data/``."""
    TASK_DATA_HASH = "task_data_hash"
    """sha256 of the files of the task's own datasets (what the retrain skip compares)."""
    CODE_HASH = "code_hash"
    GIT_COMMIT = "git_commit"
    GIT_DIRTY = "git_dirty"
    RUN_ID = "run_id"
    METRIC = "metric_name"
    """The task's main metric, so that reading the registry needs no task module."""
    HIGHER_IS_BETTER = "higher_is_better"
    SOURCE = "zoo.source"
    """Where a production copy came from (``<registry>#<task>/<version>``)."""
    PREVIOUS_CHAMPION = "zoo.previous_champion"
    ORIGIN = "source"
    """``fastai`` on a version imported from a fastai Learner (absent: trained here)."""
    ORIGIN_SHA256 = "source_sha256"
    """The sha256 of the imported file."""
    TRIGGER = "zoo.trigger"
    """What started the retrain: ``manual``, ``schedule``, or ``drift: <feature> <score>``."""
    QUANTIZED = "onnx_quantized"
    ACCELERATED = "onnx_accelerated_providers"

    @staticmethod
    def sha256(artifact: str) -> str:
        """The tag holding an artifact's sha256, recorded at registration."""
        return f"sha256.{artifact}"

    @staticmethod
    def action(action: str, field: str) -> str:
        """``zoo.<promote|rollback>.<by|at|reason|forced|gates>``: the last such action on a version."""
        return f"zoo.{action}.{field}"


COPIED_TO_PROD = (
    Tag.TASK, Tag.DATA_HASH, Tag.TASK_DATA_HASH, Tag.CODE_HASH, Tag.GIT_COMMIT, Tag.RUN_ID, Tag.METRIC, Tag.HIGHER_IS_BETTER, Tag.ORIGIN, Tag.ORIGIN_SHA256,
)
"""Tags a production copy keeps (besides the sha256 ones)."""


def model_name(task: str, registry: str = "dev", prod_prefix: str = "prod.") -> str:
    """The registered model of ``task``: ``<task>`` in the dev registry, ``<prod_prefix><task>`` in production."""
    if registry not in ("dev", "prod"):
        raise ValueError(f"registry must be dev or prod, not {registry!r}")
    return task if registry == "dev" else f"{prod_prefix}{task}"
