import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { create } from "@bufbuild/protobuf";

import { convertedShare, notPlayableReason, playsNow, unfinished } from "../src/conversion";
import { ConversionState, MediaItemSchema, Playability } from "../src/gen/xiaowo/media/v1/media_pb";
import { setLanguage, translate } from "../src/i18n";

function item(playability: Playability, conversionState: ConversionState, convertedMs = 0, durationMs = 60_000) {
  return create(MediaItemSchema, { playability, conversionState, convertedMs: BigInt(convertedMs), durationMs: BigInt(durationMs), conversionError: "codec not supported" });
}

describe("conversions as the page shows them", () => {
  it("an item plays once browsers play it as it is or its conversion's start is ready", () => {
    assert.equal(playsNow(item(Playability.BROWSER, ConversionState.UNSPECIFIED)), true);
    for (const [state, plays] of [
      [ConversionState.UNSPECIFIED, false],
      [ConversionState.QUEUED, false],
      [ConversionState.CONVERTING, false],
      [ConversionState.PLAYABLE, true],
      [ConversionState.COMPLETE, true],
      [ConversionState.FAILED, false],
    ] as const) {
      assert.equal(playsNow(item(Playability.NEEDS_CONVERSION, state)), plays, ConversionState[state]);
      assert.equal(notPlayableReason(item(Playability.NEEDS_CONVERSION, state)) === undefined, plays, ConversionState[state]);
    }
  });

  it("only a conversion that may still move is followed", () => {
    assert.deepEqual(
      [ConversionState.UNSPECIFIED, ConversionState.QUEUED, ConversionState.CONVERTING, ConversionState.PLAYABLE, ConversionState.COMPLETE, ConversionState.FAILED].map(unfinished),
      [false, true, true, true, false, false],
    );
  });

  it("progress is the converted share of the length, within 0 and 1", () => {
    assert.equal(convertedShare(item(Playability.NEEDS_CONVERSION, ConversionState.PLAYABLE, 15_000)), 0.25);
    assert.equal(convertedShare(item(Playability.NEEDS_CONVERSION, ConversionState.PLAYABLE, 90_000)), 1);
    assert.equal(convertedShare(item(Playability.NEEDS_CONVERSION, ConversionState.PLAYABLE, 5_000, 0)), 0);
  });

  it("a failed conversion's reason is shown, in either language", () => {
    setLanguage("zh", false, ["zh-CN"]);
    const reason = notPlayableReason(item(Playability.NEEDS_CONVERSION, ConversionState.FAILED)) ?? "";
    assert.equal(reason, translate("zh", "conversion.failedReason", { reason: "codec not supported" }));
    assert.ok(reason.includes("codec not supported") && reason.includes("无法转换"), reason);
    setLanguage("en", false, ["en-US"]);
    assert.equal(notPlayableReason(item(Playability.NEEDS_CONVERSION, ConversionState.QUEUED)), translate("en", "conversion.notReadyReason"));
  });
});
