// XSS corpus end to end: every payload in e2e/xss-payloads.txt goes in, through the real
// services, as a room name, a room description, a display name, a chat message and a queue
// item title, and is then rendered by the real web client in headless Chromium. Nothing may
// execute: the page carries hooks for __xss(), alert(), confirm(), prompt() and print(), a
// `securitypolicyviolation` listener, and the test watches dialogs, page errors and requests
// to other origins; any of them fails the run. Each accepted payload must also be visible as
// text, so a client that stopped rendering them could not pass. The served CSP header is
// checked too.
//
//   node e2e/xss.mjs            (after `npm run build` and `cargo build -p xiaowo`)
//   XSS_GROUP_SIZE=40           payloads per room (the client shows 50 messages and rooms)
//
// Ends with "xss: N passed, N failed" (one check per payload group and per page-level check).

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { call, createRoom, createSession, encode, field, INVALID_ARGUMENT, OK } from "./grpcweb.mjs";
import { installXssHooks, launchServer, openProfile, pickName, prepareWebDir, stopProcess, waitLive, webRoot } from "./stack.mjs";

const GROUP_SIZE = Number(process.env.XSS_GROUP_SIZE ?? 40);
const WAIT_MS = 20_000;
/** Limits the services enforce (characters after trimming); longer payloads go in cut. */
const LIMITS = { displayName: 32, roomName: 64, description: 500, chat: 1000, title: 200 };

const payloads = readFileSync(join(webRoot, "e2e", "xss-payloads.txt"), "utf8")
  .split("\n")
  .filter((line) => line.length > 0 && !line.startsWith("# "));

/** The first `limit` characters, trimmed (as the services store it). */
function cut(value, limit) {
  return [...value.trim()].slice(0, limit).join("").trim();
}

// ---------------------------------------------------------------------------------------------
// The run

