#!/bin/bash
# Runs once, on the first start of an empty MySQL data volume (the image's entrypoint sources
# /docker-entrypoint-initdb.d/*.sh and provides docker_process_sql, which runs SQL as root).
# Creates the app database with a least-privilege user, and MLflow's own database and user.
set -euo pipefail
: "${RETRAIN_DB_NAME:?}" "${RETRAIN_DB_USER:?}" "${RETRAIN_DB_PASSWORD:?}"
: "${MLFLOW_DB_NAME:?}" "${MLFLOW_DB_USER:?}" "${MLFLOW_DB_PASSWORD:?}"

docker_process_sql <<SQL
CREATE DATABASE IF NOT EXISTS \`${RETRAIN_DB_NAME}\` CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS \`${MLFLOW_DB_NAME}\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '${RETRAIN_DB_USER}'@'%' IDENTIFIED BY '${RETRAIN_DB_PASSWORD}';
CREATE USER IF NOT EXISTS '${MLFLOW_DB_USER}'@'%' IDENTIFIED BY '${MLFLOW_DB_PASSWORD}';
-- The app: rows, its own tables (write then swap needs CREATE, ALTER, DROP), Optuna's schema
-- (indexes, foreign keys); nothing outside its database, no FILE, no GRANT.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES,
      CREATE TEMPORARY TABLES, LOCK TABLES
   ON \`${RETRAIN_DB_NAME}\`.* TO '${RETRAIN_DB_USER}'@'%';
GRANT ALL PRIVILEGES ON \`${MLFLOW_DB_NAME}\`.* TO '${MLFLOW_DB_USER}'@'%';
FLUSH PRIVILEGES;
SQL
