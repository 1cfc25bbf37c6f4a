#!/usr/bin/env bash
# Profiles `xiaowo up` under scenario 1's load, the way BENCHMARKS.md's profiles were taken:
# a release build with frame pointers (in its own target directory, target/prof), the server
# pinned to CPU 0 and `xiaowo-bench fanout` to CPU 1, and `perf record -e cpu-clock` on the
# server during the step. Not part of test.sh.
#
#   scripts/profile.sh [ROOMS] [WATCHERS_PER_ROOM] [RATE] [SECONDS]   (default 1000 10 1 20)
#
# Writes target/prof/perf.data and prints the benchmark row and the top of the report; read
# more with `perf report -i target/prof/perf.data --children --sort sym`.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

rooms=${1:-1000}
watchers=${2:-10}
rate=${3:-1}
seconds=${4:-20}

need_apt perf linux-perf taskset util-linux

log "building xiaowo and xiaowo-bench (release, frame pointers, target/prof)"
CARGO_TARGET_DIR="$ROOT/target/prof" RUSTFLAGS="-C force-frame-pointers=yes" \
  cargo build --quiet --release -p xiaowo -p xiaowo-bench
bin="$ROOT/target/prof/release"

data=$(mktemp -d /tmp/xiaowo-profile.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT

# The same limits xiaowo-bench's own launcher opens for load.
XIAOWO_LOG=warn taskset -c 0 "$bin/xiaowo" up --listen "127.0.0.1:$port" --data-dir "$data" \
  --web-dir "$data/no-web-client" \
  --session-create-burst 1000000 --session-create-per-minute 100000000 \
  --chat-flood-burst 1000000 --chat-flood-per-second 1000000 \
  --sync-command-burst 1000000 --sync-commands-per-second 1000000 \
  --room-max-members 1000 --max-concurrent-streams 1000 --max-connections-per-ip 0 \
  --room-creates-per-caller 0 --room-creates-per-address 0 --room-max-open-per-owner 0 \
  >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/metrics" && break
  sleep 0.1
done

log "$rooms × $watchers at $rate/s for $seconds s; recording the server from the step's middle"
taskset -c 1 "$bin/xiaowo-bench" fanout --control-url "http://127.0.0.1:$port" \
  --sync-url "http://127.0.0.1:$port" --pid "$server" \
  --rooms "$rooms" --watchers-per-room "$watchers" --rate "$rate" --seconds "$seconds" &
bench=$!
# The step starts once the fleet is open and has settled: wait for the server to hold every
# watcher, then for the settle pause, then record half the step.
expected=$((rooms * watchers))
for _ in $(seq 2400); do
  open=$(curl -sf "http://127.0.0.1:$port/metrics" | awk '/^xiaowo_sync_watch_streams /{print $2}')
  [ "${open%.*}" = "$expected" ] && break
  sleep 0.1
done
sleep $((2 + seconds / 4))
perf record -e cpu-clock -F 2000 --call-graph fp -p "$server" -o "$ROOT/target/prof/perf.data" \
  -- sleep $((seconds / 2)) 2>&1 | tail -1
wait "$bench"

perf report -i "$ROOT/target/prof/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
  | grep '%' | head -30 || true
