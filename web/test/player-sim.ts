// A simulated <video> driven by the sync controller, for the unit tests: it starts late by a
// start latency, takes up a new rate late by a switch latency (an audio pipeline plays out
// its buffer first), seeks for as long as a seek-duration function says, may run at a slightly
// different speed from the room's clock, and is read with measurement noise. Time moves in
// small steps; the controller looks every tick and whenever it asked to be woken (a little
// late, as browser timers are).

import { type DriftCommand, type DriftConfig, DEFAULT_DRIFT_CONFIG, type DriftDecision, type DriftState, decideDrift, initialDriftState, type DriftPriors } from "../src/drift";
import type { KeyframeIndex } from "../src/seek";
import { type Timeline, positionAt } from "../src/timeline";

export interface PlayerModel {
  /** Seconds from play() until the position moves. */
  startLatency: number;
  /** The same when paused on the frame it last played (no seek since); `startLatency` when absent. */
  resumeLatency?: number;
  /** Seconds from a rate change until the position moves at it. */
  switchLatency: number;
  /** Seconds a seek to `target` takes. */
  seekDuration: (target: number, seekIndex: number) => number;
  /** How fast the player's media clock runs against the room's (1: exactly). */
  clockRate: number;
  /** What reading the position adds to it, in seconds, at look `index`. */
  noise: (index: number) => number;
  /** How late a wake-up fires, in seconds. */
  wakeLateness: number;
}

export const IDEAL_PLAYER: PlayerModel = {
  startLatency: 0,
  switchLatency: 0,
  seekDuration: () => 0.05,
  clockRate: 1,
  noise: () => 0,
  wakeLateness: 0.002,
};

export class SimulatedPlayer {
  position: number;
  rate = 1;
  paused = true;
  seeking = false;
  private seekDoneAt = 0;
  private movesFrom = 0;
  private pendingRate: { rate: number; at: number } | undefined;
  private seeks = 0;
  private seekedSincePlay = true;
  readonly log: { at: number; command: DriftCommand }[] = [];

  constructor(
    readonly model: PlayerModel,
    position = 0,
  ) {
    this.position = position;
  }

  apply(command: DriftCommand, now: number): void {
    this.log.push({ at: now, command });
    switch (command.kind) {
      case "pause":
        this.paused = true;
        this.pendingRate = this.pendingRate ? { ...this.pendingRate, at: now } : undefined;
        break;
      case "play":
        if (this.paused) {
          this.paused = false;
          const resumed = !this.seekedSincePlay && this.model.resumeLatency !== undefined;
          this.movesFrom = now + (resumed ? (this.model.resumeLatency ?? 0) : this.model.startLatency);
          this.seekedSincePlay = false;
        }
        break;
      case "rate":
        // A paused player starts at the rate it is given; a playing one switches late.
        this.pendingRate = { rate: command.rate, at: this.paused ? now : now + this.model.switchLatency };
        break;
      case "seek":
        this.position = command.position;
        this.seeking = true;
        this.seekedSincePlay = true;
        this.seekDoneAt = now + this.model.seekDuration(command.position, this.seeks);
        this.seeks += 1;
        break;
    }
  }

  /** Moves the player from `from` to `to` (seconds). */
  advance(from: number, to: number): void {
    let at = from;
    if (this.pendingRate && this.pendingRate.at <= to) {
      this.move(at, Math.max(at, this.pendingRate.at));
      at = Math.max(at, this.pendingRate.at);
      this.rate = this.pendingRate.rate;
      this.pendingRate = undefined;
    }
    this.move(at, to);
    if (this.seeking && to >= this.seekDoneAt) {
      this.seeking = false;
    }
  }

  private move(from: number, to: number): void {
    if (this.paused || this.seeking) {
      return;
    }
    const start = Math.max(from, this.movesFrom);
    if (to > start) {
      this.position += (to - start) * this.rate * this.model.clockRate;
    }
  }
}

export interface Look {
  at: number;
  /** Room position − player position, without the measurement noise. */
  error: number;
  paused: boolean;
  decision: DriftDecision;
}

