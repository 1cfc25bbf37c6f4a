// End-to-end tests of the web client in real headless Chromium against a real `xiaowo up`.
//
// Starts the built binary on a free loopback port with a temporary data directory, serving a
// temporary copy of web/dist plus a test video made by ffmpeg (same origin, with Range
// support), then drives two independent browser profiles (two users with their own cookies)
// through the scenarios below. Screenshots go to web/artifacts/. Everything started here is
// stopped by PID on the way out, also on failure or Ctrl-C.
//
//   node e2e/run.mjs            (after `npm run build` and `cargo build -p xiaowo`)
//   XIAOWO_BIN=path/to/xiaowo   to test another build
//   E2E_ONLY=chat               to run only the scenarios whose name contains "chat"
//   E2E_BASE_URL=https://…      to test a stack that is already running (nginx in front of the
//   E2E_WEB_DIR=dir             split services): the web client and test media are written to
//                               E2E_WEB_DIR, which that stack must serve; scenarios that restart
//                               the server are skipped; self-signed certificates are accepted

import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request as apiRequest } from "playwright-core";

import {
  createRoom,
  launchServer,
  makeTestVideo,
  openProfile,
  pickName,
  prepareWebDir as copyClient,
  stopProcess,
  waitLive,
  wallOffset,
  webRoot,
} from "./stack.mjs";

const artifacts = join(webRoot, "artifacts");
const only = process.env.E2E_ONLY ?? "";
const externalBase = process.env.E2E_BASE_URL ?? "";
const externalWebDir = process.env.E2E_WEB_DIR ?? "";

/**
 * Players agree within this many seconds once converged (the drift controller's dead band is
 * 25 ms; the rest is measurement: two processes sampled a few milliseconds apart).
 */
const TOLERANCE_S = 0.15;
/** How long a wait may take before the scenario fails. */
const WAIT_MS = 20_000;

const started = { server: undefined, contexts: [], tempDir: undefined, webDir: undefined };

async function stopServer() {
  const server = started.server;
  started.server = undefined;
  await stopProcess(server);
}

