#!/usr/bin/env bash
# Drops test databases and Redis keys that earlier runs left behind (a test
# that panicked before its cleanup), so they do not pile up on a machine.
set -u
url="${CAIRN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis="${CAIRN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

if command -v psql >/dev/null; then
  for name in $(psql "$url" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'cairn\_test\_%'" 2>/dev/null); do
    psql "$url" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
fi
if command -v redis-cli >/dev/null; then
  redis-cli -u "$redis" --scan --pattern 'cairn-test:*' 2>/dev/null | xargs -r -n 500 redis-cli -u "$redis" del >/dev/null 2>&1 || true
fi
exit 0
