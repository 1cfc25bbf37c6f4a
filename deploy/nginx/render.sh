#!/usr/bin/env bash
# Renders Xiaowo's nginx configuration into OUT_DIR.
#
#   deploy/nginx/render.sh OUT_DIR            # xiaowo.conf + snippets, to include in http { }
#   deploy/nginx/render.sh --standalone OUT_DIR
#                                             # also nginx.conf for `nginx -p OUT_DIR -c nginx.conf`
#                                             # (own pid, logs and temp paths; no root needed)
#
# Settings come from the environment (defaults in brackets):
#   XIAOWO_HTTPS_LISTEN [443]              XIAOWO_HTTP_LISTEN [80]
#   XIAOWO_HTTPS_PUBLIC_PORT [443]         port browsers use, for the HTTP→HTTPS redirect
#   XIAOWO_ADMIN_LISTEN [127.0.0.1:9443]   admin listener (native gRPC to every service)
#   XIAOWO_TLS_CERT [/etc/xiaowo/tls/fullchain.pem]   XIAOWO_TLS_KEY [/etc/xiaowo/tls/privkey.pem]
#   XIAOWO_WEB_ROOT [/usr/share/xiaowo/web]           the built web client (web/dist)
#   XIAOWO_{SESSION,ROOM,SYNC,CHAT,MONITOR,MEDIA}_UPSTREAMS  space-separated host:port lists
#                                          [127.0.0.1:50051 … 127.0.0.1:50056]; several servers
#                                          are balanced (sync and chat need --nats-url then)
#   XIAOWO_ROOM_AFFINITY [off]             `on`: sync and chat requests carrying the same
#                                          x-xiaowo-room header go to the same instance
#                                          (consistent hash); others are spread as usual
#   XIAOWO_SESSION_CREATE_RATE [10r/m]  XIAOWO_SESSION_CREATE_BURST [20]
#   XIAOWO_ROOM_JOIN_RATE [30r/m]       XIAOWO_ROOM_JOIN_BURST [30]
#   XIAOWO_UPLOAD_CHUNK_MAX [16m]          largest upload request (the web client sends 8 MiB)
#   XIAOWO_ADMIN_WEB_ALLOW [127.0.0.1 ::1] addresses or CIDRs whose browsers may call the admin
#                                          services over gRPC-web (the operator console, /admin)
#   XIAOWO_MEDIA_DIR [unset]               media-svc's media directory, when nginx can read it
#                                          (same machine or a shared mount): nginx then sends the
#                                          library's files itself after media-svc's checks
#                                          (X-Accel-Redirect: sendfile, no bytes through media-svc)
set -euo pipefail

standalone=0
if [ "${1:-}" = "--standalone" ]; then
  standalone=1
  shift
