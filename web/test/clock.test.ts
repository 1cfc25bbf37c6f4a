import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ClockSync, estimateOffset, sampleOffset } from "../src/clock";
import { positionAt, startTimerDelayMs, startsIn, type Timeline } from "../src/timeline";

describe("clock offset", () => {
  it("recovers the offset of a symmetric exchange exactly", () => {
    // Server is 5000 ms ahead; 20 ms each way; the server holds the request 2 ms.
    const estimate = sampleOffset({ clientSend: 1000, serverReceive: 6020, serverSend: 6022, clientReceive: 1042 });
    assert.equal(estimate.offset, 5000);
    assert.equal(estimate.roundTrip, 40);
  });

  it("takes the sample with the smallest round trip", () => {
    const estimate = estimateOffset([
      { clientSend: 0, serverReceive: 5300, serverSend: 5300, clientReceive: 400 },
      { clientSend: 1000, serverReceive: 6010, serverSend: 6010, clientReceive: 1020 },
      { clientSend: 2000, serverReceive: 7200, serverSend: 7200, clientReceive: 2250 },
    ]);
    assert.deepEqual(estimate, { offset: 5000, roundTrip: 20 });
    assert.equal(estimateOffset([]), undefined);
  });

  it("forgets samples beyond its capacity", () => {
    const sync = new ClockSync(2);
    sync.add({ clientSend: 0, serverReceive: 100, serverSend: 100, clientReceive: 2 });
    sync.add({ clientSend: 10, serverReceive: 300, serverSend: 300, clientReceive: 30 });
    const estimate = sync.add({ clientSend: 40, serverReceive: 330, serverSend: 330, clientReceive: 60 });
    assert.equal(estimate?.roundTrip, 20);
  });
});

describe("timeline", () => {
  const playing: Timeline = { paused: false, position: 10, rate: 1.5, anchorServerTime: 1_000_000, duration: 60 };

  it("advances at the room's rate from the anchor", () => {
    assert.equal(positionAt(playing, 1_002_000), 13);
  });

  it("stands still while paused", () => {
    assert.equal(positionAt({ ...playing, paused: true }, 1_009_000), 10);
  });

  it("stops at the end of the media", () => {
    assert.equal(positionAt(playing, 2_000_000), 60);
  });

  it("holds a scheduled start at its position and counts down to it", () => {
    assert.equal(positionAt(playing, 999_600), 10);
    assert.equal(startsIn(playing, 999_600), 0.4);
    assert.equal(startsIn(playing, 1_000_100), 0);
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
