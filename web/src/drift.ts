// The drift controller: decides how a local player catches up with the room's timeline.
//
// A pure function of (state, observation) → (state, action), so that it can be tested against a
// simulated player without a browser. Small errors are corrected by nudging the playback rate
// (inaudible, no visible jump); large ones by a seek. A dead band, hysteresis between starting
// and stopping a nudge, and cooldowns after every seek and rate change keep it from ever
// chasing its own corrections.

/** Tuning; every time is in seconds. */
export interface DriftConfig {
  /** Errors smaller than this are left alone. */
  deadBand: number;
  /**
   * A nudge, once started, runs until the error is below this (smaller than `deadBand`), so
   * that the controller does not flap at the edge of the dead band.
   */
  nudgeRelease: number;
  /** Errors at least this large are corrected by a seek. */
  seekThreshold: number;
  /** With nudging switched off, errors at least this large are corrected by a seek instead. */
  seekThresholdWithoutNudge: number;
  /** Largest rate change a nudge applies, as a fraction of the room's rate (0.1 = ±10 %). */
  maxNudge: number;
  /** Rate change per second of error: the error closes in roughly `1 / nudgeGain` seconds. */
  nudgeGain: number;
  /** Rate changes smaller than this are not applied (players quantise the rate anyway). */
  rateStep: number;
  /** Minimum time between two rate changes. */
  rateCooldown: number;
  /**
   * After a seek, the player's position is not trusted for this long (it is still seeking and
   * buffering), and no other correction happens.
   */
  seekSettle: number;
  /** Minimum time between two seeks; errors in between are nudged or wait. */
  seekCooldown: number;
  /** While paused, the player is moved only when it is further than this from the position. */
  pausedTolerance: number;
  /**
   * Upper bound of the learned seek lead (how far ahead of the target a seek aims, because
   * the player keeps losing time while it seeks).
   */
  maxSeekLead: number;
}

export const DEFAULT_DRIFT_CONFIG: Readonly<DriftConfig> = Object.freeze({
  // Half the 50 ms viewers should agree within: two players resting on opposite edges of the
  // dead band are then still within it of each other.
  deadBand: 0.025,
  nudgeRelease: 0.01,
  seekThreshold: 0.75,
  seekThresholdWithoutNudge: 0.25,
  maxNudge: 0.1,
  // A start or rate change leaves every player 50–150 ms behind (the browser's start-up
  // latency): at 1.5 per second, such an error is gone in about a second, and at four ticks a
  // second each tick still removes less than half of what remains, so nothing overshoots.
  nudgeGain: 1.5,
  rateStep: 0.01,
  rateCooldown: 0.25,
  seekSettle: 0.6,
  seekCooldown: 2.0,
  // Well under a frame: a paused picture costs nothing to correct (the seek lands exactly
  // where asked) and everyone looks at it.
  pausedTolerance: 0.01,
  maxSeekLead: 1.5,
});

/** What the controller remembers between observations. */
export interface DriftState {
  /** The rate the controller last asked the player for (the room's rate when not nudging). */
  appliedRate: number;
  /** Whether a nudge is running (hysteresis between `deadBand` and `nudgeRelease`). */
  nudging: boolean;
  /** When the last seek was asked for; -Infinity when never. */
  lastSeekAt: number;
  /** When the last rate change was asked for; -Infinity when never. */
  lastRateChangeAt: number;
  /**
   * How far ahead of the room a seek aims while playing: learned from where seeks land, so
   * that a player that always loses the same time while seeking does not seek forever.
   */
  seekLead: number;
  /** Whether the first settled observation after a playing seek is still to be measured. */
  measureSeek: boolean;
}

export function initialDriftState(roomRate = 1, seekLead = 0): DriftState {
  return { appliedRate: roomRate, nudging: false, lastSeekAt: -Infinity, lastRateChangeAt: -Infinity, seekLead, measureSeek: false };
}

/** One look at the player, all times in seconds. */
export interface DriftObservation {
  /** A monotonic local time (e.g. `performance.now() / 1000`). */
  now: number;
  /** Where the room's timeline says the player should be now. */
  expectedPosition: number;
  /** Where the player is. */
  actualPosition: number;
  /** The room's playback rate. */
  roomRate: number;
  /** Whether the room is paused. */
  paused: boolean;
  /** The per-device switch: when false, the controller only ever seeks. */
  nudgeEnabled: boolean;
}

export type DriftAction =
  | { kind: "none" }
  | { kind: "rate"; rate: number }
  | { kind: "seek"; position: number; rate: number };

export interface DriftDecision {
  state: DriftState;
  action: DriftAction;
  /** expected − actual: positive when the player is behind the room. */
  error: number;
}

const NONE: DriftAction = { kind: "none" };

/** Decides the next correction. Call it on every player tick (a few times a second). */
export function decideDrift(
  state: DriftState,
  observation: DriftObservation,
  config: Readonly<DriftConfig> = DEFAULT_DRIFT_CONFIG,
): DriftDecision {
  const { now, expectedPosition, actualPosition, roomRate, paused, nudgeEnabled } = observation;
  const error = expectedPosition - actualPosition;
  const magnitude = Math.abs(error);

  if (now - state.lastSeekAt < config.seekSettle) {
    return { state, action: NONE, error };
  }
  if (state.measureSeek) {
    // What the last seek missed by is what the next one should aim further.
    const seekLead = clamp(state.seekLead + (paused ? 0 : error), 0, config.maxSeekLead);
    state = { ...state, seekLead, measureSeek: false };
  }

  if (paused) {
    const settled = { ...state, nudging: false, appliedRate: roomRate };
    if (magnitude > config.pausedTolerance) {
      return {
        state: { ...settled, lastSeekAt: now },
        action: { kind: "seek", position: expectedPosition, rate: roomRate },
        error,
      };
    }
    return { state: settled, action: NONE, error };
  }

  const seekThreshold = nudgeEnabled ? config.seekThreshold : config.seekThresholdWithoutNudge;
  if (magnitude >= seekThreshold && now - state.lastSeekAt >= config.seekCooldown) {
    return {
      state: { ...state, appliedRate: roomRate, nudging: false, lastSeekAt: now, lastRateChangeAt: now, measureSeek: true },
      action: { kind: "seek", position: expectedPosition + state.seekLead * roomRate, rate: roomRate },
      error,
    };
  }

  const nudging = nudgeEnabled && (state.nudging ? magnitude > config.nudgeRelease : magnitude > config.deadBand);
  const rate = nudging
    ? roundTo(roomRate * (1 + clamp(error * config.nudgeGain, -config.maxNudge, config.maxNudge)), config.rateStep)
    : roomRate;
  const rateChange = Math.abs(rate - state.appliedRate);
  // Returning to the room's rate is never held back by the cooldown or the step: running on
  // past the target is what would make the controller oscillate.
  const releasing = !nudging && rateChange > 0;
  const mayChange = releasing || (rateChange >= config.rateStep / 2 && now - state.lastRateChangeAt >= config.rateCooldown);
  if (!mayChange) {
    return { state: { ...state, nudging }, action: NONE, error };
  }
  return {
    state: { ...state, nudging, appliedRate: rate, lastRateChangeAt: now },
    action: { kind: "rate", rate },
    error,
  };
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}

function roundTo(value: number, step: number): number {
  return Math.round(value / step) * step;
}
