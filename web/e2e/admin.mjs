// The operator console (/admin) end to end, in real headless Chromium against a real `xiaowo up`
// started with an admin token and a one-second monitor scrape:
//
// * a wrong token is refused with a sentence and the server's own words, and the page stays
//   locked; the right one unlocks it;
// * the token is kept in this tab's sessionStorage only: never in localStorage or a cookie;
// * the overview's charts draw points scraped from the running server;
// * revoking a session ends it (its holder's next call is UNAUTHENTICATED);
// * closing a room closes it (joining it is refused, the list says closed);
// * the audit log filters by action and by room;
// * the media library lists the media folder's files with totals and the uploads in progress;
//   renaming one renames it, deleting one removes its row and its file;
// * screenshots of every section at 1280×800 and 390×844, English and Chinese, go to
//   web/artifacts/admin/.
//
//   node e2e/admin.mjs        (after `npm run build` and `cargo build -p xiaowo`)
//
// Ends with "admin: N passed, N failed".

import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { call, createRoom, createSession, encode, joinRoom } from "./grpcweb.mjs";
import { ADMIN_TOKEN, launchServer, makeTestVideo, openProfile, prepareWebDir, stopProcess, webRoot } from "./stack.mjs";

const artifacts = join(webRoot, "artifacts", "admin");
const WAIT_MS = 30_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const UNAUTHENTICATED = 16;
const FAILED_PRECONDITION = 9;

const tempDir = mkdtempSync(join(tmpdir(), "xiaowo-admin-"));
let server;
const contexts = [];
const consoleErrors = [];
const results = [];

async function cleanup() {
  for (const context of contexts) {
    await context.close().catch(() => undefined);
  }
  await stopProcess(server);
  rmSync(tempDir, { recursive: true, force: true });
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => void cleanup().finally(() => process.exit(130)));
}

