#!/usr/bin/env bash
# The services' integration tests again, on PostgreSQL instead of SQLite: a throwaway server
# from Debian's packages on a free loopback port in a temporary directory (no machine-wide
# setup), and XIAOWO_TEST_POSTGRES pointing the tests at it, so that every test gets a fresh
# database of its own. Tests of what only SQLite has (files, backup, encryption, locking) say
# so and skip themselves. The server is stopped and its directory removed on exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_postgres

run=$(mktemp -d /tmp/xiaowo-postgres.XXXXXX)
cleanup() {
  stop_postgres "$run"
  rm -rf "$run"
}
trap cleanup EXIT

log "starting PostgreSQL in $run"
start_postgres "$run"
echo "PostgreSQL at $POSTGRES_URL"

log "service tests on PostgreSQL"
status=0
XIAOWO_TEST_POSTGRES=$POSTGRES_URL cargo test --no-fail-fast \
  -p session-svc -p room-svc -p sync-svc -p chat-svc -p monitor-svc -p media-svc || status=1
# svc-kit's own database tests: one schema per service in a shared database.
XIAOWO_TEST_POSTGRES=$POSTGRES_URL cargo test -p svc-kit --test svc_kit db:: || status=1
exit $status
