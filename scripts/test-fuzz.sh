#!/usr/bin/env bash
# Bounded fuzzing of the request decoders and the validation behind them (fuzz/: cargo fuzz with
# libFuzzer, a workspace and target directory of its own). Builds every target, then runs each
# for FUZZ_SECONDS (default 20) from an empty corpus, as many at a time as there are cores
# (FUZZ_JOBS). A crash fails the suite and leaves the input that caused it under
# fuzz/artifacts/<target>/. Longer runs, as reported in RELIABILITY.md:
# FUZZ_SECONDS=300 scripts/test-fuzz.sh. Ends with "fuzz: N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT/fuzz"

# cargo fuzz passes nightly-only rustc flags (sanitizer coverage); the stable toolchain accepts
# them when told it is bootstrapping itself.
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked --quiet
fi
seconds=${FUZZ_SECONDS:-20}
# Unoptimised builds with overflow checks: half the build time of --release, and an arithmetic
# overflow is a crash. No sanitizer: the workspace forbids unsafe code, so what fuzzing finds
# here are panics, overflows and broken invariants.
flags=(--dev --sanitizer none)

log "building the fuzz targets"
cargo fuzz build "${flags[@]}"
du -sh target 2>/dev/null | awk '{print "fuzz/target: " $1}'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# libFuzzer keeps to one core, so targets run side by side, each for its full FUZZ_SECONDS.
at_once=${FUZZ_JOBS:-$(nproc)}
run_target() {
  local target=$1 status=0
  mkdir -p "$work/$target"
  cargo fuzz run "${flags[@]}" "$target" "$work/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$work/$target.log" 2>&1 || status=$?
  echo "$status" >"$work/$target.status"
}
targets=$(cargo fuzz list)
for target in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$at_once" ]; do
    wait -n || true
  done
  run_target "$target" &
done
wait

passed=0
failed=0
for target in $targets; do
  # A runner that left no status (killed) counts as failed.
  if [ "$(cat "$work/$target.status" 2>/dev/null || echo 1)" -eq 0 ]; then
    passed=$((passed + 1))
    verdict=ok
  else
    failed=$((failed + 1))
    verdict=FAILED
    tail -n 40 "$work/$target.log"
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log" | tail -1)
  coverage=$(grep -o 'cov: [0-9]*' "$work/$target.log" | tail -1)
  echo "$target: $verdict, ${runs:-?} runs in ${seconds}s, ${coverage:-cov: ?}, corpus $(ls "$work/$target" | wc -l)"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
