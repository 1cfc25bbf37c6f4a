#!/usr/bin/env bash
# Runs Xiaowo's split deployment on one machine: each service as its own `xiaowo serve`
# process, nginx in front (TLS, gRPC-web and gRPC routing, admin listener).
#
#   deploy/split-stack.sh start RUN_DIR    start everything; state, logs and data under RUN_DIR
#   deploy/split-stack.sh stop RUN_DIR     stop everything started there (by PID)
#   deploy/split-stack.sh status RUN_DIR   which processes are alive
#
# Environment (defaults in brackets):
#   XIAOWO_BIN [target/release/xiaowo, else target/debug/xiaowo]
#   XIAOWO_TARGETS ["session room sync chat monitor media"]
#   XIAOWO_PORT_BASE [50051]     services listen on 127.0.0.1:BASE+0 … BASE+5
#   XIAOWO_HTTPS_PORT [8443]     public HTTPS listener (127.0.0.1 unless XIAOWO_BIND is set)
#   XIAOWO_HTTP_PORT [8081]      plain HTTP listener that redirects to HTTPS
#   XIAOWO_ADMIN_PORT [9443]     admin listener (always loopback)
#   XIAOWO_BIND [127.0.0.1]      address of the public listeners
#   XIAOWO_WEB_ROOT [web/dist]   the built web client
#   XIAOWO_TLS_CERT / XIAOWO_TLS_KEY   certificate and key; a self-signed pair for localhost is
#                                made under RUN_DIR/tls when unset
#   XIAOWO_ADMIN_TOKEN_FILE      the admin token; a random one is made under RUN_DIR/secrets
#                                when unset (mode 600)
#   XIAOWO_NGINX_SENDS_MEDIA [on]  `on`: nginx sends the library's files itself after
#                                media-svc's checks (X-Accel-Redirect; RUN_DIR/data/media must be
#                                readable by nginx's workers); `off`: media-svc sends them
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
command=${1:?usage: split-stack.sh start|stop|status RUN_DIR}
run=${2:?usage: split-stack.sh start|stop|status RUN_DIR}
mkdir -p "$run"
run=$(cd "$run" && pwd)
mkdir -p "$run/pids" "$run/logs"

targets=${XIAOWO_TARGETS:-session room sync chat monitor media}
base=${XIAOWO_PORT_BASE:-50051}
bind=${XIAOWO_BIND:-127.0.0.1}
https_port=${XIAOWO_HTTPS_PORT:-8443}
http_port=${XIAOWO_HTTP_PORT:-8081}
admin_port=${XIAOWO_ADMIN_PORT:-9443}

port_of() {
  case $1 in
    session) echo $((base + 0)) ;;
    room) echo $((base + 1)) ;;
    sync) echo $((base + 2)) ;;
    chat) echo $((base + 3)) ;;
    monitor) echo $((base + 4)) ;;
    media) echo $((base + 5)) ;;
    *) echo "unknown target $1" >&2; exit 2 ;;
  esac
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  local pidfile pid
  for pidfile in "$run"/pids/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

wait_http() {
  local url=$1 name=$2
  for _ in $(seq 1 150); do
    if curl -sk -o /dev/null --max-time 2 "$url"; then
      return 0
    fi
    sleep 0.2
  done
  echo "$name did not come up ($url); log: $run/logs/$name.log" >&2
  tail -n 20 "$run/logs/$name.log" >&2 || true
  return 1
}