export interface Simulation {
  player: SimulatedPlayer;
  state: DriftState;
  looks: Look[];
  /** The true error (room − player) at every step, for convergence checks. */
  errors: { at: number; error: number; paused: boolean }[];
}

export interface SimulationOptions {
  model: PlayerModel;
  /** The room's timeline at local time `now` (seconds; the server clock reads now × 1000). */
  timelineAt: (now: number) => Timeline;
  from?: number;
  seconds: number;
  initialPosition?: number;
  nudgeEnabled?: boolean;
  keyframes?: KeyframeIndex;
  priors?: DriftPriors;
  config?: Readonly<DriftConfig>;
  /** Continues an earlier simulation (same player and controller). */
  resume?: Simulation;
}

const STEP = 0.002;

export function simulate(options: SimulationOptions): Simulation {
  const { model, timelineAt, seconds, nudgeEnabled = true, keyframes, config = DEFAULT_DRIFT_CONFIG } = options;
  const player = options.resume?.player ?? new SimulatedPlayer(model, options.initialPosition ?? 0);
  let state = options.resume?.state ?? initialDriftState(timelineAt(options.from ?? 0).rate, options.priors);
  const looks: Look[] = [];
  const errors: Simulation["errors"] = [];
  const from = options.from ?? 0;
  let nextTick = from;
  let wakeAt = Infinity;
  let previousTimeline = "";
  for (let now = from; now < from + seconds; now += STEP) {
    const timeline = timelineAt(now);
    // The player looks at once when the room's state changes (it arrives on the stream).
    const key = JSON.stringify(timeline);
    const changed = previousTimeline !== key;
    previousTimeline = key;
    const room = positionAt(timeline, now * 1000);
    errors.push({ at: now, error: room - player.position, paused: player.paused });
    if (changed || now >= nextTick || now >= wakeAt) {
      if (now >= nextTick) {
        nextTick = now + config.tick;
      }
      if (now >= wakeAt) {
        wakeAt = Infinity;
      }
      const decision = decideDrift(
        state,
        {
          now,
          serverNow: now * 1000,
          timeline,
          position: player.position + model.noise(looks.length),
          paused: player.paused,
          seeking: player.seeking,
          ready: !player.seeking,
          duration: timeline.duration,
          nudgeEnabled,
          keyframes,
          buffered: () => true,
          canFastSeek: false,
        },
        config,
      );
      state = decision.state;
      looks.push({ at: now, error: room - player.position, paused: player.paused, decision });
      for (const command of decision.commands) {
        player.apply(command, now);
      }
      if (decision.wakeAt !== undefined) {
        wakeAt = Math.min(wakeAt, decision.wakeAt + model.wakeLateness);
      }
    }
    // A seek landing is an event the player reports at once.
    const wasSeeking = player.seeking;
    player.advance(now, now + STEP);
    if (wasSeeking && !player.seeking) {
      nextTick = now + STEP;
    }
  }
  return { player, state, looks: [...(options.resume?.looks ?? []), ...looks], errors: [...(options.resume?.errors ?? []), ...errors] };
}

/** A playing timeline: `position` at server time `anchorMs`, then at `rate`. */
export function playing(position: number, anchorMs: number, rate = 1, leadInRate = 0): Timeline {
  return { paused: false, position, rate, anchorServerTime: anchorMs, leadInRate, duration: 0 };
}

/** The commands of a kind the controller gave between two local times. */
export function commandsBetween(player: SimulatedPlayer, kind: DriftCommand["kind"], from = -Infinity, to = Infinity): DriftCommand[] {
  return player.log.filter((entry) => entry.command.kind === kind && entry.at >= from && entry.at < to).map((entry) => entry.command);
}

/**
 * Seconds after `from` until the true error stays within `band` up to `to` (Infinity if it
 * never does).
 */
export function convergedAfter(simulation: Simulation, from: number, to: number, band: number): number {
  const window = simulation.errors.filter((sample) => sample.at >= from && sample.at < to);
  let first = window.length;
  while (first > 0 && Math.abs(window[first - 1]!.error) <= band) {
    first -= 1;
  }
  return first < window.length ? window[first]!.at - from : Infinity;
}
