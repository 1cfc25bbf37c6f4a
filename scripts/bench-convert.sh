#!/usr/bin/env bash
# media-svc's conversion benchmark (see BENCHMARKS.md, "Media: conversion to HLS"): a 1080p HEVC
# + AC-3 file of N minutes (10 unless said) is uploaded to `xiaowo up`; from the moment the upload
# is complete, the time until its first segment is playable ("ready to start") and until the
# conversion is complete; beside the very same ffmpeg command (taken from the server's log: same
# settings, same `nice`) run alone on the same file, and the realtime factor of both.
#
#   scripts/bench-convert.sh [--minutes N] [--release]
#
# Not part of scripts/test.sh. The source file is made once per length (ffmpeg, x265 ultrafast,
# one minute encoded and repeated) and kept in target/bench-media/. `--release` measures a
# release build of the server (the figures are ffmpeg's work either way; the server only
# follows its progress). Rewrites the conversion part of BENCHMARKS.md.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

minutes=10
profile=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --release) profile=release; shift ;;
    *) echo "usage: $0 [--minutes N] [--release]" >&2; exit 2 ;;
  esac
done
need_apt ffmpeg ffmpeg curl curl
need_grpcurl

if [ "$profile" = release ]; then
  log "building xiaowo (release)"
  cargo build --quiet --release -p xiaowo
else
  log "building xiaowo (debug)"
  cargo build --quiet -p xiaowo
fi

cache="$ROOT/target/bench-media"
mkdir -p "$cache"
source_file="$cache/hevc-ac3-1080p-${minutes}min.mkv"
# Encoding HEVC is slow here (a minute of 1080p takes minutes), so one minute is encoded once
# and the source is that minute repeated, joined without re-encoding: the conversion still
# decodes and encodes every frame of the whole length.
minute_file="$cache/hevc-ac3-1080p-1min.mkv"
if [ ! -f "$minute_file" ]; then
  log "making one minute of 1080p HEVC + AC-3 5.1 (once)"
  ffmpeg -loglevel error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=25" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
    -t 60 -c:v libx265 -preset ultrafast -x265-params log-level=error -pix_fmt yuv420p \
    -c:a ac3 -ac 6 -b:a 384k -f matroska "$minute_file.part"
  mv "$minute_file.part" "$minute_file"
fi
if [ ! -f "$source_file" ]; then
  log "joining ${minutes} copies of that minute (once per length)"
  list="$cache/join-${minutes}.txt"
  for _ in $(seq "$minutes"); do echo "file '$minute_file'"; done >"$list"
  ffmpeg -loglevel error -y -f concat -safe 0 -i "$list" -c copy -f matroska "$source_file.part"
  rm -f "$list"
  mv "$source_file.part" "$source_file"
fi
source_bytes=$(stat -c %s "$source_file")
duration=$(ffprobe -v error -show_entries format=duration -of default=noprint_wrappers=1:nokey=1 "$source_file")

work=$(mktemp -d /tmp/xiaowo-bench-convert.XXXXXX)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
log "starting xiaowo up ($profile)"
NO_COLOR=1 XIAOWO_LOG=info XIAOWO_ADMIN_TOKEN=bench-admin-token \
  "target/$profile/xiaowo" up --listen 127.0.0.1:0 --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
addr=""
for _ in $(seq 600); do
  addr=$(sed -n 's/.*addr=\(127\.0\.0\.1:[0-9]*\).*/\1/p' "$work/server.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/server.log"; echo "xiaowo did not start" >&2; exit 1; }

