import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { DEFAULT_DRIFT_CONFIG, decideDrift, initialDriftState, type PlayerView } from "../src/drift";
import type { Timeline } from "../src/timeline";
import { IDEAL_PLAYER, type PlayerModel, commandsBetween, convergedAfter, playing, simulate } from "./player-sim";

/** Viewers should agree within this many seconds of the room (the benchmark's goal). */
const AGREEMENT = 0.05;

/** A player like Chromium's with an H.264 + AAC file on a loaded machine (what the benchmark saw). */
const AUDIO_PLAYER: PlayerModel = {
  startLatency: 0.085,
  switchLatency: 0.1,
  seekDuration: () => 0.15,
  clockRate: 1,
  noise: (index) => (((index * 7919) % 13) - 6) / 1000,
  wakeLateness: 0.004,
};

function view(overrides: Partial<PlayerView> & { timeline: Timeline }): PlayerView {
  return {
    now: 100,
    serverNow: 100_000,
    position: 0,
    paused: false,
    seeking: false,
    ready: true,
    duration: 0,
    nudgeEnabled: true,
    keyframes: undefined,
    buffered: () => true,
    canFastSeek: false,
    ...overrides,
  };
}

describe("sync controller: steady playback", () => {
  it("leaves a player in step alone: no rate change in a minute of noisy readings", () => {
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt: () => playing(10, 0), seconds: 65, initialPosition: 10, from: 0.001 });
    // Starting teaches the start latency and leaves one nudge to make; after that nothing.
    assert.ok(commandsBetween(simulation.player, "rate", 0, 5).length <= 2);
    assert.equal(commandsBetween(simulation.player, "rate", 5).length, 0);
    assert.equal(commandsBetween(simulation.player, "seek").length, 0);
  });

  it("closes a small error with one nudge of at most 5 %: two rate changes, no seek", () => {
    const simulation = simulate({ model: IDEAL_PLAYER, timelineAt: () => playing(10, 0), seconds: 10, initialPosition: 10 });
    // Knock the player 80 ms behind, as a stall would.
    simulation.player.position -= 0.08;
    const after = simulate({ model: IDEAL_PLAYER, timelineAt: () => playing(10, 0), from: 10, seconds: 10, resume: simulation });
    const rates = commandsBetween(after.player, "rate", 10).map((command) => (command.kind === "rate" ? command.rate : 0));
    assert.deepEqual(rates.length, 2, `rates ${rates}`);
    assert.ok(rates[0]! > 1 && rates[0]! <= 1 + DEFAULT_DRIFT_CONFIG.maxNudge + 1e-9, `nudge ${rates[0]}`);
    assert.equal(rates[1], 1);
    assert.equal(commandsBetween(after.player, "seek", 10).length, 0);
    assert.ok(convergedAfter(after, 10, 20, DEFAULT_DRIFT_CONFIG.deadBand) < 3);
  });

  it("takes up a steady clock difference with the trim, after which it stops nudging", () => {
    // This player's clock runs 0.4 % slow: without an integral term it would need a nudge
    // every few seconds for ever.
    const slow = { ...IDEAL_PLAYER, clockRate: 0.996 };
    const simulation = simulate({ model: slow, timelineAt: () => playing(10, 0), seconds: 120, initialPosition: 10 });
    const late = commandsBetween(simulation.player, "rate", 80);
    assert.ok(late.length <= 1, `${late.length} rate changes in the last 40 s`);
    assert.ok(simulation.state.appliedTrim > 0.002, `trim ${simulation.state.appliedTrim}`);
    assert.ok(convergedAfter(simulation, 80, 120, DEFAULT_DRIFT_CONFIG.deadBand) < 0.01);
  });

  it("never nudges by more than 5 % however large the error below the seek threshold", () => {
    const simulation = simulate({ model: IDEAL_PLAYER, timelineAt: () => playing(10, 0), seconds: 2, initialPosition: 10 });
    simulation.player.position -= DEFAULT_DRIFT_CONFIG.seekThreshold * 0.9;
    const after = simulate({ model: IDEAL_PLAYER, timelineAt: () => playing(10, 0), from: 2, seconds: 10, resume: simulation });
    for (const command of commandsBetween(after.player, "rate")) {
      assert.ok(command.kind === "rate" && Math.abs(command.rate - 1) <= DEFAULT_DRIFT_CONFIG.maxNudge + 1e-9);
    }
    assert.equal(commandsBetween(after.player, "seek", 2).length, 0);
  });
});

