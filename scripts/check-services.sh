#!/usr/bin/env bash
# Checks that the PostgreSQL and Redis the tests use answer, and says exactly
# what is missing when one does not. Used by `make test` before any test runs.
set -u
database_url="${CAIRN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis_url="${CAIRN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

host_port() {
  local rest="${1#*://}"
  rest="${rest##*@}"
  rest="${rest%%/*}"
  rest="${rest%%\?*}"
  echo "$rest"
}

missing=0
check() {
  local what="$1" url="$2" variable="$3" hint="$4"
  local target host port
  target=$(host_port "$url")
  host="${target%:*}"
  port="${target##*:}"
  if timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then
    echo "ok: $what answers at $host:$port"
  else
    echo "MISSING: $what does not answer at $host:$port ($variable=$url)." >&2
    echo "         $hint" >&2
    missing=1
  fi
}

check PostgreSQL "$database_url" CAIRN_TEST_DATABASE_URL \
  "Start it (for example: pg_ctlcluster \$(ls /etc/postgresql) main start) or point CAIRN_TEST_DATABASE_URL at one; the tests need a role that may CREATE DATABASE."
check Redis "$redis_url" CAIRN_TEST_REDIS_URL \
  "Start it (for example: redis-server --daemonize yes --port 6379 --save '') or point CAIRN_TEST_REDIS_URL at one."
exit $missing
