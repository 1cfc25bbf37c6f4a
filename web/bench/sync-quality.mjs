// Sync quality in real browsers, on real networks and real files: how closely headless
// Chromium viewers of one room agree with the room and with each other.
//
// Starts `xiaowo up` (or uses a running stack) like the end-to-end suite and opens the viewers
// in browser profiles of their own: the room's owner, one at 80 ms of added latency, one at
// 20 ms ± 10 ms (the latency changes every 500 ms), and a "phone" whose CPU is throttled 4×
// (Chrome DevTools' Network.emulateNetworkConditions and Emulation.setCPUThrottlingRate; the
// added latency delays the first byte of every response, so it is all on one side of a round
// trip). For each of two files made by ffmpeg — a 2 s-GOP VP8 WebM and an H.264 + AAC MP4 with
// ffmpeg's defaults (a keyframe every 10 s) — the owner plays it through the page's controls
// and drives four scenarios: steady playback (60 s), 5 pauses and resumes, 20 seeks to random
// places 3–5 s apart, and 4 rate changes (1 → 1.5 → 0.75 → 1.5 → 1).
//
// Measured from outside the pages, on one clock: every 100 ms (every 50 ms for 3 s after a
// command) the Node process picks an instant T on the machine's wall clock; each page, whose
// own clock's offset from the wall clock was measured to a fraction of a millisecond, waits
// for T, reads `video.currentTime` and moves the reading back to T by its playback rate. The
// room's position at T comes from the state the server stored (a WatchRoom stream from this
// process), not from any page. Each page's media events (rate changes, seeks, pauses) are
// recorded with their times.
//
// Reported per file: p50/p95/max of the pairwise disagreement (max − min over pages) in steady
// playback; for every command the time until every page is within 50 ms of the room and stays
// there until the next command ("converged"), and the pages' extra seeks; for pauses the
// frame each page holds; for rate changes the pauses and seeks they caused; the rate changes
// per page per minute of steady playback (nudges) and the largest one.
//
//   node bench/sync-quality.mjs [--files webm,mp4] [--label NAME] [--seek-only] [--json FILE]
//                               [--trace] [--fixtures DIR] [--short] [--seed N]
//   --seek-only    switches "Smooth sync" off in every page (the controller then only seeks)
//   --trace        adds every sample, state, event and the pages' controller traces to --json
//   --fixtures DIR writes small recorded traces for the unit tests (web/test/fixtures)
//   --analyse FILE prints the figures of a --trace file again (and writes --fixtures from it)
//   --smoke        the CI-sized run: the owner and the 80 ms viewer, both files (60 s each),
//                  3 seeks and one rate change each; fails when a rate change pauses or seeks
//                  a page, a seek does not converge within 3 s, no samples come out or a page
//                  throws
//   (after `npm run build` and `cargo build -p xiaowo`; XIAOWO_BIN, CHROMIUM, E2E_BASE_URL and
//   E2E_WEB_DIR as for e2e/run.mjs; XIAOWO_WEB_DIST=dir serves another build of the client, so
//   that an older commit's client and server can be measured by the same benchmark)

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import * as esbuild from "esbuild";

import { createRoom, launchServer, makeTestMp4, makeTestVideo, openProfile, pickName, prepareWebDir, stopProcess, waitLive, wallOffset } from "../e2e/stack.mjs";

const here = dirname(fileURLToPath(import.meta.url));

