// Subtitles end to end, in real headless Chromium against a real `xiaowo up` whose media folder
// holds a 60 s H.264/AAC MP4 and an MKV with a SubRip stream (both made by ffmpeg):
//
// * the room's owner adds a GB18030 SRT with Chinese text through the player's menu; an
//   operator adds an English WebVTT; a video file offered as subtitles is refused in words;
// * with the same track chosen, owner and viewer see the same cue text at the same timeline
//   position (video.textTracks[…].activeCues) at several positions after the owner's seeks, paused
//   and playing;
// * each viewer's choice is their own (one the VTT, the other the SRT) and survives a reload;
// * the owner's room default is what a new viewer starts with;
// * the MKV's embedded subtitle stream is extracted and can be chosen (its cues load);
// * the XSS corpus as cue text (an SRT of 240 cues, shown in groups) runs nothing: the hooks of
//   e2e/xss.mjs (__xss, alert, confirm, prompt, print, CSP violations, dialogs, page errors,
//   requests elsewhere) stay silent, the served WebVTT holds no tag but the kept ones, and each
//   payload is shown as the text it is;
// * screenshots of the player with a Chinese cue and the menu open, 1280×800 and 390×844, in
//   English and Chinese, go to web/artifacts/subtitles/, and axe-core finds nothing serious or
//   critical on the open menu and the "Add subtitles" dialog.
//
//   node e2e/subtitles.mjs      (after `npm run build` and `cargo build -p xiaowo`)
//
// Ends with "subtitles: N passed, N failed".

import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { call, decode, encode, field, OK, text } from "./grpcweb.mjs";
import { ADMIN_TOKEN, axe, createRoom, installXssHooks, launchServer, makeTestMp4, openProfile, pickName, prepareWebDir, stopProcess, waitLive, webRoot } from "./stack.mjs";

const artifacts = join(webRoot, "artifacts", "subtitles");
const WAIT_MS = 30_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** The cues of both tracks: one per 10 s, 2 s in, 8 s long. */
const CHINESE = ["第一句：你好，世界。", "第二句：我们一起看电影吧！", "第三句：字幕和画面同步。", "第四句：跳到这里也一样。", "第五句：快结束了。", "第六句：再见！"];
const ENGLISH = ["Line one: hello.", "Line two: let's watch.", "Line three: in step.", "Line four: after a seek.", "Line five: nearly done.", "Line six: goodbye."];
const cueWindow = (index) => [index * 10 + 2, index * 10 + 9.5];
const clock = (seconds) => {
  const whole = Math.floor(seconds);
  const ms = Math.round((seconds - whole) * 1000);
  return `00:${String(Math.floor(whole / 60)).padStart(2, "0")}:${String(whole % 60).padStart(2, "0")}`.concat(`,${String(ms).padStart(3, "0")}`);
};
const srt = (lines) => lines.map((line, index) => `${index + 1}\r\n${clock(cueWindow(index)[0])} --> ${clock(cueWindow(index)[1])}\r\n${line}\r\n`).join("\r\n");
const vtt = (lines) => `WEBVTT\n\n${lines.map((line, index) => `${clock(cueWindow(index)[0]).replace(",", ".")} --> ${clock(cueWindow(index)[1]).replace(",", ".")}\n${line}\n`).join("\n")}`;

/** The XSS corpus, as cues: group g (40 payloads) is on screen from 10g + 1 s to 10g + 9 s. */
const GROUP = 40;
const payloads = readFileSync(join(webRoot, "e2e", "xss-payloads.txt"), "utf8")
  .split("\n")
  .filter((line) => line.length > 0 && !line.startsWith("# "));
const xssSrt = payloads
  .map((payload, index) => {
    const group = Math.floor(index / GROUP);
    return `${index + 1}\n${clock(group * 10 + 1)} --> ${clock(group * 10 + 9)}\n${payload}\n`;
  })
  .join("\n");

/**
 * What a payload shows as cue text, by the rules media-svc applies to SubRip: `<i>`, `<b>`,
 * `<u>` without attributes are markup, `<font …>` and `{\…}` are dropped, the usual character
 * references decoded, everything else is text.
 */
