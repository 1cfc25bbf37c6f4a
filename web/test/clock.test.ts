import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { ClockSync, type ClockSample, type OneWaySample, estimateOffset, sampleOffset } from "../src/clock";
import { changesIn, positionAt, rateAt, reachesAt, startTimerDelayMs, startsIn, type Timeline } from "../src/timeline";

describe("clock offset", () => {
  it("recovers the offset of a symmetric exchange exactly, ± half its round trip", () => {
    // Server is 5000 ms ahead; 20 ms each way; the server holds the request 2 ms.
    const sample = { clientSend: 1000, serverReceive: 6020, serverSend: 6022, clientReceive: 1042 };
    assert.deepEqual(sampleOffset(sample), { offset: 5000, uncertainty: 20, roundTrip: 40 });
    const estimate = estimateOffset([sample])!;
    assert.equal(estimate.roundTrip, 40);
    assert.ok(Math.abs(estimate.offset - 5000) <= 1 && estimate.uncertainty <= 21);
  });

  it("rejects delayed samples: the least-delayed bounds decide", () => {
    const estimate = estimateOffset([
      { clientSend: 0, serverReceive: 5300, serverSend: 5300, clientReceive: 400 },
      { clientSend: 1000, serverReceive: 6010, serverSend: 6010, clientReceive: 1020 },
      { clientSend: 2000, serverReceive: 7200, serverSend: 7200, clientReceive: 2250 },
    ])!;
    assert.ok(Math.abs(estimate.offset - 5000) <= 1, `offset ${estimate.offset}`);
    assert.equal(estimate.roundTrip, 20);
    assert.ok(estimate.uncertainty <= 10.6, `± ${estimate.uncertainty}`);
    assert.equal(estimateOffset([]), undefined);
  });

  it("sees through a delay that is all on one side, which the classic estimate cannot", () => {
    // The true offset is 0; every answer's first byte is held 80 ms (DevTools' latency
    // emulation), while the room stream's messages arrive in 2 ms.
    const exchanges: ClockSample[] = [0, 1, 2, 3].map((index) => {
      const sent = index * 200;
      return { clientSend: sent, serverReceive: sent + 2, serverSend: sent + 3, clientReceive: sent + 85 };
    });
    const oneWay: OneWaySample[] = [0, 1, 2].map((index) => ({ serverSend: 1000 + index * 900, clientReceive: 1002 + index * 900 }));
    const classic = sampleOffset(exchanges[0]!).offset;
    assert.ok(classic < -35, `the middle of the round trip is ${classic} ms off`);
    const estimate = estimateOffset(exchanges, oneWay)!;
    assert.ok(Math.abs(estimate.offset) <= 3, `offset ${estimate.offset}`);
    assert.ok(estimate.uncertainty <= 3, `± ${estimate.uncertainty}`);
    assert.ok(Math.abs(estimate.offset) <= estimate.uncertainty + 1e-9, "the truth is inside the interval");
  });

  it("with only the stream's messages, takes the least-delayed one and says it does not know better", () => {
    const estimate = estimateOffset([], [
      { serverSend: 5000, clientReceive: 100 },
      { serverSend: 6000, clientReceive: 1030 },
    ])!;
    assert.equal(estimate.offset, 4970);
    assert.ok(estimate.uncertainty >= 1000);
  });

  it("drops samples that contradict newer ones (a clock step) instead of averaging across it", () => {
    const sync = new ClockSync();
    sync.add({ clientSend: 0, serverReceive: 5010, serverSend: 5010, clientReceive: 20 });
    // The server's clock stepped back by 2 s.
    const after = sync.add({ clientSend: 1000, serverReceive: 4010, serverSend: 4010, clientReceive: 1020 })!;
    assert.ok(Math.abs(after.offset - 3000) <= 1, `offset ${after.offset}`);
    assert.ok(after.uncertainty <= 11);
  });

  it("widens old bounds as clocks may drift apart", () => {
    const old = { clientSend: 0, serverReceive: 5010, serverSend: 5010, clientReceive: 20 };
    const fresh = estimateOffset([old], [], 20)!;
    const aged = estimateOffset([old], [], 20 + 600_000)!;
    // 50 ppm of ten minutes: 30 ms either way.
    assert.ok(Math.abs(aged.uncertainty - fresh.uncertainty - 30) < 0.01, `${fresh.uncertainty} → ${aged.uncertainty}`);
  });

  it("forgets exchanges beyond its capacity", () => {
    const sync = new ClockSync(2);
    sync.add({ clientSend: 0, serverReceive: 100, serverSend: 100, clientReceive: 2 });
    sync.add({ clientSend: 10, serverReceive: 300, serverSend: 300, clientReceive: 30 });
    const estimate = sync.add({ clientSend: 40, serverReceive: 330, serverSend: 330, clientReceive: 60 });
    assert.equal(estimate?.roundTrip, 20);
  });
});

