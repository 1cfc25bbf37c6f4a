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

import { launchServer, openProfile, pickName, prepareWebDir, stopProcess, waitLive, webRoot } from "./stack.mjs";

const GROUP_SIZE = Number(process.env.XSS_GROUP_SIZE ?? 40);
const WAIT_MS = 20_000;
/** Limits the services enforce (characters after trimming); longer payloads go in cut. */
const LIMITS = { displayName: 32, roomName: 64, description: 500, chat: 1000, title: 200 };

const payloads = readFileSync(join(webRoot, "e2e", "xss-payloads.txt"), "utf8")
  .split("\n")
  .filter((line) => line.length > 0 && !line.startsWith("# "));

// ---------------------------------------------------------------------------------------------
// A minimal gRPC-web client (protobuf by hand: strings, varints and nested messages suffice),
// so that seeding hundreds of rows does not go through the page.

function varint(value) {
  const out = [];
  let rest = value;
  while (rest > 127) {
    out.push((rest % 128) | 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** One field: a string or bytes (length-delimited) or a number (varint). */
function field(number, value) {
  if (typeof value === "number") {
    return [...varint(number * 8), ...varint(value)];
  }
  const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
  return [...varint(number * 8 + 2), ...varint(bytes.length), ...bytes];
}

function encode(...fields) {
  return Uint8Array.from(fields.flat());
}

function readVarint(bytes, start) {
  let value = 0;
  let scale = 1;
  let index = start;
  for (;;) {
    const byte = bytes[index++];
    value += (byte & 127) * scale;
    scale *= 128;
    if (byte < 128) {
      return [value, index];
    }
  }
}

/** Field number → values (numbers or byte arrays). */
function decode(bytes) {
  const fields = new Map();
  let index = 0;
  while (index < bytes.length) {
    const [key, next] = readVarint(bytes, index);
    index = next;
    let value;
    switch (key % 8) {
      case 0:
        [value, index] = readVarint(bytes, index);
        break;
      case 2: {
        let length;
        [length, index] = readVarint(bytes, index);
        value = bytes.subarray(index, index + length);
        index += length;
        break;
      }
      case 1:
        value = bytes.subarray(index, index + 8);
        index += 8;
        break;
      case 5:
        value = bytes.subarray(index, index + 4);
        index += 4;
        break;
      default:
        throw new Error(`wire type ${key % 8}`);
    }
    const number = Math.floor(key / 8);
    fields.set(number, [...(fields.get(number) ?? []), value]);
  }
  return fields;
}

const text = (bytes) => new TextDecoder().decode(bytes);

/** One unary gRPC-web call: the grpc-status and the response message's bytes. */
async function call(base, path, body, token) {
  const frame = new Uint8Array(5 + body.length);
  new DataView(frame.buffer).setUint32(1, body.length);
  frame.set(body, 5);
  const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" };
  if (token) {
    headers.authorization = `Bearer ${token}`;
  }
  const response = await fetch(`${base}${path}`, { method: "POST", headers, body: frame });
  const bytes = new Uint8Array(await response.arrayBuffer());
  let status = response.headers.get("grpc-status");
  let data = new Uint8Array();
  for (let index = 0; index + 5 <= bytes.length; ) {
    const length = new DataView(bytes.buffer, bytes.byteOffset + index + 1, 4).getUint32(0);
    const payload = bytes.subarray(index + 5, index + 5 + length);
    if (bytes[index] & 0x80) {
      status = /grpc-status:\s*(\d+)/i.exec(text(payload))?.[1] ?? status;
    } else {
      data = payload;
    }
    index += 5 + length;
  }
  return { code: Number(status ?? -1), data };
}

const OK = 0;
const INVALID_ARGUMENT = 3;

async function createSession(base, displayName) {
  const { code, data } = await call(base, "/xiaowo.session.v1.SessionService/CreateSession", encode(field(1, displayName)));
  return code === OK ? text(decode(data).get(2)[0]) : undefined;
}

async function createRoom(base, token, name, description) {
  const body = encode(field(1, name), field(2, description));
  const { code, data } = await call(base, "/xiaowo.room.v1.RoomService/CreateRoom", body, token);
  return code === OK ? text(decode(decode(data).get(1)[0]).get(1)[0]) : undefined;
}

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
  // Hundreds of sessions, messages and queue items from one address in a few seconds.
  Object.assign(process.env, {
    XIAOWO_SESSION_CREATE_BURST: "2000",
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
      const suspicious = app.querySelectorAll("script, iframe, object, embed, base, meta, link, style, svg, math, img, portal, template, marquee, details:not(#room-settings), dialog, isindex, xmp");
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