token=$(grpcurl -plaintext -d '{"display_name":"Bench"}' "$addr" xiaowo.session.v1.SessionService/CreateSession |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

log "uploading $(numfmt --to=iec "$source_bytes")B (tus), then converting"
location=$(curl -sS -D - -o /dev/null -X POST "http://$addr/media/uploads" \
  -H "Authorization: Bearer $token" -H "Tus-Resumable: 1.0.0" -H "Upload-Length: $source_bytes" \
  -H "Upload-Metadata: filename $(printf 'bench.mkv' | base64)" | sed -n 's/^[Ll]ocation: *\([^[:space:]]*\).*/\1/p')
# CPU time of the server's reaped children (the conversion's ffmpeg among them), in seconds.
ticks=$(getconf CLK_TCK)
children_cpu() { awk -v tick="$ticks" '{printf "%.2f", ($16 + $17) / tick}' "/proc/$server_pid/stat"; }
item=$(curl -sS -D - -o /dev/null -X PATCH "http://$addr$location" -T "$source_file" \
  -H "Authorization: Bearer $token" -H "Tus-Resumable: 1.0.0" -H "Upload-Offset: 0" \
  -H "Content-Type: application/offset+octet-stream" | sed -n 's/^[Xx]iaowo-[Mm]edia-[Ii]tem-[Ii]d: *\([0-9a-f-]*\).*/\1/p')
uploaded_at=$(date +%s.%N)
cpu_at_upload=$(children_cpu)
[ -n "$item" ] || { tail -20 "$work/server.log"; echo "the upload was not accepted" >&2; exit 1; }

# The server's log stamps when the first segment became playable and when the conversion ended.
log_time() { # first log line of the item containing $1 → Unix seconds ("" when none yet)
  local line
  line=$(grep -F "$item" "$work/server.log" | grep -F "$1" | head -1 || true)
  if [ -n "$line" ]; then
    date -d "$(echo "$line" | awk '{print $1}')" +%s.%N
  fi
}
load_samples=()
ready_at=""
complete_at=""
deadline=$(( $(date +%s) + 4 * minutes * 60 + 600 ))
while [ -z "$complete_at" ]; do
  [ -z "$ready_at" ] && ready_at=$(log_time "conversion ready to start")
  complete_at=$(log_time "conversion complete")
  if grep -F "$item" "$work/server.log" | grep -qF "conversion failed"; then
    grep -F "conversion failed" "$work/server.log"; exit 1
  fi
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the conversion did not finish in time" >&2; exit 1; }
  load_samples+=("$(cut -d' ' -f1 /proc/loadavg)")
  sleep 1
done
# ffmpeg is reaped before "conversion complete" is logged: its CPU is in the server's children's.
served_cpu=$(awk -v a="$(children_cpu)" -v b="$cpu_at_upload" 'BEGIN {printf "%.1f", a - b}')
command_line=$(grep -F "conversion started" "$work/server.log" | grep -F "$item" | head -1 | sed 's/.* command=//')
# Where the time to the first segment goes: the item's log lines from the upload to "ready".
timeline=$(grep -F "$item" "$work/server.log" | grep -E "upload placed|conversion queued|conversion started|ready to start" |
  while read -r stamp rest; do
    printf '%s %s\n' "$(date -d "$stamp" +%s.%N)" "$(echo "$rest" | sed -E 's/.*(upload placed in the library|conversion queued|conversion started|conversion ready to start).*/\1/')"
  done)
kill "$server_pid" && wait "$server_pid" 2>/dev/null
server_pid=""

# The same command alone, writing into a folder of its own.
log "the same ffmpeg command alone"
hls_dir="$work/data/media/.xiaowo/hls/$item"
alone="$work/alone"
mkdir -p "$alone"
read -r -a args <<<"${command_line//$hls_dir/$alone}"
# This shell's children's CPU time, in seconds: bash's `times` (its second line), run in this
# shell itself (a command substitution would be a child with none) and read from a file.
children_seconds() { tail -1 "$1" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }'; }
times >"$work/times-before"
cpu_before_alone=$(children_seconds "$work/times-before")
alone_started=$(date +%s.%N)
"${args[@]}" >/dev/null 2>"$alone/stderr" &
ffmpeg_pid=$!
alone_ready=""
while kill -0 "$ffmpeg_pid" 2>/dev/null; do
  if [ -z "$alone_ready" ] && grep -q '^#EXTINF' "$alone/index.m3u8" 2>/dev/null; then
    alone_ready=$(date +%s.%N)
  fi
  load_samples+=("$(cut -d' ' -f1 /proc/loadavg)")
  sleep 0.05
done
wait "$ffmpeg_pid" || { cat "$alone/stderr"; echo "ffmpeg alone failed" >&2; exit 1; }
alone_done=$(date +%s.%N)
times >"$work/times-after"
alone_cpu=$(awk -v a="$(children_seconds "$work/times-after")" -v b="$cpu_before_alone" 'BEGIN {printf "%.1f", a - b}')
grep -q '^#EXT-X-ENDLIST' "$alone/index.m3u8" || { echo "ffmpeg alone wrote no complete playlist" >&2; exit 1; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

results=$(TIMELINE="$timeline" python3 - "$duration" "$uploaded_at" "$ready_at" "$complete_at" "$alone_started" "$alone_ready" "$alone_done" "$served_cpu" "$alone_cpu" "${load_samples[@]}" <<'PY'
import os, sys
duration, uploaded, ready, complete, a_start, a_ready, a_done, served_cpu, alone_cpu = map(float, sys.argv[1:10])
loads = [float(x) for x in sys.argv[10:]] or [0.0]
steps = [line.split(" ", 1) for line in os.environ.get("TIMELINE", "").splitlines() if " " in line]
served_first, served_total = ready - uploaded, complete - uploaded
alone_first, alone_total = a_ready - a_start, a_done - a_start
print("| run | first playable segment (s) | complete (s) | realtime factor | CPU (s) |")
print("|---|---|---|---|---|")
print(f"| xiaowo up: upload complete → (probe, queue, ffmpeg under nice) | {served_first:.1f} | {served_total:.1f} | {duration / served_total:.2f}× | {served_cpu:.1f} |")
print(f"| ffmpeg alone, same command (ceiling) | {alone_first:.1f} | {alone_total:.1f} | {duration / alone_total:.2f}× | {alone_cpu:.1f} |")
print()
print(f"First playable: **{served_first:.1f} s** after the upload completed (target ≤ 5 s). "
      f"Complete: **{served_total / alone_total * 100:.0f} %** of ffmpeg alone's time (target ≤ 110 %), "
      f"**{served_cpu / alone_cpu * 100:.0f} %** of its CPU time (the server's column includes the thumbnail's ffmpeg). "
      f"Load average (1 min) during the runs: {min(loads):.2f}–{max(loads):.2f}.")
if steps:
    print()
    print("Server log, relative to the upload's answer: " + "; ".join(f"{what} {float(at) - uploaded:+.2f} s" for at, what in steps) + ".")
PY
)
echo "$results"

generated=$(mktemp /tmp/xiaowo-bench-convert-section.XXXXXX)
{
  echo "<!-- xiaowo-convert-bench:begin (written by scripts/bench-convert.sh; edit outside these markers) -->"
  echo
  echo "* command: \`scripts/bench-convert.sh --minutes $minutes$([ "$profile" = release ] && echo " --release")\` ($profile build of the server)"
  echo "* source: $minutes min of 1920×1080 25 fps HEVC (x265 ultrafast, one minute repeated) + AC-3 5.1 in Matroska, $(numfmt --to=iec "$source_bytes")B"
  echo "* machine: $(nproc) CPUs ($(cpu_model)); load average before: $load_before; after: $load_after"
  echo "* date: $started; commit: $(bench_commit)"
  echo
  echo "$results"
  echo
  echo "<!-- xiaowo-convert-bench:end -->"
} >"$generated"
replace_benchmarks_section xiaowo-convert-bench "$generated" "## Media: conversion to HLS"
rm -f "$generated"
echo "BENCHMARKS.md updated"
