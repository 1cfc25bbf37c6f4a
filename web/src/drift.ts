// The sync controller: decides how a local player follows the room's timeline.
//
// A pure function of (state, what the player shows now) → (state, commands, when to look
// again), so that it can be run against a simulated player and recorded traces without a
// browser. What it does:
// * Large errors (a room seek, joining, a stall) are corrected by a seek that lands *ahead* of
//   the room and holds the frame until the room gets there: the target comes from a model of
//   how long seeks take on this media and device (seek.ts, keyframe-aware), and the video is
//   released early by its learned start latency. A seek that lands late is not chased with an
//   overshooting second one: small lateness is nudged away, large lateness re-planned.
// * Small errors are corrected by a proportional-integral controller on the playback rate:
//   the proportional part is a nudge of at most ±5 % (pitch preserved by the player) sized to
//   the error and planned to end when the error is gone, so that one correction is two rate
//   changes; the integral part is a trim (at most ±1 %): the drift rate measured over the
//   last seconds with the controller's own rate changes taken out, which takes up a steady
//   difference between this player's clock and the room's, so that steady state needs no
//   nudges at all. (It follows the error's slope, not the error: an offset inside the dead
//   band is no reason to change speed, and integrating it would make the trim swing around it.)
//   A dead band on the median of the last few errors keeps it from chasing measurement noise.
// * Starts and rate changes are scheduled by the server at a future instant: the player
//   switches early by its learned latency (an audio pipeline plays out what it has buffered at
//   the old rate first), measured after every start and switch.

import { type KeyframeIndex, PRIOR_SEEK_MODEL, type SeekModel, type SeekPlan, observeSeek, planSeek } from "./seek";
import { type Timeline, changesIn, positionAt, rateAt, reachesAt, startsIn } from "./timeline";

/** Tuning; every time is in seconds. */
export interface DriftConfig {
  /** Median errors smaller than this are left alone (two players inside it agree within 2×). */
  deadBand: number;
  /** Nudge per second of error: the nudge lasts about `1 / proportionalGain` s. */
  proportionalGain: number;
  /** Largest nudge, as a fraction of the room's rate. */
  maxNudge: number;
  /** Smallest nudge: smaller ones would take too long. */
  minNudge: number;
  /** Nudges are multiples of this fraction. */
  nudgeStep: number;
  /** A nudge whose error departs from its plan by more than this is planned again. */
  replanTolerance: number;
  /** The drift rate is measured over this long, then becomes the trim. */
  driftWindow: number;
  /** A change of the error between two looks larger than this is a jump, not drift. */
  driftJump: number;
  /** Largest trim, as a fraction of the room's rate. */
  maxTrim: number;
  /** The trim the player is given is a multiple of this (so that it changes rarely). */
  trimStep: number;
  /** Errors at least this large are corrected by a seek. */
  seekThreshold: number;
  /** With nudging switched off (the per-device switch), the threshold for a seek. */
  seekThresholdWithoutNudge: number;
  /** In steady playback, the least time between two corrective seeks. */
  seekCooldown: number;
  /** A seek that lands at most this late starts at once and is nudged; later is re-planned. */
  lateTolerance: number;
  /** A hold longer than this means the plan no longer fits the timeline: plan again. */
  maxHold: number;
  /** A seek that has not landed after this long is given up. */
  seekTimeout: number;
  /** While the room is paused, the player is moved only when further than this. */
  pausedTolerance: number;
  /** After a start or a rate switch, the error is measured (to learn the latency) after this. */
  settle: number;
  /** A latency is the median of this many recent measurements (a stall now and then is not one). */
  latencyMeasurements: number;
  /** Largest start or switch latency learned. */
  maxLatency: number;
  /** How often the player looks without being woken; events closer than two ticks get a wake. */
  tick: number;
}