describe("timeline", () => {
  const playing: Timeline = { paused: false, position: 10, rate: 1.5, anchorServerTime: 1_000_000, leadInRate: 0, duration: 60 };

  it("advances at the room's rate from the anchor", () => {
    assert.equal(positionAt(playing, 1_002_000), 13);
    assert.equal(rateAt(playing, 1_002_000), 1.5);
  });

  it("stands still while paused", () => {
    assert.equal(positionAt({ ...playing, paused: true }, 1_009_000), 10);
    assert.equal(rateAt({ ...playing, paused: true }, 1_009_000), 0);
  });

  it("stops at the end of the media", () => {
    assert.equal(positionAt(playing, 2_000_000), 60);
  });

  it("holds a scheduled start at its position and counts down to it", () => {
    assert.equal(positionAt(playing, 999_600), 10);
    assert.equal(startsIn(playing, 999_600), 0.4);
    assert.equal(startsIn(playing, 1_000_100), 0);
    assert.equal(reachesAt(playing, 10, 999_600), 1_000_000, "the held frame is reached at the start");
  });

  it("plays on at the old rate until a scheduled rate change, then at the new one", () => {
    const change: Timeline = { ...playing, leadInRate: 1 };
    assert.equal(positionAt(change, 999_600), 9.6);
    assert.equal(rateAt(change, 999_600), 1);
    assert.equal(startsIn(change, 999_600), 0, "nothing is held");
    assert.ok(Math.abs(changesIn(change, 999_600) - 0.4) < 1e-9);
    assert.equal(reachesAt(change, 9.8, 999_600), 999_800);
    assert.equal(reachesAt(change, 11.5, 999_600), 1_001_000);
    assert.equal(reachesAt(change, 9, 999_600), Infinity, "already past");
  });

  it("wakes a scheduled start no earlier than the start, even with delays truncated to whole ms", () => {
    for (const serverNow of [999_700.4, 999_999.9, 999_876.5, 999_500]) {
      const delay = startTimerDelayMs(startsIn(playing, serverNow));
      assert.ok(Number.isInteger(delay));
      // The timer fires `delay` ms later; the start must then be due.
      assert.equal(startsIn(playing, serverNow + Math.trunc(delay)), 0, `woken ${delay} ms after ${serverNow}`);
    }
    assert.equal(startTimerDelayMs(0), 0);
  });
});

/** Clock samples a page of the benchmark took, and its true offset (its clock against the wall clock the server's is on). */
interface RecordedClock {
  page: string;
  latencyMs: number;
  jitterMs: number;
  trueOffsetMs: number;
  samples: ({ kind: "exchange" } & ClockSample | { kind: "oneWay" } & OneWaySample)[];
}

function recorded(name: string): RecordedClock {
  return JSON.parse(readFileSync(new URL(`../test/fixtures/${name}`, import.meta.url), "utf8")) as RecordedClock;
}

describe("clock offset against recorded samples", () => {
  for (const name of ["clock-lat80.json", "clock-lat2010.json"]) {
    it(`${name}: within a few ms of the truth, which stays inside the stated uncertainty`, () => {
      const { trueOffsetMs, latencyMs, samples } = recorded(name);
      const sync = new ClockSync(32);
      let estimate;
      for (const sample of samples) {
        estimate = sample.kind === "exchange" ? sync.add(sample) : sync.addOneWay(sample);
        if (estimate && sample.kind === "exchange") {
          // The page's clock against the wall clock is known to about 0.5 ms.
          assert.ok(Math.abs(estimate.offset - trueOffsetMs) <= estimate.uncertainty + 0.5, `${estimate.offset} ± ${estimate.uncertainty} misses ${trueOffsetMs}`);
        }
      }
      assert.ok(estimate && Math.abs(estimate.offset - trueOffsetMs) <= 6, `ends ${estimate?.offset} for ${trueOffsetMs}`);
      assert.ok(estimate.uncertainty <= latencyMs / 2, `± ${estimate.uncertainty}`);
      if (name === "clock-lat80.json") {
        // The classic estimate (the least-delayed exchange's middle) is off by half the latency.
        const exchanges = samples.filter((sample): sample is { kind: "exchange" } & ClockSample => sample.kind === "exchange");
        const classic = exchanges.map(sampleOffset).sort((a, b) => a.roundTrip - b.roundTrip)[0]!;
        assert.ok(Math.abs(classic.offset - trueOffsetMs) > latencyMs / 3, `classic ${classic.offset}`);
      }
    });
  }
});
