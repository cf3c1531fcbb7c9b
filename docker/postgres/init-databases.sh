#!/usr/bin/env bash
# First start of the postgres service: one role and one database each for the Dagster
# instance, the warehouse (anomaly tables BI tools read) and MLflow's backend store, plus
# mlflow_auth (MLflow's users and permissions), owned by the mlflow role.
# Passwords come from the container's environment (docker/.env), never from this file.
set -euo pipefail
for pair in "dagster:${DAGSTER_DB_PASSWORD}" "warehouse:${WAREHOUSE_DB_PASSWORD}" "mlflow:${MLFLOW_DB_PASSWORD}"; do
  name="${pair%%:*}"
  password="${pair#*:}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v name="$name" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
SQL
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<'SQL'
CREATE DATABASE mlflow_auth OWNER mlflow;
SQL