export const DEFAULT_DRIFT_CONFIG: Readonly<DriftConfig> = Object.freeze({
  // Two players resting on opposite edges still agree within 30 ms.
  deadBand: 0.015,
  proportionalGain: 1.5,
  maxNudge: 0.05,
  minNudge: 0.01,
  nudgeStep: 0.005,
  replanTolerance: 0.02,
  // Long enough for a 0.05 % drift to stand out of readings good to a fraction of a ms.
  driftWindow: 8,
  driftJump: 0.005,
  maxTrim: 0.01,
  trimStep: 0.001,
  // At 5 %, 250 ms take 5 s to nudge away; a held seek takes a few hundred ms.
  seekThreshold: 0.25,
  seekThresholdWithoutNudge: 0.1,
  seekCooldown: 1.5,
  // 60 ms at 5 % is gone in 1.2 s, sooner than a second seek and its hold.
  lateTolerance: 0.06,
  maxHold: 2,
  seekTimeout: 10,
  // Well under a frame: a paused picture costs nothing to correct and everyone looks at it.
  pausedTolerance: 0.01,
  settle: 0.4,
  latencyMeasurements: 5,
  maxLatency: 0.3,
  tick: 0.25,
});

/** How late a player really starts and switches rates (learned per media and device). */
export interface Latencies {
  /** From `play()` until the position moves, after a seek (or a new media): the decoder and the audio output start afresh. */
  start: number;
  /** From `play()` until the position moves, paused where it last played: nothing to refill, often much shorter. */
  resume: number;
  /** From setting `playbackRate` until the position moves at it. */
  rateSwitch: number;
}

export const PRIOR_LATENCIES: Readonly<Latencies> = Object.freeze({ start: 0, resume: 0, rateSwitch: 0 });

interface SeekInFlight {
  plan: SeekPlan;
  issuedAt: number;
  /** A seek while playing, held at its target until the room gets there. */
  hold: boolean;
}

/** A start or rate switch whose effect is measured once it has settled. */
export interface Settling {
  kind: "start" | "resume" | "switch";
  at: number;
  fromRate: number;
  toRate: number;
  /** The error when it was made (for a start released early, the part of the hold left). */
  errorBefore: number;
  /** The latency it allowed for (a switch is made that much before the room's instant). */
  latencyUsed: number;
}

/** What the controller remembers between looks. */
export interface DriftState {
  mode: "idle" | "seeking" | "holding";
  seek: SeekInFlight | undefined;
  holdTarget: number;
  /** The timeline being followed, as a key: a new one resets the corrections. */
  timelineKey: string;
  /** The room's rate the player follows (switched early by `latencies.rateSwitch`). */
  baseRate: number;
  /** The rate last given to the player. */
  appliedRate: number;
  /** The integral term, and the multiple of `trimStep` the player is given. */
  trim: number;
  appliedTrim: number;
  /**
   * The errors of the current drift window with the controller's own rate changes taken out
   * (each plus `driftOffset`: how far the rates it set moved the player from the room's rate).
   */
  driftSamples: [number, number][];
  driftOffset: number;
  /** The running nudge (a fraction of the room's rate), its plan and its end. */
  nudge: number;
  nudgeStartedAt: number;
  nudgeStartError: number;
  nudgeUntil: number;
  /** Recent errors in steady playback (for the median). */
  errors: number[];
  lastLookAt: number;
  lastCorrectiveSeekAt: number;
  settling: Settling | undefined;
  latencies: Latencies;
  /**
   * The recent measurements of each on this media (until a switch or a resume is measured, the
   * start latency stands in for it).
   */
  measured: { start: number[]; resume: number[]; rateSwitch: number[] };
  /** Whether the player seeked since it last played (its next start is a start, not a resume). */
  seekedSincePlay: boolean;
  seekModel: SeekModel;
  /** The seek model this device brought to this media. */
  priorSeekModel: SeekModel;
}

export interface DriftPriors {
  seekModel?: SeekModel;
  latencies?: Partial<Latencies>;
}

