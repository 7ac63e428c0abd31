#!/bin/bash
# The official mysql entrypoint's contract, on MariaDB.
set -eo pipefail
: "${MYSQL_ROOT_PASSWORD:?the official image refuses to start without MYSQL_ROOT_PASSWORD}"
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

docker_process_sql() {
  mariadb --protocol=socket --socket="$SOCKET" -uroot --password="$MYSQL_ROOT_PASSWORD" \
    --database=mysql "$@"
}

if [ ! -d "$DATADIR/mysql" ]; then
  chown -R mysql:mysql "$DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --skip-networking --socket="$SOCKET" &
  pid=$!
  for _ in $(seq 60); do mariadb-admin --socket="$SOCKET" -uroot ping --silent 2>/dev/null && break; sleep 1; done
  mariadb --protocol=socket --socket="$SOCKET" -uroot <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
CREATE USER 'root'@'%' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) if [ -x "$f" ]; then echo "running $f"; "$f"; else echo "sourcing $f"; . "$f"; fi ;;
      *.sql) echo "running $f"; docker_process_sql < "$f" ;;
    esac
  done
  mariadb-admin --socket="$SOCKET" -uroot --password="$MYSQL_ROOT_PASSWORD" shutdown
  wait "$pid" || true
  echo "init done"
fi
exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" --bind-address=0.0.0.0 "$@"
