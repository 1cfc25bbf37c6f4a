// Conversion to HLS end to end, in real headless Chromium against a real `xiaowo up` whose
// conversions are paced to real time (`--media-convert-readrate 1`, so that the 45 s file takes
// about 45 s to convert and the test can act while it does):
//
// * Alice uploads a 45 s HEVC + AC-3 MKV (made by ffmpeg here) in her room; both pages show its
//   conversion moving in the library, "Ready to start" once the start plays, and the upload
//   joins the queue then;
// * both start watching before the conversion is complete: both videos play, in agreement,
//   while the library says "Ready to start" and the playlist the players load has no ENDLIST;
// * with "wait for everyone" on, Alice seeks past the converted part: both pages say how far it
//   is converted and hold (the room waits for them), then carry on together from the new
//   position once that part exists;
// * once complete, seeks, a pause and a rate change stay in sync as for any file;
// * screenshots of the library and queue with a conversion in progress, desktop (1280×800) and
//   phone (390×844), English and Chinese, go to web/artifacts/convert/ (axe-core finds no
//   serious or critical violation on them).
//
//   node e2e/convert.mjs        (after `npm run build` and `cargo build -p xiaowo`)
//
// Ends with "convert: N passed, N failed".

import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

import {
  assert,
  axe,
  browserSuite,
  createRoom,
  launchServer,
  openProfile,
  pickName,
  playerGap,
  prepareWebDir,
  readPlayer,
  waitForAgreement,
  waitLive,
  webRoot,
} from "./stack.mjs";

const artifacts = join(webRoot, "artifacts", "convert");
const WAIT_MS = 45_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/**
 * The file's length, and the furthest Alice seeks past the converted part (time to play after).
 * 16–20 s of it is converted by the time of that seek (its start must be ready to play first, then
 * two steps play and take screenshots), so the length leaves room for a machine that runs those
 * steps slowly.
 */
const LENGTH_S = 45;
const LATEST_SEEK_S = LENGTH_S - 8;

const users = [];
const consoleErrors = [];
const { tempDir, setServer, addContext, check, finish } = browserSuite("convert", {
  onFailure: async (number) => {
    for (const user of users) {
      await user.page.screenshot({ path: join(artifacts, `failed-${number}-${user.name}.png`), fullPage: true });
    }
  },
});

/** A LENGTH_S long 320×180 HEVC + AC-3 5.1 Matroska file: nothing a browser plays as it is. */
function makeHevcMkv(path) {
  execFileSync(
    "ffmpeg",
    [
      "-loglevel", "error", "-y",
      "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
      "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
      "-t", String(LENGTH_S), "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-pix_fmt", "yuv420p",
      "-c:a", "ac3", "-ac", "6", "-f", "matroska", path,
    ],
    { stdio: "inherit" },
  );
}