async function cleanup() {
  for (const context of started.contexts) {
    await context.close().catch(() => undefined);
  }
  started.contexts = [];
  await stopServer();
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

// ---------------------------------------------------------------------------------------------
// Set-up

function prepareWebDir(tempDir, webDir = join(tempDir, "web")) {
  copyClient(tempDir, webDir);
  // A 60 s test pattern, about 1.5 MB.
  makeTestVideo(join(webDir, "media", "test.webm"), 60);
  // A 3 s clip, to see the queue advance when an item ends.
  makeTestVideo(join(webDir, "media", "short.webm"), 3, "testsrc2");
  return webDir;
}

async function startServer(tempDir, webDir, listen = "127.0.0.1:0") {
  const { server, base } = launchServer(tempDir, webDir, listen);
  started.server = server;
  return base;
}

/** One user: a browser profile of its own (own cookies and storage) with one page. */
async function openUser(name, tempDir, consoleErrors) {
  const { context, page } = await openProfile(name, tempDir, { ignoreHTTPSErrors: externalBase.startsWith("https:") });
  started.contexts.push(context);
  page.setDefaultTimeout(WAIT_MS);
  page.on("console", (message) => {
    // Chromium logs every request refused while the network or the server is down on purpose.
    const expectedFailure = state.networkDown.has(name) && message.text().includes("net::ERR_");
    if (message.type() === "error" && !expectedFailure) {
      consoleErrors.push(`${name}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
  page.on("dialog", (dialog) => {
    consoleErrors.push(`${name}: unexpected dialog "${dialog.message()}"`);
    void dialog.dismiss();
  });
  return { name, context, page };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function assert(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

async function screenshot(user, name) {
  await user.page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Each page's clock offset from the wall clock (ms), measured once per page. */
const wallOffsets = new WeakMap();

/**
 * The video's position and state, with the moment it was read on the wall clock outside the
 * pages (the page's own clock moved by its measured offset), the two read back to back.
 */
async function readPlayer(user) {
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
async function playerGap(first, second, rate = 1) {
  const [a, b] = await Promise.all([readPlayer(first), readPlayer(second)]);
  const bAtA = b.paused ? b.position : b.position + ((a.at - b.at) / 1000) * rate;
  return { gap: a.position - bAtA, a, b };
}

/**
 * Waits until the two players agree within the tolerance on `readings` readings in a row, 250 ms
 * apart (three: they have converged; twelve: they stayed together for 3 s). On a loaded machine a
 * page can stall for a moment; the players must then come back together before the deadline.
 */
async function waitForAgreement(first, second, check = () => true, readings = 3) {
  const deadline = Date.now() + WAIT_MS;
  const gaps = [];
  let broken = 0;
  let last;
  while (Date.now() < deadline) {
    last = await playerGap(first, second);
    if (Math.abs(last.gap) <= TOLERANCE_S && check(last)) {
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
  throw new Error(`players did not agree within ${TOLERANCE_S} s on ${readings} readings in a row: ${JSON.stringify(last)}`);
}

async function sendChat(user, text) {
  if (!(await user.page.isVisible("#chat-input"))) {
    await user.page.click("[data-tab=chat]");
  }
  await user.page.fill("#chat-input", text);
  await user.page.click("#chat-send");
}

async function waitForChatText(user, text) {
  await user.page.waitForFunction(
    (expected) => [...document.querySelectorAll("#chat-messages li.message:not(.pending) .text")].some((node) => node.textContent === expected),
    text,
  );
}

// ---------------------------------------------------------------------------------------------
// Scenarios (in order; later ones build on earlier ones)

const scenarios = [];
/**
 * `needs`: names of earlier scenarios whose outcome this one builds on; when one of them
 * failed this one fails at once instead of waiting out its timeouts.
 */
const scenario = (name, needs, run) => scenarios.push({ name, needs, run });

const state = { base: "", roomPath: "", alice: undefined, bob: undefined, consoleErrors: [], networkDown: new Set() };
const HTML_PAYLOAD = `<img src=x onerror="window.__xiaowoPwned=1"><script>window.__xiaowoPwned=2</script><b>bold</b> & "quotes"`;

const NAMES = "each user picks a display name and gets a session";
const ROOM = "Alice opens a public room; Bob finds it in the list and joins";
const PLAY = "Alice loads and plays the test video; Bob's player follows";
const CHAT = "chat works in both directions";

scenario(NAMES, [], async () => {
  await pickName(state.alice, state.base, "Alice");
  await pickName(state.bob, state.base, "Bob 小窝");
  await screenshot(state.alice, "01-lobby");
});

scenario(ROOM, [NAMES], async () => {
  state.roomPath = await createRoom(state.alice, { name: "Movie night", description: "Test pattern marathon" });
  await waitLive(state.alice);
  const card = "#public-rooms a.room-card:has(.room-card-name:text-is('Movie night'))";
  await state.bob.page.waitForSelector(card, { timeout: 15_000 });
  await state.bob.page.click(card);
  await state.bob.page.waitForURL(`**${state.roomPath}`);
  await waitLive(state.bob);
  // The people tab is not the one open: the list is there, hidden.
  await state.alice.page.waitForSelector("#members li:has-text('Bob 小窝')", { state: "attached" });
  assert((await state.bob.page.getAttribute("#my-role", "data-role")) === "member", "Bob should be a member");
});

scenario(PLAY, [ROOM], async () => {
  await state.alice.page.fill("#media-url", `${state.base}/media/test.webm`);
  await state.alice.page.fill("#media-title", "Test pattern");
  await state.alice.page.click("#media-play-now");
  for (const user of [state.alice, state.bob]) {
    await user.page.waitForFunction(() => document.getElementById("video").readyState >= 1);
  }
  await state.alice.page.waitForSelector("#play-toggle:not([disabled])");
  await state.alice.page.click("#play-toggle");
  const result = await waitForAgreement(state.alice, state.bob, ({ a, b }) => !a.paused && !b.paused && a.position > 1);
  console.log(`    playing: gap ${(result.gap * 1000).toFixed(0)} ms at ${result.a.position.toFixed(2)} s`);
  // Once converged the players stay together: a reading every 250 ms for 3 s, all within the
  // tolerance (measured on the wall clock outside both pages).
  const steady = await waitForAgreement(state.alice, state.bob, ({ a, b }) => !a.paused && !b.paused, 12);
  const gaps = [...steady.gaps].sort((x, y) => x - y);
  const median = gaps[Math.floor(gaps.length / 2)];
  const worst = gaps[gaps.length - 1];
  const broken = steady.broken > 0 ? ` (after ${steady.broken} run(s) broken by a reading beyond ${TOLERANCE_S * 1000} ms)` : "";
  console.log(`    steady playback over 3 s: median gap ${median.toFixed(0)} ms, worst ${worst.toFixed(0)} ms${broken}`);
  await screenshot(state.alice, "02-room-playing-alice");
  await screenshot(state.bob, "03-room-playing-bob");
});

scenario("Alice seeks; Bob's player jumps to the same place", [PLAY], async () => {
  await state.alice.page.$eval("#seek", (input) => {
    input.value = "30";
    input.dispatchEvent(new Event("change"));
  });
  const result = await waitForAgreement(state.alice, state.bob, ({ a, b }) => !a.paused && !b.paused && a.position >= 30 && a.position < 40);
  console.log(`    seeked: gap ${(result.gap * 1000).toFixed(0)} ms at ${result.a.position.toFixed(2)} s`);
});

scenario("Alice pauses; Bob's player pauses on the same frame", [PLAY], async () => {
  await state.alice.page.click("#play-toggle");
  const result = await waitForAgreement(state.alice, state.bob, ({ a, b }) => a.paused && b.paused);
  console.log(`    paused: gap ${(result.gap * 1000).toFixed(0)} ms at ${result.a.position.toFixed(2)} s`);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const later = await playerGap(state.alice, state.bob);
  assert(later.a.paused && later.b.paused, "both players stay paused");
  assert(Math.abs(later.a.position - result.a.position) < 0.05, "the paused frame does not move");
});

scenario(CHAT, [ROOM], async () => {
  await sendChat(state.alice, "Hi Bob, can you see the clock?");
  await waitForChatText(state.bob, "Hi Bob, can you see the clock?");
  await sendChat(state.bob, "Yes! 看得见 👍");
  await waitForChatText(state.alice, "Yes! 看得见 👍");
});

scenario("a chat message made of HTML and script is shown as text and runs nothing", [CHAT], async () => {
  await sendChat(state.bob, HTML_PAYLOAD);
  await waitForChatText(state.alice, HTML_PAYLOAD);
  await waitForChatText(state.bob, HTML_PAYLOAD);
  for (const user of [state.alice, state.bob]) {
    const found = await user.page.evaluate(() => ({
      pwned: window.__xiaowoPwned,
      elements: document.querySelectorAll("#chat-messages img, #chat-messages script, #chat-messages b").length,
    }));
    assert(found.pwned === undefined, `${user.name}: the payload ran (${found.pwned})`);
    assert(found.elements === 0, `${user.name}: the payload became ${found.elements} element(s)`);
  }
  await screenshot(state.alice, "04-chat-html-payload");
});

scenario("a stream dropped while offline reconnects and resumes chat from the last message", [CHAT], async () => {
  state.networkDown.add("bob");
  await state.bob.context.setOffline(true);
  try {
    await state.bob.page.waitForSelector('#connection:not([data-state="live"])', { timeout: 60_000 });
    await sendChat(state.alice, "Sent while Bob was offline");
  } finally {
    await state.bob.context.setOffline(false);
  }
  // Requests already refused may still be logged a moment after going back online.
  await new Promise((resolve) => setTimeout(resolve, 500));
  state.networkDown.delete("bob");
  await waitLive(state.bob);
  await waitForChatText(state.bob, "Sent while Bob was offline");
  const copies = await state.bob.page.evaluate(
    () => [...document.querySelectorAll("#chat-messages .text")].filter((node) => node.textContent === "Hi Bob, can you see the clock?").length,
  );
  assert(copies === 1, `a resumed stream repeats nothing (saw ${copies} copies)`);
});

scenario("a reload keeps the session and brings Bob back into the room", [CHAT, PLAY], async () => {
  await state.bob.page.reload();
  await state.bob.page.waitForFunction(() => document.getElementById("my-name")?.textContent === "Bob 小窝");
  await state.bob.page.waitForFunction(() => document.getElementById("room-name")?.textContent === "Movie night");
  await waitLive(state.bob);
  await waitForChatText(state.bob, "Hi Bob, can you see the clock?");
  await state.bob.page.waitForFunction(() => document.getElementById("video").readyState >= 1);
  await waitForAgreement(state.alice, state.bob, ({ a, b }) => a.paused && b.paused);
});

scenario("a moderator deletes a message for everyone", [CHAT], async () => {
  const message = "#chat-messages li.message:has(.text:text-is('Yes! 看得见 👍'))";
  await state.alice.page.click(`${message} .menu-toggle`);
  await state.alice.page.click(`${message} [data-action=delete]`);
  // Deleting asks first.
  await state.alice.page.click("#delete-dialog [data-action=confirm]");
  for (const user of [state.alice, state.bob]) {
    await user.page.waitForSelector("#chat-messages li.message.deleted");
    const remaining = await user.page.evaluate(
      () => [...document.querySelectorAll("#chat-messages .text")].filter((node) => node.textContent === "Yes! 看得见 👍").length,
    );
    assert(remaining === 0, `${user.name} still shows the deleted message`);
  }
  assert((await state.bob.page.$("#chat-messages .menu-toggle, #chat-messages [data-action=delete]")) === null, "a member gets no delete buttons");
});

scenario("the flood limit is shown, and the refused message can be retried", [CHAT], async () => {
  const page = state.bob.page;
  if (!(await page.isVisible("#chat-input"))) {
    await page.click("[data-tab=chat]");
  }
  // Twelve messages in one go, as a person hammering Enter would send them (one browser call
  // per message would be slower than the limit refills on a busy machine).
  await page.evaluate(() => {
    const input = document.getElementById("chat-input");
    const form = input.closest("form");
    for (let index = 1; index <= 12; index += 1) {
      input.value = `flood ${index}`;
      form.requestSubmit();
    }
  });
  await page.waitForSelector("#chat-messages li.message.failed button.retry");
  // Each refused message keeps its reason (a later send that goes through clears only the
  // line under the chat, on a slow machine one may).
  const explained = await page
    .waitForFunction(
      () => (document.querySelector("#chat-messages li.message.failed .reason")?.textContent ?? "") !== "",
      null,
      { timeout: 5_000 },
    )
    .then(() => true, () => false);
  assert(explained, "the refusal is explained");
  const failedText = await page.textContent("#chat-messages li.message.failed .text");
  await screenshot(state.bob, "04b-flood-limit");
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  await page.click("#chat-messages li.message.failed button.retry");
  await waitForChatText(state.alice, failedText);
  const copies = await state.alice.page.evaluate(
    (text) => [...document.querySelectorAll("#chat-messages .text")].filter((node) => node.textContent === text).length,
    failedText,
  );
  assert(copies === 1, `the retried message arrives once (saw ${copies})`);
});

scenario("the queue takes items, reorders, removes, plays next and advances when an item ends", [PLAY], async () => {
  const page = state.alice.page;
  const titles = () => page.$$eval("#queue li[data-item-id] .queue-title", (nodes) => nodes.map((node) => node.textContent));
  await page.click("[data-tab=queue]");
  const add = async (file, title) => {
    await page.fill("#media-url", `${state.base}/media/${file}`);
    await page.fill("#media-title", title);
    await page.click("#media-add");
    await page.waitForSelector(`#queue .queue-title:text-is('${title}')`);
  };
  await add("short.webm", "Short clip");
  await add("test.webm", "Long clip");
  await add("test.webm", "Extra");
  await page.click("#queue li:has(.queue-title:text-is('Long clip')) button[data-action=up]");
  await page.waitForFunction(() => document.querySelector("#queue li[data-item-id] .queue-title")?.textContent === "Long clip");
  await page.click("#queue li:has(.queue-title:text-is('Extra')) button[data-action=remove]");
  await page.waitForFunction(() => document.querySelectorAll("#queue li[data-item-id]").length === 2);
  await page.click("#queue li:has(.queue-title:text-is('Short clip')) button[data-action=up]");
  await page.waitForFunction(() => document.querySelector("#queue li[data-item-id] .queue-title")?.textContent === "Short clip");
  assert(JSON.stringify(await titles()) === JSON.stringify(["Short clip", "Long clip"]), `queue order ${await titles()}`);
  await state.bob.page.waitForSelector("#queue li[data-item-id]:nth-child(2) .queue-title:text-is('Long clip')", { state: "attached" });
  await screenshot(state.alice, "05-queue");

  await page.click("#queue-next");
  for (const user of [state.alice, state.bob]) {
    await user.page.waitForFunction(() => document.getElementById("now-playing")?.textContent === "Short clip");
  }
  // The 3 s clip ends; the room moves on to the next item by itself.
  for (const user of [state.alice, state.bob]) {
    await user.page.waitForFunction(() => document.getElementById("now-playing")?.textContent === "Long clip", null, { timeout: 30_000 });
  }
  await page.waitForFunction(() => document.querySelectorAll("#queue li[data-item-id]").length === 0);
  await waitForAgreement(state.alice, state.bob, ({ a, b }) => !a.paused && !b.paused && a.position > 0.5);
});

scenario("after a server restart both pages reconnect, and the timeline and chat carry on", [CHAT, PLAY], async () => {
  const listen = new URL(state.base).host;
  // Pause first, so that the position to come back to is exact.
  await state.alice.page.click("#play-toggle");
  const before = await waitForAgreement(state.alice, state.bob, ({ a, b }) => a.paused && b.paused);
  state.networkDown.add("alice").add("bob");
  await stopServer();
  for (const user of [state.alice, state.bob]) {
    await user.page.waitForSelector('#connection:not([data-state="live"])');
  }
  await screenshot(state.bob, "06-reconnecting");
  state.base = await startServer(started.tempDir, started.webDir, listen);
  for (const user of [state.alice, state.bob]) {
    await waitLive(user);
  }
  await new Promise((resolve) => setTimeout(resolve, 500));
  state.networkDown.clear();
  const after = await playerGap(state.alice, state.bob);
  assert(Math.abs(after.a.position - before.a.position) < 0.1, `position moved from ${before.a.position} to ${after.a.position}`);
  await sendChat(state.alice, "Back after the restart");
  await waitForChatText(state.bob, "Back after the restart");
  await state.alice.page.click("#play-toggle");
  await waitForAgreement(state.alice, state.bob, ({ a, b }) => !a.paused && !b.paused && a.position > before.a.position + 0.5);
  await state.alice.page.click("#play-toggle");
  await waitForAgreement(state.alice, state.bob, ({ a, b }) => a.paused && b.paused);
});

scenario("a password room refuses a wrong password and admits the right one", [NAMES], async () => {
  await state.alice.page.click("a.brand");
  const path = await createRoom(state.alice, { name: "Secret den", unlisted: true, password: "correct horse" });
  await state.bob.page.goto(`${state.base}${path}`);
  await state.bob.page.waitForSelector("#join-form");
  await state.bob.page.fill("#join-password", "wrong horse!");
  await state.bob.page.click("#join-form button[type=submit]");
  await state.bob.page.waitForFunction(() => (document.getElementById("join-error")?.textContent ?? "") !== "");
  assert((await state.bob.page.$("#room-name")) === null, "a wrong password must not open the room");
  await screenshot(state.bob, "07-password-refused");
  await state.bob.page.fill("#join-password", "correct horse");
  await state.bob.page.click("#join-form button[type=submit]");
  await state.bob.page.waitForFunction(() => document.getElementById("room-name")?.textContent === "Secret den");
});

scenario("controls are greyed out with a reason when the control mode forbids them", ["a password room refuses a wrong password and admits the right one"], async () => {
  await state.alice.page.click("[data-tab=settings]");
  await state.alice.page.selectOption("#settings-control", "3");
  await state.alice.page.click("#settings-save");
  await state.bob.page.reload();
  await state.bob.page.waitForFunction(() => document.getElementById("play-toggle")?.disabled === true && (document.getElementById("control-reason")?.textContent ?? "") !== "");
});

scenario("the room fits a phone-width screen", [ROOM], async () => {
  await state.bob.page.setViewportSize({ width: 390, height: 844 });
  await state.bob.page.goto(state.base);
  await state.bob.page.waitForSelector("#my-rooms a.room-card");
  const lobbyOverflow = await state.bob.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(lobbyOverflow <= 1, `the lobby scrolls sideways by ${lobbyOverflow}px`);
  await screenshot(state.bob, "08-phone-lobby");
  await state.bob.page.goto(`${state.base}${state.roomPath}`);
  await waitLive(state.bob);
  const overflow = await state.bob.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 1, `the page scrolls sideways by ${overflow}px`);
  await screenshot(state.bob, "09-phone-room");
});

scenario("a muted member is told so when sending", [CHAT], async () => {
  await state.alice.page.goto(`${state.base}${state.roomPath}`);
  await waitLive(state.alice);
  await state.alice.page.click("[data-tab=people]");
  await state.alice.page.click("#members li:has-text('Bob 小窝') .menu-toggle");
  await state.alice.page.click("#members li:has-text('Bob 小窝') [data-action=mute]");
  await state.alice.page.click("#mute-confirm");
  await state.bob.page.waitForTimeout(500);
  await sendChat(state.bob, "Am I muted?");
  await state.bob.page.waitForSelector("#chat-messages li.message.failed:has(.text:text-is('Am I muted?'))");
  assert(((await state.bob.page.textContent("#chat-error")) ?? "") !== "", "the refusal is explained");
});

scenario("a member made moderator gets a new session cookie, and the old token stops working", [ROOM], async () => {
  const cookieOf = async (user) => (await user.context.cookies()).find((cookie) => cookie.name.endsWith("xiaowo_session"))?.value;
  const before = await cookieOf(state.bob);
  assert(before, "Bob has a session cookie");
  await state.alice.page.click("[data-tab=people]");
  await state.alice.page.click("#members li:has-text('Bob 小窝') .menu-toggle");
  await state.alice.page.click("#members li:has-text('Bob 小窝') [data-action=make-moderator]");
  // The client rotates before it shows the new role.
  await state.bob.page.waitForFunction(() => document.getElementById("my-role")?.dataset.role === "moderator");
  const after = await cookieOf(state.bob);
  assert(after && after !== before, "Bob's session cookie was replaced");
  // A cookie-less client of its own that, like the pages, accepts the split stack's self-signed certificate.
  const api = await apiRequest.newContext({ ignoreHTTPSErrors: true });
  let status;
  try {
    const old = await api.post(`${state.base}/xiaowo.session.v1.SessionService/GetSession`, {
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${before}` },
      data: Buffer.alloc(5),
    });
    const body = (await old.body()).toString("latin1");
    status = old.headers()["grpc-status"] ?? /grpc-status:\s*(\d+)/i.exec(body)?.[1];
  } finally {
    await api.dispose();
  }
  assert(status === "16", `the old token is refused as UNAUTHENTICATED (grpc-status ${status})`);
  // The new cookie carries on: a reload finds Bob, still a moderator.
  await state.bob.page.reload();
  await state.bob.page.waitForFunction(() => document.getElementById("my-role")?.dataset.role === "moderator");
});

scenario("no console errors on either page", [], async () => {
  assert(state.consoleErrors.length === 0, state.consoleErrors.join("\n"));
});

// ---------------------------------------------------------------------------------------------

async function main() {
  let passed = 0;
  let failed = 0;
  // Only this suite's own screenshots: the screens suite keeps its own in artifacts/ui/.
  mkdirSync(artifacts, { recursive: true });
  for (const name of readdirSync(artifacts).filter((file) => file.endsWith(".png"))) {
    rmSync(join(artifacts, name), { force: true });
  }
  try {
    started.tempDir = mkdtempSync(join(tmpdir(), "xiaowo-e2e-"));
    if (externalBase) {
      if (!externalWebDir) {
        throw new Error("E2E_BASE_URL needs E2E_WEB_DIR, the directory that stack serves");
      }
      started.webDir = prepareWebDir(started.tempDir, externalWebDir);
      state.base = externalBase;
      console.log(`testing the running stack at ${state.base}`);
    } else {
      started.webDir = prepareWebDir(started.tempDir);
      state.base = await startServer(started.tempDir, started.webDir);
      console.log(`xiaowo up at ${state.base}`);
    }
    state.alice = await openUser("alice", started.tempDir, state.consoleErrors);
    state.bob = await openUser("bob", started.tempDir, state.consoleErrors);
    const failedNames = new Set();
    for (const { name, needs, run } of scenarios) {
      if (only && !name.includes(only)) {
        continue;
      }
      if (externalBase && name.includes("server restart")) {
        console.log(`skip ${name} (the stack under test is not ours to restart)`);
        continue;
      }
      const began = Date.now();
      try {
        const missing = needs.filter((need) => failedNames.has(need));
        if (missing.length > 0) {
          throw new Error(`not run: needs "${missing.join('", "')}"`);
        }
        await run();
        passed += 1;
        console.log(`ok   ${name} (${Date.now() - began} ms)`);
      } catch (error) {
        failed += 1;
        failedNames.add(name);
        const message = String(error?.message ?? error).replace(/\x1b\[[0-9;]*m/g, "");
        console.log(`FAIL ${name} (${Date.now() - began} ms)\n     ${message.split("\n").slice(0, 12).join("\n     ")}`);
        for (const user of [state.alice, state.bob]) {
          await user.page
            .screenshot({ path: join(artifacts, `failed-${scenarios.findIndex((item) => item.name === name)}-${user.name}.png`), fullPage: true })
            .catch(() => undefined);
        }
      }
    }
  } catch (error) {
    failed += 1;
    console.log(`FAIL set-up\n     ${error?.message ?? error}`);
  } finally {
    await cleanup();
  }
  console.log(`e2e: ${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

await main();
