#!/usr/bin/env bash
# Several instances on real engines: a throwaway PostgreSQL server (start_postgres in lib.sh)
# and Debian's nats-server, two `xiaowo serve --target sync,chat` instances beside one
# session-svc + room-svc process, and nginx (deploy/nginx/render.sh) in front of both. The
# checks live in xiaowo/tests/xiaowo/scaleout.rs: watchers on one instance hear commands and chat
# accepted by the other, a seek race has one winner per version, chat has one gap-free order
# everywhere, presence forgets a killed instance, its clients resume on the other with nothing
# acknowledged lost, NATS restarts are repaired from the database, and nginx balances (and
# with room affinity, keeps a room on one instance). The test starts and kills its own
# processes; this script owns PostgreSQL and removes everything on exit.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt nats-server nats-server nginx nginx openssl openssl
need_postgres

run=$(mktemp -d /tmp/xiaowo-scaleout.XXXXXX)
cleanup() {
  stop_postgres "$run"
  rm -rf "$run"
}
trap cleanup EXIT

log "starting PostgreSQL in $run"
start_postgres "$run"

log "two instances of sync-svc and chat-svc on PostgreSQL and NATS, behind nginx"
XIAOWO_TEST_POSTGRES=$POSTGRES_URL \
  XIAOWO_SCALEOUT_NATS_SERVER=$(command -v nats-server) \
  XIAOWO_SCALEOUT_NGINX=$(command -v nginx) \
  cargo test -p xiaowo --test xiaowo scaleout:: -- --nocapture
