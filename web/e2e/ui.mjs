// The web client as people see it, in real headless Chromium against a real `xiaowo up`:
//
// * every screen (welcome, lobby, create-room dialog, empty room, share dialog, playing room,
//   room with chat, mute and remove dialogs, password page, removed and closed pages, and the
//   operator console's unlock page and sections) in
//   English and Chinese, light and dark, at 1280×800 and 390×844: axe-core (injected into the
//   page) finds no serious or critical violation, and a screenshot of each goes to
//   web/artifacts/ui/;
// * on a phone the video and the chat's input are in one viewport, with no sideways scroll;
// * the language follows navigator.languages, switches from the top bar and is remembered;
// * the keyboard drives the player (space, arrows) and Esc closes dialogs, whose focus stays in;
// * every error path a person can meet shows a sentence, never a status code or field path.
//
//   node e2e/ui.mjs            (after `npm run build` and `cargo build -p xiaowo`)
//   UI_ONLY=phone              runs only the checks whose name contains "phone"
//
// Ends with "ui: N passed, N failed".

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { changeMedia, createRoom as createRoomByApi, createSession, joinRoom } from "./grpcweb.mjs";
import { ADMIN_TOKEN, axe, createRoom, launchServer, makeTestVideo, openProfile, pickName, prepareWebDir, stopProcess, waitLive, webRoot } from "./stack.mjs";

const artifacts = join(webRoot, "artifacts", "ui");
const only = process.env.UI_ONLY ?? "";
const WAIT_MS = 20_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const WIDTHS = [
  ["desktop", DESKTOP],
  ["phone", PHONE],
];
const SCHEMES = ["light", "dark"];
const LANGUAGES = ["en", "zh"];

const results = [];
const violations = [];
function record(name, ok, detail = "") {
  results.push({ name, ok });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : `\n     ${String(detail).split("\n").slice(0, 16).join("\n     ")}`}`);
}
async function check(name, run) {
  if (only && !name.includes(only)) {
    return;
  }
  try {
    await run();
    record(name, true);
  } catch (error) {
    record(name, false, error?.stack ?? String(error));
  }
}
function assert(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** The words a person must never read: codes, field paths, raw timestamps, English in Chinese. */
function notASentence(text, language) {
  const problems = [];
  if (/\b[A-Z]{3,}_[A-Z_]+\b|\[[a-z_]+\]|grpc|Unix ms|\b[a-z]+_[a-z_]+\b|\d{10,}|status code|undefined|NaN/.test(text)) {
    problems.push("a code, field path or raw number");
  }
  if (!/[.!?。！？…)）]$/.test(text.trim())) {
    problems.push("not a whole sentence");
  }
  if (language === "zh" && !/[\u4e00-\u9fff]/.test(text)) {
    problems.push("no Chinese in the Chinese interface");
  }
  return problems;
}

function assertSentence(text, language, where) {
  const problems = notASentence(text ?? "", language);
  assert(problems.length === 0, `${where}: "${text}" is ${problems.join(", ")}`);
}

/** Waits for a toast and returns its text. */
async function toastText(page, kind = "error") {
  const toast = page.locator(`.toast.${kind}`).last();
  await toast.waitFor();
  const text = (await toast.textContent()) ?? "";
  await page.evaluate(() => document.querySelectorAll(".toast").forEach((node) => node.remove()));
  return text;
}

async function currentLanguage(page) {
  return page.evaluate(() => (document.documentElement.lang.startsWith("zh") ? "zh" : "en"));
}

/** Switches the interface language through the top bar's button. */
async function setLanguage(page, language) {
  if ((await currentLanguage(page)) !== language) {
    await page.click("#lang-switch");
    await page.waitForFunction((wanted) => document.documentElement.lang.startsWith(wanted === "zh" ? "zh" : "en"), language);
  }
}

/** Opens the people tab and picks `action` from `name`'s menu; waits for its dialog. */
async function memberAction(page, name, action) {
  await waitLive({ page });
  await page.click("[data-tab=people]");
  await page.click(`#members li:has-text('${name}') .menu-toggle`);
  await page.click(`#members li:has-text('${name}') [data-action=${action}]`);
  await page.waitForSelector(`#${action}-dialog[open]`);
}

