// What the end-to-end suite (e2e/run.mjs) and the browser benchmarks (bench/) share: the web
// directory with ffmpeg-made test media, the `xiaowo up` process on a loopback port, Chromium
// with the same flags, the few page steps every scenario starts with (pick a name, open a
// room, wait for the streams) and the check that two players agree. One place, so that a
// benchmark measures the stack the tests test.

import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, existsSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const webRoot = join(here, "..");
export const repoRoot = join(webRoot, "..");
export const binary = process.env.XIAOWO_BIN ?? join(repoRoot, "target", "debug", "xiaowo");
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
/** The built client to serve; XIAOWO_WEB_DIST measures another build (e.g. an older commit's). */
const clientDist = process.env.XIAOWO_WEB_DIST ?? join(webRoot, "dist");

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--autoplay-policy=no-user-gesture-required",
];

/** Writes a VP8 test pattern (a clock face and frame counter) of `seconds` to `path`. */
export function makeTestVideo(path, seconds, pattern = "testsrc", extra = []) {
  execFileSync(
    "ffmpeg",
    ["-loglevel", "error", "-y", "-f", "lavfi", "-i", `${pattern}=size=320x180:rate=30`, "-t", String(seconds), "-c:v", "libvpx", "-b:v", "200k", ...extra, path],
    { stdio: "inherit" },
  );
}

/**
 * Writes an H.264 + AAC test pattern with a tone of `seconds` to `path`, as ffmpeg makes it by
 * default (libx264's keyframe every 250 frames: 10 s at 25 fps, B-frames, moov at the end);
 * only the pixel format is set, because browsers play 4:2:0 and ffmpeg would keep testsrc's RGB.
 */
export function makeTestMp4(path, seconds, size = "640x360") {
  execFileSync(
    "ffmpeg",
    [
      "-loglevel", "error", "-y",
      "-f", "lavfi", "-i", `testsrc=size=${size}:rate=25`,
      "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
      "-t", String(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path,
    ],
    { stdio: "inherit" },
  );
}

/**
 * Copies the built client to `webDir` and adds fixtures/ (test media served next to the client;
 * /media/ belongs to media-svc) for the tests; returns `webDir`.
 */
export function prepareWebDir(tempDir, webDir = join(tempDir, "web")) {
  if (!existsSync(join(clientDist, "index.html"))) {
    throw new Error(`${clientDist} is not built: run \`npm run build\` first`);
  }
  cpSync(clientDist, webDir, { recursive: true });
  mkdirSync(join(webDir, "fixtures"), { recursive: true });
  return webDir;
}

/** The admin token the suites give the server (the operator console is unlocked with it). */
export const ADMIN_TOKEN = "e2e-admin-token-5d41402abc4b2a76";

/**
 * Writes a 60 s (or `seconds`) H.264/AAC MP4 test pattern with a tone to `path`, noisy enough to
 * be about 20 MB (2.6 Mbit/s), so that an upload of it takes several 8 MiB requests.
 */
export function makeUploadMp4(path, seconds = 60) {
  execFileSync(
    "ffmpeg",
    [
      "-loglevel", "error", "-y",
      "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
      "-f", "lavfi", "-i", "sine=frequency=440",
      "-t", String(seconds), "-vf", "noise=alls=40:allf=t",
      "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-b:v", "2600k", "-maxrate", "2600k", "-bufsize", "2600k",
      "-c:a", "aac", path,
    ],
    { stdio: "inherit" },
  );
}

/**
 * The internal token `xiaowo up` runs with here, so that tests can sign media URLs the way the
 * server does (to show that an expired one is refused for its expiry, not its signature).
 */
export const internalToken = process.env.E2E_INTERNAL_TOKEN ?? randomBytes(32).toString("hex");

/**
 * Starts `xiaowo up` serving `webDir` with its data under `tempDir`, its admin token ADMIN_TOKEN
 * and `env` added to its environment. Returns the process at once (so that the caller can stop
 * it whatever happens next) and a promise of its base URL.
 */
export function launchServer(tempDir, webDir, listen = "127.0.0.1:0", env = {}) {
  if (!existsSync(binary)) {
    throw new Error(`${binary} not found: run \`cargo build -p xiaowo\` first`);
  }
  const server = spawn(binary, ["up", "--listen", listen, "--web-dir", webDir, "--data-dir", join(tempDir, "data")], {
    env: { ...process.env, XIAOWO_LOG: process.env.XIAOWO_LOG ?? "info", NO_COLOR: "1", XIAOWO_INTERNAL_TOKEN: internalToken, XIAOWO_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  const base = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`xiaowo did not report its address:\n${log.join("")}`)), 60_000);
    const scan = (chunk) => {
      const text = chunk.toString();
      log.push(text);
      if (process.env.E2E_SERVER_LOG) {
        process.stderr.write(text);
      }
      const match = /addr=(127\.0\.0\.1:\d+)/.exec(text.replace(/\x1b\[[0-9;]*m/g, ""));
      if (match) {
        clearTimeout(timer);
        resolve(`http://${match[1]}`);
      }
    };
    server.stdout.on("data", scan);
    server.stderr.on("data", scan);
    server.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`xiaowo exited with ${code}:\n${log.join("")}`));
    });
  });
  return { server, base };
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone (or was never running). */
export async function stopProcess(child) {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGTERM");
    const exited = await Promise.race([
      new Promise((resolve) => child.once("exit", () => resolve(true))),
      new Promise((resolve) => setTimeout(() => resolve(false), 5_000)),
    ]);
    if (!exited) {
      child.kill("SIGKILL");
    }
  }
}

