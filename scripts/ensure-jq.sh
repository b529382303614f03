#!/usr/bin/env bash
# The README's walk-through keeps ids from earlier answers in shell variables
# with jq, and `make test` runs that walk-through (tests/suite/readme.rs).
# Installs jq from Debian's packages only when it is missing.
set -euo pipefail

if command -v jq >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "jq is missing: install it with your system's package manager (https://jqlang.github.io/jq/)" >&2
    exit 1
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq jq
