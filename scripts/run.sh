#!/usr/bin/env bash
# Builds and runs Xiaowo on this machine: every service in one process on one port, SQLite
# files under ./data, the web client included. Extra arguments go to `xiaowo up`
# (see `xiaowo up --help`), e.g. `scripts/run.sh --listen 0.0.0.0:8080`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_npm
# The binary's allocator (jemalloc) is built from source with make.
need_apt make make
if [ -f web/build.mjs ]; then
  log "building the web client"
  (cd web && npm run --silent build)
fi

log "building xiaowo (release)"
cargo build --release -p xiaowo

log "starting xiaowo up"
exec ./target/release/xiaowo up "$@"
