#!/usr/bin/env bash
# The browser client's tests: builds web/ (protobuf codegen, type-check, bundle; the build fails
# when the first load's JavaScript is over 80 KB gzipped), runs the unit tests with node's test
# runner (sync maths, the language catalogs, error sentences, and the check that every shown
# string goes through the catalog), then in headless Chromium against a real `xiaowo up` (debug
# build): the end-to-end suite, the screens suite (e2e/ui.mjs: axe-core on every screen in
# English and Chinese, light and dark, desktop and phone, screenshots into web/artifacts/ui/,
# phone layout, language switch, keyboard, error sentences, the operator console's screens), the
# operator console (e2e/admin.mjs: unlock with the admin token, charts drawn from the server's
# metrics, revoke a session, close a room, audit filters, the media library's items and uploads with rename
# and delete; screenshots into web/artifacts/admin/),
# conversion to HLS (e2e/convert.mjs: an HEVC + AC-3 MKV uploads, two users watch it while it
# converts, a seek past the converted part holds with a message, then seek, pause and rate stay
# in sync; screenshots into web/artifacts/convert/),
# the XSS corpus (e2e/xss.mjs: 240
# payloads through every text field, nothing may run), subtitles (e2e/subtitles.mjs: two viewers
# see the same cue at the same position after seeks, per-viewer choice kept across a reload, the
# room default, an MKV's extracted stream, the XSS corpus as cue text; screenshots into
# web/artifacts/subtitles/), Lighthouse on the lobby and a room
# (e2e/lighthouse.mjs: accessibility and best practices at least 95, performance reported) and
# a CI-sized run of the sync-quality benchmark (an owner and a viewer at 80 ms of added latency,
# a WebM and an H.264 + AAC MP4, 3 seeks and a rate change on each: no page may pause or seek for
# the rate change, every seek converges within 3 s). Installs Chromium, ffmpeg, the CJK and emoji fonts the screenshots need and the npm
# packages when missing. Ends with one line "web: N passed, N failed" over all of them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

need_apt chromium chromium ffmpeg ffmpeg
# Without them Chinese text and emoji render as boxes in the screenshots.
need_deb fonts-noto-cjk fonts-noto-color-emoji
need_npm

passed=0
failed=0
# Runs a command in web/.
in_web() { (cd web && "$@"); }
# Runs a command in web/, its output also copied to the file $1.
reported() {
  local report=$1
  shift
  in_web "$@" | tee "$report"
}

# Runs one browser suite in web/ whose summary line is "<name>: N passed, N failed…", adds
# its counts to the totals, and counts a runner that died before reporting as one failure.
suite() {
  local name=$1
  shift
  local report status=0 suite_passed suite_failed
  report=$(mktemp)
  timed "$name" reported "$report" "$@" || status=$?
  suite_passed=$(sed -n "s/^$name: \([0-9]*\) passed, \([0-9]*\) failed.*\$/\1/p" "$report")
  suite_failed=$(sed -n "s/^$name: \([0-9]*\) passed, \([0-9]*\) failed.*\$/\2/p" "$report")
  rm -f "$report"
  passed=$((passed + ${suite_passed:-0}))
  failed=$((failed + ${suite_failed:-0}))
  if [ "$status" -ne 0 ] && [ "${suite_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
}

log "web unit tests (node --test)"
in_web node build.mjs --tests
unit_report=$(mktemp)
trap 'rm -f "$unit_report"' EXIT
unit_status=0
in_web node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$unit_report" build-test/ || unit_status=$?
unit_passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$unit_report")
unit_failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$unit_report")
passed=$((passed + ${unit_passed:-0}))
failed=$((failed + ${unit_failed:-0}))
if [ "$unit_status" -ne 0 ] && [ "${unit_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi

log "building xiaowo (debug) for the end-to-end tests"
cargo build -p xiaowo --quiet

log "web end-to-end tests (headless Chromium)"
suite e2e node e2e/run.mjs
echo "screenshots: web/artifacts/"

log "screens in headless Chromium (axe-core on every screen in en/zh, light/dark, desktop/phone)"
suite ui node e2e/ui.mjs
echo "screenshots: web/artifacts/ui/"

log "operator console in headless Chromium (unlock, charts, revoke, close, audit filters, media library)"
suite admin node e2e/admin.mjs
echo "screenshots: web/artifacts/admin/"

log "conversion to HLS in headless Chromium (an HEVC + AC-3 MKV watched while it converts)"
suite convert node e2e/convert.mjs
echo "screenshots: web/artifacts/convert/"

log "Lighthouse on the lobby and a room (mobile emulation)"
suite lighthouse env CHROME_PATH=/usr/bin/chromium node e2e/lighthouse.mjs

log "XSS corpus in headless Chromium (web/e2e/xss-payloads.txt through every text field)"
suite xss node e2e/xss.mjs

log "subtitles in headless Chromium (same cue in both pages, per-viewer choice, room default, MKV stream, XSS as cue text)"
suite subtitles node e2e/subtitles.mjs
echo "screenshots: web/artifacts/subtitles/"

log "sync quality in headless Chromium (smoke: 2 viewers, 2 files, 3 seeks and a rate change each)"
# The sync-quality smoke run counts as one test.
if timed sync-quality in_web node bench/sync-quality.mjs --smoke; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi

list_timings
echo "web: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
