#!/usr/bin/env bash
# The supply-chain checks of `make supply-chain` (part of `make lint`):
# cargo deny (licences, advisories, duplicate versions, sources; the rules and
# every exception with its reason are in deny.toml) and cargo audit, both
# offline against the copy of the RustSec advisory database in ADVISORY_DB
# (../shared/advisory-db): the machines cannot reach the online one.
#
# cargo-deny reads its database as a git clone named after the database's
# URL, and takes the last commit's date as the database's age; this script
# lays the snapshot out that way under .tools/advisory-dbs, committed with
# the snapshot's own date, once per snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."

deny="${CARGO_DENY:-.tools/rust/bin/cargo-deny}"
audit="${CARGO_AUDIT:-.tools/rust/bin/cargo-audit}"
source_db="${ADVISORY_DB:-../shared/advisory-db}"
root="$PWD/.tools/advisory-dbs"
# The directory name cargo-deny derives from https://github.com/rustsec/advisory-db.
clone="$root/advisory-db-3157b0e258782691"

if [ ! -d "$source_db/crates" ]; then
  echo "supply-chain: no RustSec advisory database at $source_db (set ADVISORY_DB)" >&2
  exit 1
fi
snapshot_note="$(cat "$source_db/SNAPSHOT.txt" 2>/dev/null || echo "no SNAPSHOT.txt")"
snapshot_date="$(grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}' <<<"$snapshot_note" | tail -1 || true)"
snapshot_date="${snapshot_date:-1970-01-01}"

if [ ! -f "$clone/.cairn-snapshot" ] || ! diff -q "$clone/.cairn-snapshot" <(printf '%s\n' "$snapshot_note") >/dev/null; then
  rm -rf "$clone"
  mkdir -p "$clone"
  cp -R "$source_db"/. "$clone"/
  chmod -R u+w "$clone"
  (
    cd "$clone"
    git init -q
    git add -A
    GIT_AUTHOR_DATE="${snapshot_date}T00:00:00Z" GIT_COMMITTER_DATE="${snapshot_date}T00:00:00Z" \
      git -c user.name=cairn -c user.email=cairn@invalid -c commit.gpgsign=false \
      commit -q -m "RustSec advisory database snapshot"
  )
  printf '%s\n' "$snapshot_note" >"$clone/.cairn-snapshot"
fi

# cargo-deny reads every package's manifest, those of other platforms too;
# fetching them is the one step that needs the registry.
cargo fetch --locked --quiet

echo "supply-chain: advisories as of $snapshot_date ($source_db)"
CAIRN_ADVISORY_DB_ROOT="$root" "$deny" --offline --log-level error check \
  --show-stats advisories bans licenses sources
"$audit" audit --no-fetch --stale --db "$clone" --deny warnings \
  $(sed -nE 's/^ *\{ id = "(RUSTSEC-[0-9]+-[0-9]+)".*/--ignore \1/p' deny.toml)
