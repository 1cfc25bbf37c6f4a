#!/usr/bin/env bash
# The fan-out benchmark's many-rooms scenario across two sync-svc instances linked by NATS,
# beside one instance without a broker and one with it, all in the same run (BENCHMARKS.md,
# "Across instances"). Uses the xiaowo-bench tool's `fanout` command against processes this
# script starts on loopback and stops on exit.
#
#   scripts/bench-scaleout.sh [ROOMS] [WATCHERS_PER_ROOM] [RATE] [SECONDS]    (1000 10 1 10)
#
# XIAOWO_BIN / XIAOWO_BENCH_BIN pick the binaries (default: release builds when present, else
# debug). The markdown tables are printed at the end, then the broker-hop latency bench
# (`cargo bench -p svc-kit --bench broker_hop`) runs against the same nats-server.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt nats-server nats-server

rooms=${1:-1000}
watchers=${2:-10}
rate=${3:-1}
seconds=${4:-10}
pick() { if [ -x "target/release/$1" ]; then echo "$ROOT/target/release/$1"; else echo "$ROOT/target/debug/$1"; fi; }
bin=${XIAOWO_BIN:-$(pick xiaowo)}
bench=${XIAOWO_BENCH_BIN:-$(pick xiaowo-bench)}
[ -x "$bin" ] && [ -x "$bench" ] || { echo "build first: cargo build -p xiaowo -p xiaowo-bench" >&2; exit 1; }

run=$(mktemp -d /tmp/xiaowo-bench-scaleout.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$1/metrics" && return 0
    sleep 0.2
  done
  echo "nothing on port $1" >&2
  return 1
}
# Generous limits, as xiaowo-bench's own suite sets them: the generator is one client address.
export XIAOWO_SYNC_COMMAND_BURST=100000 XIAOWO_SYNC_COMMANDS_PER_SECOND=100000 XIAOWO_ADMIN_TOKEN=bench
export XIAOWO_ROOM_CREATES_PER_CALLER=0 XIAOWO_ROOM_CREATES_PER_ADDRESS=0 XIAOWO_ROOM_MAX_OPEN_PER_OWNER=0
export XIAOWO_LOG=warn
limits=(--max-concurrent-streams 1000 --max-connections-per-ip 0 --peer-deadline 10s)
up_limits=("${limits[@]}" --session-create-burst 1000000 --session-create-per-minute 100000000 --room-max-members 1000)

nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" > "$run/nats.log" 2>&1 &
pids+=($!)
nats="nats://127.0.0.1:$nats_port"
# B calls A's internal services: both run with one internal token.
XIAOWO_INTERNAL_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export XIAOWO_INTERNAL_TOKEN

# C: one instance, no broker (the baseline). A: the same with --nats-url. B: a second sync-svc
# on A's sync database, linked through NATS.
port_c=$(free_port) port_a=$(free_port) port_b=$(free_port)
"$bin" up --listen "127.0.0.1:$port_c" --data-dir "$run/c" --web-dir "$run/none" "${up_limits[@]}" > "$run/c.log" 2>&1 &
pid_c=$!
pids+=($pid_c)
"$bin" up --listen "127.0.0.1:$port_a" --data-dir "$run/a" --web-dir "$run/none" "${up_limits[@]}" \
  --nats-url "$nats" > "$run/a.log" 2>&1 &
pid_a=$!
pids+=($pid_a)
wait_port "$port_c"
wait_port "$port_a"
XIAOWO_SYNC_DATABASE_URL="sqlite://$run/a/sync.db?mode=rwc" "$bin" serve --target sync \
  --sync-listen "127.0.0.1:$port_b" --session-url "http://127.0.0.1:$port_a" --room-url "http://127.0.0.1:$port_a" \
  --data-dir "$run/b" --nats-url "$nats" "${limits[@]}" > "$run/b.log" 2>&1 &
pid_b=$!
pids+=($pid_b)
wait_port "$port_b"

shape=(--rooms "$rooms" --watchers-per-room "$watchers" --rate "$rate" --seconds "$seconds" --per-connection 50)
log "one instance, in-process ($rooms rooms × $watchers watchers, $rate/s)"
"$bench" fanout --control-url "http://127.0.0.1:$port_c" --sync-url "http://127.0.0.1:$port_c" --pid "$pid_c" \
  "${shape[@]}" --out "$run/one.md"
log "one instance with NATS configured (every watcher local)"
"$bench" fanout --control-url "http://127.0.0.1:$port_a" --sync-url "http://127.0.0.1:$port_a" --pid "$pid_a" \
  "${shape[@]}" --out "$run/one-nats.md"
log "two instances through NATS (commands on A; watchers alternate A, B)"
"$bench" fanout --control-url "http://127.0.0.1:$port_a" --sync-url "http://127.0.0.1:$port_a" \
  --sync-url "http://127.0.0.1:$port_b" --pid "$pid_a" --pid "$pid_b" "${shape[@]}" --out "$run/two.md"

log "results ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(basename "$(dirname "$bin")") build)"
head -n 2 "$run/one.md"
for table in one one-nats two; do
  tail -n +3 "$run/$table.md" | sed "s/^| Xiaowo, /| $table: /"
done

log "the broker hop alone: one event at a time, in-process broadcast vs NATS"
XIAOWO_BENCH_NATS_URL=$nats cargo bench --quiet -p svc-kit --bench broker_hop
