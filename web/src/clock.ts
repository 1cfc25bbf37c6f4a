// Maps the server's clock onto this device's, and says how well it knows it.
//
// Every exchange with the clock RPC bounds the offset (server time − client time) to an
// interval as wide as its round trip: the server read its clock after the request left and
// before the answer arrived. Every message of the room stream bounds it from below: the server
// stamped it before it left. The classic estimate (the middle of the least-delayed exchange) is
// wrong by up to half the round trip when the delay is all on one side, which is what a slow
// first byte, a queue in one direction or DevTools' latency emulation make; intersecting the
// bounds of all samples (newest first; one that contradicts newer ones is dropped, as after a
// clock step) rejects the delayed ones, and the remaining width is the honest uncertainty.
//
// Pure apart from the samples it keeps; every time is in milliseconds.

/**
 * One exchange: the client's send and receive times on its own monotonic clock, the server's
 * receive and send times on the server's wall clock.
 */
export interface ClockSample {
  clientSend: number;
  serverReceive: number;
  serverSend: number;
  clientReceive: number;
}

/** A message the server stamped at `serverSend` and the client received at `clientReceive`. */
export interface OneWaySample {
  serverSend: number;
  clientReceive: number;
}

export interface ClockEstimate {
  /** server time − client time. */
  offset: number;
  /** The true offset is within `offset ± uncertainty` (half the width of the bounds). */
  uncertainty: number;
  /** The smallest round trip among the exchanges used; Infinity without one. */
  roundTrip: number;
}

/** The server stamps whole milliseconds (truncated), so its readings may be up to 1 ms early. */
export const SERVER_RESOLUTION_MS = 1;
/**
 * How fast two clocks may drift apart (50 ppm: cheap crystals, no NTP): an old bound widens
 * by this much per millisecond of age.
 */
export const MAX_DRIFT_RATE = 50e-6;
/** The uncertainty reported while only the stream's lower bounds are known. */
export const UNBOUNDED_UNCERTAINTY_MS = 1000;

/** The classic NTP estimate of one exchange: the middle of its bounds, ± half its round trip. */
export function sampleOffset(sample: ClockSample): ClockEstimate {
  const { clientSend, serverReceive, serverSend, clientReceive } = sample;
  const offset = (serverReceive - clientSend + (serverSend - clientReceive)) / 2;
  const roundTrip = Math.max(0, clientReceive - clientSend - (serverSend - serverReceive));
  return { offset, uncertainty: roundTrip / 2, roundTrip };
}

interface Bound {
  lower: number;
  upper: number;
  /** When it was measured, on the client's clock. */
  at: number;
  roundTrip: number;
}

function exchangeBound(sample: ClockSample): Bound {
  const { clientSend, serverReceive, serverSend, clientReceive } = sample;
  return {
    lower: serverSend - clientReceive,
    upper: serverReceive + SERVER_RESOLUTION_MS - clientSend,
    at: clientReceive,
    roundTrip: sampleOffset(sample).roundTrip,
  };
}

function oneWayBound(sample: OneWaySample): Bound {
  return { lower: sample.serverSend - sample.clientReceive, upper: Infinity, at: sample.clientReceive, roundTrip: Infinity };
}

/**
 * The intersection of the samples' bounds at client time `now`, exchanges first and each kind
 * newest first, leaving out any sample that contradicts the ones already taken; undefined
 * without samples. `rejected` collects the samples left out.
 */
export function estimateOffset(
  exchanges: readonly ClockSample[],
  oneWay: readonly OneWaySample[] = [],
  now = Math.max(...exchanges.map((sample) => sample.clientReceive), ...oneWay.map((sample) => sample.clientReceive)),
  rejected?: { exchanges: ClockSample[]; oneWay: OneWaySample[] },
): ClockEstimate | undefined {
  if (exchanges.length === 0 && oneWay.length === 0) {
    return undefined;
  }
  let lower = -Infinity;
  let upper = Infinity;
  let roundTrip = Infinity;
  // Exchanges decide first: a stream message stamped by another server instance whose clock
  // is a little ahead must not push out the exchanges with this client's own requests.
  const take = <T>(samples: readonly T[], bound: (sample: T) => Bound, refused: T[] | undefined) => {
    const newestFirst = [...samples].sort((a, b) => bound(b).at - bound(a).at);
    for (const sample of newestFirst) {
      const { lower: low, upper: high, at, roundTrip: trip } = bound(sample);
      const widen = Math.max(0, now - at) * MAX_DRIFT_RATE;
      const nextLower = Math.max(lower, low - widen);
      const nextUpper = Math.min(upper, high + widen);
      if (nextLower > nextUpper) {
        refused?.push(sample);
        continue;
      }
      lower = nextLower;
      upper = nextUpper;
      roundTrip = Math.min(roundTrip, trip);
    }
  };
  take(exchanges, exchangeBound, rejected?.exchanges);
  take(oneWay, oneWayBound, rejected?.oneWay);
  if (upper === Infinity) {
    // Only lower bounds: the least-delayed message, as if it had taken no time at all.
    return { offset: lower, uncertainty: UNBOUNDED_UNCERTAINTY_MS, roundTrip };
  }
  return { offset: (lower + upper) / 2, uncertainty: (upper - lower) / 2, roundTrip };
}

/**
 * Keeps the recent samples of both kinds (old ones go stale as the clocks drift apart, and
 * widen with age until newer ones decide) and drops those that contradict newer ones.
 */
export class ClockSync {
  private exchanges: ClockSample[] = [];
  private oneWay: OneWaySample[] = [];

  constructor(
    private readonly exchangeCapacity = 8,
    private readonly oneWayCapacity = 64,
  ) {}

  add(sample: ClockSample): ClockEstimate | undefined {
    this.exchanges.push(sample);
    if (this.exchanges.length > this.exchangeCapacity) {
      this.exchanges.shift();
    }
    return this.estimate(sample.clientReceive);
  }

  addOneWay(sample: OneWaySample): ClockEstimate | undefined {
    this.oneWay.push(sample);
    if (this.oneWay.length > this.oneWayCapacity) {
      this.oneWay.shift();
    }
    return this.estimate(sample.clientReceive);
  }

  estimate(now?: number): ClockEstimate | undefined {
    const rejected = { exchanges: [] as ClockSample[], oneWay: [] as OneWaySample[] };
    const estimate = estimateOffset(this.exchanges, this.oneWay, now, rejected);
    if (rejected.exchanges.length > 0 || rejected.oneWay.length > 0) {
      this.exchanges = this.exchanges.filter((sample) => !rejected.exchanges.includes(sample));
      this.oneWay = this.oneWay.filter((sample) => !rejected.oneWay.includes(sample));
    }
    return estimate;
  }
}
