import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  DEFAULT_DRIFT_CONFIG,
  type DriftAction,
  type DriftObservation,
  type DriftState,
  decideDrift,
  initialDriftState,
} from "../src/drift";

function observe(overrides: Partial<DriftObservation>): DriftObservation {
  return {
    now: 100,
    expectedPosition: 10,
    actualPosition: 10,
    roomRate: 1,
    paused: false,
    nudgeEnabled: true,
    ...overrides,
  };
}

/** A player that seeks with a delay and a landing error, and follows rate changes exactly. */
class SimulatedPlayer {
  position: number;
  rate = 1;
  private seekLandsAt = -Infinity;
  private seekTarget = 0;

  private seeks = 0;

  /** `seekLandingErrors` are used in turn, one per seek. */
  constructor(
    position: number,
    private readonly seekLatency: number,
    private readonly seekLandingErrors: readonly number[],
  ) {
    this.position = position;
  }

  apply(action: DriftAction, now: number): void {
    if (action.kind === "rate") {
      this.rate = action.rate;
    } else if (action.kind === "seek") {
      this.rate = action.rate;
      this.seekLandsAt = now + this.seekLatency;
      this.seekTarget = action.position + (this.seekLandingErrors[this.seeks % this.seekLandingErrors.length] ?? 0);
      this.seeks += 1;
    }
  }

  advance(now: number, step: number): void {
    if (now >= this.seekLandsAt && this.seekLandsAt !== -Infinity) {
      this.position = this.seekTarget;
      this.seekLandsAt = -Infinity;
      return;
    }
    if (this.seekLandsAt === -Infinity) {
      this.position += step * this.rate;
    }
  }
}

interface RunResult {
  seeks: number;
  rateChanges: number;
  /** Rate changes whose direction differs from the previous change (speed up ↔ slow down). */
  reversals: number;
  finalError: number;
  maxErrorInLastSeconds: number;
}

/**
 * Runs the controller against a simulated player for `seconds` at 4 ticks per second while the
 * room plays at rate 1 from position 0.
 */
function run(initialPosition: number, seconds: number, nudgeEnabled = true, jitter = 0, landingErrors = [0.05]): RunResult {
  const tick = 0.25;
  const player = new SimulatedPlayer(initialPosition, 0.3, landingErrors);
  let state: DriftState = initialDriftState();
  let seeks = 0;
  let rateChanges = 0;
  let reversals = 0;
  let lastDirection = 0;
  let finalError = 0;
  let maxErrorInLastSeconds = 0;
  let noise = 0.5;
  for (let step = 0; step * tick <= seconds; step += 1) {
    const now = step * tick;
    // Deterministic pseudo-random measurement jitter.
    noise = (noise * 9301 + 0.49297) % 1;
    const measured = player.position + (noise - 0.5) * 2 * jitter;
    const decision = decideDrift(state, observe({ now, expectedPosition: now, actualPosition: measured, nudgeEnabled }));
    state = decision.state;
    player.apply(decision.action, now);
    if (decision.action.kind === "seek") {
      seeks += 1;
    } else if (decision.action.kind === "rate") {
      rateChanges += 1;
      const direction = Math.sign(decision.action.rate - 1);
      if (direction !== 0 && lastDirection !== 0 && direction !== lastDirection) {
        reversals += 1;
      }
      if (direction !== 0) {
        lastDirection = direction;
      }
    }
    finalError = now - player.position;
    if (now > seconds - 10) {
      maxErrorInLastSeconds = Math.max(maxErrorInLastSeconds, Math.abs(finalError));
    }
    player.advance(now + tick, tick);
  }
  return { seeks, rateChanges, reversals, finalError, maxErrorInLastSeconds };
}

/**
 * Seconds until a player starting `initialError` behind the room stays within `band` of it for
 * the rest of `seconds` (Infinity if it never does), at 4 ticks per second.
 */
function timeToConverge(initialError: number, band: number, seconds = 20): number {
  const tick = 0.25;
  const player = new SimulatedPlayer(-initialError, 0.3, [0]);
  let state: DriftState = initialDriftState();
  let convergedAt = Infinity;
  for (let step = 0; step * tick <= seconds; step += 1) {
    const now = step * tick;
    const error = now - player.position;
    if (Math.abs(error) > band) {
      convergedAt = Infinity;
    } else if (convergedAt === Infinity) {
      convergedAt = now;
    }
    const decision = decideDrift(state, observe({ now, expectedPosition: now, actualPosition: player.position }));
    state = decision.state;
    player.apply(decision.action, now);
    player.advance(now + tick, tick);
  }
  return convergedAt;
}

/** Viewers should agree within this many seconds (the benchmark's goal). */
const AGREEMENT = 0.05;

