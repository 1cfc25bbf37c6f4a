// Where to aim a seek while the room plays on, so that the player lands ahead of the room and
// waits for it instead of landing behind and chasing it.
//
// A seek takes time, and how much depends on where it lands: the decoder starts at the
// keyframe before the target and decodes every frame up to it (up to 10 s of video for
// ffmpeg's default H.264 GOP), and a target outside what is buffered waits for the network
// first. The model predicts a seek's duration from past seeks on this media and device:
//   duration ≈ a + b × (seconds from the keyframe before the target) + c × (not buffered),
// fitted by least squares towards a prior (ridge), with a margin of twice the recent
// residuals. The planner then takes the earliest target the room reaches no sooner than the
// seek is predicted to finish: a keyframe when one is that close (nothing to decode; the
// browser can `fastSeek` to it), else the point inside a GOP where the decoding time and the
// room's progress meet.
//
// Pure; times in seconds.

import { type Timeline, positionAt } from "./timeline";

/** The keyframe times of a media file, ascending; `everyFrame` when every frame is one. */
export interface KeyframeIndex {
  times: readonly number[];
  everyFrame: boolean;
}

/** The keyframe at or before `time` (the first one when `time` is before it). */
export function keyframeBefore(index: KeyframeIndex, time: number): number {
  if (index.everyFrame || index.times.length === 0) {
    return time;
  }
  return index.times[keyframeIndexBefore(index.times, time)] ?? 0;
}

