#!/usr/bin/env bash
# The browser client's tests: builds web/ (protobuf codegen, type-check, bundle), runs the unit
# tests with node's test runner, then the end-to-end suite in headless Chromium against a real
# `xiaowo up` (debug build), the XSS corpus (e2e/xss.mjs: 240 payloads through every text
# field, nothing may run), and a CI-sized run of the sync-quality benchmark (an owner and a
# viewer at 80 ms of added latency, a WebM and an H.264 + AAC MP4, 3 seeks and a rate change on
# each: no page may pause or seek for the rate change, every seek converges within 3 s). Installs Chromium, ffmpeg and the npm packages when
# missing. Ends with one line "web: N passed, N failed" over all of them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt chromium chromium ffmpeg ffmpeg
need_npm

log "web unit tests (node --test)"
(cd web && node build.mjs --tests)
unit_report=$(mktemp)
trap 'rm -f "$unit_report"' EXIT
unit_status=0
(cd web && node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$unit_report" build-test/) || unit_status=$?
unit_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$unit_report")
unit_failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$unit_report")

log "building xiaowo (debug) for the end-to-end tests"
cargo build -p xiaowo --quiet

log "web end-to-end tests (headless Chromium)"
e2e_report=$(mktemp)
trap 'rm -f "$unit_report" "$e2e_report"' EXIT
e2e_status=0
(cd web && node e2e/run.mjs) | tee "$e2e_report" || e2e_status=$?
e2e_passed=$(sed -n 's/^e2e: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$e2e_report")
e2e_failed=$(sed -n 's/^e2e: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$e2e_report")
echo "screenshots: web/artifacts/"

log "XSS corpus in headless Chromium (web/e2e/xss-payloads.txt through every text field)"
xss_report=$(mktemp)
xss_status=0
(cd web && node e2e/xss.mjs) | tee "$xss_report" || xss_status=$?
xss_passed=$(sed -n 's/^xss: \([0-9]*\) passed, \([0-9]*\) failed.*$/\1/p' "$xss_report")
xss_failed=$(sed -n 's/^xss: \([0-9]*\) passed, \([0-9]*\) failed.*$/\2/p' "$xss_report")
rm -f "$xss_report"

log "sync quality in headless Chromium (smoke: 2 viewers, 2 files, 3 seeks and a rate change each)"
sync_status=0
(cd web && node bench/sync-quality.mjs --smoke) || sync_status=$?

passed=$(( ${unit_passed:-0} + ${e2e_passed:-0} + ${xss_passed:-0} ))
failed=$(( ${unit_failed:-0} + ${e2e_failed:-0} + ${xss_failed:-0} ))
# The sync-quality smoke run counts as one test.
if [ "$sync_status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
# A runner that died before reporting counts as a failure.
if [ "$unit_status" -ne 0 ] && [ "${unit_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$e2e_status" -ne 0 ] && [ "${e2e_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$xss_status" -ne 0 ] && [ "${xss_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
echo "web: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
