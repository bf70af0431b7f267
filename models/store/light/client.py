"""MLflow's own client behind :class:`~models.store.light.Store`, for the stores the lighter ones do not cover."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.errors import NotFound
from models.settings import Settings
from models.store.light import Version


class ClientStore:
    """:class:`mlflow.MlflowClient` for tracking and registry URI ``uri`` (imported on first use)."""

    def __init__(self, settings: Settings, uri: str) -> None:
        from models.store.connect import client

        self.settings, self.uri = settings, uri
        self.client = client(settings, uri)

    @staticmethod
    def _view(mv: Any) -> Version:
        return Version(name=mv.name, version=str(mv.version), run_id=mv.run_id or None, tags=dict(mv.tags), created_ms=int(mv.creation_timestamp or 0))

    def by_alias(self, name: str, alias: str) -> Version | None:
        from models.store.reading import by_alias

        mv = by_alias(self.client, name, alias)
        return None if mv is None else self._view(mv)

    def version(self, name: str, version: str) -> Version:
        from mlflow.exceptions import MlflowException

        try:
            return self._view(self.client.get_model_version(name, str(version)))
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise NotFound(f"registered model {name!r} has no version {version} in {self.uri}") from None
            raise

    def metrics(self, run_id: str) -> dict[str, float]:
        return dict(self.client.get_run(run_id).data.metrics)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, str(version), key, value)

    def tagged_runs(self, experiment: str, key: str, value: str) -> list[dict[str, str]]:
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        quoted = value.replace("\\", "\\\\").replace("'", "\\'")
        runs = self.client.search_runs([exp.experiment_id], filter_string=f"tags.`{key}` = '{quoted}'", order_by=["attributes.start_time ASC"], max_results=50_000)
        return [dict(run.data.tags) for run in runs]

    def log_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> None:
        from dataclasses import replace

        from mlflow.entities import RunTag

        from models.store.runs import experiment_id

        run = self.client.create_run(experiment_id(replace(self.settings, experiment=experiment), self.client), run_name=run_name)
        self.client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run.info.run_id, "FINISHED")