/** Waits (a while, not failing) for the player to settle in sync, as a viewer would see it. */
async function settledPlayer(page) {
  await page.waitForSelector('#sync-status[data-state="inSync"]', { timeout: 15_000 }).catch(() => undefined);
}

async function closeDialogs(page) {
  for (let attempt = 0; attempt < 3 && (await page.$("dialog[open]")); attempt += 1) {
    await page.keyboard.press("Escape");
  }
}

/** Lets fonts, layout and transitions settle before a screenshot or an audit. */
async function settle(page) {
  await page.evaluate(() => document.fonts.ready);
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  // Colour transitions after a scheme switch would be audited half-way.
  await page.waitForFunction(() => document.getAnimations().every((animation) => animation.playState !== "running"));
  await page.waitForTimeout(100);
}

/**
 * One screen in every language, width and colour scheme: axe on each, a screenshot of each.
 * `prepare` brings the page to the screen again after a language switch (which re-renders).
 */
async function captureScreen(user, name, prepare = async () => undefined) {
  await check(`screen "${name}": no serious or critical axe violations in en/zh, light/dark, desktop/phone`, async () => {
    const page = user.page;
    const found = [];
    for (const language of LANGUAGES) {
      await closeDialogs(page);
      await page.setViewportSize(DESKTOP);
      await setLanguage(page, language);
      await prepare(language);
      for (const [widthName, viewport] of WIDTHS) {
        await page.setViewportSize(viewport);
        for (const scheme of SCHEMES) {
          await page.emulateMedia({ colorScheme: scheme });
          await settle(page);
          const problems = await axe(page);
          for (const problem of problems) {
            found.push({ screen: name, language, widthName, scheme, ...problem });
          }
          await page.screenshot({ path: join(artifacts, `${name}-${language}-${widthName}-${scheme}.png`) });
        }
      }
      await page.emulateMedia({ colorScheme: "light" });
    }
    await page.setViewportSize(DESKTOP);
    violations.push(...found);
    assert(found.length === 0, found.map((item) => `${item.language}/${item.widthName}/${item.scheme} ${item.id} (${item.impact}): ${item.help}\n  ${item.nodes.join("\n  ")}`).join("\n"));
  });
}

// ---------------------------------------------------------------------------------------------

const tempDir = mkdtempSync(join(tmpdir(), "xiaowo-ui-"));
let server;
const contexts = [];
const consoleErrors = [];
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

async function openUser(name, locale) {
  const { context, page } = await openProfile(name, tempDir, { viewport: DESKTOP, locale });
  contexts.push(context);
  page.setDefaultTimeout(WAIT_MS);
  page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error") {
      consoleErrors.push(`${name}: ${message.text()}`);
    }
  });
  page.on("dialog", (dialog) => {
    consoleErrors.push(`${name}: a browser dialog "${dialog.message()}" (the client has its own)`);
    void dialog.dismiss();
  });
  return { name, context, page };
}