async function screenshot(user, name) {
  await user.page.evaluate(() => document.fonts.ready);
  await user.page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** The library row's conversion state in this page ("queued", "converting", "playable", "complete", …). */
async function conversionState(user, mediaItemId) {
  return user.page.evaluate((id) => document.querySelector(`#library li[data-media-item-id="${id}"] .conversion`)?.getAttribute("data-state") ?? "", mediaItemId);
}

async function seekTo(user, seconds) {
  await user.page.$eval(
    "#seek",
    (input, value) => {
      input.value = String(value);
      input.dispatchEvent(new Event("change"));
    },
    seconds,
  );
}

const state = { base: "", roomPath: "", mediaItemId: "", playlistUrls: new Map() };

try {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });
  const file = join(tempDir, "Night train.mkv");
  makeHevcMkv(file);
  const webDir = prepareWebDir(tempDir);
  // A room waits up to 30 s for members who hold (on a busy machine the conversion may lag).
  const launched = launchServer(tempDir, webDir, "127.0.0.1:0", { XIAOWO_MEDIA_CONVERT_READRATE: "1", XIAOWO_SYNC_WAIT_TIMEOUT: "30s" });
  setServer(launched.server);
  state.base = await launched.base;
  console.log(`xiaowo up at ${state.base}`);

  for (const [name, locale] of [
    ["alice", "en-US"],
    ["bob", "zh-CN"],
  ]) {
    const { context, page } = await openProfile(name, tempDir, { viewport: DESKTOP, locale });
    addContext(context);
    page.setDefaultTimeout(WAIT_MS);
    page.on("pageerror", (error) => consoleErrors.push(`${name}: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") {
        consoleErrors.push(`${name}: ${message.text()}`);
      }
    });
    // The HLS playlist each player loads (to read it as the server serves it to that person).
    page.on("request", (request) => {
      if (request.url().includes("/hls/") && request.url().endsWith("/index.m3u8")) {
        state.playlistUrls.set(name, request.url());
      }
    });
    users.push({ name, context, page });
  }
  const [alice, bob] = users;

  await check(`Alice uploads a ${LENGTH_S} s HEVC + AC-3 MKV; both pages show its conversion moving, then ready to start`, async () => {
    await pickName(alice, state.base, "Alice");
    await pickName(bob, state.base, "Bob 小窝");
    state.roomPath = await createRoom(alice, { name: "Film club" });
    await waitLive(alice);
    await bob.page.goto(`${state.base}${state.roomPath}`);
    await waitLive(bob);
    await alice.page.setInputFiles("#upload-file", file);
    const row = await alice.page.waitForSelector("#library li[data-media-item-id]");
    state.mediaItemId = await row.getAttribute("data-media-item-id");
    const selector = `#library li[data-media-item-id="${state.mediaItemId}"]`;
    // The upload shows as needing conversion at once, and its conversion moves.
    await alice.page.waitForSelector(`${selector} .conversion[data-state="playable"]`);
    await bob.page.waitForSelector(`${selector} .conversion[data-state="playable"]`);
    const words = await alice.page.textContent(`${selector} .conversion`);
    assert(words.includes("Ready to start") && /converting… \d+\s?%/.test(words), `Alice's library says "${words}"`);
    const zh = await bob.page.textContent(`${selector} .conversion`);
    assert(zh.includes("可以开始看了"), `Bob's library says "${zh}"`);
    // Play and queue are offered once the start is ready, and the upload joins the queue then.
    await alice.page.waitForSelector(`${selector} [data-action=queue]:not([aria-disabled="true"]):not([disabled])`);
    for (const user of users) {
      await user.page.waitForSelector("#queue li .conversion", { state: "attached" });
    }
  });

  await check("both start watching before the conversion is complete", async () => {
    const selector = `#library li[data-media-item-id="${state.mediaItemId}"]`;
    await alice.page.click(`${selector} [data-action=play]`);
    for (const user of users) {
      await user.page.waitForFunction(() => document.getElementById("video").readyState >= 1);
    }
    await alice.page.waitForSelector("#play-toggle:not([disabled])");
    if ((await alice.page.getAttribute("#play-toggle", "data-action")) === "play") {
      await alice.page.click("#play-toggle");
    }
    const playing = await waitForAgreement(alice, bob, ({ a, b }) => !a.paused && !b.paused && a.position > 0.5, 3, { waitMs: WAIT_MS });
    // At this moment: both play, and the conversion is not complete (the library's word, the
    // playlist each player loads as the server serves it: still growing, no ENDLIST).
    const states = await Promise.all(users.map((user) => conversionState(user, state.mediaItemId)));
    assert(states.every((word) => word === "playable"), `conversion states while playing: ${states}`);
    for (const user of users) {
      const url = state.playlistUrls.get(user.name);
      assert(url, `${user.name}'s player loaded no HLS playlist`);
      const playlist = await (await user.page.request.get(url)).text();
      assert(playlist.includes("#EXT-X-PLAYLIST-TYPE:EVENT") && !playlist.includes("#EXT-X-ENDLIST"), `${user.name}'s playlist is complete already:\n${playlist}`);
    }
    const again = await playerGap(alice, bob);
    assert(!again.a.paused && !again.b.paused, "both still play");
    console.log(`    playing at ${playing.a.position.toFixed(2)} s while converting: gap ${(playing.gap * 1000).toFixed(0)} ms`);
  });

  await check("the library and queue while converting: screenshots and axe, desktop and phone, English and Chinese", async () => {
    const row = `#library li[data-media-item-id="${state.mediaItemId}"]`;
    for (const user of users) {
      await user.page.click("[data-tab=queue]");
      await user.page.waitForSelector(`#queue li .conversion[data-state="playable"]`);
    }
    const language = (user) => (user.name === "alice" ? "en" : "zh");
    for (const [size, viewport] of [
      ["desktop", DESKTOP],
      ["phone", PHONE],
    ]) {
      for (const user of users) {
        await user.page.setViewportSize(viewport);
        // The library redraws a row when its conversion moves: scrolled to in one step.
        await user.page.evaluate((selector) => document.querySelector(selector)?.scrollIntoView({ block: "center" }), row);
        await screenshot(user, `${size}-${language(user)}-library-converting`);
        await user.page.evaluate(() => document.querySelector("#queue li .conversion")?.scrollIntoView({ block: "center" }));
        await screenshot(user, `${size}-${language(user)}-queue-converting`);
        const overflow = await user.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert(overflow <= 1, `${user.name}: the page scrolls sideways by ${overflow}px`);
        const problems = await axe(user.page);
        assert(problems.length === 0, `${user.name} (${size}): ${JSON.stringify(problems, null, 1)}`);
      }
    }
    for (const user of users) {
      await user.page.setViewportSize(DESKTOP);
    }
    assert((await conversionState(alice, state.mediaItemId)) === "playable", "the conversion finished during the screenshots: too early to seek past it");
  });

  await check("a seek past the converted part holds both pages with a message, the room waits, then they carry on together", async () => {
    await alice.page.click("[data-tab=settings]");
    await alice.page.check("#wait-toggle");
    await bob.page.click("[data-tab=settings]");
    await bob.page.waitForFunction(() => document.getElementById("wait-toggle")?.checked === true);
    const width = await alice.page.evaluate(() => document.getElementById("converted-part")?.style.width ?? "");
    const converted = (parseFloat(width) / 100) * LENGTH_S;
    const target = Math.floor(converted + 3);
    assert(width !== "" && target <= LATEST_SEEK_S, `converted ${converted.toFixed(1)} s before the seek: too far to seek past it`);
    console.log(`    converted ${converted.toFixed(1)} s; Alice seeks to ${target} s`);
    await seekTo(alice, target);
    for (const user of users) {
      await user.page.waitForSelector("#conversion-message:not([hidden])");
      await user.page.waitForSelector('#sync-status[data-state="converting"]');
    }
    const english = await alice.page.textContent("#conversion-message");
    assert(/^Converted up to 0:\d\d so far: the video goes on at 0:\d\d as soon as that part is converted\.$/.test(english), `Alice reads "${english}"`);
    const chinese = await bob.page.textContent("#conversion-message");
    assert(chinese.includes("目前已转换到"), `Bob reads "${chinese}"`);
    const held = await playerGap(alice, bob);
    assert(held.a.paused && held.b.paused, "both hold while the part is converted");
    // The room waits for them (its timeline pauses a little past the target).
    await alice.page.waitForFunction(() => document.getElementById("play-toggle")?.getAttribute("data-action") === "play");
    await screenshot(alice, "desktop-en-seek-past-converted");
    await screenshot(bob, "desktop-zh-seek-past-converted");
    const result = await waitForAgreement(alice, bob, ({ a, b }) => !a.paused && !b.paused && a.position >= target && a.position < LENGTH_S, 3, { waitMs: WAIT_MS });
    console.log(`    carried on at ${result.a.position.toFixed(2)} s: gap ${(result.gap * 1000).toFixed(0)} ms`);
    // From where the room waited: a moment past the target, not wherever it would have run to.
    assert(result.a.position < target + 6, `carried on at ${result.a.position.toFixed(2)} s, far past ${target} s`);
    for (const user of users) {
      await user.page.waitForSelector("#conversion-message", { state: "hidden" });
    }
    for (const user of users) {
      await user.page.click("[data-tab=queue]");
    }
  });

  await check("once complete, seeks, a pause and a rate change stay in sync as for any file", async () => {
    for (const user of users) {
      await user.page.waitForSelector(`#library li[data-media-item-id="${state.mediaItemId}"] .conversion[data-state="complete"]`, { state: "attached", timeout: WAIT_MS });
      await user.page.waitForSelector(`#queue li .conversion[data-state="complete"]`, { state: "attached" });
    }
    for (const target of [4, 15]) {
      await seekTo(alice, target);
      if ((await alice.page.getAttribute("#play-toggle", "data-action")) === "play") {
        await alice.page.click("#play-toggle");
      }
      const result = await waitForAgreement(alice, bob, ({ a, b }) => !a.paused && !b.paused && a.position >= target && a.position < target + 8);
      console.log(`    seek to ${target} s: gap ${(result.gap * 1000).toFixed(0)} ms at ${result.a.position.toFixed(2)} s`);
    }
    await alice.page.click("#play-toggle");
    const paused = await waitForAgreement(alice, bob, ({ a, b }) => a.paused && b.paused);
    console.log(`    paused: gap ${(paused.gap * 1000).toFixed(0)} ms at ${paused.a.position.toFixed(2)} s`);
    await seekTo(alice, 3);
    await alice.page.selectOption("#rate", "1.5");
    await alice.page.click("#play-toggle");
    const faster = await waitForAgreement(alice, bob, ({ a, b }) => !a.paused && !b.paused && a.position > 3.5);
    // Both pages follow the room's rate: their selector says 1.5×, and their videos advance 1.5 s a second.
    const selected = await Promise.all(users.map((user) => user.page.inputValue("#rate")));
    assert(selected.every((rate) => rate === "1.5"), `rate selectors ${selected}`);
    const before = await Promise.all(users.map((user) => readPlayer(user)));
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const after = await Promise.all(users.map((user) => readPlayer(user)));
    const speeds = after.map((reading, index) => (reading.position - before[index].position) / ((reading.at - before[index].at) / 1000));
    assert(speeds.every((speed) => Math.abs(speed - 1.5) < 0.12), `speeds ${speeds.map((speed) => speed.toFixed(3))}`);
    console.log(`    at 1.5×: gap ${(faster.gap * 1000).toFixed(0)} ms at ${faster.a.position.toFixed(2)} s`);
  });

  await check("no console errors on either page", async () => {
    assert(consoleErrors.length === 0, consoleErrors.join("\n"));
  });
} catch (error) {
  await check("set-up", () => Promise.reject(error));
} finally {
  await finish();
}
