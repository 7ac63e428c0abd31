#!/bin/bash
# The official postgres entrypoint's contract (the parts compose uses).
set -eo pipefail
: "${POSTGRES_PASSWORD:?the official image refuses to start without POSTGRES_PASSWORD}"
USER_NAME=${POSTGRES_USER:-postgres}
DB_NAME=${POSTGRES_DB:-$USER_NAME}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
  initdb --username="$USER_NAME" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$DB_NAME" != postgres ]; then
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    psql -v ON_ERROR_STOP=1 --username="$USER_NAME" --dbname=postgres -c "CREATE DATABASE \"$DB_NAME\""
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  fi
  echo "init done"
fi
exec postgres -c listen_addresses='*' "$@"