const results = [];
function check(name, ok, detail = "") {
  results.push({ name, ok });
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : `\n     ${detail}`}`);
}

const tempDir = mkdtempSync(join(tmpdir(), "xiaowo-xss-"));
let server;
let context;
try {
  // Hundreds of sessions, rooms, messages and queue items from one address in a few seconds.
  Object.assign(process.env, {
    XIAOWO_SESSION_CREATE_BURST: "2000",
    XIAOWO_ROOM_CREATES_PER_CALLER: "0",
    XIAOWO_ROOM_CREATES_PER_ADDRESS: "0",
    XIAOWO_ROOM_MAX_OPEN_PER_OWNER: "0",
    XIAOWO_CHAT_FLOOD_BURST: "2000",
    XIAOWO_SYNC_COMMAND_BURST: "2000",
  });
  const webDir = prepareWebDir(tempDir);
  const launched = launchServer(tempDir, webDir);
  server = launched.server;
  const base = await launched.base;

  // The served page's headers.
  const page = await fetch(`${base}/`);
  const policy = page.headers.get("content-security-policy") ?? "";
  const directive = (name) => policy.split(";").map((part) => part.trim()).find((part) => part.startsWith(`${name} `));
  check(
    "the page is served with a CSP that allows only its own scripts",
    directive("script-src") === "script-src 'self'" && directive("object-src") === "object-src 'none'" && !/unsafe-(inline|eval)/.test(policy),
    `Content-Security-Policy: ${policy}`,
  );

  // A javascript: or data: media URL never reaches a player.
  const owner = await createSession(base, "Owner");
  const probeRoom = await createRoom(base, owner, "probe", "");
  const refusedUrls = [];
  for (const url of ["javascript:__xss(1)", "data:text/html,<script>__xss(2)</script>", "JAVASCRIPT:__xss(3)", " javascript:__xss(4)"]) {
    const body = encode(field(1, probeRoom), field(2, 0), field(3, url), field(4, "x"), field(5, 60_000));
    const { code } = await call(base, "/xiaowo.sync.v1.SyncService/ChangeMedia", body, owner);
    refusedUrls.push(code === INVALID_ARGUMENT);
  }
  check("javascript: and data: media URLs are refused by sync-svc", refusedUrls.every(Boolean), JSON.stringify(refusedUrls));

  // The browser: hooks first, so that anything a payload runs is recorded.
  ({ context } = await openProfile("xss", tempDir));
  await installXssHooks(context);
  const user = { page: context.pages()[0] ?? (await context.newPage()) };
  user.page.setDefaultTimeout(WAIT_MS);
  const sideEffects = [];
  user.page.on("dialog", (dialog) => {
    sideEffects.push(`dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });
  user.page.on("pageerror", (error) => sideEffects.push(`page error: ${error.message}`));
  user.page.on("request", (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith("data:")) {
      sideEffects.push(`request to ${request.url()}`);
    }
  });
  await pickName(user, base, "Viewer");

  /** Everything a payload could have done on the page so far; empties the page's list. */
  const executed = async () => {
    const hits = await user.page.evaluate(() => window.__xssHits.splice(0));
    return [...hits, ...sideEffects.splice(0)];
  };
  /** Markup that only an injected payload could have created inside the app. */
  const injectedElements = () =>
    user.page.evaluate(() => {
      const app = document.getElementById("app");
      const suspicious = app.querySelectorAll("script, iframe, object, embed, base, meta, link, style, svg, math, img, portal, template, marquee, details:not(#advanced-sync), dialog, isindex, xmp");
      const handlers = [...app.querySelectorAll("*")].filter((element) => [...element.attributes].some((attribute) => attribute.name.startsWith("on")));
      return [...suspicious, ...handlers].map((element) => element.outerHTML.slice(0, 120));
    });

  // The detector itself: markup injected the way a broken client would inject it is caught
  // (CSP blocks the inline handler and reports it), so a quiet run below means something.
  await user.page.evaluate(() => {
    const probe = document.createElement("div");
    probe.id = "xss-probe";
    probe.innerHTML = '<img src="data:," onerror="__xss(0)">';
    document.body.append(probe);
  });
  await user.page.waitForTimeout(500);
  const probeHits = await executed();
  await user.page.evaluate(() => document.getElementById("xss-probe")?.remove());
  check("the detector catches markup injected into the page", probeHits.length > 0, "no hook fired for an injected onerror handler");

  for (let start = 0; start < payloads.length; start += GROUP_SIZE) {
    const group = payloads.slice(start, start + GROUP_SIZE);
    const label = `payloads ${start + 1}–${start + group.length}`;
    // Seed: one room per payload (name and description), one session per payload (display
    // name) that joins the group's room and says the payload, and a queue item titled with it.
    const expected = { rooms: [], descriptions: [], names: [], messages: [], titles: [] };
    const hostRoom = await createRoom(base, owner, `group ${start / GROUP_SIZE + 1}`, "");
    let refused = 0;
    for (const [offset, payload] of group.entries()) {
      const roomName = cut(payload, LIMITS.roomName);
      const description = cut(payload, LIMITS.description);
      if (await createRoom(base, owner, roomName, description)) {
        expected.rooms.push(roomName);
        expected.descriptions.push(description);
      } else {
        refused += 1;
      }
      let displayName = cut(payload, LIMITS.displayName);
      let token = await createSession(base, displayName);
      if (!token) {
        refused += 1;
        displayName = `refused ${start + offset}`;
        token = await createSession(base, displayName);
      }
      if (!token) {
        throw new Error("could not create a session");
      }
      expected.names.push(displayName);
      const joined = await call(base, "/xiaowo.room.v1.RoomService/JoinRoom", encode(field(1, hostRoom)), token);
      if (joined.code !== OK) {
        throw new Error(`join failed: ${joined.code}`);
      }
      const message = cut(payload, LIMITS.chat);
      const sent = await call(base, "/xiaowo.chat.v1.ChatService/SendMessage", encode(field(1, hostRoom), field(2, message), field(3, `m${start + offset}`)), token);
      if (sent.code === OK) {
        expected.messages.push(message);
      }
      const title = cut(payload, LIMITS.title);
      const queued = await call(
        base,
        "/xiaowo.sync.v1.SyncService/AddQueueItem",
        encode(field(1, hostRoom), field(3, `${base}/fixtures/none-${start + offset}.webm`), field(4, title), field(5, 60_000)),
        owner,
      );
      if (queued.code === OK) {
        expected.titles.push(title);
      }
    }
    // Render: the lobby (rooms with descriptions), then the group's room (members, chat, queue).
    await user.page.goto(base);
    await user.page.waitForFunction((count) => document.querySelectorAll("#public-rooms li").length >= count, expected.rooms.length);
    const lobby = await user.page.evaluate(() => document.getElementById("public-rooms").textContent);
    const missingRooms = [...expected.rooms, ...expected.descriptions].filter((value) => !lobby.includes(value));
    await user.page.goto(`${base}/room/${hostRoom}`);
    await waitLive(user);
    await user.page.waitForFunction((count) => document.querySelectorAll("#chat-messages li").length >= count, expected.messages.length);
    await user.page.waitForFunction((count) => document.querySelectorAll("#members li").length >= count, expected.names.length);
    await user.page.waitForFunction((count) => document.querySelectorAll("#queue li").length >= count, expected.titles.length);
    const room = await user.page.evaluate(() => ({
      chat: document.getElementById("chat-messages").textContent,
      members: document.getElementById("members").textContent,
      queue: document.getElementById("queue").textContent,
    }));
    // Give timers, animations and lazy loads a moment to fire if anything was injected.
    await user.page.waitForTimeout(500);
    const missing = [
      ...missingRooms.map((value) => `lobby: ${value}`),
      ...expected.messages.filter((value) => !room.chat.includes(value)).map((value) => `chat: ${value}`),
      ...expected.names.filter((value) => !room.members.includes(value)).map((value) => `members: ${value}`),
      ...expected.titles.filter((value) => !room.queue.includes(value)).map((value) => `queue: ${value}`),
    ];
    const ran = await executed();
    const injected = await injectedElements();
    check(
      `${label}: rendered as text (${expected.rooms.length} rooms, ${expected.messages.length} messages, ${expected.names.length} names, ${expected.titles.length} titles; ${refused} refused by the services), nothing ran`,
      ran.length === 0 && injected.length === 0 && missing.length === 0,
      JSON.stringify({ ran, injected, missing: missing.slice(0, 5), missingCount: missing.length }),
    );
  }
  await user.page.screenshot({ path: join(webRoot, "artifacts", "xss-room.png"), fullPage: true });
} catch (error) {
  check("the XSS run completed", false, error.stack ?? String(error));
} finally {
  await context?.close().catch(() => undefined);
  await stopProcess(server);
  rmSync(tempDir, { recursive: true, force: true });
}

const passed = results.filter((result) => result.ok).length;
const failed = results.length - passed;
console.log(`xss: ${passed} passed, ${failed} failed (${payloads.length} payloads)`);
process.exit(failed === 0 ? 0 : 1);