fi
out=${1:?usage: render.sh [--standalone] OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

# One line per word of $2: the format $1 with the word in place of %s.
lines() {
  local line="" item
  for item in $2; do
    line+="$(printf "$1" "$item")"$'\n'
  done
  printf '%s' "${line%$'\n'}"
}

servers() { lines '    server %s max_fails=3 fail_timeout=5s;' "$1"; }

# sync-svc and chat-svc: optionally room-affine (see README, "Several instances").
room_servers() {
  if [ "${XIAOWO_ROOM_AFFINITY:-off}" = "on" ]; then
    printf '    hash $xiaowo_room_key consistent;\n'
  fi
  servers "$1"
}

https_port=${XIAOWO_HTTPS_PUBLIC_PORT:-443}
redirect_port=":${https_port}"
[ "$https_port" = "443" ] && redirect_port=""

allow_lines() { lines '        allow %s;' "$1"; }

# The internal location nginx serves the media directory from, when it is given one.
media_accel_prefix=""
media_accel_location=""
if [ -n "${XIAOWO_MEDIA_DIR:-}" ]; then
  case $XIAOWO_MEDIA_DIR in
    /*) ;;
    *) echo "XIAOWO_MEDIA_DIR must be an absolute path: $XIAOWO_MEDIA_DIR" >&2; exit 2 ;;
  esac
  case $XIAOWO_MEDIA_DIR in
    *[\"\;\$\{\}\\]*) echo "XIAOWO_MEDIA_DIR has a character nginx would read: $XIAOWO_MEDIA_DIR" >&2; exit 2 ;;
  esac
  media_accel_prefix=/xiaowo-media-files/
  media_accel_location="
    # The library's files, sent by nginx once media-svc has checked the request and answered
    # with X-Accel-Redirect (Range, ETag and If-Range are nginx's own here). Internal only; no
    # link inside the directory is followed.
    location ^~ $media_accel_prefix {
        internal;
        alias \"${XIAOWO_MEDIA_DIR%/}/\";
        disable_symlinks on from=\$document_root;
        include $out/xiaowo-security-headers.conf;
        sendfile on;
        tcp_nopush on;
    }"
fi

render() {
  local source=$1 target=$2
  python3 - "$source" "$target" <<PY
import os, sys
text = open(sys.argv[1]).read()
values = {
    "SESSION_SERVERS": """$(servers "${XIAOWO_SESSION_UPSTREAMS:-127.0.0.1:50051}")""",
    "ROOM_SERVERS": """$(servers "${XIAOWO_ROOM_UPSTREAMS:-127.0.0.1:50052}")""",
    "SYNC_SERVERS": """$(room_servers "${XIAOWO_SYNC_UPSTREAMS:-127.0.0.1:50053}")""",
    "CHAT_SERVERS": """$(room_servers "${XIAOWO_CHAT_UPSTREAMS:-127.0.0.1:50054}")""",
    "MONITOR_SERVERS": """$(servers "${XIAOWO_MONITOR_UPSTREAMS:-127.0.0.1:50055}")""",
    "MEDIA_SERVERS": """$(servers "${XIAOWO_MEDIA_UPSTREAMS:-127.0.0.1:50056}")""",
    "UPLOAD_CHUNK_MAX": "${XIAOWO_UPLOAD_CHUNK_MAX:-16m}",
    "HTTP_LISTEN": "${XIAOWO_HTTP_LISTEN:-80}",
    "HTTPS_LISTEN": "${XIAOWO_HTTPS_LISTEN:-443}",
    ":@HTTPS_PUBLIC_PORT@": "${redirect_port}",
    "ADMIN_LISTEN": "${XIAOWO_ADMIN_LISTEN:-127.0.0.1:9443}",
    "TLS_CERT": "${XIAOWO_TLS_CERT:-/etc/xiaowo/tls/fullchain.pem}",
    "TLS_KEY": "${XIAOWO_TLS_KEY:-/etc/xiaowo/tls/privkey.pem}",
    "WEB_ROOT": "${XIAOWO_WEB_ROOT:-/usr/share/xiaowo/web}",
    "CONF_DIR": "${out}",
    "SESSION_CREATE_RATE": "${XIAOWO_SESSION_CREATE_RATE:-10r/m}",
    "SESSION_CREATE_BURST": "${XIAOWO_SESSION_CREATE_BURST:-20}",
    "ROOM_JOIN_RATE": "${XIAOWO_ROOM_JOIN_RATE:-30r/m}",
    "ROOM_JOIN_BURST": "${XIAOWO_ROOM_JOIN_BURST:-30}",
    "ADMIN_WEB_ALLOW": """$(allow_lines "${XIAOWO_ADMIN_WEB_ALLOW:-127.0.0.1 ::1}")""",
    "MEDIA_ACCEL_PREFIX": "${media_accel_prefix}",
    "MEDIA_ACCEL_LOCATION": """${media_accel_location}""",
}
for key, value in values.items():
    placeholder = key if key.startswith(":") else "@" + key + "@"
    text = text.replace(placeholder, value)
if "@" in "".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).replace("@xiaowo_", ""):
    sys.exit("unfilled placeholder in " + sys.argv[1])
open(sys.argv[2], "w").write(text)
PY
}

render "$here/xiaowo.conf.in" "$out/xiaowo.conf"
render "$here/xiaowo-public-grpc.conf.in" "$out/xiaowo-public-grpc.conf"
render "$here/xiaowo-security-headers.conf.in" "$out/xiaowo-security-headers.conf"

if [ "$standalone" = 1 ]; then
  mkdir -p "$out/logs" "$out/temp"
  cat > "$out/nginx.conf" <<CONF
# Standalone nginx for Xiaowo: run as \`nginx -p $out -c nginx.conf\`.
worker_processes 1;
daemon off;
pid $out/nginx.pid;
error_log $out/logs/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $out/logs/access.log;
    client_body_temp_path $out/temp/client;
    proxy_temp_path $out/temp/proxy;
    fastcgi_temp_path $out/temp/fastcgi;
    uwsgi_temp_path $out/temp/uwsgi;
    scgi_temp_path $out/temp/scgi;
    sendfile on;
    server_tokens off;
    include $out/xiaowo.conf;
}
CONF
fi
echo "$out"
