#!/usr/bin/env bash
# `buf breaking` of proto/ against the main branch: on a feature branch,
# against main; on main itself, against main's previous commit, so that a
# change that lands is checked against what was there before.
set -euo pipefail
buf="${BUF:-.tools/node_modules/.bin/buf}"
against_ref=""
for candidate in origin/main main; do
  if git rev-parse --verify --quiet "$candidate" >/dev/null; then
    against_ref="$candidate"
    break
  fi
done
if [ -z "$against_ref" ]; then
  echo "buf breaking: no main branch here; nothing to compare against"
  exit 0
fi
if [ "$(git rev-parse "$against_ref")" = "$(git rev-parse HEAD)" ]; then
  if ! git rev-parse --verify --quiet HEAD~1 >/dev/null; then
    echo "buf breaking: HEAD is the first commit of main; nothing to compare against"
    exit 0
  fi
  against_ref="HEAD~1"
fi
if ! git ls-tree -r --name-only "$against_ref" -- proto | grep -q '\.proto$'; then
  echo "buf breaking: $against_ref has no proto files yet; nothing to compare against"
  exit 0
fi
echo "buf breaking: proto/ against $against_ref"
"$buf" breaking proto --against ".git#ref=$(git rev-parse "$against_ref"),subdir=proto"