/** The index of the last time at or before `time` in ascending `times` (0 when none is). */
function keyframeIndexBefore(times: readonly number[], time: number): number {
  let low = 0;
  let high = times.length - 1;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if ((times[middle] ?? 0) <= time) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

/** What one seek looked like: where it landed relative to the keyframes, and how long it took. */
export interface SeekObservation {
  /** Seconds from the keyframe before the target to the target (0 without an index). */
  fromKeyframe: number;
  /** Whether the target was outside the buffered ranges. */
  unbuffered: boolean;
  /** From asking for the seek until the player could play at the target. */
  duration: number;
}

export interface SeekModel {
  /** Weights of [1, fromKeyframe, unbuffered]. */
  weights: readonly [number, number, number];
  /** Root mean square of the recent residuals (with the prior's share). */
  spread: number;
  observations: readonly SeekObservation[];
}

/** How long seeks take before this device has seeked anything (a slow phone's worth). */
export const PRIOR_SEEK_MODEL: SeekModel = Object.freeze({
  weights: [0.12, 0.03, 0.15] as const,
  spread: 0.05,
  observations: [],
});

/** How many observations the prior weighs. */
const PRIOR_WEIGHT = 2;
/** Observations kept per media. */
const MAX_OBSERVATIONS = 16;
/** The shortest seek predicted. */
const MIN_SEEK = 0.02;

function features(fromKeyframe: number, unbuffered: boolean): [number, number, number] {
  return [1, fromKeyframe, unbuffered ? 1 : 0];
}

/** The model after one more seek, refitted towards `prior`. */
export function observeSeek(model: SeekModel, observation: SeekObservation, prior: SeekModel = PRIOR_SEEK_MODEL): SeekModel {
  const observations = [...model.observations, observation].slice(-MAX_OBSERVATIONS);
  // Normal equations of ridge regression towards the prior's weights.
  const matrix = [
    [PRIOR_WEIGHT, 0, 0],
    [0, PRIOR_WEIGHT, 0],
    [0, 0, PRIOR_WEIGHT],
  ];
  const vector = prior.weights.map((weight) => weight * PRIOR_WEIGHT);
  for (const { fromKeyframe, unbuffered, duration } of observations) {
    const x = features(fromKeyframe, unbuffered);
    for (let row = 0; row < 3; row += 1) {
      for (let column = 0; column < 3; column += 1) {
        matrix[row]![column]! += x[row]! * x[column]!;
      }
      vector[row]! += x[row]! * duration;
    }
  }
  const weights = solve3(matrix, vector);
  let squares = PRIOR_WEIGHT * prior.spread * prior.spread;
  for (const { fromKeyframe, unbuffered, duration } of observations) {
    const residual = duration - dot(weights, features(fromKeyframe, unbuffered));
    squares += residual * residual;
  }
  return { weights, spread: Math.sqrt(squares / (observations.length + PRIOR_WEIGHT)), observations };
}

/** The predicted duration of a seek to a target `fromKeyframe` seconds past its keyframe. */
export function predictSeek(model: SeekModel, fromKeyframe: number, unbuffered: boolean): number {
  return Math.max(MIN_SEEK, dot(model.weights, features(fromKeyframe, unbuffered)));
}

/** How much earlier than predicted a seek is planned to finish: enough to rarely land late. */
export function seekMargin(model: SeekModel): number {
  return 0.03 + 2 * model.spread;
}

export interface SeekPlan {
  target: number;
  /** The predicted duration, with the margin and the start lead. */
  predicted: number;
  fromKeyframe: number;
  unbuffered: boolean;
  /** The target is a keyframe (a `fastSeek` lands exactly on it). */
  onKeyframe: boolean;
}

export interface SeekContext {
  timeline: Timeline;
  /** Server time now, ms. */
  serverNow: number;
  model: SeekModel;
  keyframes: KeyframeIndex | undefined;
  /** Whether a position is inside the buffered ranges. */
  buffered: (position: number) => boolean;
  /** Media length in seconds; 0 when unknown. */
  duration: number;
  /**
   * How long before the room reaches the target the player must be ready there (its start
   * latency: it is released that much early).
   */
  startLead: number;
}

/** How many GOPs ahead the planner looks before settling for the plain prediction. */
const MAX_GOPS = 8;

/**
 * The earliest target the room reaches no sooner than the seek there is predicted to finish
 * (margin included).
 */
export function planSeek(context: SeekContext): SeekPlan {
  const { timeline, serverNow, model, keyframes, buffered, duration, startLead } = context;
  const margin = seekMargin(model) + startLead;
  const roomAfter = (seconds: number) => positionAt(timeline, serverNow + seconds * 1000);
  const clampToEnd = (position: number) => (duration > 0 ? Math.min(position, Math.max(0, duration - 0.05)) : position);
  const plain = (fromKeyframe: number, start: number) => {
    const unbuffered = !buffered(start);
    const predicted = predictSeek(model, fromKeyframe, unbuffered) + margin;
    return { target: clampToEnd(roomAfter(predicted)), predicted, fromKeyframe, unbuffered, onKeyframe: false };
  };
  const expected = roomAfter(0);
  if (!keyframes || keyframes.everyFrame || keyframes.times.length === 0) {
    return plain(0, expected);
  }
  /** The plan to land on `target`, decoding from `keyframe`. */
  const landing = (target: number, keyframe: number): SeekPlan => {
    const unbuffered = !buffered(target);
    return {
      target: clampToEnd(target),
      predicted: predictSeek(model, target - keyframe, unbuffered) + margin,
      fromKeyframe: target - keyframe,
      unbuffered,
      onKeyframe: target === keyframe,
    };
  };
  const times = keyframes.times;
  let index = keyframeIndexBefore(times, expected);
  for (let gop = 0; gop < MAX_GOPS && index < times.length; gop += 1, index += 1) {
    const keyframe = times[index] ?? 0;
    const next = times[index + 1] ?? (duration > 0 ? duration : Infinity);
    // How far ahead of the room a target is when the seek there is predicted to finish.
    const slack = (target: number) => {
      const unbuffered = !buffered(target);
      return target - roomAfter(predictSeek(model, target - keyframe, unbuffered) + margin);
    };
    const from = Math.max(keyframe, Math.min(expected, next));
    if (slack(from) >= 0) {
      return landing(from, keyframe);
    }
    const last = Number.isFinite(next) ? next - 0.001 : from + 3600;
    if (slack(last) < 0) {
      continue;
    }
    // The slack grows along a GOP as long as decoding is faster than playing: bisect.
    let low = from;
    let high = last;
    for (let step = 0; step < 30 && high - low > 0.001; step += 1) {
      const middle = (low + high) / 2;
      if (slack(middle) >= 0) {
        high = middle;
      } else {
        low = middle;
      }
    }
    return landing(high, keyframe);
  }
  return plain(Math.max(0, expected - keyframeBefore(keyframes, expected)), expected);
}

function dot(a: readonly number[], b: readonly number[]): number {
  return a.reduce((sum, value, index) => sum + value * (b[index] ?? 0), 0);
}

/** Solves a 3×3 system by Gaussian elimination with partial pivoting. */
function solve3(matrix: number[][], vector: number[]): [number, number, number] {
  const rows = matrix.map((row, index) => [...row, vector[index] ?? 0]);
  for (let column = 0; column < 3; column += 1) {
    let pivot = column;
    for (let row = column + 1; row < 3; row += 1) {
      if (Math.abs(rows[row]![column]!) > Math.abs(rows[pivot]![column]!)) {
        pivot = row;
      }
    }
    [rows[column], rows[pivot]] = [rows[pivot]!, rows[column]!];
    for (let row = column + 1; row < 3; row += 1) {
      const factor = rows[row]![column]! / rows[column]![column]!;
      for (let k = column; k < 4; k += 1) {
        rows[row]![k]! -= factor * rows[column]![k]!;
      }
    }
  }
  const solution = [0, 0, 0];
  for (let row = 2; row >= 0; row -= 1) {
    let sum = rows[row]![3]!;
    for (let k = row + 1; k < 3; k += 1) {
      sum -= rows[row]![k]! * solution[k]!;
    }
    solution[row] = sum / rows[row]![row]!;
  }
  return [solution[0]!, solution[1]!, solution[2]!];
}
