#!/usr/bin/env bash
# The Debian package on this machine: builds it (scripts/package.sh; PROFILE picks the cargo
# profile, release by default), installs it with dpkg, checks what it put where, runs the
# installed unit's own `xiaowo up` command as the `xiaowo` user (no systemd needed), checks that
# the web client and the API answer and that data lands in /var/lib/xiaowo owned by that user,
# then purges the package and checks that nothing of it is left. Needs root (or sudo).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need_apt curl curl adduser adduser

failed=0
check() {
  local what=$1
  shift
  if "$@"; then
    echo "ok: $what"
  else
    echo "FAILED: $what"
    failed=1
  fi
}

# A previous run that stopped half-way leaves the package installed.
if dpkg -s xiaowo >/dev/null 2>&1; then
  $sudo dpkg --purge xiaowo >/dev/null
fi

scripts/package.sh
deb=$(ls -1t target/debian/xiaowo_*_amd64.deb | head -1)
echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  &/p'

log "installing $deb"
$sudo dpkg -i "$deb"
check "binary at /usr/bin/xiaowo" test -x /usr/bin/xiaowo
check "web client at /usr/share/xiaowo/web" test -f /usr/share/xiaowo/web/index.html
check "systemd unit installed" test -f /lib/systemd/system/xiaowo.service
check "settings at /etc/xiaowo/xiaowo.env (a conffile)" bash -c 'dpkg-query -W -f="\${Conffiles}" xiaowo | grep -q /etc/xiaowo/xiaowo.env'
check "system user xiaowo" bash -c 'getent passwd xiaowo | grep -q "^xiaowo:"'
check "/var/lib/xiaowo owned by xiaowo" bash -c '[ "$(stat -c %U:%G /var/lib/xiaowo)" = xiaowo:xiaowo ]'
if command -v systemd-analyze >/dev/null 2>&1; then
  check "systemd-analyze verify xiaowo.service" systemd-analyze verify /lib/systemd/system/xiaowo.service
fi

log "running the unit's command as the xiaowo user"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/xiaowo.service)
log_file=$(mktemp)
# The unit's environment file, then the test's own port.
(
  set -a
  # shellcheck disable=SC1091
  source /etc/xiaowo/xiaowo.env
  set +a
  export XIAOWO_LISTEN="127.0.0.1:$port"
  # shellcheck disable=SC2086
  exec $sudo runuser -u xiaowo -- env XIAOWO_LISTEN="$XIAOWO_LISTEN" XIAOWO_LOG="${XIAOWO_LOG:-info}" $exec_start
) >"$log_file" 2>&1 &
server=$!
for _ in $(seq 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/" && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
page=$(curl -sf "http://127.0.0.1:$port/" || true)
check "the web client's page is served" grep -q '<script' <<<"$page"
script=$(grep -o 'src="[^"]*\.js"' <<<"$page" | head -1 | sed 's/^src="//; s/"$//')
check "its script loads (${script:-none})" curl -sf -o /dev/null "http://127.0.0.1:$port/${script#/}"
# CreateSession{display_name: "Ana"} as one gRPC-web frame; the status is in the trailer frame.
answer=$(curl -s -X POST -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
  --data-binary @<(printf '\x00\x00\x00\x00\x05\x0a\x03Ana') \
  "http://127.0.0.1:$port/xiaowo.session.v1.SessionService/CreateSession" | tr -c '[:print:]' '\n' || true)
check "a session can be created through gRPC-web" grep -qi '^grpc-status:0$' <<<"$answer"
check "databases in /var/lib/xiaowo owned by xiaowo" \
  bash -c '[ "$(stat -c %U /var/lib/xiaowo/session.db 2>/dev/null)" = xiaowo ]'
$sudo pkill -TERM -f "xiaowo up --web-dir /usr/share/xiaowo/web" || true
wait "$server" || true
if [ "$failed" -ne 0 ]; then
  echo "--- server log"
  cat "$log_file"
fi
rm -f "$log_file"

log "purging the package"
$sudo dpkg --purge xiaowo
check "binary removed" test ! -e /usr/bin/xiaowo
check "web client removed" test ! -e /usr/share/xiaowo
check "data directory removed" test ! -e /var/lib/xiaowo
check "settings removed" test ! -e /etc/xiaowo
check "system user removed" bash -c '! getent passwd xiaowo >/dev/null'
check "unit no longer enabled" test ! -e /etc/systemd/system/multi-user.target.wants/xiaowo.service
check "dpkg knows nothing of it" bash -c '! dpkg -s xiaowo >/dev/null 2>&1'

[ "$failed" -eq 0 ] && echo "package: all checks passed"
exit "$failed"