function assert(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

async function check(name, run) {
  try {
    await run();
    results.push(true);
    console.log(`ok   ${name}`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL ${name}\n     ${String(error?.stack ?? error).split("\n").slice(0, 12).join("\n     ")}`);
  }
}

async function getSessionCode(base, token) {
  return (await call(base, "/xiaowo.session.v1.SessionService/GetSession", encode(), token)).code;
}

async function openTab(page, id) {
  await page.click(`#tab-${id}`);
  await page.waitForSelector(`#panel-${id}:not([hidden])`);
}

async function setLanguage(page, language) {
  const current = await page.evaluate(() => document.documentElement.lang);
  if (!current.startsWith(language)) {
    await page.click("#lang-switch");
    await page.waitForFunction((wanted) => document.documentElement.lang.startsWith(wanted), language);
  }
}

async function settle(page) {
  await page.evaluate(() => document.fonts.ready);
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

try {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  const webDir = prepareWebDir(tempDir);
  // Two files in the media folder, indexed when the server starts.
  const mediaDir = join(tempDir, "data", "media");
  mkdirSync(mediaDir, { recursive: true });
  makeTestVideo(join(mediaDir, "Harbour at dusk.webm"), 2);
  makeTestVideo(join(mediaDir, "Old film.webm"), 2, "smptebars");
  const launched = launchServer(tempDir, webDir, "127.0.0.1:0", {
    XIAOWO_MONITOR_SCRAPE_INTERVAL: "1s",
    XIAOWO_MONITOR_GAUGES: "xiaowo_sessions_live,xiaowo_rooms_active,xiaowo_sync_watch_streams,xiaowo_open_connections",
  });
  server = launched.server;
  const base = await launched.base;
  console.log(`xiaowo up at ${base}`);

  // Some people and rooms for the console to show.
  const mei = await createSession(base, "Mei");
  const leo = await createSession(base, "Leo");
  const revokee = await createSession(base, "Revokee");
  assert(mei && leo && revokee, "sessions were not created");
  const movieNight = await createRoom(base, mei, "Movie night", "Fridays");
  const closing = await createRoom(base, leo, "To be closed", "", { password: "a long password" });
  assert(movieNight && closing, "rooms were not created");
  assert((await joinRoom(base, leo, movieNight)) === 0, "Leo could not join");

  const { context, page } = await openProfile("operator", tempDir, { viewport: DESKTOP, locale: "en-US" });
  contexts.push(context);
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  page.on("console", (message) => {
    // The refused unlock attempt is logged by Chromium as a failed request; nothing else may be.
    if (message.type() === "error" && !message.text().includes("the server responded with a status")) {
      consoleErrors.push(message.text());
    }
  });
  page.on("dialog", (dialog) => {
    consoleErrors.push(`a browser dialog "${dialog.message()}"`);
    void dialog.dismiss();
  });

  await check("the console asks for the admin token and refuses a wrong one, quoting the server", async () => {
    await page.goto(`${base}/admin`);
    await page.waitForSelector("#admin-token");
    // No viewer session is made for the operator.
    assert((await page.locator("#display-name").count()) === 0, "the console asked for a display name");
    await page.fill("#admin-token", "not-the-token");
    await page.click("#admin-unlock");
    await page.waitForSelector("#admin-unlock-error");
    const error = await page.textContent("#admin-unlock-error");
    assert(/did not accept/.test(error ?? ""), `unexpected refusal text: ${error}`);
    const said = await page.textContent("#admin-server-message");
    assert(/admin token required/.test(said ?? ""), `the server's message is not shown: ${said}`);
    assert((await page.locator("#admin-console").count()) === 0, "the console opened with a wrong token");
    assert((await page.evaluate(() => window.sessionStorage.length)) === 0, "a refused token was stored");
  });

  await check("the right token unlocks; it is in no cookie and not in localStorage", async () => {
    await page.fill("#admin-token", ADMIN_TOKEN);
    await page.click("#admin-unlock");
    await page.waitForSelector("#admin-console");
    const stored = await page.evaluate(() => ({
      local: Object.keys(localStorage).map((key) => `${key}=${localStorage.getItem(key)}`),
      cookie: document.cookie,
      session: sessionStorage.getItem("xiaowo.adminToken"),
    }));
    assert(stored.local.every((entry) => !entry.includes(ADMIN_TOKEN)), `the token is in localStorage: ${stored.local}`);
    assert(!stored.cookie.includes(ADMIN_TOKEN), "the token is in document.cookie");
    const cookies = await context.cookies();
    assert(cookies.every((cookie) => !cookie.value.includes(ADMIN_TOKEN)), "the token is in a cookie");
    assert(stored.session === ADMIN_TOKEN, "the token is not kept for the tab");
    // A reload in the same tab stays unlocked.
    await page.reload();
    await page.waitForSelector("#admin-console");
  });

  await check("the overview charts draw points scraped from the running server", async () => {
    await page.selectOption("#overview-range", "300");
    for (const chart of ["qps", "latency", "memory", "rooms", "sessions", "connections"]) {
      await page.waitForFunction(
        (id) => Number(document.querySelector(`[data-chart="${id}"]`)?.getAttribute("data-points") ?? 0) >= 2,
        chart,
        { timeout: 60_000, polling: 500 },
      );
    }
    assert((await page.locator(".admin-chart canvas").count()) >= 8, "a chart has no canvas");
    const rooms = await page.textContent('[data-chart="rooms"] .admin-chart-value');
    assert(rooms?.trim() === "2", `open rooms reads ${rooms}`);
    assert((await page.locator('#overview-targets [data-service="xiaowo"].up').count()) === 1, "the all-in-one target is not shown up");
  });

  await check("revoking a session ends it: its holder's next call is refused", async () => {
    assert((await getSessionCode(base, revokee)) === 0, "the session did not work before");
    await openTab(page, "sessions");
    const row = page.locator("#sessions-list li", { hasText: "Revokee" });
    await row.waitFor();
    await row.locator('[data-action="revoke"]').click();
    await page.click('#revoke-dialog [data-action="confirm"]');
    await row.waitFor({ state: "detached" });
    assert((await getSessionCode(base, revokee)) === UNAUTHENTICATED, "the revoked session still works");
    assert((await getSessionCode(base, mei)) === 0, "another session was ended too");
  });

  await check("closing a room closes it for everyone", async () => {
    await openTab(page, "rooms");
    const row = page.locator(`#rooms-list li[data-room-id="${closing}"]`);
    await row.waitFor();
    assert((await row.textContent())?.includes("Password"), "the password room is not marked");
    await row.locator('[data-action="close-room"]').click();
    await page.click('#close-room-dialog [data-action="confirm"]');
    await page.waitForSelector(`#rooms-list li[data-room-id="${closing}"][data-status="closed"]`);
    assert((await joinRoom(base, mei, closing)) === FAILED_PRECONDITION, "the closed room still takes members");
    assert((await joinRoom(base, mei, movieNight)) === 0, "another room was closed too");
  });

  await check("the audit log filters by action and by room", async () => {
    await openTab(page, "audit");
    await page.waitForSelector("#audit-list li");
    await page.selectOption("#audit-action", "room.close");
    await page.click("#audit-apply");
    await page.waitForFunction(() => [...document.querySelectorAll("#audit-list li")].every((row) => row.getAttribute("data-action-name") === "room.close"));
    const closes = await page.$$eval("#audit-list li", (rows) => rows.map((row) => row.getAttribute("data-room-id")));
    assert(closes.length === 1 && closes[0] === closing, `room.close rows: ${closes}`);
    assert((await page.textContent("#audit-list li"))?.includes("System"), "the operator's close is not shown as the system's");
    await page.click("#audit-clear");
    await page.fill("#audit-room", movieNight);
    await page.click("#audit-apply");
    await page.waitForFunction(
      (roomId) => {
        const rows = [...document.querySelectorAll("#audit-list li")];
        return rows.length === 2 && rows.every((row) => row.getAttribute("data-room-id") === roomId);
      },
      movieNight,
    );
    // Newest first: Leo's join, then the creation (Mei's second join was a no-op, not audited).
    const actions = await page.$$eval("#audit-list li", (rows) => rows.map((row) => row.getAttribute("data-action-name")));
    assert(actions.join(",") === "member.join,room.create", `newest first: ${actions}`);
  });

  await check("a room's audit log opens from the rooms list", async () => {
    await openTab(page, "rooms");
    await page.selectOption("#rooms-status", "0");
    const row = page.locator(`#rooms-list li[data-room-id="${closing}"]`);
    await row.waitFor();
    await row.locator('[data-action="room-audit"]').click();
    await page.waitForSelector("#panel-audit:not([hidden])");
    await page.waitForFunction((roomId) => document.getElementById("audit-room")?.value === roomId, closing);
    await page.waitForFunction(
      (roomId) => {
        const rows = [...document.querySelectorAll("#audit-list li")];
        return rows.length === 2 && rows.every((row) => row.getAttribute("data-room-id") === roomId);
      },
      closing,
    );
  });

  await check("the media library lists every item and upload; rename and delete act on the server", async () => {
    // An upload left half-way: 40 of 100 bytes.
    const tus = { "tus-resumable": "1.0.0", authorization: `Bearer ${mei}` };
    const created = await fetch(`${base}/media/uploads`, {
      method: "POST",
      headers: { ...tus, "upload-length": "100", "upload-metadata": `filename ${Buffer.from("Half way.mp4").toString("base64")}` },
    });
    assert(created.status === 201, `creating an upload answered ${created.status}`);
    const location = created.headers.get("location") ?? "";
    const appended = await fetch(new URL(location, base), {
      method: "PATCH",
      headers: { ...tus, "upload-offset": "0", "content-type": "application/offset+octet-stream" },
      body: new Uint8Array(40),
    });
    assert(appended.status === 204, `appending answered ${appended.status}`);

    await openTab(page, "media");
    // The folder is indexed in the background at start: read again until both files are in.
    const deadline = Date.now() + 60_000;
    while ((await page.locator("#media-list li").count()) < 2) {
      assert(Date.now() < deadline, "the media folder's files never appeared");
      await page.click("#media-refresh");
      await page.waitForTimeout(500);
    }
    assert(/2 items/.test((await page.textContent("#media-totals")) ?? ""), `totals: ${await page.textContent("#media-totals")}`);
    const upload = page.locator("#media-uploads li", { hasText: "Half way.mp4" });
    await upload.waitFor();
    assert((await upload.locator("progress").getAttribute("value")) === "40", "the upload's progress is not 40 %");

    const harbour = page.locator("#media-list li", { hasText: "Harbour at dusk" });
    await harbour.locator('[data-action="rename"]').click();
    await page.fill("#media-rename", "Harbour, restored");
    await page.click('#media-rename-dialog [data-action="confirm"]');
    await page.locator("#media-list li", { hasText: "Harbour, restored" }).waitFor();

    const old = page.locator("#media-list li", { hasText: "Old film" });
    await old.locator('[data-action="delete"]').click();
    await page.click('#media-delete-dialog [data-action="confirm"]');
    await old.waitFor({ state: "detached" });
    assert(!existsSync(join(mediaDir, "Old film.webm")), "the deleted item's file is still on disk");
    assert(existsSync(join(mediaDir, "Harbour at dusk.webm")), "the renamed item's file went");
    await page.waitForFunction(() => /1 item\b/.test(document.getElementById("media-totals")?.textContent ?? ""));
  });

  await check("screenshots of every section: desktop and phone, English and Chinese", async () => {
    for (const language of ["en", "zh"]) {
      await setLanguage(page, language);
      await page.waitForSelector("#admin-console");
      for (const [widthName, viewport] of [
        ["desktop", DESKTOP],
        ["phone", PHONE],
      ]) {
        await page.setViewportSize(viewport);
        for (const section of ["overview", "alerts", "sessions", "rooms", "audit", "media"]) {
          await openTab(page, section);
          if (section === "overview") {
            await page.waitForFunction(() => Number(document.querySelector('[data-chart="qps"]')?.getAttribute("data-points") ?? 0) >= 2);
          } else {
            await page.waitForSelector(`#panel-${section} .admin-row, #panel-${section} .admin-empty:not([hidden])`);
          }
          await settle(page);
          await page.screenshot({ path: join(artifacts, `${section}-${language}-${widthName}.png`), fullPage: widthName === "phone" });
        }
      }
      await page.setViewportSize(DESKTOP);
    }
    // The lock screen, after a refused token.
    await page.click("#admin-lock");
    await page.waitForSelector("#admin-token");
    assert((await page.evaluate(() => sessionStorage.getItem("xiaowo.adminToken"))) === null, "Lock kept the token");
    for (const language of ["en", "zh"]) {
      await setLanguage(page, language);
      await page.fill("#admin-token", "wrong");
      await page.click("#admin-unlock");
      await page.waitForSelector("#admin-server-message");
      for (const [widthName, viewport] of [
        ["desktop", DESKTOP],
        ["phone", PHONE],
      ]) {
        await page.setViewportSize(viewport);
        await settle(page);
        await page.screenshot({ path: join(artifacts, `unlock-${language}-${widthName}.png`) });
      }
      await page.setViewportSize(DESKTOP);
    }
  });

  await check("no page errors and no browser dialogs", async () => {
    assert(consoleErrors.length === 0, consoleErrors.join("\n"));
  });
} catch (error) {
  results.push(false);
  console.log(`FAIL set-up\n     ${error?.stack ?? error}`);
} finally {
  await cleanup();
}
const passed = results.filter(Boolean).length;
console.log(`screenshots: web/artifacts/admin/`);
console.log(`admin: ${passed} passed, ${results.length - passed} failed`);
process.exitCode = results.length > 0 && passed === results.length ? 0 : 1;
