"""An MLflow tracking server and registry through MLflow's documented REST API (``/api/2.0/mlflow``), without importing MLflow.

Authentication is MLflow's own: ``MLFLOW_TRACKING_TOKEN`` (a bearer token) or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (basic), TLS from
``MLFLOW_TRACKING_INSECURE_TLS``, ``MLFLOW_TRACKING_SERVER_CERT_PATH`` and
``MLFLOW_TRACKING_CLIENT_CERT_PATH``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import httpx

from models.errors import NotFound
from models.store.light import RegistryError, Version

MISSING = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
"""Error codes of a call about something that does not exist (an unknown alias is ``INVALID_PARAMETER_VALUE``)."""


class RestStore:
    """The calls of :class:`~models.store.light.Store` against the MLflow server at ``uri``."""

    def __init__(self, uri: str, timeout: float = 30.0) -> None:
        self.uri = uri.rstrip("/")
        env = os.environ
        auth: httpx.Auth | None = None
        headers = {}
        if env.get("MLFLOW_TRACKING_TOKEN"):
            headers["Authorization"] = f"Bearer {env['MLFLOW_TRACKING_TOKEN']}"
        elif env.get("MLFLOW_TRACKING_USERNAME"):
            auth = httpx.BasicAuth(env["MLFLOW_TRACKING_USERNAME"], env.get("MLFLOW_TRACKING_PASSWORD", ""))
        insecure = env.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true")
        verify: bool | str = False if insecure else env.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
        self.http = httpx.Client(
            base_url=f"{self.uri}/api/2.0/mlflow",
            auth=auth,
            headers=headers,
            verify=verify,
            cert=env.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
            timeout=timeout,
            transport=httpx.HTTPTransport(retries=3, verify=verify),
        )

    def _call(self, method: str, path: str, body: Mapping[str, Any], absent: tuple[str, ...] = MISSING) -> dict[str, Any]:
        """One API call; ``absent`` error codes raise :class:`NotFound`, other refusals :class:`RegistryError`, worded like MLflow's."""
        try:
            if method == "GET":
                response = self.http.get(path, params=dict(body))
            else:
                response = self.http.request(method, path, json=dict(body))
        except httpx.HTTPError as exc:
            raise RegistryError(f"the MLflow server at {self.uri} could not be reached ({type(exc).__name__}: {exc})") from None
        if response.is_success:
            return response.json() if response.content else {}
        try:
            error = response.json()
        except ValueError:
            error = {}
        code = error.get("error_code", "")
        message = f"API request to {self.uri}/api/2.0/mlflow{path} failed with error code {response.status_code}: {code} {error.get('message', response.text[:200])}".strip()
        if code in absent:
            raise NotFound(message)
        raise RegistryError(message)

    @staticmethod
    def _view(mv: Mapping[str, Any]) -> Version:
        tags = {t["key"]: t.get("value", "") for t in mv.get("tags", [])}
        return Version(name=mv["name"], version=str(mv["version"]), run_id=mv.get("run_id") or None, tags=tags, created_ms=int(mv.get("creation_timestamp", 0)))

    def by_alias(self, name: str, alias: str) -> Version | None:
        try:
            found = self._call("GET", "/registered-models/alias", {"name": name, "alias": alias}, absent=(*MISSING, "INVALID_PARAMETER_VALUE"))
            return self._view(found["model_version"])
        except NotFound:
            return None

    def version(self, name: str, version: str) -> Version:
        found = self._call("GET", "/model-versions/get", {"name": name, "version": str(version)}, absent=(*MISSING, "INVALID_PARAMETER_VALUE"))
        return self._view(found["model_version"])

    def metrics(self, run_id: str) -> dict[str, float]:
        run = self._call("GET", "/runs/get", {"run_id": run_id})["run"]
        return {m["key"]: float(m["value"]) for m in run.get("data", {}).get("metrics", [])}

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self._call("POST", "/registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", "/registered-models/alias", {"name": name, "alias": alias})

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._call("POST", "/model-versions/set-tag", {"name": name, "version": str(version), "key": key, "value": value})

    def _experiment_id(self, experiment: str, create: bool) -> str | None:
        try:
            return str(self._call("GET", "/experiments/get-by-name", {"experiment_name": experiment})["experiment"]["experiment_id"])
        except NotFound:
            if not create:
                return None
        return str(self._call("POST", "/experiments/create", {"name": experiment})["experiment_id"])

    def tagged_runs(self, experiment: str, key: str, value: str) -> list[dict[str, str]]:
        experiment_id = self._experiment_id(experiment, create=False)
        if experiment_id is None:
            return []
        quoted = value.replace("\\", "\\\\").replace("'", "\\'")
        body: dict[str, Any] = {
            "experiment_ids": [experiment_id],
            "filter": f"tags.`{key}` = '{quoted}'",
            "order_by": ["attributes.start_time ASC"],
            "max_results": 1000,
        }
        found: list[dict[str, str]] = []
        while True:
            page = self._call("POST", "/runs/search", body)
            found += [{t["key"]: t.get("value", "") for t in run.get("data", {}).get("tags", [])} for run in page.get("runs", [])]
            if not page.get("next_page_token"):
                return found
            body["page_token"] = page["next_page_token"]

    def log_run(self, experiment: str, run_name: str, tags: Mapping[str, str]) -> None:
        experiment_id = self._experiment_id(experiment, create=True)
        now = int(time.time() * 1000)
        run = self._call("POST", "/runs/create", {"experiment_id": experiment_id, "run_name": run_name, "start_time": now})["run"]
        run_id = run["info"]["run_id"]
        self._call("POST", "/runs/log-batch", {"run_id": run_id, "tags": [{"key": k, "value": v} for k, v in tags.items()]})
        self._call("POST", "/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