describe("sync controller: seeks", () => {
  it("lands ahead of the room and holds, never behind: no second seek, within 50 ms on release", () => {
    // The room seeks to 60 s at t = 5 s (anchored when the server accepted it, 40 ms before
    // the player heard of it).
    const timelineAt = (now: number) => (now < 5.04 ? playing(10, 0) : playing(60, 5_000));
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt, seconds: 10, initialPosition: 10, from: 0.001 });
    const seeks = commandsBetween(simulation.player, "seek", 5);
    assert.equal(seeks.length, 1);
    assert.ok(seeks[0]!.kind === "seek" && seeks[0]!.position > 60.04, "aimed ahead of where the room is");
    assert.ok(convergedAfter(simulation, 5, 10, AGREEMENT) < 1.5);
  });

  it("learns the start latency, so that later seeks start on the room's instant", () => {
    const seekEvery = (now: number) => playing(20 * Math.floor(now / 4) + 5, Math.floor(now / 4) * 4_000);
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt: seekEvery, seconds: 24, initialPosition: 5, from: 0.001 });
    assert.ok(Math.abs(simulation.state.latencies.start - AUDIO_PLAYER.startLatency) < 0.02, `learned ${simulation.state.latencies.start}`);
    // The last seeks: within the dead band almost at once, never outside 50 ms after 1 s.
    for (const at of [16, 20]) {
      const window = simulation.errors.filter((sample) => sample.at > at + 1 && sample.at < at + 4);
      const worst = Math.max(...window.map((sample) => Math.abs(sample.error)));
      assert.ok(worst < 0.03, `after the seek at ${at} s: ${worst}`);
    }
  });

  it("re-plans a seek that landed too late, ahead again (never a backward seek), and learns its duration", () => {
    // Seeks take 0.6 s, four times the prior's guess.
    const slowSeeks = { ...AUDIO_PLAYER, seekDuration: () => 0.6 };
    const seekEvery = (now: number) => playing(20 * Math.floor(now / 5) + 5, Math.floor(now / 5) * 5_000);
    const simulation = simulate({ model: slowSeeks, timelineAt: seekEvery, seconds: 30, initialPosition: 5, from: 0.001 });
    for (const at of [5, 10, 15, 20, 25]) {
      const seeks = commandsBetween(simulation.player, "seek", at, at + 5);
      for (const [index, seek] of seeks.entries()) {
        const room = seekEvery(at).position;
        assert.ok(seek.kind === "seek" && seek.position >= room, `seek ${index} at ${at} s went to ${seek.kind === "seek" ? seek.position : ""}`);
      }
      if (at >= 15) {
        assert.equal(seeks.length, 1, `at ${at} s the model knows seeks are slow`);
        assert.ok(convergedAfter(simulation, at, at + 5, AGREEMENT) < 1.5);
      }
    }
  });

  it("aims at the keyframe after the room when it is that close, so that nothing is decoded", () => {
    const keyframes = { times: [0, 10, 20, 30, 40], everyFrame: false };
    const state = initialDriftState();
    // The keyframe at 20 s is 0.5 s ahead of the room: more than a seek there takes.
    const timeline = playing(19.5, 100_000);
    const decision = decideDrift(state, view({ timeline, position: 5, keyframes }));
    const seek = decision.commands.find((command) => command.kind === "seek");
    assert.deepEqual(seek, { kind: "seek", position: 20, fast: false });
    const fast = decideDrift(state, view({ timeline, position: 5, keyframes, canFastSeek: true }));
    assert.deepEqual(fast.commands.find((command) => command.kind === "seek"), { kind: "seek", position: 20, fast: true });
  });
});

/**
 * Every 4 s the room pauses for 2 s on the frame it reached, then resumes 300 ms after the play
 * was accepted (a scheduled start).
 */
function pauseAndResume(now: number): Timeline {
  const cycle = Math.floor(now / 4);
  const frame = 30 + 1.7 * cycle;
  return now - 4 * cycle < 2
    ? { paused: true, position: frame, rate: 1, anchorServerTime: 0, leadInRate: 0, duration: 0 }
    : playing(frame, (4 * cycle + 2.3) * 1000);
}

