// Sync quality in real browsers: how closely 2–4 headless Chromium viewers of one room agree.
//
// Starts `xiaowo up` (or uses a running stack) like the end-to-end suite, opens every viewer in
// a browser profile of its own, and lets the owner play an ffmpeg-made test video through the
// page's controls on a fixed schedule: a seek, a pause, a resume, a change to 1.5× and back,
// every 30 s. Meanwhile every viewer is sampled at the same server-clock instant T, every 200 ms
// (every 50 ms around commands): each page turns T into its own clock through the offset its player steers by, sleeps
// until just before it, spins to it, reads `video.currentTime` and moves that reading back to T
// by the playback rate. The disagreement at T is the spread (max − min) across viewers.
//
// Reported, for each phase: p50/p95/max disagreement while playing in steady state (more than
// `--settle` seconds after the last command), the same while paused, and for every command the
// time from the owner's click until the viewers converged: the first instant after which the
// owner's page follows the command's state and all viewers stay within 50 ms of each other and
// of that timeline until the next command. Goals: p95 ≤ 50 ms while playing, convergence after
// a seek ≤ 2 s.
//
// `--baseline` runs the same schedule a second time in the same room with the same viewers after
// switching "Smooth sync" off in each of them (the drift controller then only seeks, at 250 ms),
// so that both sets of figures come from one run on one machine.
//
//   node bench/sync-quality.mjs [--viewers 3] [--duration 180] [--baseline] [--json out.json]
//   --trace adds every sample to the JSON file (to see what happened after a command);
//   --analyse FILE prints the figures of such a file again (after a change to the analysis)
//   node bench/sync-quality.mjs --smoke     2 viewers, ~20 s, one seek; fails when no numbers
//                                           come out, the seek does not converge within 10 s
//                                           or a page throws
//   (after `npm run build` and `cargo build -p xiaowo`; XIAOWO_BIN, CHROMIUM, E2E_BASE_URL and
//   E2E_WEB_DIR as for e2e/run.mjs; XIAOWO_WEB_DIST=dir serves another build of the client)

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { createRoom, launchServer, makeTestVideo, openProfile, pickName, prepareWebDir, stopProcess, waitLive } from "../e2e/stack.mjs";

