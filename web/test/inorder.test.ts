import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { InOrder } from "../src/inorder";

const later = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe("a page's commands in order", () => {
  it("starts each only once the one before has answered, whatever their speeds", async () => {
    const order = new InOrder(10_000);
    const events: string[] = [];
    const command = (name: string, ms: number) =>
      order.run(async () => {
        events.push(`start ${name}`);
        await later(ms);
        events.push(`end ${name}`);
        return name;
      });
    // A slow first command (the speed) and a quick second (play), given at once.
    const answers = await Promise.all([command("rate", 60), command("play", 1)]);
    assert.deepEqual(answers, ["rate", "play"]);
    assert.deepEqual(events, ["start rate", "end rate", "start play", "end play"]);
  });

  it("goes on after a command that failed, and the failure reaches its own caller", async () => {
    const order = new InOrder(10_000);
    const failed = order.run(() => Promise.reject(new Error("refused")));
    const next = order.run(async () => "played");
    await assert.rejects(failed, /refused/);
    assert.equal(await next, "played");
  });

  it("holds the next command back at most the longest wait when one never answers", async () => {
    const order = new InOrder(50);
    void order.run(() => new Promise<never>(() => {}));
    let ran = false;
    const next = order.run(async () => {
      ran = true;
    });
    await later(10);
    assert.equal(ran, false, "ran while the one before was still within its wait");
    await next;
    assert.equal(ran, true);
  });
});