describe("sync controller: scheduled starts and rate changes", () => {
  it("starts a scheduled play early by its start latency, on the room's frame", () => {
    const paused: Timeline = { paused: true, position: 30, rate: 1, anchorServerTime: 0, leadInRate: 0, duration: 0 };
    const timelineAt = (now: number) => (now < 2 ? paused : playing(30, 2_300));
    const priors = { latencies: { start: AUDIO_PLAYER.startLatency, rateSwitch: 0.1 } };
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt, seconds: 6, initialPosition: 30, priors });
    const plays = simulation.player.log.filter((entry) => entry.command.kind === "play");
    assert.equal(plays.length, 1);
    assert.ok(Math.abs(plays[0]!.at - (2.3 - AUDIO_PLAYER.startLatency)) < 0.01, `played at ${plays[0]!.at}`);
    assert.ok(convergedAfter(simulation, 2.3, 6, 0.02) < 0.05);
  });

  it("learns the start latency from scheduled starts too: resumes keep it, and start on the instant", () => {
    // The room stands on its frame until each resume's instant, so the hold left at the
    // release is part of what a start measures.
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt: pauseAndResume, seconds: 32, initialPosition: 30 });
    assert.ok(Math.abs(simulation.state.latencies.start - AUDIO_PLAYER.startLatency) < 0.015, `learned ${simulation.state.latencies.start}`);
    for (const k of [6, 7]) {
      const start = 4 * k + 2.3;
      const window = simulation.errors.filter((sample) => sample.at > start + 0.2 && sample.at < start + 1.6);
      const worst = Math.max(...window.map((sample) => Math.abs(sample.error)));
      assert.ok(worst < 0.03, `resume at ${start} s: ${worst}`);
    }
  });

  it("learns resumes apart from starts after a seek: neither drags the other off", () => {
    // Chromium with sound: a start after a seek refills the pipeline (85 ms); a resume on the
    // frame it paused on starts sooner (20 ms). Six pause/resume cycles, then two seeks.
    const chromium = { ...AUDIO_PLAYER, resumeLatency: 0.02 };
    const timelineAt = (now: number): Timeline => {
      if (now >= 28) {
        return playing(140, 28_000);
      }
      return now >= 24 ? playing(100, 24_000) : pauseAndResume(now);
    };
    const simulation = simulate({ model: chromium, timelineAt, seconds: 32, initialPosition: 30 });
    const { latencies } = simulation.state;
    assert.ok(Math.abs(latencies.start - chromium.startLatency) < 0.015, `start ${latencies.start}`);
    assert.ok(Math.abs(latencies.resume - chromium.resumeLatency) < 0.015, `resume ${latencies.resume}`);
    for (const [at, until, label] of [
      [4 * 5 + 2.3, 24, "the last resume"],
      [24, 28, "the first seek"],
      [28, 32, "the second seek"],
    ] as const) {
      const window = simulation.errors.filter((sample) => sample.at > at + 0.5 && sample.at < until);
      const worst = Math.max(...window.map((sample) => Math.abs(sample.error)));
      assert.ok(worst < 0.03, `${label} (${at} s): ${worst}`);
    }
  });

  it("holds the paused frame within 10 ms", () => {
    const paused: Timeline = { paused: true, position: 42.5, rate: 1, anchorServerTime: 0, leadInRate: 0, duration: 0 };
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt: () => paused, seconds: 2, initialPosition: 40 });
    assert.ok(simulation.player.paused);
    assert.ok(Math.abs(simulation.player.position - 42.5) <= DEFAULT_DRIFT_CONFIG.pausedTolerance);
  });

  it("switches a scheduled rate change on the room's instant, never pausing or seeking", () => {
    // 1 → 1.5 → 0.75 → 1.5 → 1, each scheduled 300 ms after it was accepted.
    const changes = [
      { at: 5, rate: 1.5 },
      { at: 11, rate: 0.75 },
      { at: 17, rate: 1.5 },
      { at: 23, rate: 1 },
    ];
    let timeline = playing(10, 0);
    const timelines: { from: number; timeline: Timeline }[] = [{ from: 0, timeline }];
    for (const { at, rate } of changes) {
      const switchAt = at + 0.3;
      const position = timeline.position + (switchAt - timeline.anchorServerTime / 1000) * timeline.rate;
      timeline = playing(position, switchAt * 1000, rate, timeline.rate);
      // The player hears of it 30 ms after the server accepted it.
      timelines.push({ from: at + 0.03, timeline });
    }
    const timelineAt = (now: number) => [...timelines].reverse().find((entry) => entry.from <= now)!.timeline;
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt, seconds: 29, initialPosition: 10, from: 0.001 });
    assert.equal(commandsBetween(simulation.player, "pause", 1).length, 0);
    assert.equal(commandsBetween(simulation.player, "seek", 1).length, 0);
    for (const { at } of changes) {
      const window = simulation.errors.filter((sample) => sample.at > at + 0.3 && sample.at < at + 1.3);
      const worst = Math.max(...window.map((sample) => Math.abs(sample.error)));
      assert.ok(worst < AGREEMENT, `within 1 s of the switch at ${at + 0.3} s: ${(worst * 1000).toFixed(0)} ms`);
    }
    // The first switch teaches the latency; the later ones land within the dead band.
    for (const { at } of changes.slice(1)) {
      const window = simulation.errors.filter((sample) => sample.at > at + 0.3 && sample.at < at + 1.3);
      const worst = Math.max(...window.map((sample) => Math.abs(sample.error)));
      assert.ok(worst < 0.02, `switch at ${at + 0.3} s: ${(worst * 1000).toFixed(0)} ms`);
    }
  });
});

