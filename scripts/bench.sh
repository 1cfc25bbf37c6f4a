#!/usr/bin/env bash
# Xiaowo's benchmark suite: fan-out, chat durability, control plane, idle watchers, the
# browser path through nginx, and the socket.io and syncplay peers, each figure beside a
# ceiling or peer measured in the same run (see BENCHMARKS.md).
#
#   scripts/bench.sh           release build, full sizes (~15 min on 2 cores); rewrites the
#                              generated part of BENCHMARKS.md
#   scripts/bench.sh --smoke   debug build, tiny sizes: checks every scenario works, not its
#                              speed; BENCHMARKS.md is left alone
#
# The server (and every ceiling and peer server) is pinned to CPU 0, the load generator to
# CPU 1, so that /proc's CPU times separate the two. Installs what it needs; safe to rerun.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

mode=full
[ "${1:-}" = "--smoke" ] && mode=smoke

need_apt taskset util-linux nginx nginx syncplay-server syncplay-server node nodejs npm npm
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

# The socket.io peer's own npm packages, reinstalled when its lock file changes.
peer=bench/peers/socketio
if [ ! -f "$peer/node_modules/.xiaowo-lock" ] || ! cmp -s "$peer/package-lock.json" "$peer/node_modules/.xiaowo-lock"; then
  log "installing the socket.io peer (npm, $peer)"
  (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$peer/package-lock.json" "$peer/node_modules/.xiaowo-lock"
fi

# 10k watchers with one connection each need 10k descriptors on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$mode" = smoke ]; then
  log "building xiaowo and xiaowo-bench (debug)"
  cargo build --quiet -p xiaowo -p xiaowo-bench
  profile=debug
else
  log "building xiaowo and xiaowo-bench (release)"
  cargo build --quiet --release -p xiaowo -p xiaowo-bench
  profile=release
fi

server_cpu=()
generator=()
if [ "$(nproc)" -ge 2 ]; then
  server_cpu=(--server-cpu 0)
  generator=(taskset -c 1)
fi

results=$(mktemp /tmp/xiaowo-bench-results.XXXXXX)
trap 'rm -f "$results"' EXIT
smoke_flag=()
[ "$mode" = smoke ] && smoke_flag=(--smoke)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
log "running the suite ($mode)"
"${generator[@]}" "target/$profile/xiaowo-bench" suite "${smoke_flag[@]}" \
  --server-binary "target/$profile/xiaowo" "${server_cpu[@]}" \
  --socketio-dir "$peer" --syncplay-server "$(command -v syncplay-server)" --nginx "$nginx_bin" \
  --out "$results"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Scenario 6: sync quality in real browsers (4 headless Chromium viewers — one at 80 ms and one
# at 20 ± 10 ms of added latency, one 4× CPU-throttled — against the release server, on a WebM
# and an H.264 + AAC MP4; the controller as shipped and, as the baseline in the same run, with
# "Smooth sync" off). XIAOWO_BENCH_BROWSERS=0 skips it.
browsers=$(mktemp /tmp/xiaowo-bench-browsers.XXXXXX)
trap 'rm -f "$results" "$browsers"' EXIT
if [ "$mode" = full ] && [ "${XIAOWO_BENCH_BROWSERS:-1}" != 0 ]; then
  need_apt chromium chromium ffmpeg ffmpeg
  need_npm
  log "sync quality in real browsers (4 viewers, 2 files, ~8 min per controller)"
  (cd web && node build.mjs >/dev/null &&
    XIAOWO_BIN="$ROOT/target/release/xiaowo" node bench/sync-quality.mjs &&
    XIAOWO_BIN="$ROOT/target/release/xiaowo" node bench/sync-quality.mjs --seek-only) |
    tee "$browsers"
fi

if [ "$mode" = smoke ]; then
  echo "benchmark smoke: every scenario ran"
  exit 0
fi

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!BENCHMARKS.md' || commit="$commit (with uncommitted changes in the tree)"
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
ram=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
generated=$(mktemp /tmp/xiaowo-bench-section.XXXXXX)
{
  echo "<!-- xiaowo-bench:begin (written by scripts/bench.sh; edit outside these markers) -->"
  echo
  echo "* command: \`scripts/bench.sh\` (release build; server, ceilings and peers on CPU 0, generator on CPU 1)"
  echo "* machine: $(nproc) CPUs ($cpu_model), $ram RAM; load average before/after: $load_before / $load_after"
  echo "* date: $started; commit: $commit"
  cat "$results"
  if [ -s "$browsers" ]; then
    echo
    echo "### Scenario 6: sync quality in real browsers (\`web/bench/sync-quality.mjs\`, then with \`--seek-only\`)"
    echo
    echo '```'
    # The figures, without the schedule of commands it printed as it went.
    grep -vE ' [0-9]+\.[0-9] s  (steady|pause|seek|rate)$' "$browsers"
    echo '```'
  fi
  echo
  echo "<!-- xiaowo-bench:end -->"
} > "$generated"
replace_benchmarks_section xiaowo-bench "$generated"
rm -f "$generated"
echo "BENCHMARKS.md updated"