export function initialDriftState(roomRate = 1, priors: DriftPriors = {}): DriftState {
  const seekModel = priors.seekModel ?? PRIOR_SEEK_MODEL;
  return {
    mode: "idle",
    seek: undefined,
    holdTarget: 0,
    timelineKey: "",
    baseRate: roomRate,
    appliedRate: roomRate,
    trim: 0,
    driftSamples: [],
    driftOffset: 0,
    appliedTrim: 0,
    nudge: 0,
    nudgeStartedAt: -Infinity,
    nudgeStartError: 0,
    nudgeUntil: -Infinity,
    errors: [],
    lastLookAt: -Infinity,
    lastCorrectiveSeekAt: -Infinity,
    settling: undefined,
    latencies: { ...PRIOR_LATENCIES, ...priors.latencies },
    measured: { start: [], resume: [], rateSwitch: [] },
    seekedSincePlay: true,
    seekModel: { ...seekModel, observations: [] },
    priorSeekModel: seekModel,
  };
}

/** What the player shows now. */
export interface PlayerView {
  /** A monotonic local time, in seconds (e.g. `performance.now() / 1000`). */
  now: number;
  /** The server's time now, in ms (the clock estimate). */
  serverNow: number;
  timeline: Timeline;
  /** The video's position. */
  position: number;
  /** Whether the video is paused, seeking, and able to play (HAVE_FUTURE_DATA). */
  paused: boolean;
  seeking: boolean;
  ready: boolean;
  /** Media length in seconds; 0 when unknown. */
  duration: number;
  /** The per-device switch: when false, the controller only ever seeks. */
  nudgeEnabled: boolean;
  keyframes: KeyframeIndex | undefined;
  buffered: (position: number) => boolean;
  /** Whether the player has `fastSeek` (land on a keyframe without decoding past it). */
  canFastSeek: boolean;
}

export type DriftCommand =
  | { kind: "rate"; rate: number }
  | { kind: "play" }
  | { kind: "pause" }
  | { kind: "seek"; position: number; fast: boolean };

export interface DriftDecision {
  state: DriftState;
  commands: DriftCommand[];
  /** expected − actual while following (positive: behind the room); undefined otherwise. */
  error: number | undefined;
  /** When to look again (local seconds), if before the next tick matters. */
  wakeAt: number | undefined;
  /** The seek planned, when one was. */
  plan?: SeekPlan;
}

