#!/bin/sh
# Writes MLflow's basic-auth configuration file from the environment, then runs the
# command (`mlflow server --app-name basic-auth ...`). The file names the auth database
# with its password, so it is rendered at start from secrets, never baked in an image.
#
#   MLFLOW_AUTH_DATABASE_URI         users and permissions (postgresql://user:pass@host/db), required
#   MLFLOW_AUTH_DEFAULT_PERMISSION   what every user may do unless granted more (default READ)
#   MLFLOW_AUTH_ADMIN_USERNAME       the admin created on first start (default admin)
#   MLFLOW_AUTH_ADMIN_PASSWORD       its password, read by MLflow itself on first start, required then
#   MLFLOW_FLASK_SERVER_SECRET_KEY   CSRF secret of the auth app, read by MLflow itself
#   MLFLOW_AUTH_CONFIG_PATH          where the file is written (default /tmp/mlflow-auth/basic_auth.ini)
set -eu
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI to the auth database URI}"
export MLFLOW_AUTH_CONFIG_PATH="${MLFLOW_AUTH_CONFIG_PATH:-/tmp/mlflow-auth/basic_auth.ini}"
mkdir -p "$(dirname "$MLFLOW_AUTH_CONFIG_PATH")"
umask 077
# configparser treats % as interpolation: double it (URL-encoded passwords have them).
database_uri=$(printf '%s' "$MLFLOW_AUTH_DATABASE_URI" | sed 's/%/%%/g')
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${database_uri}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
exec "$@"
