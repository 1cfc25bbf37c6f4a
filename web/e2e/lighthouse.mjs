// Lighthouse (npm `lighthouse`, driving Debian's Chromium through chrome-launcher; it never
// downloads a browser) on the lobby and on a room with a video, in its default mobile emulation
// (a mid-range phone on a slow 4G network, simulated). Fails when accessibility or best
// practices score under 95 on either page; reports performance. Also measures the first load
// on loopback with the real browser: when the lobby's rooms are drawn and every control on it
// works (median of 5 cold loads), and how much JavaScript that first load fetched (gzipped).
// XIAOWO_WEB_DIST=<another build's dist> measures that build the same way (a baseline).
//
//   node e2e/lighthouse.mjs          (after `npm run build` and `cargo build -p xiaowo`)
//   LIGHTHOUSE_JSON=out.json         also writes every score and figure there
//
// Ends with "lighthouse: N passed, N failed".

import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

import * as chromeLauncher from "chrome-launcher";
import lighthouse from "lighthouse";

import { changeMedia, createRoom, createSession, joinRoom } from "./grpcweb.mjs";
import { CHROMIUM_ARGS, chromiumPath, launchServer, makeTestVideo, openProfile, prepareWebDir, stopProcess } from "./stack.mjs";

const FLOORS = { accessibility: 95, "best-practices": 95 };
const LOADS = 5;

const results = [];
function record(name, ok, detail = "") {
  results.push({ name, ok });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : `\n     ${detail}`}`);
}

const tempDir = mkdtempSync(join(tmpdir(), "xiaowo-lighthouse-"));
let server;
let chrome;
const figures = {};
try {
  const webDir = prepareWebDir(tempDir);
  makeTestVideo(join(webDir, "fixtures", "test.webm"), 20);
  const launched = launchServer(tempDir, webDir);
  server = launched.server;
  const base = await launched.base;

  // A viewer with a session, a lobby with a few rooms, and a room with a video in it.
  const viewer = await createSession(base, "Lighthouse");
  const host = await createSession(base, "Host");
  for (const name of ["Friday film club", "周末动画", "Study with me"]) {
    await createRoom(base, host, name, "A room to list");
  }
  const roomId = await createRoom(base, host, "Movie night", "Test patterns");
  await changeMedia(base, host, roomId, `${base}/fixtures/test.webm`, "Test pattern");
  await joinRoom(base, viewer, roomId);

  // Every request of the audited page carries the viewer's session.
  const extraHeaders = { authorization: `Bearer ${viewer}` };
  chrome = await chromeLauncher.launch({
    chromePath: chromiumPath,
    chromeFlags: [...CHROMIUM_ARGS.filter((flag) => flag !== "--headless"), "--headless=new"],
    userDataDir: mkdtempSync(join(tempDir, "chrome-")),
    logLevel: "silent",
  });
  for (const [page, url] of [
    ["lobby", `${base}/`],
    ["room", `${base}/room/${roomId}`],
  ]) {
    const runnerResult = await lighthouse(url, {
      port: chrome.port,
      output: "json",
      logLevel: "error",
      onlyCategories: ["performance", "accessibility", "best-practices"],
      extraHeaders,
    });
    const { categories, audits } = runnerResult.lhr;
    if (process.env.LIGHTHOUSE_DUMP) {
      writeFileSync(`${process.env.LIGHTHOUSE_DUMP}-${page}.json`, JSON.stringify(runnerResult.lhr));
    }
    const scores = Object.fromEntries(Object.entries(categories).map(([id, category]) => [id, Math.round((category.score ?? 0) * 100)]));
    const metrics = {
      fcpMs: Math.round(audits["first-contentful-paint"]?.numericValue ?? 0),
      lcpMs: Math.round(audits["largest-contentful-paint"]?.numericValue ?? 0),
      tbtMs: Math.round(audits["total-blocking-time"]?.numericValue ?? 0),
      cls: Number((audits["cumulative-layout-shift"]?.numericValue ?? 0).toFixed(3)),
    };
    figures[page] = { scores, metrics };
    console.log(
      `  ${page}: performance ${scores.performance}, accessibility ${scores.accessibility}, best practices ${scores["best-practices"]}` +
        ` (FCP ${metrics.fcpMs} ms, LCP ${metrics.lcpMs} ms, TBT ${metrics.tbtMs} ms, CLS ${metrics.cls}; simulated mobile)`,
    );
    for (const [category, floor] of Object.entries(FLOORS)) {
      const failing = Object.values(audits)
        .filter((audit) => audit.score !== null && audit.score < 1 && categories[category].auditRefs.some((ref) => ref.id === audit.id && ref.weight > 0))
        .map((audit) => `${audit.id}: ${audit.title}`);
      record(`${page}: Lighthouse ${category} ≥ ${floor}`, scores[category] >= floor, `${scores[category]}; failing audits: ${failing.join("; ")}`);
    }
  }
  await chrome.kill();
  chrome = undefined;

  // First load on loopback, cold cache each time: the lobby's interactive mark and the JS fetched.
  const loads = [];
  let javascript = 0;
  for (let index = 0; index < LOADS; index += 1) {
    const { context, page } = await openProfile(`first-load-${index}`, tempDir, { viewport: { width: 1280, height: 800 } });
    try {
      await context.setExtraHTTPHeaders(extraHeaders);
      // When the first room card is drawn (its controls work from then on), on the page's own
      // clock; measured the same way for any build of the client, so that builds can be compared.
      await context.addInitScript(() => {
        new MutationObserver((_, observer) => {
          if (document.querySelector("#public-rooms li, #my-rooms li")) {
            window.__lobbyDrawnAt = performance.now();
            observer.disconnect();
          }
        }).observe(document, { childList: true, subtree: true });
      });
      const scripts = [];
      page.on("response", async (response) => {
        if (response.request().resourceType() === "script") {
          scripts.push(response.body().then((body) => gzipSync(body, { level: 9 }).length).catch(() => 0));
        }
      });
      await page.goto(base);
      await page.waitForFunction(() => window.__lobbyDrawnAt !== undefined, null, { timeout: 30_000 });
      loads.push(await page.evaluate(() => window.__lobbyDrawnAt));
      javascript = (await Promise.all(scripts)).reduce((sum, size) => sum + size, 0);
    } finally {
      await context.close();
    }
  }
  loads.sort((a, b) => a - b);
  figures.firstLoad = { interactiveMedianMs: Math.round(loads[Math.floor(loads.length / 2)]), interactiveMs: loads.map(Math.round), initialJsGzipBytes: javascript };
  console.log(
    `  first load on loopback: lobby interactive after ${figures.firstLoad.interactiveMedianMs} ms (median of ${LOADS}: ${figures.firstLoad.interactiveMs.join(", ")} ms), ` +
      `JavaScript fetched ${(javascript / 1024).toFixed(1)} KB gzipped`,
  );
  record("the lobby's first load fetches at most 80 KB of JavaScript (gzipped)", javascript > 0 && javascript <= 80 * 1024, `${javascript} bytes`);
} catch (error) {
  record("the Lighthouse run completed", false, error?.stack ?? String(error));
} finally {
  if (chrome) {
    await chrome.kill();
  }
  await stopProcess(server);
  rmSync(tempDir, { recursive: true, force: true });
}

if (process.env.LIGHTHOUSE_JSON) {
  writeFileSync(process.env.LIGHTHOUSE_JSON, `${JSON.stringify(figures, null, 2)}\n`);
}
const passed = results.filter((result) => result.ok).length;
const failed = results.length - passed;
console.log(`lighthouse: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
