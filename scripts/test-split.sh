#!/usr/bin/env bash
# The split deployment, end to end: six `xiaowo serve` processes behind real nginx with a
# throwaway self-signed certificate. Checks TLS and headers, gRPC-web and gRPC routing, that
# admin and internal services answer only on the admin listener, Prometheus formats and one
# real Prometheus scrape, the systemd units, media-svc's plain HTTP routes (tus uploads, files),
# and (when the web client is built) the browser suite, uploads included, through nginx over
# HTTPS. Everything it starts it stops, also on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt nginx nginx openssl openssl promtool prometheus curl curl
need_grpcurl

passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@" > "$run/check.out" 2>&1; then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/     /' "$run/check.out" | tail -n 40
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run=$(mktemp -d /tmp/xiaowo-split.XXXXXX)
chmod 755 "$run"
export XIAOWO_PORT_BASE=$(( ( $(free_port) % 20000 ) + 30000 ))
export XIAOWO_HTTPS_PORT=$(free_port) XIAOWO_HTTP_PORT=$(free_port) XIAOWO_ADMIN_PORT=$(free_port)
prometheus_pid=""
cleanup() {
  [ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null && wait "$prometheus_pid" 2>/dev/null
  deploy/split-stack.sh stop "$run" || true
}
trap cleanup EXIT

log "building xiaowo"
cargo build -p xiaowo --quiet
export XIAOWO_BIN="$ROOT/target/debug/xiaowo"
# nginx serves a copy of the web client (plus the browser suite's test media, added later).
mkdir -p "$run/web"
if [ -f web/dist/index.html ]; then
  cp -r web/dist/. "$run/web/"
else
  echo '<!doctype html><title>Xiaowo</title>' > "$run/web/index.html"
fi
export XIAOWO_WEB_ROOT="$run/web"

log "starting the split stack in $run"
deploy/split-stack.sh start "$run"
https="https://127.0.0.1:$XIAOWO_HTTPS_PORT"
admin="127.0.0.1:$XIAOWO_ADMIN_PORT"
token=$(cat "$run/secrets/admin-token")

log "checks"
# --- TLS and headers -------------------------------------------------------------------------
headers() { curl -sk -D - -o /dev/null "$https/"; }
redirects() { curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$XIAOWO_HTTP_PORT/room/abc" | grep -qx "301 $https/room/abc"; }
hsts() { headers | grep -qi '^strict-transport-security: max-age=[1-9]'; }
csp() { headers | grep -qi "^content-security-policy: default-src 'self'"; }
nosniff_referrer() { local h; h=$(headers); grep -qi '^x-content-type-options: nosniff' <<<"$h" && grep -qi '^referrer-policy: no-referrer' <<<"$h"; }
modern_tls() { curl -sk --http2 -o /dev/null -w '%{http_version}' "$https/" | grep -qx 2 && ! curl -sk --tls-max 1.1 -o /dev/null "$https/"; }
client_served() { curl -sk "$https/some/client/route" | grep -qi '<title>'; }
check "HTTP redirects to HTTPS" redirects
check "HSTS" hsts
check "CSP" csp
check "nosniff and referrer policy" nosniff_referrer
check "HTTP/2 over TLS 1.2+ only" modern_tls
check "web client served for client routes" client_served
# The services close an idle HTTP/1.1 connection after 30 s (hyper's header read timeout); nginx
# must let go of its idle upstream connections first, or a request sent on one just as it closes
# fails with 502.
upstream_idle() {
  awk '/^upstream /{u=$2; t=""; n++} /keepalive_timeout/{t=$2}
    /^}/ && u!="" { sub(/s;$/, "", t); if (t=="" || t+0>=30) {print u ": keepalive_timeout " (t==""?"unset":t); bad=1}; u="" }
    END {exit bad || n==0}' "$run/nginx/xiaowo.conf"
}
check "nginx lets go of idle upstream connections before the services close them" upstream_idle

# --- gRPC-web through nginx (HTTP/1.1), as a browser sends it ----------------------------------
grpc_web() { # path, printf-escaped framed body
  printf "$2" > "$run/gw.req"
  curl -sk --http1.1 -D "$run/gw.headers" -o "$run/gw.body" -w '%{http_code}' -H 'content-type: application/grpc-web+proto' \
    -H 'x-grpc-web: 1' --data-binary @"$run/gw.req" "$https$1"
}
web_session() { grpc_web /xiaowo.session.v1.SessionService/CreateSession '\x00\x00\x00\x00\x07\x0a\x05split' > /dev/null && grep -qa 'grpc-status:0' "$run/gw.body"; }
secure_cookie() { grep -i '^set-cookie:' "$run/gw.headers" | grep -q '__Host-xiaowo_session=.*HttpOnly.*SameSite=Strict.*Secure'; }
web_internal_refused() { grpc_web /xiaowo.session.v1.SessionInternalService/ValidateSession '\x00\x00\x00\x00\x00' | grep -qx 404; }
check "gRPC-web session through nginx" web_session
check "session cookie is __Host- and Secure over HTTPS" secure_cookie
check "internal service refused to browsers (gRPC-web)" web_internal_refused
media_admin_refused() { grpc_web /xiaowo.media.v1.MediaAdminService/ListLibrary '\x00\x00\x00\x00\x00' | grep -qx 404; }
tus_routed() { curl -sk -X OPTIONS -D - -o /dev/null "$https/media/uploads" | grep -qi '^tus-version: 1.0.0'; }
uploads_need_session() { curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 10' "$https/media/uploads" | grep -qx 401; }
media_traversal_refused() { local code; code=$(curl -sk --path-as-is -o /dev/null -w '%{http_code}' "$https/media/../../etc/passwd"); [ "$code" = 400 ] || [ "$code" = 404 ]; }
check "media admin service refused to browsers (gRPC-web)" media_admin_refused
check "tus uploads routed to media-svc through nginx" tus_routed
check "uploads need a session" uploads_need_session
check "/media/../../etc/passwd refused" media_traversal_refused
# The operator console: its page, and its admin calls over gRPC-web from loopback with the token.
admin_page_served() { curl -sk "$https/admin" | grep -qi '<title>'; }
web_admin() { # extra curl arguments
  printf '\x00\x00\x00\x00\x00' > "$run/gw.req"
  curl -sk --http1.1 -D "$run/gw.headers" -o "$run/gw.body" -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' "$@" \
    --data-binary @"$run/gw.req" "$https/xiaowo.session.v1.SessionAdminService/ListSessions"
}
web_admin_with_token() { web_admin -H "authorization: Bearer $token" && grep -qa 'grpc-status:0' "$run/gw.body"; }
web_admin_needs_token() { web_admin && cat "$run/gw.headers" "$run/gw.body" | grep -qai 'grpc-status: *16'; }
check "operator console served at /admin" admin_page_served
check "admin service over gRPC-web from loopback with the admin token" web_admin_with_token
check "admin service over gRPC-web refused without the admin token" web_admin_needs_token

# --- native gRPC: public services on the public listener, the rest only on the admin one -------
public_grpc() { grpcurl -insecure -import-path proto -proto xiaowo/session/v1/session.proto "$@" "127.0.0.1:$XIAOWO_HTTPS_PORT" "$method"; }
grpc_public_ok() { method=xiaowo.session.v1.SessionService/CreateSession public_grpc -d '{"display_name":"cli"}' | grep -q displayName; }
grpc_admin_refused() { ! method=xiaowo.session.v1.SessionAdminService/ListSessions public_grpc -H "authorization: Bearer $token"; }
grpc_internal_refused() { ! method=xiaowo.session.v1.SessionInternalService/ValidateSession public_grpc -d '{"token":"x"}'; }
admin_listener_ok() { grpcurl -plaintext -H "authorization: Bearer $token" "$admin" xiaowo.session.v1.SessionAdminService/ListSessions | grep -q '"split"'; }
admin_needs_token() { ! grpcurl -plaintext "$admin" xiaowo.session.v1.SessionAdminService/ListSessions; }
internal_grpc() { grpcurl -plaintext -import-path proto -proto xiaowo/session/v1/session.proto -d '{"user_ids":[]}' "$@" "$admin" xiaowo.session.v1.SessionInternalService/BatchGetDisplayNames; }
internal_needs_token() { local out; out=$(internal_grpc 2>&1) && return 1; grep -q Unauthenticated <<<"$out"; }
internal_token_private() { [ "$(stat -c %a "$run/data/internal.token")" = 600 ]; }
internal_with_token() { internal_grpc -H "x-xiaowo-internal-token: $(head -n 1 "$run/data/internal.token")"; }
reflection_of() {
  local out attempt
  for attempt in 1 2; do
    out=$(grpcurl -plaintext -max-time 10 -H "x-xiaowo-service: $1" "$admin" list 2>&1)
    grep -q "^xiaowo\.$1\.v1\." <<<"$out" && return 0
    echo "attempt $attempt: $out"
  done
  return 1
}
check "gRPC (h2) public service via public listener" grpc_public_ok
check "admin service refused on public listener" grpc_admin_refused
check "internal service refused on public listener" grpc_internal_refused
check "admin RPC via admin listener" admin_listener_ok
check "admin RPC without token refused" admin_needs_token
check "internal RPC without the internal token refused, even on the admin listener" internal_needs_token
check "internal token generated in the shared data directory, mode 0600" internal_token_private
check "internal RPC with the internal token answered" internal_with_token
for target in ${XIAOWO_TARGETS:-session room sync chat monitor media}; do
  check "reflection of $target via admin listener" reflection_of "$target"
done

# --- Prometheus -----------------------------------------------------------------------------
metrics_lint() { curl -s "http://127.0.0.1:$1/metrics" | promtool check metrics; }
port_of() {
  case $1 in session) echo "$XIAOWO_PORT_BASE" ;; room) echo $((XIAOWO_PORT_BASE + 1)) ;;
    sync) echo $((XIAOWO_PORT_BASE + 2)) ;; chat) echo $((XIAOWO_PORT_BASE + 3)) ;; monitor) echo $((XIAOWO_PORT_BASE + 4)) ;;
    media) echo $((XIAOWO_PORT_BASE + 5)) ;; esac
}
targets=""
for target in ${XIAOWO_TARGETS:-session room sync chat monitor media}; do
  port=$(port_of "$target")
  check "promtool check metrics ($target)" metrics_lint "$port"
  targets+="'127.0.0.1:$port',"