start() {
  local bin=${XIAOWO_BIN:-}
  if [ -z "$bin" ]; then
    bin="$ROOT/target/release/xiaowo"
    [ -x "$bin" ] || bin="$ROOT/target/debug/xiaowo"
  fi
  [ -x "$bin" ] || { echo "no xiaowo binary at $bin (cargo build -p xiaowo)" >&2; exit 1; }

  local token_file=${XIAOWO_ADMIN_TOKEN_FILE:-$run/secrets/admin-token}
  if [ ! -f "$token_file" ]; then
    mkdir -p "$(dirname "$token_file")"
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$token_file")
  fi
  local cert=${XIAOWO_TLS_CERT:-$run/tls/cert.pem} key=${XIAOWO_TLS_KEY:-$run/tls/key.pem}
  if [ ! -f "$cert" ]; then
    mkdir -p "$(dirname "$cert")"
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$key" -out "$cert" 2>/dev/null)
  fi

  local peers=(--session-url "http://127.0.0.1:$(port_of session)")
  if "$bin" serve --help | grep -q -- '--room-url'; then
    peers+=(--room-url "http://127.0.0.1:$(port_of room)")
  fi
  if "$bin" serve --help | grep -q -- '--sync-url'; then
    peers+=(--sync-url "http://127.0.0.1:$(port_of sync)")
  fi
  local target
  for target in $targets; do
    if alive "$run/pids/$target.pid"; then
      echo "$target already running" >&2
      continue
    fi
    "$bin" serve --target "$target" --"$target"-listen "127.0.0.1:$(port_of "$target")" \
      "${peers[@]}" --data-dir "$run/data" --admin-token-file "$token_file" \
      > "$run/logs/$target.log" 2>&1 &
    echo $! > "$run/pids/$target.pid"
  done
  for target in $targets; do
    wait_http "http://127.0.0.1:$(port_of "$target")/metrics" "$target"
  done

  local web_root=${XIAOWO_WEB_ROOT:-$ROOT/web/dist}
  chmod 755 "$run"
  local media_dir=""
  if [ "${XIAOWO_NGINX_SENDS_MEDIA:-on}" = on ]; then
    media_dir="$run/data/media"
  fi
  XIAOWO_HTTPS_LISTEN="$bind:$https_port" XIAOWO_HTTPS_PUBLIC_PORT="$https_port" \
    XIAOWO_HTTP_LISTEN="$bind:$http_port" XIAOWO_ADMIN_LISTEN="127.0.0.1:$admin_port" \
    XIAOWO_TLS_CERT="$cert" XIAOWO_TLS_KEY="$key" XIAOWO_WEB_ROOT="$web_root" \
    XIAOWO_SESSION_UPSTREAMS="127.0.0.1:$(port_of session)" XIAOWO_ROOM_UPSTREAMS="127.0.0.1:$(port_of room)" \
    XIAOWO_SYNC_UPSTREAMS="127.0.0.1:$(port_of sync)" XIAOWO_CHAT_UPSTREAMS="127.0.0.1:$(port_of chat)" \
    XIAOWO_MONITOR_UPSTREAMS="127.0.0.1:$(port_of monitor)" XIAOWO_MEDIA_UPSTREAMS="127.0.0.1:$(port_of media)" \
    XIAOWO_MEDIA_DIR="$media_dir" "$ROOT/deploy/nginx/render.sh" --standalone "$run/nginx" > /dev/null
  nginx -t -q -p "$run/nginx" -c nginx.conf
  nginx -p "$run/nginx" -c nginx.conf > "$run/logs/nginx.log" 2>&1 &
  echo $! > "$run/pids/nginx.pid"
  wait_http "https://127.0.0.1:$https_port/" nginx
  echo "Xiaowo is up: https://127.0.0.1:$https_port/ (admin gRPC on 127.0.0.1:$admin_port, token in $token_file)"
}

case $command in
  start)
    trap 'stop' ERR
    start
    ;;
  stop) stop ;;
  status)
    for pidfile in "$run"/pids/*.pid; do
      [ -e "$pidfile" ] || continue
      name=$(basename "$pidfile" .pid)
      if alive "$pidfile"; then echo "$name running (pid $(cat "$pidfile"))"; else echo "$name stopped"; fi
    done
    ;;
  *) echo "usage: split-stack.sh start|stop|status RUN_DIR" >&2; exit 2 ;;
esac
