import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";

import { readKeyframes } from "../src/keyframes";
import { PRIOR_SEEK_MODEL, keyframeBefore, observeSeek, planSeek, predictSeek, type SeekModel } from "../src/seek";
import type { Timeline } from "../src/timeline";

const playing = (position: number, anchorMs: number, rate = 1): Timeline => ({
  paused: false,
  position,
  rate,
  anchorServerTime: anchorMs,
  leadInRate: 0,
  duration: 0,
});

describe("seek model", () => {
  it("learns that seeks far past a keyframe take longer", () => {
    let model: SeekModel = PRIOR_SEEK_MODEL;
    // 40 ms to land anywhere, plus 15 ms per second of video decoded from the keyframe.
    for (const fromKeyframe of [0.5, 9, 2, 7, 4, 0.1, 8.5, 5, 1, 6, 3, 9.5, 0.2, 7.5, 2.5, 5.5]) {
      model = observeSeek(model, { fromKeyframe, unbuffered: false, duration: 0.04 + 0.015 * fromKeyframe });
    }
    // The prior still weighs as two seeks.
    assert.ok(Math.abs(predictSeek(model, 0, false) - 0.04) < 0.025, `at a keyframe ${predictSeek(model, 0, false)}`);
    assert.ok(Math.abs(predictSeek(model, 9, false) - 0.175) < 0.025, `9 s past one ${predictSeek(model, 9, false)}`);
    assert.ok(model.spread < PRIOR_SEEK_MODEL.spread, "fits better than the prior");
  });

  it("keeps only the recent seeks of a media", () => {
    let model: SeekModel = PRIOR_SEEK_MODEL;
    for (let index = 0; index < 40; index += 1) {
      model = observeSeek(model, { fromKeyframe: 1, unbuffered: false, duration: 0.1 });
    }
    assert.equal(model.observations.length, 16);
  });

  it("finds the keyframe before a time", () => {
    const index = { times: [0, 2, 4, 6], everyFrame: false };
    assert.equal(keyframeBefore(index, 5.9), 4);
    assert.equal(keyframeBefore(index, 6), 6);
    assert.equal(keyframeBefore(index, 100), 6);
    assert.equal(keyframeBefore({ times: [], everyFrame: true }, 3.3), 3.3);
  });
});

describe("seek planner", () => {
  const keyframes = { times: [0, 10, 20, 30], everyFrame: false };
  const context = { serverNow: 100_000, model: PRIOR_SEEK_MODEL, keyframes, buffered: () => true, duration: 0, startLead: 0 };

  it("aims where the room will be when the seek is done, margin included", () => {
    const plan = planSeek({ ...context, timeline: playing(15, 100_000), keyframes: undefined });
    assert.ok(Math.abs(plan.target - (15 + plan.predicted)) < 1e-9);
    assert.ok(plan.predicted > predictSeek(PRIOR_SEEK_MODEL, 0, false));
  });

  it("takes the next keyframe when the room reaches it only after the seek could be done", () => {
    // 0.4 s before the keyframe at 20 s: more than a seek there takes, less than decoding the
    // 9.6 s of video before it would.
    const plan = planSeek({ ...context, timeline: playing(19.6, 100_000) });
    assert.deepEqual([plan.target, plan.onKeyframe, plan.fromKeyframe], [20, true, 0]);
  });

  it("inside a long GOP, balances the decoding time against the room's progress", () => {
    const plan = planSeek({ ...context, timeline: playing(15, 100_000) });
    assert.equal(plan.onKeyframe, false);
    // The room gets to the target just when the predicted seek (with its margin) is done.
    const needed = predictSeek(PRIOR_SEEK_MODEL, plan.target - 10, false) + (plan.predicted - predictSeek(PRIOR_SEEK_MODEL, plan.fromKeyframe, false));
    assert.ok(Math.abs(plan.target - 15 - needed) < 0.002, `${plan.target} vs ${15 + needed}`);
  });

  it("allows for the start latency and the room's rate", () => {
    const slow = planSeek({ ...context, timeline: playing(15, 100_000), keyframes: undefined });
    const later = planSeek({ ...context, timeline: playing(15, 100_000), keyframes: undefined, startLead: 0.1 });
    assert.ok(Math.abs(later.target - slow.target - 0.1) < 1e-9);
    const faster = planSeek({ ...context, timeline: playing(15, 100_000, 2), keyframes: undefined });
    assert.ok(Math.abs(faster.target - (15 + 2 * faster.predicted)) < 1e-9);
  });

  it("before a scheduled start, aims at the held frame when there is time", () => {
    const held = playing(42, 101_000);
    const plan = planSeek({ ...context, timeline: held, keyframes: undefined });
    assert.equal(plan.target, 42);
  });
});