const { values: options } = parseArgs({
  options: {
    files: { type: "string", default: "webm,mp4" },
    label: { type: "string" },
    "seek-only": { type: "boolean", default: false },
    smoke: { type: "boolean", default: false },
    short: { type: "boolean", default: false },
    seed: { type: "string", default: "20" },
    json: { type: "string" },
    trace: { type: "boolean", default: false },
    fixtures: { type: "string" },
    analyse: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (options.help) {
  console.log(
    "usage: node bench/sync-quality.mjs [--files webm,mp4] [--label NAME] [--seek-only] [--smoke] [--short] [--seed N] [--json FILE [--trace]] [--fixtures DIR] [--analyse FILE]",
  );
  process.exit(0);
}

const smoke = options.smoke;
/** Pages agree when within this many ms of the room (and so within twice that of each other). */
const AGREEMENT_MS = 50;
/** What the smoke run allows a seek to take. */
const SMOKE_CONVERGENCE_MS = 3_000;
/** Steady-state figures leave out this long after the scenario starts. */
const SETTLE_MS = 3_000;
const INTERVAL_MS = 100;
const DENSE_INTERVAL_MS = 50;
const DENSE_FOR_MS = 3_000;
/** How far ahead a sampling instant is announced, so that every page gets it in time. */
const SAMPLE_LEAD_MS = 150;
/** The last stretch before T that a page spins instead of sleeping (timers are coarse). */
const SPIN_MS = 8;
/** How often the jittering page's latency changes. */
const JITTER_PERIOD_MS = 500;
/** Sampling instants in flight at most (a throttled page must not pile them up). */
const MAX_PENDING = 8;
const externalBase = process.env.E2E_BASE_URL ?? "";
const externalWebDir = process.env.E2E_WEB_DIR ?? "";

const PAGES = smoke
  ? [{ name: "owner" }, { name: "lat80", latencyMs: 80 }]
  : [{ name: "owner" }, { name: "lat80", latencyMs: 80 }, { name: "lat20±10", latencyMs: 20, jitterMs: 10 }, { name: "cpu4x", cpuThrottle: 4 }];

/** Seconds of media per file: enough for every scenario at up to 1.5×. */
const MEDIA_SECONDS = smoke ? 60 : 240;
const FILES = {
  webm: {
    name: "vp8-2s-gop.webm",
    describe: "VP8 WebM, 320×180, keyframe every 2 s, no audio",
    make: (path) => makeTestVideo(path, MEDIA_SECONDS, "testsrc", ["-g", "60", "-deadline", "realtime", "-cpu-used", "8"]),
  },
  mp4: {
    name: "h264-aac-defaults.mp4",
    describe: "H.264 + AAC MP4, 640×360, ffmpeg defaults (keyframe every 10 s)",
    make: (path) => makeTestMp4(path, MEDIA_SECONDS),
  },
};

/** A small deterministic random source, so that every run seeks to the same places. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

/** The owner's commands for one file: scenario steps and waits, in order. */
function schedule(seed) {
  const next = random(seed);
  const steps = [];
  const wait = (seconds) => steps.push({ kind: "wait", seconds });
  const scenario = (name) => steps.push({ kind: "scenario", name });
  if (smoke) {
    scenario("steady");
    wait(6);
    scenario("seek");
    for (const to of [30, 12, 40]) {
      steps.push({ kind: "seek", to });
      wait(4);
    }
    scenario("rate");
    steps.push({ kind: "rate", to: 1.5 });
    wait(5);
    return steps;
  }
  const short = options.short;
  scenario("steady");
  wait(short ? 15 : 60);
  scenario("pause");
  for (let index = 0; index < (short ? 2 : 5); index += 1) {
    steps.push({ kind: "pause" });
    wait(3);
    steps.push({ kind: "play" });
    wait(4);
  }
  scenario("seek");
  for (let index = 0; index < (short ? 6 : 20); index += 1) {
    steps.push({ kind: "seek", to: Math.round((5 + next() * 195) * 10) / 10 });
    wait(3 + next() * 2);
  }
  scenario("rate");
  for (const to of [1.5, 0.75, 1.5, 1]) {
    steps.push({ kind: "rate", to });
    wait(6);
  }
  return steps;
}

const started = { server: undefined, contexts: [], tempDir: undefined, timers: [], watch: undefined };

async function cleanup() {
  for (const timer of started.timers) {
    clearInterval(timer);
  }
  started.watch?.abort();
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

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

// ---------------------------------------------------------------------------------------------
// Pages

async function openPages(base) {
  const pages = [];
  for (const spec of PAGES) {
    const { context, page } = await openProfile(spec.name.replace(/[^a-z0-9]/gi, ""), started.tempDir, {
      ignoreHTTPSErrors: base.startsWith("https:"),
      viewport: { width: 800, height: 600 },
    });
    started.contexts.push(context);
    // Generous: on a machine loaded by others, four pages playing video answer slowly.
    page.setDefaultTimeout(120_000);
    const viewer = { ...spec, context, page, errors: [], wallOffset: 0 };
    page.on("pageerror", (error) => viewer.errors.push(error.message));
    const cdp = await context.newCDPSession(page);
    if (spec.latencyMs) {
      await cdp.send("Network.enable");
      const conditions = (latency) => ({ offline: false, latency, downloadThroughput: -1, uploadThroughput: -1 });
      await cdp.send("Network.emulateNetworkConditions", conditions(spec.latencyMs));
      if (spec.jitterMs) {
        const jitter = random(7);
        started.timers.push(
          setInterval(() => {
            const latency = spec.latencyMs + (jitter() * 2 - 1) * spec.jitterMs;
            cdp.send("Network.emulateNetworkConditions", conditions(latency)).catch(() => undefined);
          }, JITTER_PERIOD_MS),
        );
      }
    }
    if (spec.cpuThrottle) {
      await cdp.send("Emulation.setCPUThrottlingRate", { rate: spec.cpuThrottle });
    }
    await pickName(viewer, base, spec.name);
    pages.push(viewer);
  }
  const roomPath = await createRoom(pages[0], { name: "Sync quality", description: "benchmark" });
  for (const viewer of pages) {
    await viewer.page.goto(`${base}${roomPath}?sync-debug`);
    await waitLive(viewer).catch(async (error) => {
      const shown = await viewer.page
        .evaluate(() => ({
          url: window.location.href,
          connection: document.getElementById("connection")?.textContent,
          toasts: [...document.querySelectorAll(".toast")].map((toast) => toast.textContent),
          body: document.body.innerText.slice(0, 300),
        }))
        .catch((failure) => String(failure));
      throw new Error(`${viewer.name} never got its room stream: ${error.message.split("\n")[0]} ${JSON.stringify(shown)}`);
    });
    await viewer.page.waitForFunction(() => window.__xiaowoSync !== undefined);
    if (options["seek-only"]) {
      // The switch lives in the settings tab (drawn when first opened), behind "Advanced".
      await clickIn(viewer.page, "[data-tab=settings]");
      await viewer.page.waitForSelector("#nudge-toggle", { state: "attached" });
      await viewer.page.$eval("#nudge-toggle", (toggle) => toggle.checked && toggle.click());
    }
    await viewer.page.evaluate(() => {
      const video = window.__xiaowoSync.video;
      window.__benchEvents = [];
      for (const type of ["ratechange", "seeking", "seeked", "pause", "play", "waiting", "playing"]) {
        video.addEventListener(type, () =>
          window.__benchEvents.push({ type, at: performance.timeOrigin + performance.now(), position: video.currentTime, rate: video.playbackRate }),
        );
      }
    });
  }
  return { pages, roomId: roomPath.split("/").pop() };
}

/** The owner's session token, for this process's own view of the room. */
async function ownerToken(owner) {
  const cookie = (await owner.context.cookies()).find((item) => item.name.endsWith("xiaowo_session"));
  if (!cookie) {
    throw new Error("the owner has no session cookie");
  }
  return cookie.value;
}

/** Bundles bench/room-watch.ts (generated protobuf code and connect-web) for Node and loads it. */
async function loadRoomWatch() {
  const outfile = join(started.tempDir, "room-watch.mjs");
  await esbuild.build({
    entryPoints: [join(here, "room-watch.ts")],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: ["node20"],
    logLevel: "warning",
  });
  return import(pathToFileURL(outfile).href);
}

// ---------------------------------------------------------------------------------------------
// Sampling

/** Runs in each page: waits for `localTarget` on the page's clock, reads the video. */
async function sampleInPage([localTarget, spinMs]) {
  const video = window.__xiaowoSync?.video;
  if (!video) {
    return null;
  }
  const now = () => performance.timeOrigin + performance.now();
  const sleepMs = localTarget - now() - spinMs;
  if (sleepMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, sleepMs));
  }
  while (now() < localTarget) {
    // Spin: a timer alone lands a few milliseconds late.
  }
  // The clock is read on both sides of the video: a throttled page can be suspended between
  // any two steps, and a reading whose sides are more than 1 ms apart is taken again (after a
  // microtask: Chromium holds currentTime until then).
  let best;
  for (let attempt = 0; attempt < 4; attempt += 1) {
    const before = now();
    const position = video.currentTime;
    const after = now();
    if (!best || after - before < best.after - best.before) {
      best = { before, position, after };
    }
    if (after - before < 1) {
      break;
    }
    await null;
  }
  const readAt = (best.before + best.after) / 2;
  return { position: best.position, readAt, rate: video.playbackRate, paused: video.paused, seeking: video.seeking };
}

/** Every page's position at wall time `at` (ms); undefined if one cannot say. */
async function sampleAt(pages, at) {
  const readings = await Promise.all(
    pages.map((viewer) => viewer.page.evaluate(sampleInPage, [at - viewer.wallOffset, SPIN_MS]).catch(() => null)),
  );
  if (readings.some((reading) => reading === null)) {
    return undefined;
  }
  const late = readings.map((reading, index) => reading.readAt + pages[index].wallOffset - at);
  const positions = readings.map((reading, index) =>
    reading.paused || reading.seeking ? reading.position : reading.position - (late[index] / 1000) * reading.rate,
  );
  return { at, positions, late, paused: readings.map((reading) => reading.paused) };
}

async function sampleUntil(pages, stop, dense, samples) {
  const pending = new Set();
  let next = Date.now() + SAMPLE_LEAD_MS;
  while (!stop()) {
    const at = Math.max(next, Date.now() + SAMPLE_LEAD_MS);
    if (pending.size < MAX_PENDING) {
      const sampling = sampleAt(pages, at).then((sample) => {
        if (sample) {
          samples.push(sample);
        }
      });
      pending.add(sampling);
      void sampling.finally(() => pending.delete(sampling));
    }
    next = at + (dense(at) ? DENSE_INTERVAL_MS : INTERVAL_MS);
    await sleep(next - SAMPLE_LEAD_MS - Date.now());
  }
  await Promise.all(pending);
  samples.sort((a, b) => a.at - b.at);
}

// ---------------------------------------------------------------------------------------------
// The owner's commands, through the page's controls

/**
 * Clicks in the page itself: Playwright's click first waits for the element to hold still and
 * for navigations to settle, which on a loaded machine can take longer than the schedule allows.
 */
async function clickIn(page, selector) {
  await page.$eval(selector, (element) => element.click());
}

/** Sets a control's value in the page itself and fires `event`, as a person's change would. */
async function setIn(page, selector, value, event) {
  await page.$eval(
    selector,
    (input, [text, type]) => {
      input.value = text;
      input.dispatchEvent(new Event(type, { bubbles: true }));
    },
    [String(value), event],
  );
}

async function issue(owner, step) {
  const page = owner.page;
  switch (step.kind) {
    case "seek":
      await setIn(page, "#seek", step.to, "change");
      break;
    case "pause":
    case "play": {
      // The button offers what a click does: "pause" while playing, "play" while paused.
      const ready = await page
        .waitForFunction((action) => document.getElementById("play-toggle")?.dataset.action === action, step.kind, { polling: 20, timeout: 20_000 })
        .then(() => true, () => false);
      if (!ready) {
        // Say what the page shows instead, so that a failed run can be understood.
        const shown = await page.evaluate(async () => ({
          button: document.getElementById("play-toggle")?.dataset.action,
          disabled: document.getElementById("play-toggle")?.disabled,
          status: document.getElementById("sync-status")?.textContent,
          toasts: [...document.querySelectorAll(".toast")].map((toast) => toast.textContent),
          version: window.__xiaowoSync?.stateVersion(),
          readyState: window.__xiaowoSync?.video.readyState,
          networkState: window.__xiaowoSync?.video.networkState,
          buffered: [...Array(window.__xiaowoSync?.video.buffered.length ?? 0).keys()].map((index) => [window.__xiaowoSync.video.buffered.start(index), window.__xiaowoSync.video.buffered.end(index)]),
          position: window.__xiaowoSync?.video.currentTime,
          fetch: await Promise.race([
            fetch("/", { method: "HEAD", cache: "no-store" }).then((response) => response.status, (error) => String(error)),
            new Promise((resolve) => setTimeout(() => resolve("no answer in 5 s"), 5000)),
          ]),
          lastLooks: window.__xiaowoSync?.trace?.().filter((entry) => entry.kind === "look").slice(-5),
        }));
        throw new Error(`the owner's button never offered "${step.kind}": ${JSON.stringify(shown)}`);
      }
      await clickIn(page, "#play-toggle");
      break;
    }
    case "rate":
      await setIn(page, "#rate", step.to, "change");
      break;
  }
}

async function startFile(pages, base, file, roomStates) {
  const owner = pages[0];
  const mediaBefore = roomStates.at(-1)?.mediaId;
  // The form is on the empty screen at first and in the queue tab once something plays: filled
  // in the page, wherever it is shown.
  await setIn(owner.page, "#media-url", `${base}/fixtures/${file.name}`, "input");
  await setIn(owner.page, "#media-title", file.name, "input");
  await clickIn(owner.page, "#media-play-now");
  const deadline = Date.now() + 30_000;
  while (!roomStates.at(-1)?.mediaId || roomStates.at(-1).mediaId === mediaBefore) {
    if (Date.now() > deadline) {
      throw new Error("the room never loaded the file");
    }
    await sleep(50);
  }
  const mediaId = roomStates.at(-1).mediaId;
  for (const viewer of pages) {
    await viewer.page.waitForFunction(() => window.__xiaowoSync?.video.readyState >= 1 && window.__xiaowoSync.clockOffsetMs() !== undefined);
  }
  if (roomStates.at(-1).rate !== 1) {
    // A new file keeps the room's rate; every file starts at 1×.
    await issue(owner, { kind: "rate", to: 1 });
  }
  await owner.page.waitForSelector("#play-toggle:not([disabled])");
  await clickIn(owner.page, "#play-toggle");
  for (const viewer of pages) {
    await viewer.page.waitForFunction(() => !window.__xiaowoSync.video.paused && window.__xiaowoSync.video.currentTime > 0.5);
  }
  // Let the first corrections after start-up finish before anything is measured.
  await sleep(5_000);
  return mediaId;
}

/** Plays one file's schedule while sampling; returns everything the analysis needs. */
async function runFile(pages, base, fileKey, roomStates, seed) {
  const file = FILES[fileKey];
  const mediaId = await startFile(pages, base, file, roomStates);
  for (const viewer of pages) {
    viewer.wallOffset = await wallOffset(viewer.page);
    await viewer.page.evaluate(() => window.__benchEvents.splice(0));
  }
  const steps = schedule(seed);
  const samples = [];
  const windows = [];
  const issued = [];
  let done = false;
  const dense = (at) => issued.some((command) => at >= command.at - 2 * DENSE_INTERVAL_MS && at < command.at + DENSE_FOR_MS);
  const sampling = sampleUntil(pages, () => done, dense, samples);
  const runStart = Date.now();
  try {
    for (const step of steps) {
      if (step.kind === "wait") {
        await sleep(step.seconds * 1000);
      } else if (step.kind === "scenario") {
        if (windows.length > 0) {
          windows[windows.length - 1].end = Date.now();
        }
        windows.push({ name: step.name, start: Date.now(), end: Infinity });
        console.log(`  ${fileKey}: ${((Date.now() - runStart) / 1000).toFixed(1)} s  ${step.name}`);
      } else {
        const at = Date.now();
        issued.push({ ...step, at });
        await issue(pages[0], step);
      }
    }
  } finally {
    done = true;
    await sampling;
  }
  const end = Date.now();
  windows.at(-1).end = end;
  const events = [];
  const traces = [];
  for (const [index, viewer] of pages.entries()) {
    const offset = (viewer.wallOffset + (await wallOffset(viewer.page))) / 2;
    viewer.wallOffset = offset;
    const pageEvents = await viewer.page.evaluate(() => window.__benchEvents.splice(0));
    events.push(...pageEvents.map((event) => ({ ...event, page: index, at: event.at + offset })));
    if (options.trace || options.fixtures) {
      traces.push(await viewer.page.evaluate(() => (window.__xiaowoSync.trace ? window.__xiaowoSync.trace() : [])));
    }
  }
  return {
    file: fileKey,
    describe: file.describe,
    mediaId,
    pages: pages.map(({ name, latencyMs, jitterMs, cpuThrottle, wallOffset }) => ({ name, latencyMs, jitterMs, cpuThrottle, wallOffset })),
    samples,
    windows,
    issued,
    events,
    traces,
    states: roomStates.filter((state) => state.mediaId === mediaId),
    end,
  };
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
  return { count: sorted.length, p50: percentile(sorted, 0.5), p95: percentile(sorted, 0.95), max: sorted.at(-1) ?? NaN };
}

/** The room's position (s) at wall time `at` (ms), as the server's stored state says. */
function roomPositionAt(state, at) {
  if (state.paused) {
    return state.position;
  }
  const elapsed = at - state.anchorTime;
  const rate = elapsed >= 0 ? state.rate : state.leadInRate;
  const position = Math.max(0, state.position + (elapsed / 1000) * rate);
  return state.duration > 0 ? Math.min(position, state.duration) : position;
}

const COMMANDS = new Set(["SEEK", "PAUSE", "PLAY", "SET_RATE"]);

function analyse(run) {
  const { samples, windows, events, end } = run;
  const states = [...run.states].sort((a, b) => a.version - b.version);
  const stateAt = (at) => states.findLast((state) => state.updateTime <= at);
  const windowAt = (at) => windows.find((window) => at >= window.start && at < window.end);
  const measured = samples
    .map((sample) => {
      const state = stateAt(sample.at);
      if (!state) {
        return undefined;
      }
      const room = roomPositionAt(state, sample.at);
      const offsets = sample.positions.map((position) => (position - room) * 1000);
      return { ...sample, room, offsets, spread: Math.max(...offsets) - Math.min(...offsets), worst: Math.max(...offsets.map(Math.abs)) };
    })
    .filter(Boolean);
  const commands = states
    .filter((state) => COMMANDS.has(state.action) && state.updateTime >= windows[0].start)
    .map((state, index, all) => ({
      state,
      at: state.updateTime,
      until: all[index + 1]?.updateTime ?? end,
      scenario: windowAt(state.updateTime)?.name ?? "",
    }));
  const lastCommandBefore = (at) => commands.findLast((command) => command.at <= at);

  // Steady playback: the steady scenario after it settled.
  const steadyWindow = windows.find((window) => window.name === "steady");
  const steady = measured.filter((sample) => steadyWindow && sample.at >= steadyWindow.start + SETTLE_MS && sample.at < steadyWindow.end && !lastCommandBefore(sample.at));
  const steadyMinutes = steadyWindow ? (steadyWindow.end - steadyWindow.start - SETTLE_MS) / 60_000 : 0;
  const inSteady = (event) => steadyWindow && event.at >= steadyWindow.start + SETTLE_MS && event.at < steadyWindow.end;
  const pageCount = run.pages.length;
  const nudges = run.pages.map((_, page) => events.filter((event) => event.page === page && event.type === "ratechange" && inSteady(event)));
  const largestNudge = Math.max(0, ...nudges.flat().map((event) => Math.abs(event.rate - 1)));
  const steadySeeks = events.filter((event) => event.type === "seeking" && inSteady(event)).length;

  const converge = (command) => {
    const window = measured.filter((sample) => sample.at >= command.at && sample.at + Math.max(0, ...sample.late) < command.until);
    const agrees = (sample) => sample.worst <= AGREEMENT_MS;
    let first = window.length;
    while (first > 0 && agrees(window[first - 1])) {
      first -= 1;
    }
    const firstIn = window.findIndex(agrees);
    return {
      stayedMs: first < window.length ? window[first].at - command.at : Infinity,
      firstMs: firstIn >= 0 ? window[firstIn].at - command.at : Infinity,
      window,
    };
  };
  const pageEventsIn = (command, type, until = command.until) => events.filter((event) => event.type === type && event.at >= command.at && event.at < until);

  const seeks = commands
    .filter((command) => command.scenario === "seek" && command.state.action === "SEEK")
    .map((command) => {
      const { stayedMs, firstMs } = converge(command);
      // Each page seeks once for the command; more is a correction of its own landing.
      const seekings = pageEventsIn(command, "seeking");
      const extra = run.pages.map((_, page) => Math.max(0, seekings.filter((event) => event.page === page).length - 1));
      const backward = run.pages.map((_, page) => {
        const own = seekings.filter((event) => event.page === page).slice(1);
        return own.filter((event) => {
          const before = measured.findLast((sample) => sample.at < event.at - 30);
          return before && event.position < before.positions[page] - 0.05;
        }).length;
      });
      return { to: command.state.position, stayedMs, firstMs, extraSeeks: extra.reduce((a, b) => a + b, 0), backwardSeeks: backward.reduce((a, b) => a + b, 0) };
    });

  const pauses = commands
    .filter((command) => command.scenario === "pause" && command.state.action === "PAUSE")
    .map((command) => {
      // The frame each page holds once the pause has settled (the last sample before resuming).
      const held = measured.findLast((sample) => sample.at < command.until - 100 && sample.at > command.at);
      return { frameOffsetsMs: held ? held.offsets : [], worstMs: held ? held.worst : Infinity, ...converge(command), window: undefined };
    });
  const resumes = commands
    .filter((command) => command.scenario === "pause" && command.state.action === "PLAY")
    .map((command) => {
      const { stayedMs, firstMs } = converge(command);
      return { stayedMs, firstMs };
    });

  const rates = commands
    .filter((command) => command.scenario === "rate" && command.state.action === "SET_RATE")
    .map((command) => {
      const { stayedMs, window } = converge(command);
      const switchAt = Math.max(command.at, command.state.leadInRate > 0 ? command.state.anchorTime : command.at);
      const afterSwitch = window.filter((sample) => sample.at >= switchAt);
      const worstFirstSecond = Math.max(0, ...afterSwitch.filter((sample) => sample.at < switchAt + 1000).map((sample) => sample.worst));
      const worstLater = Math.max(0, ...afterSwitch.filter((sample) => sample.at >= switchAt + 1000).map((sample) => sample.worst));
      // What the change caused: up to a second after the switch; a stall later is counted apart.
      const causedUntil = Math.min(command.until, switchAt + 1000);
      return {
        to: command.state.rate,
        stayedMs,
        stayedAfterSwitchMs: stayedMs === Infinity ? Infinity : Math.max(0, command.at + stayedMs - switchAt),
        leadMs: switchAt - command.at,
        worstFirstSecondMs: worstFirstSecond,
        worstLaterMs: worstLater,
        pauses: pageEventsIn(command, "pause", causedUntil).length,
        seeks: pageEventsIn(command, "seeking", causedUntil).length,
        laterPauses: pageEventsIn(command, "pause").length - pageEventsIn(command, "pause", causedUntil).length,
        laterSeeks: pageEventsIn(command, "seeking").length - pageEventsIn(command, "seeking", causedUntil).length,
      };
    });

  return {
    file: run.file,
    describe: run.describe,
    samples: measured.length,
    lateSamples: measured.filter((sample) => Math.max(...sample.late) > 5).length,
    steady: {
      spread: summary(steady.map((sample) => sample.spread)),
      fromRoom: summary(steady.map((sample) => sample.worst)),
      nudgesPerMinute: nudges.map((list) => (steadyMinutes > 0 ? list.length / steadyMinutes : NaN)),
      largestNudge,
      seeks: steadySeeks,
    },
    seeks,
    seekConvergence: summary(seeks.map((seek) => seek.stayedMs)),
    pauses: { worstFrameMs: summary(pauses.map((pause) => pause.worstMs)) },
    resumes: summary(resumes.map((resume) => resume.stayedMs)),
    rates,
    pageCount,
  };
}

const fmt = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : "–");
const fmtS = (ms) => (Number.isFinite(ms) ? (ms / 1000).toFixed(2) : "never");

function report(label, result) {
  const { steady } = result;
  console.log(`\n${label} — ${result.describe}: ${result.samples} samples, ${result.lateSamples} read more than 5 ms late`);
  console.log(`  steady playback, pairwise disagreement: p50 ${fmt(steady.spread.p50)} ms  p95 ${fmt(steady.spread.p95)} ms  max ${fmt(steady.spread.max)} ms (n=${steady.spread.count})`);
  console.log(`    furthest page from the room:           p50 ${fmt(steady.fromRoom.p50)} ms  p95 ${fmt(steady.fromRoom.p95)} ms  max ${fmt(steady.fromRoom.max)} ms`);
  console.log(`    rate changes per page per minute: ${steady.nudgesPerMinute.map((value) => fmt(value)).join(", ")}; largest ${fmt(steady.largestNudge * 100)} %; seeks ${steady.seeks}`);
  const seeks = result.seeks;
  console.log(
    `  seeks (${seeks.length}): converged and stayed in p50 ${fmtS(result.seekConvergence.p50)} s  p95 ${fmtS(result.seekConvergence.p95)} s  max ${fmtS(result.seekConvergence.max)} s; ` +
      `extra seeks ${seeks.reduce((sum, seek) => sum + seek.extraSeeks, 0)}, of them backward ${seeks.reduce((sum, seek) => sum + seek.backwardSeeks, 0)}`,
  );
  console.log(`    each: ${seeks.map((seek) => fmtS(seek.stayedMs)).join(" ")}`);
  if (result.pauses.worstFrameMs.count > 0) {
    console.log(
      `  pauses (${result.pauses.worstFrameMs.count}): frame held, furthest page from the room p50 ${fmt(result.pauses.worstFrameMs.p50)} ms  max ${fmt(result.pauses.worstFrameMs.max)} ms; ` +
        `resumes converged p50 ${fmtS(result.resumes.p50)} s  max ${fmtS(result.resumes.max)} s`,
    );
  }
  for (const rate of result.rates) {
    console.log(
      `  rate → ${rate.to}×: scheduled ${fmt(rate.leadMs, 0)} ms ahead; converged ${fmtS(rate.stayedMs)} s after the command (${fmtS(rate.stayedAfterSwitchMs)} s after the switch); ` +
        `worst ${fmt(rate.worstFirstSecondMs, 0)} ms in the first second, ${fmt(rate.worstLaterMs, 0)} ms later; pauses ${rate.pauses}, seeks ${rate.seeks}` +
        (rate.laterPauses + rate.laterSeeks > 0 ? ` (later in the interval: ${rate.laterPauses} pauses, ${rate.laterSeeks} seeks)` : ""),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Fixtures for the unit tests: small pieces of what the pages saw and did

function writeFixtures(dir, runs) {
  mkdirSync(dir, { recursive: true });
  for (const run of runs) {
    for (const [index, trace] of run.traces.entries()) {
      const page = run.pages[index];
      if (trace.length === 0) {
        continue;
      }
      const slug = page.name.replace(/[^a-z0-9]/gi, "");
      if (run.file === runs[0].file && page.latencyMs) {
        // The clock samples of the first 60 s; the true offset is the page's offset from the
        // wall clock, which the server's clock is on this machine.
        const firstAt = trace.find((entry) => entry.kind !== "look")?.clientReceive ?? 0;
        const clock = trace.filter((entry) => (entry.kind === "exchange" || entry.kind === "oneWay") && entry.clientReceive < firstAt + 60_000);
        writeFileSync(
          join(dir, `clock-${slug}.json`),
          `${JSON.stringify({ page: page.name, latencyMs: page.latencyMs, jitterMs: page.jitterMs ?? 0, trueOffsetMs: page.wallOffset, samples: clock })}\n`,
        );
      }
      // Every seek the controller planned while playing, and how long it really took.
      const looks = trace.filter((entry) => entry.kind === "look");
      const seeks = [];
      for (const [at, look] of looks.entries()) {
        if (!look.plan || look.plan.predicted === 0) {
          continue;
        }
        const landed = looks.slice(at + 1).find((later) => later.mode !== "seeking");
        if (landed) {
          const { fromKeyframe, unbuffered, predicted, target } = look.plan;
          seeks.push({ fromKeyframe, unbuffered, predicted, target, duration: (landed.at - look.at) / 1000 });
        }
      }
      writeFileSync(join(dir, `seeks-${run.file}-${slug}.json`), `${JSON.stringify({ page: page.name, file: run.describe, seeks })}\n`);
      // Steady playback as the controller saw it: what it read, and the rates it set.
      const steady = run.windows.find((window) => window.name === "steady");
      if (steady) {
        const steadyLooks = looks
          .filter((look) => look.serverNow >= steady.start + SETTLE_MS && look.serverNow < steady.end)
          .map(({ at, serverNow, expected, position, rate, commands }) => ({ at, serverNow, expected, position, rate, commands }));
        writeFileSync(join(dir, `steady-${run.file}-${slug}.json`), `${JSON.stringify({ page: page.name, file: run.describe, looks: steadyLooks })}\n`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

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
  const fileKeys = options.files.split(",").filter(Boolean);
  if (fileKeys.length === 0 || fileKeys.some((key) => !FILES[key])) {
    throw new Error(`--files must name some of ${Object.keys(FILES).join(", ")}`);
  }
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
  // Served from fixtures/ next to the client: /media/ belongs to media-svc.
  for (const key of fileKeys) {
    FILES[key].make(join(webDir, "fixtures", FILES[key].name));
  }
  if (!externalBase) {
    const launched = launchServer(started.tempDir, webDir);
    started.server = launched.server;
    base = await launched.base;
  }
  const label = options.label ?? (options["seek-only"] ? "seek-only" : "default");
  const before = machine();
  console.log(`sync quality (${label}): ${PAGES.map((page) => page.name).join(", ")}; files ${fileKeys.join(", ")}; stack at ${base}`);
  console.log(`machine: ${before.cpus} × ${before.cpuModel}, load ${before.loadavg}, ${before.chromium}, node ${before.node}`);

  const { watchRoom } = await loadRoomWatch();
  const { pages, roomId } = await openPages(base);
  const roomStates = [];
  started.watch = new AbortController();
  const watching = watchRoom(base, await ownerToken(pages[0]), roomId, (state) => roomStates.push(state), started.watch.signal);
  watching.catch((error) => console.error(`room stream: ${error?.message ?? error}`));

  const runs = [];
  for (const [index, key] of fileKeys.entries()) {
    runs.push(await runFile(pages, base, key, roomStates, Number(options.seed) + index));
  }
  const results = runs.map(analyse);
  for (const result of results) {
    report(label, result);
  }
  const errors = pages.flatMap((viewer) => viewer.errors.map((error) => `${viewer.name}: ${error}`));
  if (errors.length > 0) {
    console.log(`page errors:\n  ${errors.join("\n  ")}`);
  }
  const after = machine();
  console.log(`load average after: ${after.loadavg}`);
  if (options.json) {
    const saved = runs.map((run, index) => ({ ...results[index], ...(options.trace ? { run } : {}) }));
    writeFileSync(options.json, `${JSON.stringify({ date: new Date().toISOString(), label, machine: before, loadAfter: after.loadavg, results: saved }, null, 1)}\n`);
  }
  if (options.fixtures) {
    writeFixtures(options.fixtures, runs);
  }

  const problems = [];
  for (const result of results) {
    if (result.samples === 0 || result.steady.spread.count === 0) {
      problems.push(`${result.file}: no samples in steady playback`);
    }
    if (!smoke) {
      continue;
    }
    for (const seek of result.seeks) {
      if (!(seek.stayedMs <= SMOKE_CONVERGENCE_MS)) {
        problems.push(`${result.file}: the seek to ${seek.to} s did not converge within ${fmtS(SMOKE_CONVERGENCE_MS)} s (${fmtS(seek.stayedMs)} s)`);
      }
    }
    if (result.seeks.length === 0) {
      problems.push(`${result.file}: no seek was measured`);
    }
    for (const rate of result.rates) {
      if (rate.pauses > 0 || rate.seeks > 0) {
        problems.push(`${result.file}: the change to ${rate.to}× paused pages ${rate.pauses} times and made them seek ${rate.seeks} times`);
      }
    }
    if (result.rates.length === 0) {
      problems.push(`${result.file}: no rate change was measured`);
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
  const runs = saved.results.map((result) => result.run).filter(Boolean);
  for (const run of runs) {
    report(saved.label, analyse(run));
  }
  if (options.fixtures) {
    writeFixtures(options.fixtures, runs);
  }
  return [];
}

let problems;
try {
  problems = options.analyse ? reanalyse(options.analyse) : await main();
} catch (error) {
  problems = [`set-up: ${error?.stack ?? error}`];
} finally {
  await cleanup();
}
if (problems.length > 0) {
  console.log(`sync quality: FAILED\n  ${problems.join("\n  ")}`);
  process.exitCode = 1;
} else {
  console.log("sync quality: ok");
}
