"""A training run in the tracking server: created once per retrain and passed through the flow."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag

from models.settings import Settings
from models.store.connect import client
from models.task import TrainConfig


def experiment_id(settings: Settings, c: MlflowClient) -> str:
    """The experiment's id (created if missing; local artifacts when MLflow runs embedded)."""
    existing = c.get_experiment_by_name(settings.experiment)
    if existing is not None:
        return existing.experiment_id
    embedded = settings.tracking_uri.startswith(("sqlite:", "file:", "/"))
    return c.create_experiment(settings.experiment, artifact_location=settings.artifact_root.as_uri() if embedded else None)


class RunLog:
    """One MLflow run: parameters, metrics (sent in batches), tags, figures and the dataset it read."""

    def __init__(self, c: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = c, run_id

    @classmethod
    def start(cls, settings: Settings, name: str, tags: Mapping[str, str]) -> "RunLog":
        c = client(settings)
        run = c.create_run(experiment_id(settings, c), run_name=name, tags=dict(tags))
        return cls(c, run.info.run_id)

    def params(self, config: TrainConfig, config_name: str) -> None:
        values = {k: "None" if v is None else str(v) for k, v in asdict(config).items()}
        values["config_name"] = config_name
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in values.items()])

    def more_params(self, values: Mapping[str, str]) -> None:
        """Parameters beside the config (e.g. what the run's hardware made of it)."""
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in values.items()])

    def metrics(self, values: Mapping[str, float], step: int = 0) -> None:
        """Log finite ``values`` in one request."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in values.items() if v is not None and math.isfinite(v)]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def epoch_listener(self, row: dict[str, float]) -> None:
        """A training listener: each epoch's metrics with the epoch as step."""
        self.metrics({k: v for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))

    def tags(self, values: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in values.items()])

    def figure(self, fig: Any, path: str) -> None:
        self.client.log_figure(self.run_id, fig, path)

    def dataset(self, name: str, digest: str, source: str, profile: Mapping[str, Any]) -> None:
        """Record the data version the run trained on (MLflow's dataset inputs, context ``training``)."""
        entity = Dataset(name=name, digest=digest[:36], source_type="dvc", source=source, profile=json.dumps(dict(profile)))
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])])

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)