/** Seeks the benchmark recorded, with the planner's prediction and what each really took. */
interface RecordedSeeks {
  page: string;
  file: string;
  seeks: { fromKeyframe: number; unbuffered: boolean; predicted: number; duration: number }[];
}

function fixture(name: string): RecordedSeeks {
  return JSON.parse(readFileSync(new URL(`../test/fixtures/${name}`, import.meta.url), "utf8")) as RecordedSeeks;
}

describe("seek model against recorded seeks", () => {
  for (const name of ["seeks-mp4-owner.json", "seeks-mp4-cpu4x.json", "seeks-webm-lat80.json"]) {
    it(`${name}: after a few seeks, predicts (margin included) all but the odd one`, () => {
      const { seeks } = fixture(name);
      assert.ok(seeks.length >= 5, `${seeks.length} seeks recorded`);
      let model: SeekModel = PRIOR_SEEK_MODEL;
      let late = 0;
      let predicted = 0;
      for (const [index, seek] of seeks.entries()) {
        const margin = 0.03 + 2 * model.spread;
        if (index >= 3) {
          predicted += 1;
          if (predictSeek(model, seek.fromKeyframe, seek.unbuffered) + margin < seek.duration) {
            late += 1;
          }
        }
        model = observeSeek(model, seek);
      }
      assert.ok(late <= Math.ceil(predicted * 0.15), `${late} of ${predicted} seeks took longer than predicted`);
    });
  }
});

describe("keyframe index", () => {
  const dir = mkdtempSync(join(tmpdir(), "xiaowo-keyframes-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** What ffprobe says the keyframes are (the decoder's view). */
  function probe(path: string): number[] {
    const out = execFileSync("ffprobe", ["-loglevel", "error", "-select_streams", "v", "-skip_frame", "nokey", "-show_entries", "frame=pts_time", "-of", "csv=p=0", path], {
      encoding: "utf8",
    });
    return out
      .split("\n")
      .map((line) => Number.parseFloat(line))
      .filter((time) => Number.isFinite(time));
  }

  async function index(path: string) {
    const bytes = readFileSync(path);
    return readKeyframes(async (offset, length) => new Uint8Array(bytes.subarray(offset, offset + length)));
  }

  const encode = (name: string, args: string[]) => {
    const path = join(dir, name);
    execFileSync("ffmpeg", ["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x90:rate=25", "-t", "24", ...args, path]);
    return path;
  };

  it("reads an MP4's sync samples (ffmpeg's defaults: index at the end, B-frames, an edit list)", async () => {
    const path = encode("defaults.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "100"]);
    const found = await index(path);
    assert.ok(found && !found.everyFrame);
    assert.deepEqual(found.times.map((time) => time.toFixed(3)), probe(path).map((time) => time.toFixed(3)));
    assert.equal(found.times.length, 6);
  });

  it("reads a WebM's cues", async () => {
    const path = encode("cues.webm", ["-c:v", "libvpx", "-b:v", "100k", "-g", "50", "-deadline", "realtime", "-cpu-used", "8"]);
    const found = await index(path);
    assert.ok(found && !found.everyFrame);
    assert.deepEqual(found.times.map((time) => time.toFixed(3)), probe(path).map((time) => time.toFixed(3)));
  });

  it("says every frame is a keyframe for an intra-only MP4, and nothing for other bytes", async () => {
    const path = encode("intra.mp4", ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "1"]);
    assert.deepEqual(await index(path), { times: [], everyFrame: true });
    assert.equal(await readKeyframes(async () => new TextEncoder().encode("<html>not media</html>")), undefined);
  });
});
