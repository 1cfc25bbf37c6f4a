#!/usr/bin/env bash
# Runs every Xiaowo test: proto lint, formatting, clippy, the whole Rust workspace's unit
# and integration tests (real SQLite files, real servers on loopback ports, real grpcurl), and
# the web client's unit tests and end-to-end tests in headless Chromium.
# Installs what it needs first; safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_npm
# The binary's allocator (jemalloc) is built from source with make.
need_apt make make
need_grpcurl
need_apt promtool prometheus
need_aiosmtpd

# Disk is the first thing a fresh machine runs out of; say how much there is.
df -h . | tail -1 | awk '{print "disk free where the build runs: " $4}'

failures=()
# Runs one suite; a failure is reported at the end instead of skipping the suites after it.
step() {
  local name=$1
  shift
  log "$name"
  timed "$name" "$@" || failures+=("$name")
}

step "buf lint (proto/)" bash -c 'cd web && npx --no-install buf lint ../proto'
step "promtool (deploy/prometheus: rules, their unit tests, scrape config)" bash -c '
  promtool check rules deploy/prometheus/rules.yml &&
  promtool test rules deploy/prometheus/rules_test.yml &&
  promtool check config deploy/prometheus/prometheus.yml'
# `promtool check metrics` on live /metrics pages runs in monitor-svc's tests and test-split.sh.
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo test" cargo test --workspace --no-fail-fast
step "fuzzing (fuzz/: every target for 20 s)" scripts/test-fuzz.sh
step "service tests again on PostgreSQL" scripts/test-postgres.sh
step "web client (unit and headless-browser tests)" scripts/test-web.sh
step "split deployment behind nginx" scripts/test-split.sh
step "two instances on PostgreSQL and NATS behind nginx" scripts/test-scaleout.sh
# The package's checks are about packaging (files, user, unit, purge): the debug build the
# suites above made is packaged, so CI pays no release build (scripts/package.sh makes the
# release package).
step "Debian package: build, install, run as its user, purge" env PROFILE=dev scripts/test-package.sh
step "benchmark smoke" scripts/bench.sh --smoke
step "media benchmark smoke" scripts/bench-media.sh --smoke

list_timings
printf '%5d s  in all\n' "$SECONDS"

echo
if [ ${#failures[@]} -eq 0 ]; then
  echo "all suites passed"
else
  printf 'failed suite: %s\n' "${failures[@]}"
  exit 1
fi
