#!/usr/bin/env bash
# Builds the Debian package target/debian/xiaowo_<version>_amd64.deb: the release binary, the
# web client, the systemd unit, the xiaowo system user and /var/lib/xiaowo (see
# deploy/debian/ and [package.metadata.deb] in xiaowo/Cargo.toml). Install it with
# `sudo dpkg -i target/debian/xiaowo_*.deb`, then `sudo systemctl start xiaowo`.
#   PROFILE=release (default) or another cargo profile.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_npm
need_cargo_deb
log "building the web client"
(cd web && npm run --silent build)
log "building the package (cargo deb, profile ${PROFILE:-release})"
cargo deb -p xiaowo --profile "${PROFILE:-release}" --output target/debian/
ls -1 target/debian/xiaowo_*.deb
