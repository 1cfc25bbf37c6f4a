// Where a room's shared timeline stands at a given server time.
//
// The room's state is anchored: at server time `anchorServerTime` the media was at `position`
// and from then on advances at `rate` unless paused. Pure, so the player and the tests share it.

export interface Timeline {
  paused: boolean;
  /** Media position at the anchor, in seconds. */
  position: number;
  rate: number;
  /** Server wall-clock time of the anchor, in milliseconds since the epoch. */
  anchorServerTime: number;
  /** Media length in seconds; 0 when unknown. */
  duration: number;
}

/** The media position (seconds) the room is at when the server's clock reads `serverNow` (ms). */
export function positionAt(timeline: Timeline, serverNow: number): number {
  const { paused, position, rate, anchorServerTime, duration } = timeline;
  const elapsed = paused ? 0 : (Math.max(0, serverNow - anchorServerTime) / 1000) * rate;
  const at = position + elapsed;
  return duration > 0 ? Math.min(at, duration) : at;
}

/** Seconds until a scheduled start (an anchor in the future while playing); 0 once started. */
export function startsIn(timeline: Timeline, serverNow: number): number {
  return timeline.paused ? 0 : Math.max(0, (timeline.anchorServerTime - serverNow) / 1000);
}

/**
 * The `setTimeout` delay (ms) that wakes a player at a start `countdown` seconds away and not
 * before it: browsers truncate delays to whole milliseconds, so an unrounded delay can fire a
 * fraction early, find the start still ahead, and leave it to the next tick.
 */
export function startTimerDelayMs(countdown: number): number {
  return Math.max(0, Math.ceil(countdown * 1000));
}
