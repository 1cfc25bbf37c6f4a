// Maps the server's clock onto this device's, from NTP-style samples of the clock RPC.
//
// Pure: the caller supplies the four timestamps of each exchange. The sample with the smallest
// round trip is the one least disturbed by queueing, so the estimate is taken from it.

/**
 * One exchange, all times in milliseconds: the client's send and receive times on its own
 * monotonic clock, the server's receive and send times on the server's wall clock.
 */
export interface ClockSample {
  clientSend: number;
  serverReceive: number;
  serverSend: number;
  clientReceive: number;
}

export interface ClockEstimate {
  /** server time − client time, in milliseconds. */
  offset: number;
  /**
   * The round trip of the sample the offset came from, in milliseconds (its uncertainty is
   * at most half of it).
   */
  roundTrip: number;
}

export function sampleOffset(sample: ClockSample): ClockEstimate {
  const { clientSend, serverReceive, serverSend, clientReceive } = sample;
  const offset = (serverReceive - clientSend + (serverSend - clientReceive)) / 2;
  const roundTrip = Math.max(0, clientReceive - clientSend - (serverSend - serverReceive));
  return { offset, roundTrip };
}

/** The estimate from the sample with the smallest round trip; undefined without samples. */
export function estimateOffset(samples: readonly ClockSample[]): ClockEstimate | undefined {
  let best: ClockEstimate | undefined;
  for (const sample of samples) {
    const estimate = sampleOffset(sample);
    if (best === undefined || estimate.roundTrip < best.roundTrip) {
      best = estimate;
    }
  }
  return best;
}

/** Keeps the most recent samples (old ones go stale as the clocks drift apart). */
export class ClockSync {
  private readonly samples: ClockSample[] = [];

  constructor(private readonly capacity = 8) {}

  add(sample: ClockSample): ClockEstimate | undefined {
    this.samples.push(sample);
    if (this.samples.length > this.capacity) {
      this.samples.shift();
    }
    return this.estimate();
  }

  estimate(): ClockEstimate | undefined {
    return estimateOffset(this.samples);
  }
}