try {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  const webDir = prepareWebDir(tempDir);
  makeTestVideo(join(webDir, "fixtures", "test.webm"), 60);
  const launched = launchServer(tempDir, webDir);
  server = launched.server;
  const base = await launched.base;
  console.log(`xiaowo up at ${base}`);

  // Alice's browser prefers English, Bao's Chinese.
  const alice = await openUser("alice", "en-US");
  const bao = await openUser("bao", "zh-CN");

  await check("the language follows navigator.languages", async () => {
    await alice.page.goto(base);
    await bao.page.goto(base);
    await alice.page.waitForSelector("#name-form");
    await bao.page.waitForSelector("#name-form");
    assert((await alice.page.getAttribute("html", "lang")) === "en", "an English browser gets English");
    assert((await bao.page.getAttribute("html", "lang")) === "zh-CN", "a Chinese browser gets Chinese");
    const title = await bao.page.textContent("#welcome-title");
    assert(/[\u4e00-\u9fff]/.test(title ?? ""), `the welcome title is Chinese: ${title}`);
  });

  await captureScreen(alice, "welcome");

  await check("an empty name is refused with a sentence", async () => {
    await setLanguage(alice.page, "zh");
    await alice.page.fill("#display-name", "   ");
    await alice.page.click("#name-form button[type=submit]");
    await alice.page.waitForFunction(() => (document.getElementById("name-error")?.textContent ?? "") !== "");
    assertSentence(await alice.page.textContent("#name-error"), "zh", "empty display name");
    await setLanguage(alice.page, "en");
  });

  await pickName(alice, base, "Alice");
  await pickName(bao, base, "宝宝");

  await check("the language switch changes every word, and is remembered", async () => {
    const page = alice.page;
    await page.waitForSelector("#lobby-title");
    const english = await page.textContent("#lobby-title");
    await page.click("#lang-switch");
    await page.waitForFunction(() => document.documentElement.lang === "zh-CN");
    const chinese = await page.textContent("#lobby-title");
    assert(english !== chinese && /[\u4e00-\u9fff]/.test(chinese ?? ""), `the title changed to Chinese: ${english} → ${chinese}`);
    // No English word left on the page but people's own names.
    const leftover = await page.evaluate(() => {
      const texts = [];
      const walker = document.createTreeWalker(document.getElementById("app"), NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.trim();
        if (text && /[A-Za-z]{3,}/.test(text) && !node.parentElement.closest("[lang=en], #my-name, .room-card-name, .room-card-description, .room-thumb-title")) {
          texts.push(text);
        }
      }
      return texts;
    });
    assert(leftover.length === 0, `English words left after switching: ${JSON.stringify(leftover)}`);
    await page.reload();
    await page.waitForSelector("#lobby-title");
    assert((await page.getAttribute("html", "lang")) === "zh-CN", "the choice survives a reload");
    await page.click("#lang-switch");
    await page.waitForFunction(() => document.documentElement.lang === "en");
  });

  await captureScreen(alice, "lobby-empty", async () => {
    await alice.page.waitForSelector("#public-rooms .empty-state");
  });

  await captureScreen(alice, "create-room-dialog", async () => {
    await alice.page.click("#open-create-room");
    await alice.page.waitForSelector("#create-room-dialog[open]");
  });

  await check("dialogs keep focus inside, and Esc closes them", async () => {
    const page = alice.page;
    await closeDialogs(page);
    await page.click("#open-create-room");
    await page.waitForSelector("#create-room-dialog[open]");
    assert(await page.evaluate(() => document.activeElement?.id === "room-name"), "focus starts in the first field");
    for (let press = 0; press < 14; press += 1) {
      await page.keyboard.press("Tab");
      const inside = await page.evaluate(() => Boolean(document.activeElement?.closest("#create-room-dialog")));
      assert(inside, `Tab number ${press + 1} left the dialog`);
    }
    await page.keyboard.press("Shift+Tab");
    assert(await page.evaluate(() => Boolean(document.activeElement?.closest("#create-room-dialog"))), "Shift+Tab stays inside");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#create-room-dialog", { state: "detached" });
    assert(await page.evaluate(() => document.activeElement?.id === "open-create-room"), "focus returns to the button that opened the dialog");
  });

  await check("a too-short room password is refused with a sentence, in both languages", async () => {
    const page = alice.page;
    for (const language of LANGUAGES) {
      await closeDialogs(page);
      await setLanguage(page, language);
      await page.click("#open-create-room");
      await page.fill("#room-name", "Short password");
      await page.check("#room-use-password");
      await page.fill("#room-password", "abc");
      await page.click("#create-room-submit");
      await page.waitForFunction(() => (document.getElementById("create-error")?.textContent ?? "") !== "");
      assertSentence(await page.textContent("#create-error"), language, "short password");
      await closeDialogs(page);
    }
    await setLanguage(page, "en");
  });

  const roomPath = await createRoom(alice, { name: "Movie night", description: "Test patterns and popcorn" });
  await waitLive(alice);

  await captureScreen(alice, "room-empty", async () => {
    await waitLive(alice);
    await alice.page.waitForSelector("#add-video");
  });

  await captureScreen(alice, "share-dialog", async () => {
    await waitLive(alice);
    await alice.page.click("#invite");
    await alice.page.waitForSelector("#share-qr svg");
  });

  await check("the share dialog's QR code is drawn", async () => {
    const modules = await alice.page.evaluate(() => document.querySelector("#share-qr path")?.getAttribute("d")?.length ?? 0);
    assert(modules > 500, `a QR code path of ${modules} characters`);
    await closeDialogs(alice.page);
  });

  await check("an unplayable link is refused with a sentence", async () => {
    const page = alice.page;
    await page.fill("#media-url", "ftp://example.com/film.mp4");
    await page.click("#media-play-now");
    assertSentence(await toastText(page), "en", "ftp media URL");
  });

  // Play the test video; Bao joins.
  await alice.page.fill("#media-url", `${base}/fixtures/test.webm`);
  await alice.page.fill("#media-title", "Test pattern");
  await alice.page.click("#media-play-now");
  await alice.page.waitForFunction(() => document.getElementById("video").readyState >= 1);
  await alice.page.waitForSelector("#play-toggle:not([disabled])");
  await alice.page.click("#play-toggle");
  await bao.page.goto(`${base}${roomPath}`);
  await waitLive(bao);
  await bao.page.waitForFunction(() => !document.getElementById("video").paused);

  await check("the keyboard plays, pauses and seeks for those allowed to control", async () => {
    const page = alice.page;
    await page.click("#room-name");
    await page.keyboard.press("Space");
    await page.waitForFunction(() => document.getElementById("play-toggle")?.dataset.action === "play");
    const before = await page.evaluate(() => document.getElementById("video").currentTime);
    await page.keyboard.press("ArrowRight");
    await page.waitForFunction((from) => document.getElementById("video").currentTime > from + 3, before);
    await page.keyboard.press("Space");
    await page.waitForFunction(() => document.getElementById("play-toggle")?.dataset.action === "pause");
  });

  await captureScreen(alice, "room-playing", async () => {
    await waitLive(alice);
    await alice.page.waitForFunction(() => !document.getElementById("video").paused);
    await settledPlayer(alice.page);
  });

  await check("chat in both directions, with a placeholder before the first message", async () => {
    assert(await bao.page.isVisible("#chat-empty"), "the empty chat says so");
    await alice.page.fill("#chat-input", "Can everyone see the clock?");
    await alice.page.press("#chat-input", "Enter");
    await bao.page.waitForSelector("#chat-messages li.message:not(.pending) .text:text-is('Can everyone see the clock?')");
    await bao.page.fill("#chat-input", "看得见！时间一样 👍");
    await bao.page.press("#chat-input", "Enter");
    await alice.page.waitForSelector("#chat-messages li.message:not(.pending) .text:text-is('看得见！时间一样 👍')");
    assert(!(await bao.page.isVisible("#chat-empty")), "the placeholder goes once there are messages");
  });

  await check("messages that arrive while another tab is open are counted on the chat tab", async () => {
    await bao.page.click("[data-tab=people]");
    await alice.page.fill("#chat-input", "Popcorn is ready 🍿");
    await alice.page.press("#chat-input", "Enter");
    await bao.page.waitForFunction(() => document.getElementById("chat-unread")?.textContent === "1");
    await bao.page.click("[data-tab=chat]");
    await bao.page.waitForFunction(() => document.getElementById("chat-unread")?.textContent === "");
  });

  await captureScreen(bao, "room-chat", async () => {
    await waitLive(bao);
    await bao.page.waitForSelector("#chat-messages li.message");
    await settledPlayer(bao.page);
  });

  // The other tabs, with something in them.
  for (const title of ["Opening credits", "第二集：回家"]) {
    await alice.page.click("[data-tab=queue]");
    await alice.page.fill("#media-url", `${base}/fixtures/test.webm`);
    await alice.page.fill("#media-title", title);
    await alice.page.click("#media-add");
    await alice.page.waitForSelector(`#queue .queue-title:text-is('${title}')`);
  }
  for (const tab of ["queue", "people", "settings"]) {
    await captureScreen(alice, `room-${tab}`, async () => {
      await waitLive(alice);
      await alice.page.click(`[data-tab=${tab}]`);
      if (tab === "settings") {
        await alice.page.click("#advanced-sync summary");
      }
    });
  }
  await captureScreen(bao, "room-settings-member", async () => {
    await waitLive(bao);
    await bao.page.click("[data-tab=settings]");
  });

  await check("theater mode puts the chat over a full-width video, and is remembered", async () => {
    const page = alice.page;
    await page.click("[data-tab=chat]");
    await page.click("#theater-toggle");
    await page.waitForSelector("#room.theater #chat-overlay #chat-input");
    const widths = await page.evaluate(() => ({ screen: document.querySelector(".screen").getBoundingClientRect().width, page: innerWidth }));
    assert(widths.screen >= widths.page - 1, `the video spans the page: ${JSON.stringify(widths)}`);
    await page.reload();
    await waitLive(alice);
    await page.waitForSelector("#room.theater #chat-overlay #chat-input");
  });
  await captureScreen(alice, "room-theater", async () => {
    await waitLive(alice);
    await alice.page.waitForSelector("#room.theater #chat-overlay #chat-input");
  });
  await check("theater mode can be left with the keyboard (t)", async () => {
    await alice.page.click("#room-name");
    await alice.page.keyboard.press("t");
    await alice.page.waitForSelector("#room:not(.theater)");
    assert(await alice.page.isVisible("#panel-chat #chat-input"), "the chat is back in its tab");
  });

  await check("phone: the video and the chat's input are both in one viewport, with no sideways scroll", async () => {
    for (const user of [alice, bao]) {
      const page = user.page;
      await page.click("[data-tab=chat]");
      await page.setViewportSize(PHONE);
      await settle(page);
      const layout = await page.evaluate(() => {
        const box = (selector) => {
          const rect = document.querySelector(selector).getBoundingClientRect();
          return { top: rect.top, bottom: rect.bottom, left: rect.left, right: rect.right, height: rect.height };
        };
        return { video: box("#video"), input: box("#chat-input"), send: box("#chat-send"), height: innerHeight, width: innerWidth, scrollWidth: document.documentElement.scrollWidth, scrollY };
      });
      assert(layout.scrollWidth <= layout.width + 1, `${user.name}: the page scrolls sideways (${layout.scrollWidth} > ${layout.width})`);
      assert(layout.video.top >= 0 && layout.video.bottom <= layout.height && layout.video.height > 150, `${user.name}: the video is not fully in view: ${JSON.stringify(layout.video)}`);
      assert(layout.input.top >= 0 && layout.input.bottom <= layout.height, `${user.name}: the chat input is not in view: ${JSON.stringify(layout.input)}`);
      assert(layout.send.right <= layout.width, `${user.name}: the send button is cut off`);
      // The input sits in the lower half, where a thumb reaches it.
      assert(layout.input.top > layout.height / 2, `${user.name}: the chat input is out of thumb reach at ${layout.input.top}px`);
      await page.setViewportSize(DESKTOP);
    }
  });

  await check("a member who may not control is told why, in a sentence", async () => {
    await alice.page.click("[data-tab=settings]");
    await alice.page.selectOption("#settings-control", "3");
    await alice.page.click("#settings-save");
    await bao.page.waitForFunction(() => document.getElementById("play-toggle")?.disabled === true);
    assertSentence(await bao.page.textContent("#control-reason"), "zh", "control reason");
    await bao.page.click("#room-name");
    await bao.page.keyboard.press("Space");
    assertSentence(await toastText(bao.page), "zh", "space without control");
    await alice.page.selectOption("#settings-control", "1");
    await alice.page.click("#settings-save");
    await bao.page.waitForFunction(() => document.getElementById("play-toggle")?.disabled === false);
  });

  await check("the sync indicator says in sync, with the offset and its uncertainty in its tooltip and under Advanced", async () => {
    await bao.page.waitForFunction(() => document.getElementById("sync-status")?.dataset.state === "inSync", null, { timeout: 30_000 });
    const title = await bao.page.getAttribute("#sync-status", "title");
    assert(/± \d+ 毫秒/.test(title ?? ""), `tooltip: ${title}`);
    const line = await bao.page.textContent("#sync-offset");
    assert(/± \d+ 毫秒/.test(line ?? ""), `the offset under Advanced: ${line}`);
    const advanced = await bao.page.$("#advanced-sync");
    assert(advanced && !(await advanced.evaluate((node) => node.open)), "the sync settings are behind a closed disclosure");
  });

  await captureScreen(alice, "mute-dialog", () => memberAction(alice.page, "宝宝", "mute"));

  await check("a muted member reads until when, in their own words", async () => {
    await closeDialogs(alice.page);
    await setLanguage(alice.page, "en");
    await memberAction(alice.page, "宝宝", "mute");
    await alice.page.click("#mute-confirm");
    const done = await toastText(alice.page, "info");
    // The time alone, or with its date when the mute ends on another day (after midnight).
    const until = /until ([A-Z][a-z]{2} \d{1,2}, )?\d{1,2}:\d{2}/;
    assert(until.test(done) && /10 minutes/.test(done), `the moderator reads how long and until when: ${done}`);
    await bao.page.click("[data-tab=chat]");
    await bao.page.fill("#chat-input", "我被禁言了吗？");
    await bao.page.press("#chat-input", "Enter");
    await bao.page.waitForFunction(() => (document.getElementById("chat-error")?.textContent ?? "") !== "");
    const text = await bao.page.textContent("#chat-error");
    assertSentence(text, "zh", "muted");
    assert(/\d{1,2}:\d{2}/.test(text ?? "") && /分钟/.test(text ?? ""), `the mute says until when and how long: ${text}`);
  });

  await captureScreen(alice, "remove-dialog", () => memberAction(alice.page, "宝宝", "kick"));

  await check("removing someone asks first, and they see a page that says so", async () => {
    await closeDialogs(alice.page);
    await setLanguage(alice.page, "en");
    await memberAction(alice.page, "宝宝", "kick");
    assert(await alice.page.evaluate(() => document.activeElement?.dataset.action === "cancel"), "the safe choice has the focus");
    await alice.page.click("#kick-dialog [data-action=confirm]");
    await bao.page.waitForSelector("#room-gone[data-reason=kicked]");
  });

  await captureScreen(bao, "removed-page", async () => {
    await bao.page.goto(`${base}${roomPath}`);
    await bao.page.waitForSelector("#room-gone");
  });

  await check("joining again too soon says when, in a sentence", async () => {
    await setLanguage(bao.page, "zh");
    await bao.page.goto(`${base}${roomPath}`);
    await bao.page.waitForSelector("#room-gone");
    const text = await bao.page.textContent("#room-error");
    assertSentence(text, "zh", "rejoin after kick");
    assert(/分钟|秒/.test(text ?? ""), `says how long: ${text}`);
  });

  await check("an unknown room link shows a sentence", async () => {
    await bao.page.goto(`${base}/room/00000000-0000-4000-8000-000000000000`);
    await bao.page.waitForSelector("#room-gone[data-reason=notFound]");
    assertSentence(await bao.page.textContent("#room-error"), "zh", "unknown room");
  });

  // A password room: the password page and a wrong password.
  await alice.page.click("a.brand");
  const secretPath = await createRoom(alice, { name: "Secret den", unlisted: true, password: "correct horse" });
  await captureScreen(bao, "password-page", async () => {
    await bao.page.goto(`${base}${secretPath}`);
    await bao.page.waitForSelector("#join-form");
  });

  await check("a wrong password is refused with a sentence", async () => {
    for (const language of LANGUAGES) {
      await setLanguage(bao.page, language);
      await bao.page.waitForSelector("#join-form");
      await bao.page.fill("#join-password", "wrong horse!");
      await bao.page.click("#join-form button[type=submit]");
      await bao.page.waitForFunction(() => (document.getElementById("join-error")?.textContent ?? "") !== "");
      assertSentence(await bao.page.textContent("#join-error"), language, "wrong password");
      await bao.page.goto(`${base}${secretPath}`);
    }
    await bao.page.fill("#join-password", "correct horse");
    await bao.page.click("#join-form button[type=submit]");
    await waitLive(bao);
  });

  await captureScreen(alice, "close-dialog", async () => {
    await waitLive(alice);
    await alice.page.click("[data-tab=settings]");
    await alice.page.click("#close-room");
    await alice.page.waitForSelector("#close-dialog[open]");
  });

  await check("closing the room asks first, and everyone in it sees a page that says so", async () => {
    await closeDialogs(alice.page);
    await waitLive(alice);
    await alice.page.click("[data-tab=settings]");
    await alice.page.click("#close-room");
    await alice.page.click("#close-dialog [data-action=confirm]");
    await alice.page.waitForSelector("#lobby-title");
    await bao.page.waitForSelector("#room-gone[data-reason=closed]");
  });

  await captureScreen(bao, "closed-page", async () => {
    await bao.page.goto(`${base}${secretPath}`);
    await bao.page.waitForSelector("#room-gone");
  });

  // A lobby with rooms of others: public ones, one with a password, two that Alice is in.
  const mei = await createSession(base, "Mei");
  const jun = await createSession(base, "Jun");
  const aliceToken = (await alice.context.cookies()).find((cookie) => cookie.name.endsWith("xiaowo_session"))?.value;
  const seeded = [
    [mei, "周五电影夜", "一起看《千与千寻》，八点开始", {}, "千与千寻"],
    [jun, "Anime club", "Two episodes every Sunday", { password: "letmein123" }, ""],
    [mei, "Lo-fi & study", "Quiet music, cameras off, good vibes", {}, "Lo-fi beats to study to"],
    [jun, "学习打卡", "", {}, ""],
    [jun, "Nature documentaries", "Planet Earth, one episode a night", {}, ""],
  ];
  for (const [token, name, description, options, title] of seeded) {
    const roomId = await createRoomByApi(base, token, name, description, options);
    if (title) {
      await changeMedia(base, token, roomId, `${base}/fixtures/test.webm`, title);
      await joinRoom(base, aliceToken, roomId);
    }
  }

  await captureScreen(alice, "lobby", async () => {
    await alice.page.goto(base);
    await alice.page.waitForSelector("#public-rooms a.room-card");
  });

  // The operator console (/admin): locked, then each section once unlocked.
  const operator = await openUser("operator", "en-US");
  await operator.page.goto(`${base}/admin`);
  await captureScreen(operator, "admin-unlock", () => operator.page.waitForSelector("#admin-token"));
  await operator.page.fill("#admin-token", ADMIN_TOKEN);
  await operator.page.click("#admin-unlock");
  await operator.page.waitForSelector("#admin-console");
  for (const section of ["overview", "alerts", "sessions", "rooms", "audit"]) {
    await captureScreen(operator, `admin-${section}`, async () => {
      await operator.page.click(`#tab-${section}`);
      await operator.page.waitForSelector(`#panel-${section} .admin-row, #panel-${section} .admin-empty:not([hidden]), #panel-${section} .admin-chart`);
    });
  }

  await check("no console errors and no browser dialogs", async () => {
    assert(consoleErrors.length === 0, consoleErrors.join("\n"));
  });
} catch (error) {
  record("the UI run completed", false, error?.stack ?? String(error));
} finally {
  await cleanup();
}

const passed = results.filter((result) => result.ok).length;
const failed = results.length - passed;
console.log(`screenshots: web/artifacts/ui/ (${violations.length} serious or critical axe findings)`);
console.log(`ui: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
