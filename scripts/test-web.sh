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

log "screens in headless Chromium (axe-core on every screen in en/zh, light/dark, desktop/phone)"
ui_report=$(mktemp)
ui_status=0
(cd web && node e2e/ui.mjs) | tee "$ui_report" || ui_status=$?
ui_passed=$(sed -n 's/^ui: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$ui_report")
ui_failed=$(sed -n 's/^ui: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$ui_report")
rm -f "$ui_report"
echo "screenshots: web/artifacts/ui/"

log "operator console in headless Chromium (unlock, charts, revoke, close, audit filters, media library)"
admin_report=$(mktemp)
admin_status=0
(cd web && node e2e/admin.mjs) | tee "$admin_report" || admin_status=$?
admin_passed=$(sed -n 's/^admin: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$admin_report")
admin_failed=$(sed -n 's/^admin: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$admin_report")
rm -f "$admin_report"
echo "screenshots: web/artifacts/admin/"

log "conversion to HLS in headless Chromium (an HEVC + AC-3 MKV watched while it converts)"
convert_report=$(mktemp)
convert_status=0
(cd web && node e2e/convert.mjs) | tee "$convert_report" || convert_status=$?
convert_passed=$(sed -n 's/^convert: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$convert_report")
convert_failed=$(sed -n 's/^convert: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$convert_report")
rm -f "$convert_report"
echo "screenshots: web/artifacts/convert/"

log "Lighthouse on the lobby and a room (mobile emulation)"
lh_report=$(mktemp)
lh_status=0
(cd web && CHROME_PATH=/usr/bin/chromium node e2e/lighthouse.mjs) | tee "$lh_report" || lh_status=$?
lh_passed=$(sed -n 's/^lighthouse: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$lh_report")
lh_failed=$(sed -n 's/^lighthouse: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$lh_report")
rm -f "$lh_report"

log "XSS corpus in headless Chromium (web/e2e/xss-payloads.txt through every text field)"
xss_report=$(mktemp)
xss_status=0
(cd web && node e2e/xss.mjs) | tee "$xss_report" || xss_status=$?
xss_passed=$(sed -n 's/^xss: \([0-9]*\) passed, \([0-9]*\) failed.*$/\1/p' "$xss_report")
xss_failed=$(sed -n 's/^xss: \([0-9]*\) passed, \([0-9]*\) failed.*$/\2/p' "$xss_report")
rm -f "$xss_report"

log "subtitles in headless Chromium (same cue in both pages, per-viewer choice, room default, MKV stream, XSS as cue text)"
subs_report=$(mktemp)
subs_status=0
(cd web && node e2e/subtitles.mjs) | tee "$subs_report" || subs_status=$?
subs_passed=$(sed -n 's/^subtitles: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$subs_report")
subs_failed=$(sed -n 's/^subtitles: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$subs_report")
rm -f "$subs_report"
echo "screenshots: web/artifacts/subtitles/"

log "sync quality in headless Chromium (smoke: 2 viewers, 2 files, 3 seeks and a rate change each)"
sync_status=0
(cd web && node bench/sync-quality.mjs --smoke) || sync_status=$?

passed=$(( ${unit_passed:-0} + ${e2e_passed:-0} + ${ui_passed:-0} + ${admin_passed:-0} + ${convert_passed:-0} + ${lh_passed:-0} + ${xss_passed:-0} + ${subs_passed:-0} ))
failed=$(( ${unit_failed:-0} + ${e2e_failed:-0} + ${ui_failed:-0} + ${admin_failed:-0} + ${convert_failed:-0} + ${lh_failed:-0} + ${xss_failed:-0} + ${subs_failed:-0} ))
# The sync-quality smoke run counts as one test.
if [ "$sync_status" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
# A runner that died before reporting counts as a failure.
if [ "$unit_status" -ne 0 ] && [ "${unit_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$e2e_status" -ne 0 ] && [ "${e2e_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$ui_status" -ne 0 ] && [ "${ui_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$admin_status" -ne 0 ] && [ "${admin_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$convert_status" -ne 0 ] && [ "${convert_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$lh_status" -ne 0 ] && [ "${lh_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$xss_status" -ne 0 ] && [ "${xss_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
if [ "$subs_status" -ne 0 ] && [ "${subs_failed:-0}" -eq 0 ]; then failed=$((failed + 1)); fi
echo "web: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
