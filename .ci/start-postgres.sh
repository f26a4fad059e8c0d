#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the test suite and prints its URL.
# Usage: .ci/start-postgres.sh [DIR] [PORT]   (runs the server as user 'postgres' when root)
set -euo pipefail
dir=${1:-/tmp/ota-pg}
port=${2:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$bin" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || useradd -r -m postgres; fi
if [ ! -s "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"; [ "$(id -u)" = 0 ] && chown postgres "$dir"
  run "$bin/initdb -D '$dir' -U postgres -A trust --no-sync" >/dev/null
fi
if ! run "$bin/pg_ctl -D '$dir' status" >/dev/null 2>&1; then
  run "$bin/pg_ctl -D '$dir' -l '$dir/log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300\" start" >/dev/null
fi
echo "postgres://postgres@127.0.0.1:$port/postgres"
