#!/usr/bin/env bash
# media-svc's benchmark (see BENCHMARKS.md, "Media"): range serving by 50 readers beside nginx
# and `cat`, and a 1 GiB resumable upload beside a local write of the same bytes, with the
# server's memory sampled during the upload.
#
#   scripts/bench-media.sh           release build, full sizes (~2 min); rewrites the media part
#                                    of BENCHMARKS.md
#   scripts/bench-media.sh --smoke   debug build, tiny sizes: checks that it runs, not its speed
#
# The servers (xiaowo, nginx) are pinned to CPU 0, the load generator to CPU 1. Needs ffmpeg and
# nginx (installed when missing) and ~1.3 GB of free disk in the working tree for the full run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

mode=full
[ "${1:-}" = "--smoke" ] && mode=smoke
need_apt taskset util-linux nginx nginx ffmpeg ffmpeg
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

profile=release
if [ "$mode" = smoke ]; then
  log "building xiaowo and xiaowo-bench (debug)"
  cargo build --quiet -p xiaowo -p xiaowo-bench
  profile=debug
else
  log "building xiaowo and xiaowo-bench (release)"
  cargo build --quiet --release -p xiaowo -p xiaowo-bench
fi
server_cpu=()
generator=()
if [ "$(nproc)" -ge 2 ]; then
  server_cpu=(--server-cpu 0)
  generator=(taskset -c 1)
fi
smoke_flag=()
[ "$mode" = smoke ] && smoke_flag=(--smoke)

results=$(mktemp /tmp/xiaowo-bench-media.XXXXXX)
trap 'rm -f "$results"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u '+%Y-%m-%d %H:%M UTC')
log "media benchmark ($mode)"
"${generator[@]}" "target/$profile/xiaowo-bench" media "${smoke_flag[@]}" \
  --server-binary "target/$profile/xiaowo" "${server_cpu[@]}" --nginx "$nginx_bin" --out "$results"
cat "$results"
if [ "$mode" = smoke ]; then
  echo "media benchmark smoke: both scenarios ran"
  exit 0
fi

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!BENCHMARKS.md' || commit="$commit (with uncommitted changes in the tree)"
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
generated=$(mktemp /tmp/xiaowo-bench-media-section.XXXXXX)
{
  echo "<!-- xiaowo-media-bench:begin (written by scripts/bench-media.sh; edit outside these markers) -->"
  echo
  echo "* command: \`scripts/bench-media.sh\` (release build; servers on CPU 0, generator on CPU 1)"
  echo "* machine: $(nproc) CPUs ($cpu_model); load average before: $load_before"
  echo "* date: $started; commit: $commit"
  echo
  cat "$results"
  echo
  echo "<!-- xiaowo-media-bench:end -->"
} > "$generated"
replace_benchmarks_section xiaowo-media-bench "$generated" "## Media: range serving and uploads"
rm -f "$generated"
echo "BENCHMARKS.md updated"
