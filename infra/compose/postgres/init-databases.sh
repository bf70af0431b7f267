#!/bin/bash
# Creates the databases of the compose stack on PostgreSQL's first start (an empty
# volume): `mlflow` (tracking and registry), `mlflow_auth` (MLflow's basic-auth users)
# and `prefect` (with the pg_trgm extension Prefect needs), each owned by its own role.
# Passwords come from the postgres container's environment (see compose.yaml).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" -v prefect_password="$PREFECT_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE DATABASE mlflow_auth OWNER mlflow;
CREATE ROLE prefect LOGIN PASSWORD :'prefect_password';
CREATE DATABASE prefect OWNER prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