describe("drift controller", () => {
  it("leaves errors inside the dead band alone", () => {
    const decision = decideDrift(initialDriftState(), observe({ actualPosition: 10 - DEFAULT_DRIFT_CONFIG.deadBand / 2 }));
    assert.deepEqual(decision.action, { kind: "none" });
    assert.equal(decision.state.nudging, false);
  });

  it("speeds up when behind and slows down when ahead", () => {
    const behind = decideDrift(initialDriftState(), observe({ actualPosition: 9.8 }));
    assert.equal(behind.action.kind, "rate");
    assert.ok(behind.action.kind === "rate" && behind.action.rate > 1);
    const ahead = decideDrift(initialDriftState(), observe({ actualPosition: 10.2 }));
    assert.ok(ahead.action.kind === "rate" && ahead.action.rate < 1);
  });

  it("never nudges by more than the configured fraction", () => {
    const decision = decideDrift(initialDriftState(2), observe({ actualPosition: 9.3, roomRate: 2 }));
    assert.ok(decision.action.kind === "rate");
    assert.ok(decision.action.kind === "rate" && decision.action.rate <= 2 * (1 + DEFAULT_DRIFT_CONFIG.maxNudge) + 1e-9);
  });

  it("seeks when the error reaches the seek threshold", () => {
    const decision = decideDrift(initialDriftState(), observe({ actualPosition: 10 - DEFAULT_DRIFT_CONFIG.seekThreshold }));
    assert.deepEqual(decision.action, { kind: "seek", position: 10, rate: 1 });
  });

  it("with nudging switched off, seeks at the lower threshold and never changes the rate", () => {
    const small = decideDrift(initialDriftState(), observe({ actualPosition: 9.9, nudgeEnabled: false }));
    assert.deepEqual(small.action, { kind: "none" });
    const larger = decideDrift(initialDriftState(), observe({ actualPosition: 9.7, nudgeEnabled: false }));
    assert.equal(larger.action.kind, "seek");
  });

  it("switching nudging off mid-nudge restores the room's rate", () => {
    const nudging = decideDrift(initialDriftState(), observe({ actualPosition: 9.8 }));
    assert.equal(nudging.action.kind, "rate");
    const off = decideDrift(nudging.state, observe({ now: 100.01, actualPosition: 9.8, nudgeEnabled: false }));
    assert.deepEqual(off.action, { kind: "rate", rate: 1 });
  });

  it("does not trust the player while a seek settles", () => {
    const seek = decideDrift(initialDriftState(), observe({ actualPosition: 5 }));
    assert.equal(seek.action.kind, "seek");
    const during = decideDrift(seek.state, observe({ now: 100.1, expectedPosition: 10.1, actualPosition: 5 }));
    assert.deepEqual(during.action, { kind: "none" });
  });

  it("waits out the seek cooldown before seeking again, nudging meanwhile", () => {
    const seek = decideDrift(initialDriftState(), observe({ actualPosition: 5 }));
    const afterSettle = 100 + DEFAULT_DRIFT_CONFIG.seekSettle + 0.1;
    const tooSoon = decideDrift(seek.state, observe({ now: afterSettle, expectedPosition: 12, actualPosition: 11 }));
    assert.equal(tooSoon.action.kind, "rate");
    const later = decideDrift(
      tooSoon.state,
      observe({ now: 100 + DEFAULT_DRIFT_CONFIG.seekCooldown, expectedPosition: 12, actualPosition: 11 }),
    );
    assert.equal(later.action.kind, "seek");
  });

  it("holds rate changes to the rate cooldown", () => {
    const first = decideDrift(initialDriftState(), observe({ actualPosition: 9.95 }));
    assert.equal(first.action.kind, "rate");
    const soon = decideDrift(first.state, observe({ now: 100.1, actualPosition: 9.85 }));
    assert.deepEqual(soon.action, { kind: "none" });
    const later = decideDrift(first.state, observe({ now: 100 + DEFAULT_DRIFT_CONFIG.rateCooldown, actualPosition: 9.85 }));
    assert.equal(later.action.kind, "rate");
  });

  it("keeps nudging inside the dead band until the release point (hysteresis)", () => {
    const start = decideDrift(initialDriftState(), observe({ actualPosition: 9.9 }));
    assert.equal(start.state.nudging, true);
    const between = (DEFAULT_DRIFT_CONFIG.deadBand + DEFAULT_DRIFT_CONFIG.nudgeRelease) / 2;
    const inside = decideDrift(start.state, observe({ now: 101, actualPosition: 10 - between }));
    assert.equal(inside.state.nudging, true);
    assert.notEqual(inside.action.kind === "rate" ? inside.action.rate : start.state.appliedRate, 1);
    const released = decideDrift(inside.state, observe({ now: 102, actualPosition: 10 - DEFAULT_DRIFT_CONFIG.nudgeRelease / 2 }));
    assert.equal(released.state.nudging, false);
    assert.deepEqual(released.action, { kind: "rate", rate: 1 });
    // And a fresh error just above the release point but inside the dead band does not restart it.
    const quiet = decideDrift(released.state, observe({ now: 103, actualPosition: 10 - between }));
    assert.deepEqual(quiet.action, { kind: "none" });
  });

  it("while paused, seeks only beyond the paused tolerance and resets the rate", () => {
    const nudging = decideDrift(initialDriftState(), observe({ actualPosition: 9.8 }));
    const closeEnough = decideDrift(
      nudging.state,
      observe({ now: 101, paused: true, actualPosition: 10 - DEFAULT_DRIFT_CONFIG.pausedTolerance / 2 }),
    );
    assert.deepEqual(closeEnough.action, { kind: "none" });
    assert.equal(closeEnough.state.appliedRate, 1);
    const far = decideDrift(initialDriftState(), observe({ paused: true, actualPosition: 9.5 }));
    assert.deepEqual(far.action, { kind: "seek", position: 10, rate: 1 });
  });

  it("closes a small error by nudging alone, without oscillating", () => {
    const result = run(-0.3, 60);
    assert.equal(result.seeks, 0);
    assert.equal(result.reversals, 0);
    assert.ok(result.maxErrorInLastSeconds < DEFAULT_DRIFT_CONFIG.deadBand, `error ${result.maxErrorInLastSeconds}`);
  });

  it("closes a large error with one seek and then nudges the landing error away", () => {
    const result = run(-5, 60);
    assert.equal(result.seeks, 1);
    assert.ok(result.maxErrorInLastSeconds < DEFAULT_DRIFT_CONFIG.deadBand, `error ${result.maxErrorInLastSeconds}`);
  });

  it("keeps every player within half the agreement goal, so that any two agree", () => {
    assert.ok(DEFAULT_DRIFT_CONFIG.deadBand <= AGREEMENT / 2);
    const justOutside = decideDrift(initialDriftState(), observe({ actualPosition: 10 - (AGREEMENT / 2 + 0.002) }));
    assert.equal(justOutside.action.kind, "rate");
  });

  it("moves a paused player that is off by more than a third of a frame to the room's frame", () => {
    const decision = decideDrift(initialDriftState(), observe({ paused: true, actualPosition: 10 - 0.012 }));
    assert.deepEqual(decision.action, { kind: "seek", position: 10, rate: 1 });
  });

  it("closes the lag a start leaves (50–150 ms) to within half the goal in under 2 s, by nudging", () => {
    for (const lag of [0.05, 0.1, 0.15, -0.1]) {
      const seconds = timeToConverge(lag, AGREEMENT / 2);
      assert.ok(seconds <= 2, `${lag * 1000} ms took ${seconds} s`);
    }
    assert.equal(run(-0.15, 20).seeks, 0);
  });

  it("does not overshoot: a nudge never turns a lag into a lead beyond the release point", () => {
    const tick = 0.25;
    const player = new SimulatedPlayer(-0.2, 0.3, [0]);
    let state: DriftState = initialDriftState();
    for (let step = 0; step * tick <= 20; step += 1) {
      const now = step * tick;
      const error = now - player.position;
      assert.ok(error > -DEFAULT_DRIFT_CONFIG.nudgeRelease, `ahead by ${-error} s at ${now} s`);
      const decision = decideDrift(state, observe({ now, expectedPosition: now, actualPosition: player.position }));
      state = decision.state;
      player.apply(decision.action, now);
      player.advance(now + tick, tick);
    }
  });

  it("stays calm under measurement jitter smaller than the dead band", () => {
    const result = run(0, 120, true, 0.015);
    assert.equal(result.seeks, 0);
    assert.equal(result.rateChanges, 0);
  });

  it("converges under jitter without flapping between speeding up and slowing down", () => {
    const result = run(-0.5, 120, true, 0.01);
    assert.equal(result.seeks, 0);
    assert.ok(result.reversals <= 1, `reversals ${result.reversals}`);
    assert.ok(result.maxErrorInLastSeconds < DEFAULT_DRIFT_CONFIG.deadBand + 0.01);
  });

  it("without nudging, learns the time a seek loses and stops seeking once it lands close", () => {
    // Each seek lands 0.4 s behind the room (latency of two ticks, 0.1 s overshoot).
    const result = run(-3, 60, false, 0, [0.1]);
    assert.equal(result.rateChanges, 0);
    assert.equal(result.seeks, 2);
    assert.ok(Math.abs(result.finalError) < DEFAULT_DRIFT_CONFIG.seekThresholdWithoutNudge);
  });

  it("aims the next seek ahead by what the last one missed", () => {
    const seek = decideDrift(initialDriftState(), observe({ actualPosition: 5 }));
    const landed = decideDrift(
      seek.state,
      observe({ now: 100 + DEFAULT_DRIFT_CONFIG.seekCooldown, expectedPosition: 12, actualPosition: 11 }),
    );
    assert.deepEqual(landed.action, { kind: "seek", position: 13, rate: 1 });
    assert.equal(landed.state.seekLead, 1);
  });

  it("with seeks that land far off either way, seeks no more often than the cooldown allows", () => {
    const seconds = 20;
    const result = run(-5, seconds, false, 0, [0.9, -0.9]);
    assert.ok(result.seeks >= 2);
    assert.ok(result.seeks <= Math.ceil(seconds / DEFAULT_DRIFT_CONFIG.seekCooldown) + 1, `seeks ${result.seeks}`);
  });
});
