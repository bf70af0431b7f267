"""Create the MLflow users that course-zoo's services log in as; safe to run again.

Runs as the admin (MLFLOW_TRACKING_USERNAME/PASSWORD) against MLFLOW_TRACKING_URI
and creates, when missing, ZOO_SERVING_USERNAME (reads the registry: the server's
default permission is READ) and ZOO_TRAINER_USERNAME (creates the experiment and
registered models, and so manages them), with the matching *_PASSWORD variables.
"""

from __future__ import annotations

import os
import sys

from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client


def main() -> int:
    client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    for role in ("SERVING", "TRAINER"):
        username, password = os.environ[f"ZOO_{role}_USERNAME"], os.environ[f"ZOO_{role}_PASSWORD"]
        try:
            client.create_user(username, password)
            print(f"created MLflow user {username}")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            print(f"MLflow user {username} exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
