"""Training pipelines: data ingest, Prefect flows, MLflow tracking and the ``zoo`` CLI."""
