// Where a room's shared timeline stands at a given server time.
//
// The room's state is anchored: at server time `anchorServerTime` the media was at `position`
// and from then on advances at `rate` unless paused. Before a future anchor it moves at
// `leadInRate`: 0 for a scheduled start (every player holds the frame until the anchor), the
// previous rate for a scheduled rate change (every player plays on and switches at the anchor).
// Pure, so the player and the tests share it.

export interface Timeline {
  paused: boolean;
  /** Media position at the anchor, in seconds. */
  position: number;
  rate: number;
  /** Server wall-clock time of the anchor, in milliseconds since the epoch. */
  anchorServerTime: number;
  /** While playing, the rate before a future anchor (0: the frame holds until it). */
  leadInRate: number;
  /** Media length in seconds; 0 when unknown. */
  duration: number;
}

/** The media position (seconds) the room is at when the server's clock reads `serverNow` (ms). */
export function positionAt(timeline: Timeline, serverNow: number): number {
  const { paused, position, anchorServerTime, duration } = timeline;
  const elapsed = paused ? 0 : ((serverNow - anchorServerTime) / 1000) * rateAt(timeline, serverNow);
  const at = Math.max(0, position + elapsed);
  return duration > 0 ? Math.min(at, duration) : at;
}

/** How fast the room's position moves at server time `serverNow` (ms): 0 while paused or held. */
export function rateAt(timeline: Timeline, serverNow: number): number {
  if (timeline.paused) {
    return 0;
  }
  return serverNow >= timeline.anchorServerTime ? timeline.rate : timeline.leadInRate;
}

/** Seconds until a scheduled start (an anchor in the future with the frame held); 0 otherwise. */
export function startsIn(timeline: Timeline, serverNow: number): number {
  return timeline.paused || timeline.leadInRate > 0 ? 0 : Math.max(0, (timeline.anchorServerTime - serverNow) / 1000);
}

/** Seconds until a scheduled change of rate or start (a future anchor while playing); 0 otherwise. */
export function changesIn(timeline: Timeline, serverNow: number): number {
  return timeline.paused ? 0 : Math.max(0, (timeline.anchorServerTime - serverNow) / 1000);
}

/**
 * The server time (ms) at which the room reaches `target` (seconds), from `serverNow` on;
 * Infinity when it never does (paused, held before it forever, or already past it).
 */
export function reachesAt(timeline: Timeline, target: number, serverNow: number): number {
  let at = serverNow;
  let from = positionAt(timeline, serverNow);
  if (target < from) {
    return Infinity;
  }
  if (!timeline.paused && serverNow < timeline.anchorServerTime) {
    const atAnchor = positionAt(timeline, timeline.anchorServerTime);
    if (target <= atAnchor && timeline.leadInRate > 0) {
      return at + ((target - from) / timeline.leadInRate) * 1000;
    }
    at = timeline.anchorServerTime;
    from = atAnchor;
  }
  const rate = timeline.paused ? 0 : timeline.rate;
  if (target === from) {
    return at;
  }
  return rate > 0 ? at + ((target - from) / rate) * 1000 : Infinity;
}

/**
 * The `setTimeout` delay (ms) that wakes a player at a start `countdown` seconds away and not
 * before it: browsers truncate delays to whole milliseconds, so an unrounded delay can fire a
 * fraction early, find the start still ahead, and leave it to the next tick.
 */
export function startTimerDelayMs(countdown: number): number {
  return Math.max(0, Math.ceil(countdown * 1000));
}
