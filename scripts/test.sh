#!/usr/bin/env bash
# Runs every Xiaowo test: proto lint, formatting, clippy, the whole Rust workspace's unit
# and integration tests (real SQLite files, real servers on loopback ports, real grpcurl), and
# the web client's unit tests and end-to-end tests in headless Chromium.
# Installs what it needs first; safe to run again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_npm
need_grpcurl
need_apt promtool prometheus
need_aiosmtpd

log "buf lint (proto/)"
(cd web && npx --no-install buf lint ../proto)

log "promtool (deploy/prometheus: rules, their unit tests, scrape config)"
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules_test.yml
promtool check config deploy/prometheus/prometheus.yml
# `promtool check metrics` on a live /metrics page runs inside monitor-svc's tests.

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "cargo test"
cargo test --workspace --no-fail-fast

log "web client (unit and headless-browser tests)"
scripts/test-web.sh