describe("sync controller: the per-device switch", () => {
  it("with smooth sync off, only seeks: no nudge, and a seek from 100 ms", () => {
    const priors = { latencies: { start: AUDIO_PLAYER.startLatency, rateSwitch: AUDIO_PLAYER.switchLatency } };
    // Paused a little ahead, so that it starts on the room's instant.
    const simulation = simulate({ model: AUDIO_PLAYER, timelineAt: () => playing(10, 0), seconds: 5, initialPosition: 10.3, nudgeEnabled: false, priors });
    assert.ok(Math.abs(simulation.errors.at(-1)!.error) < 0.015);
    simulation.player.position -= 0.07;
    const small = simulate({ model: AUDIO_PLAYER, timelineAt: () => playing(10, 0), from: 5, seconds: 5, resume: simulation, nudgeEnabled: false });
    assert.equal(commandsBetween(small.player, "rate", 5).length, 0);
    assert.equal(commandsBetween(small.player, "seek", 5).length, 0, "70 ms is left alone");
    small.player.position -= 0.06;
    const large = simulate({ model: AUDIO_PLAYER, timelineAt: () => playing(10, 0), from: 10, seconds: 5, resume: small, nudgeEnabled: false });
    assert.equal(commandsBetween(large.player, "seek", 10).length, 1);
    assert.equal(commandsBetween(large.player, "rate", 10).filter((command) => command.kind === "rate" && command.rate !== 1).length, 0);
    assert.ok(convergedAfter(large, 10, 15, AGREEMENT) < 1.5);
  });
});

function fixture<T>(name: string): T {
  return JSON.parse(readFileSync(new URL(`../test/fixtures/${name}`, import.meta.url), "utf8")) as T;
}

describe("sync controller against traces recorded by the benchmark", () => {
  it("does not chase the jitter of real readings (H.264 + AAC, a minute of steady playback)", () => {
    const { looks } = fixture<{ looks: { expected: number; position: number }[] }>("steady-mp4-owner.json");
    // What the readings wander around their local median: the measurement's own noise.
    const errors = looks.map((look) => look.expected - look.position);
    const jitter = errors.map((error, index) => {
      const around = errors.slice(Math.max(0, index - 4), index + 5).sort((a, b) => a - b);
      return error - around[Math.floor(around.length / 2)]!;
    });
    assert.ok(jitter.length >= 40);
    const model = { ...AUDIO_PLAYER, noise: (index: number) => jitter[index % jitter.length]! };
    const priors = { latencies: { start: AUDIO_PLAYER.startLatency, rateSwitch: AUDIO_PLAYER.switchLatency } };
    const simulation = simulate({ model, timelineAt: () => playing(10, 0), seconds: 60, initialPosition: 10.3, priors });
    assert.equal(commandsBetween(simulation.player, "rate", 1).length, 0);
    assert.ok(convergedAfter(simulation, 1, 60, DEFAULT_DRIFT_CONFIG.deadBand) < 0.01);
  });

  for (const name of ["seeks-mp4-cpu4x.json", "seeks-mp4-owner.json"]) {
    it(`with the seek durations of ${name}, converges after every seek without a backward seek`, () => {
      const { seeks } = fixture<{ seeks: { duration: number }[] }>(name);
      const model = { ...AUDIO_PLAYER, seekDuration: (_target: number, index: number) => seeks[index % seeks.length]!.duration };
      // A seek to a new place every 4 s, as the benchmark does.
      const seekEvery = (now: number) => playing(17 * Math.floor(now / 4) + 5, Math.floor(now / 4) * 4_000);
      const simulation = simulate({ model, timelineAt: seekEvery, seconds: 4 * 12, initialPosition: 5, from: 0.001 });
      const times: number[] = [];
      for (let at = 8; at < 48; at += 4) {
        const room = seekEvery(at).position;
        for (const seek of commandsBetween(simulation.player, "seek", at, at + 4)) {
          assert.ok(seek.kind === "seek" && seek.position >= room, `a seek behind the room after ${at} s`);
        }
        times.push(convergedAfter(simulation, at, at + 4, AGREEMENT));
      }
      assert.ok(Math.max(...times) <= 3, `worst ${Math.max(...times)} s`);
      const sorted = [...times].sort((a, b) => a - b);
      assert.ok(sorted[Math.ceil(sorted.length * 0.95) - 1]! <= 1.5, `p95 ${sorted[Math.ceil(sorted.length * 0.95) - 1]} s`);
    });
  }
});
