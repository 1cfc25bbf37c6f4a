#!/usr/bin/env bash
# The long form of the fault battery (not part of scripts/test.sh): for SOAK_MINUTES it runs,
# round after round,
#   - chat-svc (the real `xiaowo serve --target chat` process) killed with SIGKILL SOAK_KILLS
#     times during SOAK_MESSAGES sends at SOAK_RATE per second, clients retrying and a watcher
#     resuming from its last seq (xiaowo/tests/xiaowo/reliability.rs), and
#   - sync-svc restarted under 50 connected watchers that must all resume with the current
#     state (sync-svc/tests/sync/reliability.rs),
# checking in every round that nothing acknowledged was lost or stored twice, then prints
# each round's figures and the totals. A failing round stops the soak and shows its output.
#
#   SOAK_MINUTES [5]   SOAK_MESSAGES [2000]   SOAK_RATE [200]   SOAK_KILLS [5]
#
# Figures of a recorded run are in RELIABILITY.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

minutes=${SOAK_MINUTES:-5}
export XIAOWO_FAULTS_MESSAGES=${SOAK_MESSAGES:-2000}
export XIAOWO_FAULTS_RATE=${SOAK_RATE:-200}
export XIAOWO_FAULTS_KILLS=${SOAK_KILLS:-5}

# The test executables, built once: later edits elsewhere in the tree do not rebuild them
# in the middle of the soak.
# Each crate has one test binary ($2); the fault tests are its `reliability` module.
test_executable() {
  cargo test -q -p "$1" --test "$2" --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") and message["target"]["name"] == sys.argv[1]:
        print(message["executable"])' "$2"
}
log "building the fault tests"
chat_test=$(test_executable xiaowo xiaowo)
sync_test=$(test_executable sync-svc sync)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one test, keeping its figures; on failure shows the end of its output and stops.
run_round() {
  local name=$1
  shift
  if ! "$@" >"$work/$name.log" 2>&1; then
    tail -n 60 "$work/$name.log"
    echo "soak: round $round: $name failed" >&2
    exit 1
  fi
  grep '^figures:' "$work/$name.log" | sed "s/^figures:/round $round $name:/" | tee -a "$work/figures"
}

log "soaking for $minutes min: $XIAOWO_FAULTS_MESSAGES chat sends at $XIAOWO_FAULTS_RATE/s with $XIAOWO_FAULTS_KILLS kills per round, and sync-svc restarts under 50 watchers"
started=$(date -u +%FT%TZ)
end=$((SECONDS + minutes * 60))
round=0
while [ $SECONDS -lt $end ]; do
  round=$((round + 1))
  run_round chat-kill "$chat_test" reliability:: --nocapture
  run_round sync-restart "$sync_test" reliability::fifty_watchers --nocapture
done

log "totals ($started to $(date -u +%FT%TZ), $round rounds)"
python3 - "$work/figures" <<'EOF'
import re, statistics, sys

def numbers(text):
    return [int(n) for n in re.findall(r"\d+", text)]

def spread(values):
    if not values:
        return "none"
    values = sorted(values)
    return f"min {values[0]}, median {statistics.median(values):g}, max {values[-1]} (n={len(values)})"

sent = acked = stored = kills = retried = from_store = reconnects = 0
resume_after_kill, resume_after_restart, failed = [], [], {}
for line in open(sys.argv[1]):
    field = lambda key: re.search(key + r"=(\d+)", line)
    if " chat-kill:" in line:
        sent += int(field("messages").group(1))
        acked += int(field("acked").group(1))
        stored += int(field("stored").group(1))
        kills += int(field("kills").group(1))
        retried += int(field("retried_messages").group(1))
        from_store += int(field("retries_answered_from_store").group(1))
        reconnects += int(field("watcher_reconnects").group(1))
        resume_after_kill += numbers(re.search(r"resume_after_kill_ms=\[([^\]]*)\]", line).group(1))
        for code, count in re.findall(r'"(\w+)": (\d+)', line):
            failed[code] = failed.get(code, 0) + int(count)
    elif " sync-restart:" in line:
        resume_after_restart.append(int(field("all_resumed_after_restart_ms").group(1)))

print(f"chat: {sent} messages sent, {acked} acknowledged, {stored} stored (each once, gap-free), "
      f"{kills} SIGKILLs")
print(f"chat: {retried} sends retried through a kill, {from_store} of them answered from the stored "
      f"original; failed attempts by code: {failed or 'none'}; watcher reconnects: {reconnects}")
print(f"chat: first acknowledged send after each kill, ms after the kill: {spread(resume_after_kill)}")
print(f"sync: all 50 watchers resumed, ms after the restart: {spread(resume_after_restart)}")
EOF
