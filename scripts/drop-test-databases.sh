#!/usr/bin/env bash
# Drops test databases and Redis keys that earlier runs left behind (a test
# that panicked before its cleanup), so they do not pile up on a machine.
# Only what is over an hour old goes: a test run going on beside this one
# (CI and a developer on one machine) keeps its own.
set -u
url="${CAIRN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
redis="${CAIRN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

if command -v psql >/dev/null; then
  old=$(psql "$url" -Atc "
    SELECT datname FROM pg_database
    WHERE datname LIKE 'cairn\_test\_%'
      AND (pg_stat_file('base/' || oid || '/PG_VERSION')).modification < now() - interval '1 hour'" 2>/dev/null)
  for name in $old; do
    psql "$url" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
fi
if command -v redis-cli >/dev/null; then
  redis-cli -u "$redis" --scan --pattern 'cairn-test:*' 2>/dev/null | while read -r key; do
    idle=$(redis-cli -u "$redis" object idletime "$key" 2>/dev/null || echo 0)
    if [ "${idle:-0}" -gt 3600 ] 2>/dev/null; then
      redis-cli -u "$redis" del "$key" >/dev/null 2>&1 || true
    fi
  done
fi
exit 0