done
if [ -f deploy/prometheus/prometheus.yml ]; then
  check "promtool check config" promtool check config --syntax-only deploy/prometheus/prometheus.yml
fi
if [ -f deploy/prometheus/rules.yml ]; then
  check "promtool check rules" promtool check rules deploy/prometheus/rules.yml
fi
prom_port=$(free_port)
cat > "$run/prometheus.yml" <<YML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: xiaowo
    static_configs: [ { targets: [${targets%,}] } ]
YML
prometheus --config.file="$run/prometheus.yml" --storage.tsdb.path="$run/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" > "$run/logs/prometheus.log" 2>&1 &
prometheus_pid=$!
scraped() {
  for _ in $(seq 1 60); do
    up=$(curl -s "http://127.0.0.1:$prom_port/api/v1/query?query=sum(up)" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)' 2>/dev/null || echo 0)
    [ "$up" = "$1" ] && return 0
    sleep 0.5
  done
  echo "Prometheus sees $up of $1 targets up"
  return 1
}
count=$(wc -w <<<"${XIAOWO_TARGETS:-session room sync chat monitor media}")
check "real Prometheus scrapes every service" scraped "$count"

# --- systemd units --------------------------------------------------------------------------
verify_units() {
  local dir="$run/units"
  mkdir -p "$dir"
  for unit in deploy/systemd/*.service deploy/systemd/*.timer; do
    sed "s#/usr/local/bin/xiaowo#$XIAOWO_BIN#" "$unit" > "$dir/$(basename "$unit")"
  done
  cp "$dir/xiaowo@.service" "$dir/xiaowo@session.service"
  local out
  out=$(cd "$dir" && systemd-analyze verify --man=no ./xiaowo-up.service ./xiaowo@session.service ./xiaowo-backup.service ./xiaowo-backup.timer 2>&1)
  [ -z "$out" ] || { echo "$out"; return 1; }
}
if command -v systemd-analyze > /dev/null 2>&1; then
  check "systemd units verify" verify_units
fi

# --- the browser suite through nginx over HTTPS ----------------------------------------------
if [ -f web/dist/index.html ]; then
  log "browser suite through nginx over HTTPS"
  # The services' internal token: the browser suite signs a media URL as media-svc does.
  browser_suite() {
    (cd web && E2E_BASE_URL="$https" E2E_WEB_DIR="$run/web" E2E_INTERNAL_TOKEN="$(head -n 1 "$run/data/internal.token")" node e2e/run.mjs)
  }
  check "browser e2e through nginx (HTTPS, two browsers, sync + chat)" browser_suite
  # nginx sent the library's files itself (split-stack.sh gives it the media directory):
  # media-svc handed the browsers' file requests over after its checks and sent none itself.
  media_sent_by_nginx() {
    local counts
    counts=$(curl -s "http://127.0.0.1:$(port_of media)/metrics" | grep '^xiaowo_media_http_requests_total' || true)
    echo "$counts"
    grep 'route="file_accel"' <<<"$counts" | grep -q 'code="200"' || return 1
    ! grep 'route="file"' <<<"$counts" | grep -q 'code="20[06]"'
  }
  check "library files sent by nginx after media-svc's checks (X-Accel-Redirect)" media_sent_by_nginx
else
  failed=$((failed + 1))
  echo "FAIL browser e2e through nginx: web/dist is not built (scripts/test-web.sh builds it)"
fi

echo
echo "split deployment: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