/** A browser profile of its own (own cookies and storage) under `tempDir`, and its first page. */
export async function openProfile(name, tempDir, { ignoreHTTPSErrors = false, viewport = { width: 1280, height: 860 }, locale = "en-US", colorScheme = "light" } = {}) {
  const context = await chromium.launchPersistentContext(mkdtempSync(join(tempDir, `profile-${name}-`)), {
    executablePath: chromiumPath,
    args: CHROMIUM_ARGS,
    headless: true,
    ignoreHTTPSErrors,
    viewport,
    locale,
    colorScheme,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page };
}

export async function pickName(user, base, displayName) {
  await user.page.goto(base);
  await user.page.fill("#display-name", displayName);
  await user.page.click("#name-form button[type=submit]");
  await user.page.waitForFunction((expected) => document.getElementById("my-name")?.textContent === expected, displayName);
}

export async function createRoom(user, { name, description = "", unlisted = false, password = "" }) {
  await user.page.click("#open-create-room");
  await user.page.fill("#room-name", name);
  await user.page.fill("#room-description", description);
  await user.page.check(unlisted ? "#visibility-unlisted" : "#visibility-public");
  if (password) {
    await user.page.check("#room-use-password");
    await user.page.fill("#room-password", password);
  }
  await user.page.click("#create-room-submit");
  await user.page.waitForURL(/\/room\/[0-9a-f-]{36}$/);
  await user.page.waitForFunction((expected) => document.getElementById("room-name")?.textContent === expected, name);
  return new URL(user.page.url()).pathname;
}

export async function waitLive(user) {
  await user.page.waitForSelector('#connection[data-state="live"]');
}

/**
 * How far the page's clock (`performance.timeOrigin + performance.now()`) is behind the wall
 * clock that every process on this machine shares, in ms: readings of two pages measured on it
 * compare, whatever each renderer's idea of its time origin.
 */
export async function wallOffset(page) {
  const readings = await page.evaluate(() => {
    const out = [];
    for (let index = 0; index < 7; index += 1) {
      // At the instant Date.now() ticks over, the wall clock reads that whole millisecond.
      const before = Date.now();
      let wall = before;
      while (wall === before) {
        wall = Date.now();
      }
      out.push(wall - (performance.timeOrigin + performance.now()));
    }
    return out;
  });
  readings.sort((x, y) => x - y);
  return readings[Math.floor(readings.length / 2)];
}

/**
 * Players agree within this many seconds once converged (the drift controller's dead band is
 * 25 ms; the rest is measurement: two processes sampled a few milliseconds apart).
 */
export const AGREEMENT_TOLERANCE_S = 0.15;

/** Each page's clock offset from the wall clock (ms), measured once per page. */
const wallOffsets = new WeakMap();

/**
 * The video's position and state, with the moment it was read on the wall clock outside the
 * pages (the page's own clock moved by its measured offset), the two read back to back.
 */
export async function readPlayer(user) {
  if (!wallOffsets.has(user.page)) {
    wallOffsets.set(user.page, await wallOffset(user.page));
  }
  const reading = await user.page.evaluate(() => {
    const video = document.getElementById("video");
    return { at: performance.timeOrigin + performance.now(), position: video.currentTime, paused: video.paused, ready: video.readyState };
  });
  return { ...reading, at: reading.at + wallOffsets.get(user.page) };
}

/** A's position minus B's, with B's reading moved to the moment of A's. */
export async function playerGap(first, second, rate = 1) {
  const [a, b] = await Promise.all([readPlayer(first), readPlayer(second)]);
  const bAtA = b.paused ? b.position : b.position + ((a.at - b.at) / 1000) * rate;
  return { gap: a.position - bAtA, a, b };
}

/**
 * Waits until the two players agree within the tolerance on `readings` readings in a row, 250 ms
 * apart (three: they have converged; twelve: they stayed together for 3 s). On a loaded machine a
 * page can stall for a moment; the players must then come back together before the deadline
 * (`waitMs`, 20 s unless said).
 */
export async function waitForAgreement(first, second, check = () => true, readings = 3, { waitMs = 20_000 } = {}) {
  const deadline = Date.now() + waitMs;
  const gaps = [];
  let broken = 0;
  let last;
  while (Date.now() < deadline) {
    last = await playerGap(first, second);
    if (Math.abs(last.gap) <= AGREEMENT_TOLERANCE_S && check(last)) {
      gaps.push(Math.abs(last.gap) * 1000);
    } else {
      broken += gaps.length > 0 ? 1 : 0;
      gaps.length = 0;
    }
    if (gaps.length >= readings) {
      return { ...last, gaps, broken };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`players did not agree within ${AGREEMENT_TOLERANCE_S} s on ${readings} readings in a row: ${JSON.stringify(last)}`);
}

export function assert(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

/**
 * The frame of a browser suite: a temporary directory, what the suite starts (the server, browser
 * contexts: stopped on the way out, also on Ctrl-C), and checks run one after another, each
 * reported as it ends (`onFailure(number)` may take screenshots of a failed one). `finish()`
 * stops everything and prints "NAME: N passed, N failed" (the line scripts/test-web.sh reads).
 */
export function browserSuite(name, { onFailure = async () => undefined } = {}) {
  const tempDir = mkdtempSync(join(tmpdir(), `xiaowo-${name}-`));
  const contexts = [];
  const results = [];
  let server;
  const cleanup = async () => {
    for (const context of contexts) {
      await context.close().catch(() => undefined);
    }
    await stopProcess(server);
    rmSync(tempDir, { recursive: true, force: true });
  };
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => void cleanup().finally(() => process.exit(130)));
  }
  return {
    tempDir,
    setServer(child) {
      server = child;
    },
    addContext(context) {
      contexts.push(context);
    },
    async check(label, run) {
      const began = Date.now();
      try {
        await run();
        results.push(true);
        console.log(`ok   ${label} (${Date.now() - began} ms)`);
      } catch (error) {
        results.push(false);
        console.log(`FAIL ${label} (${Date.now() - began} ms)\n     ${String(error?.stack ?? error).split("\n").slice(0, 12).join("\n     ")}`);
        await onFailure(results.length).catch(() => undefined);
      }
    },
    async finish() {
      await cleanup();
      const passed = results.filter(Boolean).length;
      console.log(`${name}: ${passed} passed, ${results.length - passed} failed`);
      process.exitCode = results.length > passed ? 1 : 0;
    },
  };
}

/**
 * Records, in the page's `window.__xssHits`, anything an injected payload could do: calls of
 * `__xss()`, `alert()`, `confirm()`, `prompt()`, `print()`, and CSP violations. Installed before
 * any page of `context` runs (the XSS suites read and empty the list).
 */
export async function installXssHooks(context) {
  await context.addInitScript(() => {
    window.__xssHits = [];
    const hit = (what) => (...args) => {
      window.__xssHits.push(`${what}(${args.map(String).join(",")})`);
    };
    window.__xss = hit("__xss");
    window.alert = hit("alert");
    window.confirm = hit("confirm");
    window.prompt = hit("prompt");
    window.print = hit("print");
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__xssHits.push(`csp violation: ${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
    });
  });
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's serious and critical violations on the page as it is now. */
export async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    // Evaluated through the DevTools protocol, which the page's CSP does not govern.
    await page.evaluate(axeSource);
  }
  return page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
      resultTypes: ["violations"],
    });
    return result.violations
      .filter((violation) => violation.impact === "serious" || violation.impact === "critical")
      .map((violation) => ({
        id: violation.id,
        impact: violation.impact,
        help: violation.help,
        nodes: violation.nodes.slice(0, 4).map((node) => `${node.target.join(" ")}: ${node.failureSummary?.split("\n").slice(1, 3).join(" ")}`),
      }));
  });
}

