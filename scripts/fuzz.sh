#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time: `make fuzz-smoke`
# (part of `make test`, the kept corpus is read but not changed) and
# `make fuzz` (longer; new interesting inputs join fuzz/corpus/).
#
#   scripts/fuzz.sh smoke|grow SECONDS TARGET...
#
# Only the stable toolchain is assumed: RUSTC_BOOTSTRAP=1 lets it take the
# instrumentation flags cargo-fuzz passes, and no sanitizer is asked for
# (AddressSanitizer needs nightly's -Zsanitizer; Cairn's code has no unsafe).
# A failing input is kept in fuzz/artifacts/<target>/ and named in the output.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

mode="$1"
seconds="$2"
shift 2
fuzz="${CARGO_FUZZ:-../.tools/rust/bin/cargo-fuzz}"
flags=(-timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 "-max_total_time=$seconds")
export RUSTC_BOOTSTRAP=1
unset CARGO_TARGET_DIR

# smoke: a quick unoptimised build; grow: an optimised one, for long runs.
if [ "$mode" = smoke ]; then
  profile=(--dev)
else
  profile=(--release --codegen-units 16)
fi
"$fuzz" build --sanitizer none "${profile[@]}"

total_runs=0
for target in "$@"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  if [ "$mode" = smoke ]; then
    scratch="$(mktemp -d)"
    corpora=("$scratch" "corpus/$target")
  else
    scratch=""
    corpora=("corpus/$target")
  fi
  if ! "$fuzz" run --sanitizer none "${profile[@]}" "$target" "${corpora[@]}" -- "${flags[@]}" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target FAILED; the input that failed is in fuzz/artifacts/$target/" >&2
    rm -rf "$log" ${scratch:+"$scratch"}
    exit 1
  fi
  runs="$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)"
  echo "fuzz: $target: ${runs:-0} executions in ${seconds} s, crashes 0"
  total_runs=$((total_runs + ${runs:-0}))
  rm -rf "$log" ${scratch:+"$scratch"}
done
echo "fuzz: $# targets, $total_runs executions, crashes 0"