const { values: options } = parseArgs({
  options: {
    viewers: { type: "string", default: "3" },
    duration: { type: "string", default: "180" },
    settle: { type: "string", default: "3" },
    interval: { type: "string", default: "200" },
    baseline: { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    json: { type: "string" },
    trace: { type: "boolean", default: false },
    analyse: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (options.help) {
  console.log("usage: node bench/sync-quality.mjs [--viewers N] [--duration S] [--settle S] [--interval MS] [--baseline] [--smoke] [--json FILE [--trace]] [--analyse FILE]");
  process.exit(0);
}

const smoke = options.smoke;
const viewerCount = smoke ? 2 : Number(options.viewers);
/** Seconds of scheduled play per phase. */
const duration = smoke ? 20 : Number(options.duration);
/** Samples this soon after a command are left out of the steady-state figures. */
const settleMs = Number(options.settle) * 1000;
/** Time between two sampling instants. */
const intervalMs = Number(options.interval);
/** Viewers agree when within this many ms of each other (and of the room's timeline). */
const AGREEMENT_MS = 50;
/** Sampling interval for the first `DENSE_FOR_MS` after each command. */
const DENSE_INTERVAL_MS = 50;
const DENSE_FOR_MS = 2_500;
/** How far ahead a sampling instant is announced, so that every page gets it in time. */
const SAMPLE_LEAD_MS = 150;
/** The last stretch before T that a page spins instead of sleeping (timers are coarse). */
const SPIN_MS = 8;
/** The smoke run's looser bound: it checks that sync works, not how well. */
const SMOKE_CONVERGENCE_MS = 10_000;
const externalBase = process.env.E2E_BASE_URL ?? "";
const externalWebDir = process.env.E2E_WEB_DIR ?? "";

if (!(viewerCount >= 2 && viewerCount <= 8) || !(duration > 0) || !(settleMs >= 0) || !(intervalMs >= 50)) {
  console.error("--viewers must be 2–8, --duration > 0, --settle ≥ 0, --interval ≥ 50");
  process.exit(2);
}

/**
 * One 30 s cycle of owner commands, at seconds into the cycle; seek targets rotate so that seeks
 * go both ways and stay within the 120 s video (a cycle advances at most ~28 s from its seek).
 */
const CYCLE_S = 30;
const SEEK_TARGETS = [10, 70, 40, 85, 20, 55];
function schedule() {
  if (smoke) {
    return [{ at: 6, kind: "seek", to: 25 }];
  }
  const events = [];
  for (let cycle = 0; cycle * CYCLE_S < duration; cycle += 1) {
    const start = cycle * CYCLE_S;
    events.push(
      { at: start, kind: "seek", to: SEEK_TARGETS[cycle % SEEK_TARGETS.length] },
      { at: start + 7, kind: "pause" },
      { at: start + 12, kind: "play" },
      { at: start + 18, kind: "rate", to: 1.5 },
      { at: start + 24, kind: "rate", to: 1 },
    );
  }
  return events.filter((event) => event.at < duration);
}

const started = { server: undefined, contexts: [], tempDir: undefined };

async function cleanup() {
  for (const context of started.contexts) {
    await context.close().catch(() => undefined);
  }
  started.contexts = [];
  await stopProcess(started.server);
  started.server = undefined;
  if (started.tempDir) {
    rmSync(started.tempDir, { recursive: true, force: true });
    started.tempDir = undefined;
  }
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    void cleanup().finally(() => process.exit(130));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

// ---------------------------------------------------------------------------------------------
// Sampling

/**
 * Runs in each page: waits until the page's own estimate of server time reaches `serverTime`,
 * reads the video, and says when on the page's clock the reading was taken.
 */
async function sampleInPage([serverTime, spinMs]) {
  const handle = window.__xiaowoSync;
  const offset = handle?.clockOffsetMs();
  if (!handle || offset === undefined) {
    return null;
  }
  const localNow = () => performance.timeOrigin + performance.now();
  const target = serverTime - offset;
  const sleepMs = target - localNow() - spinMs;
  if (sleepMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, sleepMs));
  }
  while (localNow() < target) {
    // Spin: a timer alone lands a few milliseconds late.
  }
  // currentTime is read once, after the wait: Chromium holds it for the rest of a task.
  const video = handle.video;
  const position = video.currentTime;
  const readAt = localNow();
  return {
    position,
    readAt,
    target,
    offset,
    rate: video.playbackRate,
    paused: video.paused,
    expected: handle.expectedPosition(serverTime) ?? null,
    version: handle.stateVersion(),
  };
}

/** Every viewer's position at server time `serverTime`, in seconds; undefined if one can't say. */
async function sampleAll(viewers, serverTime) {
  const readings = await Promise.all(viewers.map((viewer) => viewer.page.evaluate(sampleInPage, [serverTime, SPIN_MS]).catch(() => null)));
  if (readings.some((reading) => reading === null)) {
    return undefined;
  }
  const moved = (reading, readServerTime) => (reading.paused ? 0 : ((readServerTime - serverTime) / 1000) * reading.rate);
  return {
    serverTime,
    // Through each page's clock offset (what its player steers by)…
    positions: readings.map((reading) => reading.position - moved(reading, reading.readAt + reading.offset)),
    // …and through the machine's one wall clock, which every page here shares: the two differ by
    // how wrong the offsets are.
    wallPositions: readings.map((reading) => reading.position - moved(reading, reading.readAt)),
    roomPosition: readings[0].expected,
    roomVersion: readings[0].version,
    lateMs: Math.max(...readings.map((reading) => reading.readAt - reading.target)),
    offsetsMs: readings.map((reading) => reading.offset),
  };
}

function spreadMs(values) {
  return (Math.max(...values) - Math.min(...values)) * 1000;
}

/**
 * Samples every viewer at instants `intervalMs` apart, `DENSE_INTERVAL_MS` apart while
 * `dense()` says a command is about to go out or just went (to time convergence finely), until
 * `stop()`.
 * Instants are announced `SAMPLE_LEAD_MS` ahead, so several can be in flight at once.
 */
async function sampleUntil(viewers, stop, dense, samples) {
  const pending = [];
  let next = Date.now() + SAMPLE_LEAD_MS;
  while (!stop()) {
    const serverTime = Math.max(next, Date.now() + SAMPLE_LEAD_MS);
    pending.push(
      sampleAll(viewers, serverTime).then((sample) => {
        if (sample) {
          samples.push(sample);
        }
      }),
    );
    next = serverTime + (dense() ? DENSE_INTERVAL_MS : intervalMs);
    await sleep(next - SAMPLE_LEAD_MS - Date.now());
  }
  await Promise.all(pending);
  samples.sort((a, b) => a.serverTime - b.serverTime);
}

// ---------------------------------------------------------------------------------------------
// The owner's commands, through the page's controls

async function issue(owner, event) {
  const page = owner.page;
  switch (event.kind) {
    case "seek":
      await page.$eval(
        "#seek",
        (input, to) => {
          input.value = String(to);
          input.dispatchEvent(new Event("change"));
        },
        event.to,
      );
      break;
    case "pause":
    case "play":
      // The button offers what a click does: "pause" while playing, "play" while paused.
      await page.waitForFunction((action) => document.getElementById("play-toggle")?.dataset.action === action, event.kind);
      await page.click("#play-toggle");
      break;
    case "rate":
      await page.selectOption("#rate", String(event.to));
      break;
  }
}

function describeEvent(event) {
  return event.kind === "seek" ? `seek to ${event.to} s` : event.kind === "rate" ? `rate ${event.to}×` : event.kind;
}

/** Plays the schedule once while sampling; returns the samples and when each command went out. */
async function runPhase(viewers, name) {
  const events = schedule();
  const samples = [];
  const issued = [];
  const phaseStart = Date.now();
  let done = false;
  // Dense from just before each command is due (an instant is announced SAMPLE_LEAD_MS ahead).
  const dense = () => {
    const now = Date.now();
    return events.some((event) => {
      const due = phaseStart + event.at * 1000;
      return now > due - SAMPLE_LEAD_MS - 2 * DENSE_INTERVAL_MS && now < due + DENSE_FOR_MS;
    });
  };
  const sampling = sampleUntil(viewers, () => done, dense, samples);
  try {
    for (const event of events) {
      await sleep(phaseStart + event.at * 1000 - Date.now());
      const versionBefore = await viewers[0].page.evaluate(() => window.__xiaowoSync.stateVersion());
      const at = Date.now();
      await issue(viewers[0], event);
      issued.push({ ...event, issuedAt: at, versionBefore });
      console.log(`  ${name}: ${((at - phaseStart) / 1000).toFixed(1)} s  ${describeEvent(event)}`);
    }
    await sleep(phaseStart + duration * 1000 - Date.now());
  } finally {
    done = true;
    await sampling;
  }
  return { name, samples, issued, end: Date.now() };
}

// ---------------------------------------------------------------------------------------------
// Figures

function percentile(sorted, fraction) {
  if (sorted.length === 0) {
    return NaN;
  }
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

function summary(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: sorted.length, p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95), max: sorted[sorted.length - 1] ?? NaN };
}

/** Whether the room is paused at `time`, from the commands issued so far. */
function pausedAt(issued, time) {
  let paused = false;
  for (const event of issued) {
    if (event.issuedAt <= time && (event.kind === "pause" || event.kind === "play")) {
      paused = event.kind === "pause";
    }
  }
  return paused;
}

function analyse({ name, samples, issued, end }) {
  const steadyPlaying = [];
  const steadyPlayingWall = [];
  const steadyPaused = [];
  const steadyPlayingOffRoom = [];
  const lateMs = [];
  for (const sample of samples) {
    lateMs.push(sample.lateMs);
    const last = issued.filter((event) => event.issuedAt <= sample.serverTime).at(-1);
    if (!last || sample.serverTime - last.issuedAt < settleMs) {
      continue;
    }
    // A page that read late may have read after the next command went out: not steady.
    const next = issued.find((event) => event.issuedAt > sample.serverTime);
    if (next && next.issuedAt <= sample.serverTime + Math.max(0, sample.lateMs)) {
      continue;
    }
    if (pausedAt(issued, sample.serverTime)) {
      steadyPaused.push(spreadMs(sample.positions));
    } else {
      steadyPlaying.push(spreadMs(sample.positions));
      steadyPlayingWall.push(spreadMs(sample.wallPositions));
      if (sample.roomPosition !== null) {
        steadyPlayingOffRoom.push(Math.max(...sample.positions.map((position) => Math.abs(position - sample.roomPosition) * 1000)));
      }
    }
  }
  const convergence = issued.map((event, index) => {
    const until = issued[index + 1]?.issuedAt ?? end;
    // Up to the next command, read by every page before it went out.
    const window = samples.filter((sample) => sample.serverTime >= event.issuedAt && sample.serverTime + Math.max(0, sample.lateMs) < until);
    // Agreeing with each other is not enough: before the command reaches them they agree on
    // the old timeline. The owner's timeline, once it is the command's, says where the room is.
    const agrees = (sample) =>
      sample.roomVersion > event.versionBefore &&
      sample.roomPosition !== null &&
      spreadMs([...sample.positions, sample.roomPosition]) <= AGREEMENT_MS;
    let first = window.length;
    while (first > 0 && agrees(window[first - 1])) {
      first -= 1;
    }
    const convergedMs = first < window.length ? window[first].serverTime - event.issuedAt : Infinity;
    // Where the room was when they agreed: a seek that never happened also "converges".
    const roomPosition = first < window.length ? window[first].roomPosition : null;
    return { kind: event.kind, to: event.to, convergedMs, roomPosition, samples: window.length };
  });
  return {
    name,
    samples: samples.length,
    playing: summary(steadyPlaying),
    playingWallClock: summary(steadyPlayingWall),
    playingOffRoom: summary(steadyPlayingOffRoom),
    paused: summary(steadyPaused),
    lateSamples: lateMs.filter((late) => late > 5).length,
    convergence,
  };
}

const fmt = (value) => (Number.isFinite(value) ? value.toFixed(1) : "–");
const fmtS = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "never");

function report(result) {
  const seeks = result.convergence.filter((entry) => entry.kind === "seek").map((entry) => entry.convergedMs);
  const others = result.convergence.filter((entry) => entry.kind !== "seek");
  console.log(`\n${result.name}: ${result.samples} samples, ${result.lateSamples} read more than 5 ms late`);
  console.log(`  playing, steady state  (n=${result.playing.count}): p50 ${fmt(result.playing.p50)} ms  p95 ${fmt(result.playing.p95)} ms  max ${fmt(result.playing.max)} ms`);
  console.log(`    same, on the shared wall clock:   p50 ${fmt(result.playingWallClock.p50)} ms  p95 ${fmt(result.playingWallClock.p95)} ms  max ${fmt(result.playingWallClock.max)} ms`);
  console.log(`    furthest viewer from the room's timeline: p50 ${fmt(result.playingOffRoom.p50)} ms  p95 ${fmt(result.playingOffRoom.p95)} ms  max ${fmt(result.playingOffRoom.max)} ms`);
  console.log(`  paused, steady state   (n=${result.paused.count}): p50 ${fmt(result.paused.p50)} ms  p95 ${fmt(result.paused.p95)} ms  max ${fmt(result.paused.max)} ms`);
  console.log(`  convergence after seeks: ${seeks.map(fmtS).join(", ")} s (worst ${fmtS(Math.max(...seeks))} s)`);
  for (const kind of ["pause", "play", "rate"]) {
    const times = others.filter((entry) => entry.kind === kind).map((entry) => entry.convergedMs);
    if (times.length > 0) {
      console.log(`  convergence after ${kind}: ${times.map(fmtS).join(", ")} s`);
    }
  }
}

// ---------------------------------------------------------------------------------------------

async function openViewers(base) {
  const viewers = [];
  for (let index = 0; index < viewerCount; index += 1) {
    const name = index === 0 ? "owner" : `viewer${index}`;
    const { context, page } = await openProfile(name, started.tempDir, { ignoreHTTPSErrors: base.startsWith("https:"), viewport: { width: 800, height: 600 } });
    started.contexts.push(context);
    page.setDefaultTimeout(30_000);
    const viewer = { name, context, page, errors: [] };
    page.on("pageerror", (error) => viewer.errors.push(error.message));
    await pickName(viewer, base, name);
    viewers.push(viewer);
  }
  const roomPath = await createRoom(viewers[0], { name: "Sync quality", description: "benchmark" });
  for (const viewer of viewers) {
    await viewer.page.goto(`${base}${roomPath}?sync-debug`);
    await waitLive(viewer);
  }
  return viewers;
}

async function startPlaying(viewers, base) {
  const owner = viewers[0];
  await owner.page.fill("#media-url", `${base}/fixtures/sync.webm`);
  await owner.page.fill("#media-title", "Sync test pattern");
  await owner.page.click("#media-play-now");
  for (const viewer of viewers) {
    await viewer.page.waitForFunction(() => window.__xiaowoSync?.video.readyState >= 1 && window.__xiaowoSync.clockOffsetMs() !== undefined);
  }
  await owner.page.waitForSelector("#play-toggle:not([disabled])");
  await owner.page.click("#play-toggle");
  for (const viewer of viewers) {
    await viewer.page.waitForFunction(() => !window.__xiaowoSync.video.paused && window.__xiaowoSync.video.currentTime > 0.5);
  }
  // Let the first correction after start-up finish before anything is measured.
  await sleep(3_000);
}

function machine() {
  let chromium = "";
  try {
    chromium = execFileSync(process.env.CHROMIUM ?? "/usr/bin/chromium", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    chromium = "unknown";
  }
  return { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "", loadavg: loadavg().map((load) => load.toFixed(2)).join(" "), chromium, node: process.version };
}

async function main() {
  started.tempDir = mkdtempSync(join(tmpdir(), "xiaowo-sync-quality-"));
  let webDir;
  let base;
  if (externalBase) {
    if (!externalWebDir) {
      throw new Error("E2E_BASE_URL needs E2E_WEB_DIR, the directory that stack serves");
    }
    webDir = prepareWebDir(started.tempDir, externalWebDir);
    base = externalBase;
  } else {
    webDir = prepareWebDir(started.tempDir);
  }
  // Keyframes every 2 s, as streaming encoders make them: a seek decodes at most that far.
  makeTestVideo(join(webDir, "fixtures", "sync.webm"), smoke ? 40 : 120, "testsrc", ["-g", "60", "-deadline", "realtime", "-cpu-used", "8"]);
  if (!externalBase) {
    const launched = launchServer(started.tempDir, webDir);
    started.server = launched.server;
    base = await launched.base;
  }
  const before = machine();
  console.log(`sync quality: ${viewerCount} viewers, ${duration} s per phase, stack at ${base}`);
  console.log(`machine: ${before.cpus} × ${before.cpuModel}, load ${before.loadavg}, ${before.chromium}, node ${before.node}`);

  const viewers = await openViewers(base);
  await startPlaying(viewers, base);
  const phases = [await runPhase(viewers, "smooth sync (default)")];
  if (options.baseline && !smoke) {
    for (const viewer of viewers) {
      // The switch is in the settings tab, behind the "Advanced" disclosure.
      await viewer.page.click("[data-tab=settings]");
      await viewer.page.click("#advanced-sync summary");
      await viewer.page.uncheck("#nudge-toggle");
    }
    phases.push(await runPhase(viewers, "baseline: seek-only correction"));
  }
  const results = phases.map((phase) => ({ ...analyse(phase), ...(options.trace ? { issued: phase.issued, end: phase.end, trace: phase.samples } : {}) }));
  for (const result of results) {
    report(result);
  }
  const errors = viewers.flatMap((viewer) => viewer.errors.map((error) => `${viewer.name}: ${error}`));
  if (errors.length > 0) {
    console.log(`page errors:\n  ${errors.join("\n  ")}`);
  }
  const after = machine();
  console.log(`load average after: ${after.loadavg}`);
  if (options.json) {
    writeFileSync(options.json, `${JSON.stringify({ date: new Date().toISOString(), viewers: viewerCount, duration, settleMs, machine: before, loadAfter: after.loadavg, results }, null, 2)}\n`);
  }

  const [main] = results;
  const problems = [];
  if (main.playing.count === 0) {
    problems.push("no steady-state samples while playing");
  }
  // A full run reports how well sync works; the smoke run checks that it works at all.
  for (const entry of smoke ? main.convergence.filter((item) => item.kind === "seek") : []) {
    if (!(entry.convergedMs <= SMOKE_CONVERGENCE_MS)) {
      problems.push(`the seek to ${entry.to} s did not converge within ${fmtS(SMOKE_CONVERGENCE_MS)} s`);
    } else if (!(entry.roomPosition >= entry.to && entry.roomPosition < entry.to + 10)) {
      problems.push(`the seek to ${entry.to} s left the room at ${entry.roomPosition} s`);
    }
  }
  if (errors.length > 0) {
    problems.push("errors on the pages");
  }
  return problems;
}

/** Re-reads the figures from a file written with --trace, without running anything. */
function reanalyse(file) {
  const saved = JSON.parse(readFileSync(file, "utf8"));
  for (const result of saved.results) {
    const end = result.end ?? (result.trace.at(-1)?.serverTime ?? 0) + 1;
    report(analyse({ name: result.name, samples: result.trace, issued: result.issued, end }));
  }
  return [];
}

let problems;
try {
  problems = options.analyse ? reanalyse(options.analyse) : await main();
} catch (error) {
  problems = [`set-up: ${error?.message ?? error}`];
} finally {
  await cleanup();
}
if (problems.length > 0) {
  console.log(`sync quality: FAILED\n  ${problems.join("\n  ")}`);
  process.exitCode = 1;
} else {
  console.log("sync quality: ok");
}