function timelineKey(timeline: Timeline): string {
  const { paused, position, rate, anchorServerTime, leadInRate } = timeline;
  return `${paused}|${position}|${rate}|${anchorServerTime}|${leadInRate}`;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** The least-squares slope of [x, y] points. */
function slope(points: readonly [number, number][]): number {
  const count = points.length;
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / count;
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / count;
  let covariance = 0;
  let variance = 0;
  for (const [x, y] of points) {
    covariance += (x - meanX) * (y - meanY);
    variance += (x - meanX) * (x - meanX);
  }
  return variance > 0 ? covariance / variance : 0;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

/** The state with every correction in progress forgotten (nothing measured so far still holds). */
function calm(state: DriftState): DriftState {
  return { ...state, nudge: 0, nudgeUntil: -Infinity, errors: [], settling: undefined, driftSamples: [], driftOffset: 0 };
}

/** Decides what the player should do now. Call it every tick, on every wake and on video events. */
export function decideDrift(
  previous: DriftState,
  view: PlayerView,
  config: Readonly<DriftConfig> = DEFAULT_DRIFT_CONFIG,
): DriftDecision {
  const { now, serverNow, timeline } = view;
  const commands: DriftCommand[] = [];
  let wakeAt: number | undefined;
  const wake = (at: number) => {
    wakeAt = wakeAt === undefined ? at : Math.min(wakeAt, at);
  };
  let state = { ...previous, lastLookAt: now };
  const done = (error: number | undefined, plan?: SeekPlan): DriftDecision => ({ state, commands, error, wakeAt, ...(plan ? { plan } : {}) });
  const setRate = (rate: number) => {
    if (Math.abs(rate - state.appliedRate) > 1e-9) {
      commands.push({ kind: "rate", rate });
      state.appliedRate = rate;
    }
  };
  const trimmed = (rate: number) => rate * (1 + (view.nudgeEnabled ? state.appliedTrim : 0));
  // A seek empties the player's pipeline: the next start refills it (in Chromium with sound,
  // 60–90 ms), where a resume on the frame it paused on often starts at once.
  if (view.seeking) {
    state.seekedSincePlay = true;
  }
  // All latencies are mostly the audio output's buffer: until a switch or a resume is measured
  // on this media, its start latency is the better guess (the device's last media may have had
  // no sound).
  const startLatency = () =>
    state.seekedSincePlay || state.measured.resume.length === 0 ? state.latencies.start : state.latencies.resume;
  const switchLatency = () => (state.measured.rateSwitch.length > 0 ? state.latencies.rateSwitch : state.latencies.start);
  /** Plays from paused at `rate`, `error` behind the room; what it is after `settle` teaches the start latency. */
  const start = (rate: number, error: number) => {
    state.baseRate = rate;
    setRate(trimmed(rate));
    commands.push({ kind: "play" });
    const kind = state.seekedSincePlay ? "start" : "resume";
    const settling: Settling = { kind, at: now, fromRate: 0, toRate: rate, errorBefore: error, latencyUsed: startLatency() };
    state = { ...calm(state), mode: "idle", settling, seekedSincePlay: false };
  };

  const key = timelineKey(timeline);
  if (key !== state.timelineKey) {
    // A new target: the corrections belonged to the old one. A seek in flight lands first.
    state = { ...calm(state), timelineKey: key, lastCorrectiveSeekAt: -Infinity, mode: state.mode === "holding" ? "idle" : state.mode };
  }

  if (state.mode === "seeking" && state.seek) {
    const seek = state.seek;
    if ((view.seeking || !view.ready) && now - seek.issuedAt < config.seekTimeout) {
      return done(undefined);
    }
    let seekModel = state.seekModel;
    if (seek.hold && !view.seeking && view.ready) {
      const { fromKeyframe, unbuffered } = seek.plan;
      seekModel = observeSeek(seekModel, { fromKeyframe, unbuffered, duration: now - seek.issuedAt }, state.priorSeekModel);
    }
    state = { ...state, seekModel, seek: undefined, mode: seek.hold ? "holding" : "idle", holdTarget: seek.plan.target };
  }

  const expected = positionAt(timeline, serverNow);
  const atEnd = view.duration > 0 && expected >= view.duration - 0.05;

  if (timeline.paused || atEnd) {
    // The room stands still: so does the player, on the room's frame.
    state = { ...calm(state), mode: "idle" };
    if (!view.paused) {
      commands.push({ kind: "pause" });
    }
    if (!atEnd && Math.abs(view.position - expected) > config.pausedTolerance) {
      const plan: SeekPlan = { target: expected, predicted: 0, fromKeyframe: 0, unbuffered: false, onKeyframe: false };
      commands.push({ kind: "seek", position: expected, fast: false });
      state = { ...state, mode: "seeking", seek: { plan, issuedAt: now, hold: false }, seekedSincePlay: true };
    }
    return done(expected - view.position);
  }

  // The room plays, or holds its frame until a scheduled start: either way, a paused player
  // waits for the room to reach its frame (a seek that landed ahead, a scheduled start) and
  // starts early by its start latency.
  const error = expected - view.position;
  const held = startsIn(timeline, serverNow) > 0;
  if (state.mode === "idle" && !state.settling && (view.paused || held) && view.position > expected - config.pausedTolerance) {
    // Within a fraction of a frame behind counts as on it.
    const holdTarget = Math.max(view.position, expected);
    const reach = reachesAt(timeline, holdTarget, serverNow);
    if (Number.isFinite(reach) && (reach - serverNow) / 1000 <= config.maxHold) {
      if (!view.paused) {
        commands.push({ kind: "pause" });
      }
      state = { ...calm(state), mode: "holding", holdTarget };
    }
  }
  if (state.mode === "holding") {
    const reach = reachesAt(timeline, state.holdTarget, serverNow);
    const holdFor = (reach - serverNow) / 1000;
    const late = expected - state.holdTarget;
    if (Number.isFinite(reach) && holdFor <= config.maxHold) {
      const releaseAt = now + holdFor - startLatency();
      if (releaseAt - now > 0.001) {
        if (releaseAt - now < 2 * config.tick) {
          wake(releaseAt);
        }
        return done(error);
      }
      // A paused player starts at the rate it is given: no switch latency to allow for. The
      // error it starts from is how far it will be ahead when the room gets to its frame: a
      // scheduled start's room stands still until its instant, so `error` alone would hide
      // the hold left and teach too short a start latency.
      const rate = rateAt(timeline, reach + 1);
      start(rate, state.holdTarget - view.position - holdFor * rate);
      return done(error);
    }
    state = { ...state, mode: "idle" };
    // Starting takes its latency too: what counts is how late the picture will move.
    if (!Number.isFinite(reach) && late >= 0 && late + startLatency() * timeline.rate <= config.lateTolerance) {
      // Landed (or woken) a little late: play now and let the nudges close it.
      start(rateAt(timeline, serverNow + 1), error);
      return done(error);
    }
    // Otherwise the room moved on (or back): plan again below.
  }

  if (!view.paused && !view.ready) {
    // Buffering: the position stands still for reasons no correction helps; measure afresh
    // once it plays (a seek now would only ask for more data).
    state = calm(state);
    return done(error);
  }

  if (state.settling && now - state.settling.at < config.settle) {
    wake(state.settling.at + config.settle);
    return done(error);
  }
  if (state.settling) {
    const { settling } = state;
    state = {
      ...state,
      ...learnLatency(state, settling, error, config),
      settling: undefined,
    };
  }

  const threshold = view.nudgeEnabled ? config.seekThreshold : config.seekThresholdWithoutNudge;
  const steady = state.errors.length >= 2;
  const mayCorrectBySeek = !steady || now - state.lastCorrectiveSeekAt >= config.seekCooldown;
  // Far off; or paused and not close enough to just start; or not on the frame a scheduled
  // start holds (a paused player is moved for free).
  const startLag = error + startLatency() * timeline.rate;
  const farOff =
    Math.abs(error) >= threshold ||
    (view.paused && (startLag > config.lateTolerance || error < -config.lateTolerance)) ||
    (held && Math.abs(error) > config.pausedTolerance);
  if (farOff && mayCorrectBySeek) {
    const plan = planSeek({
      timeline,
      serverNow,
      model: state.seekModel,
      keyframes: view.keyframes,
      buffered: view.buffered,
      duration: view.duration,
      startLead: state.latencies.start,
    });
    if (!view.paused) {
      commands.push({ kind: "pause" });
    }
    commands.push({ kind: "seek", position: plan.target, fast: plan.onKeyframe && view.canFastSeek });
    state = {
      ...calm(state),
      mode: "seeking",
      seek: { plan, issuedAt: now, hold: true },
      lastCorrectiveSeekAt: steady ? now : state.lastCorrectiveSeekAt,
      seekedSincePlay: true,
    };
    return done(error, plan);
  }
  if (view.paused) {
    // The room plays and this player is close enough: just play.
    start(rateAt(timeline, serverNow + 1), error);
    return done(error);
  }

  // A scheduled rate change: switch early by the learned latency, so that the new rate takes
  // effect on the room's instant; wake for it when it is near.
  const baseRate = rateAt(timeline, serverNow + switchLatency() * 1000 + 1);
  if (timeline.leadInRate > 0) {
    const switchIn = changesIn(timeline, serverNow) - switchLatency();
    if (switchIn > 0 && switchIn < 2 * config.tick) {
      wake(now + switchIn);
    }
  }
  if (baseRate !== state.baseRate) {
    const settling: Settling = { kind: "switch", at: now, fromRate: state.baseRate, toRate: baseRate, errorBefore: error, latencyUsed: switchLatency() };
    state = { ...calm(state), baseRate, settling };
    setRate(trimmed(baseRate));
    wake(now + config.settle);
    return done(error);
  }

  if (!view.nudgeEnabled) {
    state = { ...state, nudge: 0, nudgeUntil: -Infinity };
    setRate(baseRate);
    return done(error);
  }

  state = { ...state, errors: [...state.errors, error].slice(-3) };
  const filtered = median(state.errors);

  // Integral: how fast the error grows with the controller's own rate changes taken out is how
  // much faster or slower this player's clock runs; once measured long enough, it is the trim.
  // A jump (a stall, a reading taken late) is no drift: the window starts again after it.
  const driftOffset =
    state.driftSamples.length > 0 ? state.driftOffset + (previous.appliedRate - baseRate) * clamp(now - previous.lastLookAt, 0, 1) : 0;
  const lastSample = state.driftSamples.at(-1);
  const jumped = lastSample !== undefined && Math.abs(error + driftOffset - lastSample[1]) > config.driftJump;
  const driftSamples: [number, number][] = jumped ? [[now, error]] : [...state.driftSamples, [now, error + driftOffset]];
  state = { ...state, driftSamples, driftOffset: jumped ? 0 : driftOffset };
  if (now - driftSamples[0]![0] >= config.driftWindow && driftSamples.length >= 8) {
    const trim = clamp(slope(driftSamples) / baseRate, -config.maxTrim, config.maxTrim);
    state = { ...state, driftSamples: [], driftOffset: 0, trim };
    if (Math.abs(trim - state.appliedTrim) >= config.trimStep / 2) {
      state = { ...state, appliedTrim: Math.round(trim / config.trimStep) * config.trimStep };
    }
  }

  if (state.nudge !== 0) {
    // The player takes up a new rate only after its switch latency.
    const working = Math.max(0, now - state.nudgeStartedAt - switchLatency());
    const planned = state.nudgeStartError - state.nudge * baseRate * working;
    const offPlan = state.errors.length >= 2 && Math.abs(filtered - planned) > config.replanTolerance;
    if (now < state.nudgeUntil - 0.001 && !offPlan) {
      wake(state.nudgeUntil);
      return done(error);
    }
    state = { ...state, nudge: 0, nudgeUntil: -Infinity };
    if (!offPlan) {
      // The nudge has done its work: back to the room's rate, and measure afresh.
      state.errors = [];
      setRate(trimmed(baseRate));
      return done(error);
    }
    // It went wrong (a stall, a clock step): plan again from what is measured now.
  }

  // Proportional: a nudge sized to the error, planned to end when the error is gone.
  if (state.errors.length >= 2 && Math.abs(filtered) > config.deadBand) {
    const size = clamp(Math.round((config.proportionalGain * Math.abs(filtered)) / config.nudgeStep) * config.nudgeStep, config.minNudge, config.maxNudge);
    const nudge = Math.sign(filtered) * size;
    const lasts = Math.abs(filtered) / (size * baseRate);
    state = { ...state, nudge, nudgeStartedAt: now, nudgeStartError: filtered, nudgeUntil: now + lasts };
    setRate(baseRate * (1 + state.appliedTrim + nudge));
    wake(state.nudgeUntil);
    return done(error);
  }
  setRate(trimmed(baseRate));
  return done(error);
}

/**
 * The latencies after a start or switch whose error, `settle` s later, was `error`. A start
 * from the error e₀ that then stood still for L behind a room moving at r is e₀ + L·r behind
 * (a start released early by the latency it expected has e₀ = −L·r); a switch made L' before
 * the room's instant that really took L changed the error by (L − L')·Δrate. The latency is
 * the median of the recent measurements.
 */
export function learnLatency(
  state: Pick<DriftState, "latencies" | "measured">,
  settling: Settling,
  error: number,
  config: Readonly<DriftConfig> = DEFAULT_DRIFT_CONFIG,
): Pick<DriftState, "latencies" | "measured"> {
  const { kind, fromRate, toRate, errorBefore, latencyUsed } = settling;
  const change = toRate - fromRate;
  if (Math.abs(change) < 0.05) {
    return state;
  }
  const latency = clamp(kind === "switch" ? latencyUsed + (error - errorBefore) / change : (error - errorBefore) / change, 0, config.maxLatency);
  const key = kind === "switch" ? "rateSwitch" : kind;
  const recent = [...state.measured[key], latency].slice(-config.latencyMeasurements);
  return { latencies: { ...state.latencies, [key]: median(recent) }, measured: { ...state.measured, [key]: recent } };
}
