import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { setLanguage } from "../src/i18n";
import { IN_SYNC_MS, judgeOffset, offsetDetail } from "../src/sync-text";

describe("a player's offset as people read it", () => {
  it("is in sync only when the offset with its uncertainty is within the threshold", () => {
    assert.equal(judgeOffset(-20, 10), "in-sync");
    assert.equal(judgeOffset(IN_SYNC_MS - 40, 40), "in-sync");
    // The page measured 100 ms, but its clock may be 80 ms off: it may be 180 ms out.
    assert.equal(judgeOffset(100, 80), "unsure");
    assert.equal(judgeOffset(0, IN_SYNC_MS + 1), "unsure");
    assert.equal(judgeOffset(-400, 60), "catching-up");
    assert.equal(judgeOffset(IN_SYNC_MS + 50, 50), "unsure");
  });

  it("says the uncertainty beside the offset, in both languages", () => {
    setLanguage("en", false, ["en-US"]);
    assert.equal(offsetDetail(-42, 40), "42 ms behind the room (± 40 ms).");
    assert.equal(offsetDetail(7, 3), "7 ms ahead of the room (± 3 ms).");
    assert.equal(offsetDetail(0, 2), "With the room (± 2 ms).");
    setLanguage("zh", false, ["zh-CN"]);
    assert.equal(offsetDetail(-42, 40), "比房间慢 42 毫秒（± 40 毫秒）。");
    assert.equal(offsetDetail(1500, 40), "比房间快 1,500 毫秒（± 40 毫秒）。");
    setLanguage("en", false, ["en-US"]);
  });
});
