"""One way to reach the model store, and its errors in words an operator can act on."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from models.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


def client(settings: Settings, uri: str | None = None) -> MlflowClient:
    """A client of the tracking server and registry of ``settings`` (or of the registry at ``uri``)."""
    from mlflow import MlflowClient  # about four seconds: imported by what needs it, not by the ops commands

    if uri is not None:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def explain(exc: BaseException, uri: str | None = None) -> str:
    """A registry error in words an operator can act on (401/403 name the variables to fix)."""
    text = str(exc).strip().strip('"')
    match = re.search(r"error code (\d{3})", text)
    code = int(match.group(1)) if match else None
    where = f"the MLflow server at {uri}" if uri else "the MLflow server"
    if code == 401:
        return (
            f"{where} refused the credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to a user of that server"
        )
    if code == 403:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "this user")
        return f"{where} denied {user} this operation (HTTP 403): an admin must grant it EDIT or MANAGE permission"
    return text