function shownText(payload) {
  const decoded = payload
    .replace(/\{\\[^}]*\}/g, "")
    .replace(/<\s*\/?\s*(i|b|u)\s*>/gi, "")
    .replace(/<\s*\/?\s*font(\s[^>]*)?>/gi, "")
    .replace(/&(#[xX][0-9a-fA-F]+|#[0-9]+|amp|lt|gt|nbsp|quot|apos|lrm|rlm);/g, (whole, name) => {
      if (whole.length > 11) {
        return whole;
      }
      const named = { amp: "&", lt: "<", gt: ">", nbsp: "\u00a0", quot: '"', apos: "'", lrm: "\u200e", rlm: "\u200f" }[name];
      if (named) {
        return named;
      }
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      if (!(code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff) || (code !== 10 && /\p{Cc}/u.test(String.fromCodePoint(code)))) {
        return whole;
      }
      return String.fromCodePoint(code);
    })
    .replace(/\t/g, " ");
  return decoded.trimEnd();
}

const tempDir = mkdtempSync(join(tmpdir(), "xiaowo-subtitles-"));
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

/** A person in their own browser profile, with the XSS hooks installed before any page runs. */
async function person(name, { locale = "en-US", viewport = DESKTOP } = {}) {
  const { context, page } = await openProfile(name, tempDir, { locale, viewport });
  contexts.push(context);
  page.setDefaultTimeout(WAIT_MS);
  await installXssHooks(context);
  const user = { name, context, page, sideEffects: [] };
  page.on("console", (message) => {
    // The refused subtitle file is a refused call, which Chromium logs.
    if (message.type() === "error" && !message.text().includes("the server responded with a status")) {
      consoleErrors.push(`${name}: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => user.sideEffects.push(`page error: ${error.message}`));
  page.on("dialog", (dialog) => {
    user.sideEffects.push(`dialog: ${dialog.message()}`);
    void dialog.dismiss();
  });
  page.on("request", (request) => {
    if (!request.url().startsWith(base) && !request.url().startsWith("data:") && !request.url().startsWith("blob:")) {
      user.sideEffects.push(`request to ${request.url()}`);
    }
  });
  return user;
}

/** The shown track of a page: its id, the cues on screen now, how many it loaded, the time. */
function cueState(user) {
  return user.page.evaluate(() => {
    const video = document.getElementById("video");
    const showing = [...video.textTracks].filter((track) => track.mode === "showing");
    const element = [...video.querySelectorAll("track")].find((candidate) => candidate.track === showing[0]);
    return {
      showing: showing.length,
      trackId: element?.dataset.trackId ?? "",
      time: video.currentTime,
      cues: showing[0]?.activeCues ? [...showing[0].activeCues].map((cue) => cue.text) : [],
      loaded: showing[0]?.cues?.length ?? 0,
    };
  });
}

/** Waits until the page shows track `trackId` with `expected` on screen at about `position`. */
async function waitForCue(user, trackId, expected, position) {
  try {
    await user.page.waitForFunction(
      ({ trackId, expected, position }) => {
        const video = document.getElementById("video");
        const element = video.querySelector(`track[data-track-id="${trackId}"]`);
        const track = element?.track;
        if (!track || track.mode !== "showing" || video.seeking) {
          return false;
        }
        const near = position === null || Math.abs(video.currentTime - position) < 0.5;
        const shown = [...(track.activeCues ?? [])].map((cue) => cue.text);
        return near && shown.length === 1 && shown[0] === expected;
      },
      { trackId, expected, position },
    );
  } catch (error) {
    throw new Error(`${user.name} did not show "${expected}" at ${position}: ${JSON.stringify(await cueState(user))}\n${error.message}`);
  }
}

async function openMenu(user) {
  if ((await user.page.getAttribute("#subtitle-toggle", "aria-expanded")) !== "true") {
    await user.page.click("#subtitle-toggle");
  }
  await user.page.waitForSelector(".subtitle-panel:not([hidden])");
}

async function closeMenu(user) {
  if ((await user.page.getAttribute("#subtitle-toggle", "aria-expanded")) === "true") {
    await user.page.click("#subtitle-toggle");
  }
}

async function chooseTrack(user, trackId) {
  await openMenu(user);
  await user.page.click(`#subtitle-tracks label[data-track-id="${trackId}"]`);
  await closeMenu(user);
}

async function ownerSeek(seconds) {
  await owner.page.$eval(
    "#seek",
    (input, value) => {
      input.value = String(value);
      input.dispatchEvent(new Event("change"));
    },
    seconds,
  );
}

async function setPaused(user, paused) {
  await user.page.waitForSelector("#play-toggle:not([disabled])");
  const action = await user.page.getAttribute("#play-toggle", "data-action");
  if ((action === "pause") === paused) {
    await user.page.click("#play-toggle");
  }
  await user.page.waitForFunction((wanted) => document.getElementById("play-toggle").getAttribute("data-action") === (wanted ? "play" : "pause"), paused);
}

async function playFromLibrary(user, title) {
  await user.page.click("[data-tab=queue]").catch(() => undefined);
  const row = `#library li[data-media-item-id="${items[title]}"]`;
  await user.page.waitForSelector(row);
  await user.page.click(`${row} button[data-action=play]`);
  await user.page.waitForFunction((expected) => document.getElementById("now-playing")?.textContent === expected, title);
}

/**
 * Queues a library item from the page (with its session cookie) and plays it next: the library
 * offers no button for a file that needs conversion.
 */
async function queueAndPlayNext(user, title) {
  const body = [...encode(field(1, roomPath.split("/").pop()), field(4, title), field(6, items[title]))];
  const status = await user.page.evaluate(async (bytes) => {
    const frame = new Uint8Array(5 + bytes.length);
    new DataView(frame.buffer).setUint32(1, bytes.length);
    frame.set(bytes, 5);
    const response = await fetch("/xiaowo.sync.v1.SyncService/AddQueueItem", {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: frame,
    });
    const text = new TextDecoder().decode(new Uint8Array(await response.arrayBuffer()));
    return response.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/.exec(text)?.[1] ?? "?";
  }, body);
  assert(status === "0", `AddQueueItem: ${status}`);
  await user.page.click("[data-tab=queue]");
  await user.page.waitForSelector("#queue-next:not([disabled])");
  await user.page.click("#queue-next");
  await user.page.waitForFunction((expected) => document.getElementById("now-playing")?.textContent === expected, title);
}

async function executed(user) {
  const hits = await user.page.evaluate(() => window.__xssHits.splice(0));
  return [...hits, ...user.sideEffects.splice(0)];
}

async function adminCall(method, body) {
  return call(base, `/xiaowo.media.v1.MediaAdminService/${method}`, body, ADMIN_TOKEN);
}

/** Adds a track as the operator; its id and cue count. */
async function addTrack(mediaItemId, language, label, content) {
  const { code, data } = await adminCall("AddLibrarySubtitleTrack", encode(field(1, mediaItemId), field(2, language), field(3, label), field(4, content)));
  assert(code === OK, `AddLibrarySubtitleTrack: ${code}`);
  const track = decode(decode(data).get(1)[0]);
  return { trackId: text(track.get(1)[0]), cues: track.get(8)?.[0] ?? 0 };
}

async function settle(page) {
  await page.evaluate(() => document.fonts.ready);
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

let base = "";
let owner;
let viewer;
const items = {};
const tracks = {};
let roomPath = "";

try {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  const webDir = prepareWebDir(tempDir);
  const mediaDir = join(tempDir, "data", "media");
  mkdirSync(mediaDir, { recursive: true });
  makeTestMp4(join(mediaDir, "film.mp4"), 60, "320x180");
  const embedded = join(tempDir, "embedded.srt");
  writeFileSync(embedded, "1\n00:00:00,500 --> 00:00:19,000\n内嵌字幕：来自视频文件\n");
  execFileSync("ffmpeg", [
    "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-i", embedded, "-t", "20",
    "-map", "0:v", "-map", "1:s", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:s", "srt",
    "-metadata:s:s:0", "language=chi", "-metadata:s:s:0", "title=内嵌中文", join(mediaDir, "embedded.mkv"),
  ]);
  const gbFile = join(tempDir, "chinese-gb18030.srt");
  writeFileSync(gbFile, execFileSync("python3", ["-c", "import sys; sys.stdout.buffer.write(sys.stdin.read().encode('gb18030'))"], { input: srt(CHINESE) }));
  const videoAsSubtitles = join(tempDir, "not-subtitles.srt");
  writeFileSync(videoAsSubtitles, readFileSync(join(mediaDir, "embedded.mkv")).subarray(0, 64 * 1024));

  const launched = launchServer(tempDir, webDir);
  server = launched.server;
  base = await launched.base;
  console.log(`xiaowo up at ${base}`);

  // The folder's files are indexed, the MKV's stream extracted.
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline && !(items.film && items.embedded && tracks.embedded)) {
    const { code, data } = await adminCall("ListLibrary", encode());
    if (code === OK) {
      for (const item of decode(data).get(1) ?? []) {
        const fields = decode(item);
        items[text(fields.get(2)[0])] = text(fields.get(1)[0]);
      }
    }
    if (items.embedded) {
      const listed = await adminCall("ListLibrarySubtitleTracks", encode(field(1, items.embedded)));
      const found = decode(listed.data).get(1)?.[0];
      if (listed.code === OK && found) {
        tracks.embedded = text(decode(found).get(1)[0]);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  assert(items.film && items.embedded && tracks.embedded, `the media folder was not indexed: ${JSON.stringify({ items, tracks })}`);

  owner = await person("owner");
  viewer = await person("viewer");
  await pickName(owner, base, "Mei");
  roomPath = await createRoom(owner, { name: "Subtitle night" });
  await waitLive(owner);
  await pickName(viewer, base, "Leo");
  await viewer.page.goto(`${base}${roomPath}`);
  await waitLive(viewer);
  await playFromLibrary(owner, "film");
  for (const user of [owner, viewer]) {
    await user.page.waitForFunction(() => document.getElementById("video").readyState >= 1);
    await user.page.waitForSelector("#subtitle-toggle:visible");
  }

  await check("the owner adds a GB18030 SRT through the menu; a video offered as subtitles is refused in words", async () => {
    await openMenu(owner);
    await owner.page.click("#subtitle-add");
    await owner.page.waitForSelector("#subtitle-add-dialog");
    await owner.page.setInputFiles("#subtitle-file", videoAsSubtitles);
    await owner.page.click("#subtitle-add-submit");
    await owner.page.waitForFunction(() => (document.getElementById("subtitle-add-status")?.textContent ?? "").includes("not a subtitle file"));
    await owner.page.screenshot({ path: join(artifacts, "add-refused-desktop-en.png") });
    const problems = await axe(owner.page);
    assert(problems.length === 0, `axe on the dialog: ${JSON.stringify(problems, null, 1)}`);
    await owner.page.setInputFiles("#subtitle-file", gbFile);
    await owner.page.selectOption("#subtitle-language", "zh-Hans");
    await owner.page.fill("#subtitle-label", "中文（GB18030）");
    await owner.page.click("#subtitle-add-submit");
    await owner.page.waitForSelector("#subtitle-add-dialog", { state: "detached" });
    await owner.page.waitForFunction(() => /Added 中文（GB18030）: 6 lines\./.test(document.getElementById("subtitle-note")?.textContent ?? ""));
    tracks.chinese = await owner.page.$eval("#subtitle-tracks label:has(input:checked)", (label) => label.dataset.trackId);
    assert(tracks.chinese && tracks.chinese !== "off", "the new track is chosen for its adder");
    // The stored WebVTT is UTF-8 with the Chinese text.
    const served = await owner.page.evaluate(async (id) => {
      const element = document.querySelector(`#video track[data-track-id="${id}"]`);
      const response = await fetch(element.src);
      return { type: response.headers.get("content-type"), body: await response.text() };
    }, tracks.chinese);
    assert(served.type === "text/vtt; charset=utf-8", `content type ${served.type}`);
    assert(served.body.startsWith("WEBVTT\n") && CHINESE.every((line) => served.body.includes(line)), served.body);
    const english = await addTrack(items.film, "en", "English", new TextEncoder().encode(vtt(ENGLISH)));
    tracks.english = english.trackId;
    assert(english.cues === 6, `English cues: ${english.cues}`);
  });

  await check("with the same track, owner and viewer see the same cue at the same position after seeks, paused and playing", async () => {
    await chooseTrack(viewer, tracks.chinese);
    await setPaused(owner, true);
    for (const index of [0, 2, 4, 1]) {
      const position = cueWindow(index)[0] + 3;
      await ownerSeek(position);
      await waitForCue(owner, tracks.chinese, CHINESE[index], position);
      await waitForCue(viewer, tracks.chinese, CHINESE[index], position);
      const [a, b] = await Promise.all([cueState(owner), cueState(viewer)]);
      assert(JSON.stringify(a.cues) === JSON.stringify(b.cues), `different cues: ${JSON.stringify([a, b])}`);
      console.log(`    at ${position} s both show ${a.cues[0]} (${a.time.toFixed(2)} / ${b.time.toFixed(2)})`);
    }
    // Playing: sampled together, both pages show the cue their common position calls for.
    await ownerSeek(31);
    await setPaused(owner, false);
    for (let sample = 0; sample < 3; sample += 1) {
      await owner.page.waitForTimeout(1_500);
      const [a, b] = await Promise.all([cueState(owner), cueState(viewer)]);
      const expected = (state) => CHINESE.filter((_, index) => state.time >= cueWindow(index)[0] + 0.3 && state.time < cueWindow(index)[1] - 0.3);
      for (const state of [a, b]) {
        const want = expected(state);
        assert(want.length === 0 || JSON.stringify(state.cues) === JSON.stringify(want), `at ${state.time} showed ${JSON.stringify(state.cues)}`);
      }
      assert(Math.abs(a.time - b.time) < 0.6, `players apart: ${a.time} / ${b.time}`);
    }
    await setPaused(owner, true);
  });

  await check("each viewer's choice is their own and survives a reload", async () => {
    await chooseTrack(viewer, tracks.english);
    const position = cueWindow(3)[0] + 2;
    await ownerSeek(position);
    await waitForCue(viewer, tracks.english, ENGLISH[3], position);
    await waitForCue(owner, tracks.chinese, CHINESE[3], position);
    await viewer.page.reload();
    await waitLive(viewer);
    await waitForCue(viewer, tracks.english, ENGLISH[3], position);
    const state = await cueState(viewer);
    assert(state.showing === 1, `tracks showing: ${state.showing}`);
  });

  await check("the owner's room default is what a new viewer starts with; Off stays off", async () => {
    await openMenu(viewer);
    assert((await viewer.page.locator("#subtitle-make-default").count()) === 0, "a member may not set the room default");
    await closeMenu(viewer);
    await openMenu(owner);
    await owner.page.click("#subtitle-make-default");
    await owner.page.waitForSelector(`#subtitle-tracks label[data-track-id="${tracks.chinese}"] .pill`);
    await closeMenu(owner);
    const newcomer = await person("newcomer");
    await pickName(newcomer, base, "Ann");
    await newcomer.page.goto(`${base}${roomPath}`);
    await waitLive(newcomer);
    const position = cueWindow(3)[0] + 2;
    await waitForCue(newcomer, tracks.chinese, CHINESE[3], position);
    // Off, chosen, is kept over the room's default.
    await chooseTrack(newcomer, "off");
    await newcomer.page.reload();
    await waitLive(newcomer);
    await newcomer.page.waitForFunction(() => document.querySelectorAll("#video track").length >= 2);
    await newcomer.page.waitForTimeout(500);
    assert((await cueState(newcomer)).showing === 0, "subtitles came back on after a reload");
    await newcomer.context.close();
  });

  await check("the XSS corpus as cue text runs nothing and shows each payload as text", async () => {
    const added = await addTrack(items.film, "en", "XSS corpus", new TextEncoder().encode(xssSrt));
    tracks.xss = added.trackId;
    // A payload that is markup alone shows nothing, and is no cue.
    const visible = payloads.filter((payload) => shownText(payload).trim() !== "");
    assert(added.cues === visible.length, `${added.cues} cues of ${visible.length} visible payloads`);
    await chooseTrack(viewer, tracks.xss);
    const problems = [];
    for (let group = 0; group * GROUP < payloads.length; group += 1) {
      const expected = payloads
        .slice(group * GROUP, (group + 1) * GROUP)
        .map(shownText)
        .filter((shown) => shown.trim() !== "");
      await ownerSeek(group * 10 + 5);
      await viewer.page.waitForFunction(
        ({ trackId, count, position }) => {
          const video = document.getElementById("video");
          const track = video.querySelector(`track[data-track-id="${trackId}"]`)?.track;
          return track?.activeCues?.length === count && Math.abs(video.currentTime - position) < 0.5;
        },
        { trackId: tracks.xss, count: expected.length, position: group * 10 + 5 },
      );
      await viewer.page.waitForTimeout(400);
      const shown = await viewer.page.evaluate((trackId) => {
        const track = document.querySelector(`#video track[data-track-id="${trackId}"]`).track;
        return [...track.activeCues].map((cue) => {
          const fragment = cue.getCueAsHTML();
          const elements = [...fragment.querySelectorAll("*")].map((element) => ({
            tag: element.localName,
            attributes: [...element.attributes].map((attribute) => attribute.name),
          }));
          return { text: fragment.textContent, elements };
        });
      }, tracks.xss);
      const texts = shown.map((cue) => cue.text);
      for (const want of expected) {
        if (!texts.includes(want)) {
          problems.push(`group ${group}: not shown as text: ${JSON.stringify(want)}`);
        }
      }
      for (const cue of shown) {
        for (const element of cue.elements) {
          // The cue tags kept become b, i, u (and span for c/v/lang, ruby, rt); none with handlers.
          if (!["b", "i", "u", "span", "ruby", "rt"].includes(element.tag) || element.attributes.some((name) => !["class", "title", "lang"].includes(name))) {
            problems.push(`markup in a cue: ${JSON.stringify(element)}`);
          }
        }
      }
      const ran = await executed(viewer);
      problems.push(...ran.map((hit) => `group ${group}: ${hit}`));
    }
    const served = await viewer.page.evaluate(async (trackId) => (await fetch(document.querySelector(`#video track[data-track-id="${trackId}"]`).src)).text(), tracks.xss);
    const tags = served.match(/<[^>]*>/g) ?? [];
    const foreign = tags.filter((tag) => !/^<\/?(b|i|u)>$/.test(tag));
    assert(foreign.length === 0, `tags other than the kept ones were served: ${foreign.slice(0, 5).join(" ")}`);
    assert(problems.length === 0, `${problems.length} problems:\n${problems.slice(0, 10).join("\n")}`);
    await chooseTrack(viewer, tracks.chinese);
  });

  await check("screenshots: a Chinese cue and the menu, desktop and phone, English and Chinese", async () => {
    const position = cueWindow(1)[0] + 3;
    await ownerSeek(position);
    const shots = [
      ["desktop-en", owner],
      ["desktop-zh", await person("shot-desktop-zh", { locale: "zh-CN" })],
      ["phone-en", await person("shot-phone-en", { viewport: PHONE })],
      ["phone-zh", await person("shot-phone-zh", { locale: "zh-CN", viewport: PHONE })],
    ];
    for (const [name, user] of shots) {
      if (user !== owner) {
        await pickName(user, base, name.endsWith("zh") ? "小美" : "Sam");
        await user.page.goto(`${base}${roomPath}`);
        await waitLive(user);
      }
      await waitForCue(user, tracks.chinese, CHINESE[1], position);
      await openMenu(user);
      await settle(user.page);
      await user.page.screenshot({ path: join(artifacts, `menu-${name}.png`) });
      const problems = await axe(user.page);
      assert(problems.length === 0, `axe on the open menu (${name}): ${JSON.stringify(problems, null, 1)}`);
      if (name === "phone-zh") {
        // The size is each viewer's own: this one reads large.
        await user.page.check("#subtitle-size-large");
        assert((await user.page.getAttribute("#video", "data-subtitle-size")) === null, "the size sits on the screen, not the video");
        assert((await user.page.$eval(".screen", (screen) => screen.dataset.subtitleSize)) === "large", "the large size is applied");
      }
      await closeMenu(user);
      await settle(user.page);
      await user.page.screenshot({ path: join(artifacts, `cue-${name}.png`) });
    }
  });

  await check("an MKV's embedded subtitle stream is extracted and can be chosen", async () => {
    await queueAndPlayNext(owner, "embedded");
    await viewer.page.waitForFunction(() => document.getElementById("now-playing")?.textContent === "embedded");
    await viewer.page.waitForSelector(`#subtitle-toggle:visible`);
    await openMenu(viewer);
    await viewer.page.waitForSelector(`#subtitle-tracks label[data-track-id="${tracks.embedded}"]`);
    const label = await viewer.page.textContent(`#subtitle-tracks label[data-track-id="${tracks.embedded}"]`);
    assert(label.includes("内嵌中文") && label.includes("in the video file"), `label: ${label}`);
    await viewer.page.click(`#subtitle-tracks label[data-track-id="${tracks.embedded}"]`);
    await closeMenu(viewer);
    await viewer.page.waitForFunction((id) => {
      const track = document.querySelector(`#video track[data-track-id="${id}"]`)?.track;
      return track?.mode === "showing" && track.cues?.length === 1 && track.cues[0].text === "内嵌字幕：来自视频文件";
    }, tracks.embedded);
  });

  await check("nothing unexpected in the consoles", async () => {
    const ran = [...(await executed(owner)), ...(await executed(viewer))];
    assert(ran.length === 0 && consoleErrors.length === 0, JSON.stringify({ ran, consoleErrors }, null, 1));
  });
} catch (error) {
  await check("the subtitle run completed", () => {
    throw error;
  });
} finally {
  await cleanup();
}

const passed = results.filter(Boolean).length;
const failed = results.length - passed;
console.log(`subtitles: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
