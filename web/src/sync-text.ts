// How a player's offset from the room is told to people: a word for the indicator and the
// people tab, and a sentence with the measured milliseconds and how far that measurement may be
// off (the clock estimate's uncertainty: half the best round trip at most). A page whose clock
// is 40 ms off cannot tell it is 40 ms behind; saying "in sync" there would be a guess.

import { formatNumber, type Shown, t } from "./i18n";

/**
 * Beyond this offset (ms) a player is said to be catching up rather than in sync: less is not
 * seen or heard as out of step, even while the controller still nudges it away.
 */
export const IN_SYNC_MS = 150;

export type OffsetJudgement = "in-sync" | "catching-up" | "unsure";

/**
 * In sync when even the far end of the uncertainty is within `IN_SYNC_MS`, catching up when even
 * the near end is beyond it, and unsure in between.
 */
export function judgeOffset(offsetMs: number, uncertaintyMs: number): OffsetJudgement {
  const distance = Math.abs(offsetMs);
  if (distance + uncertaintyMs <= IN_SYNC_MS) {
    return "in-sync";
  }
  return distance - uncertaintyMs > IN_SYNC_MS ? "catching-up" : "unsure";
}

/** "12 ms behind the room (± 4 ms)", in the page's language. */
export function offsetDetail(offsetMs: number, uncertaintyMs: number): Shown {
  const uncertainty = formatNumber(uncertaintyMs);
  if (offsetMs === 0) {
    return t("sync.detailExact", { uncertainty });
  }
  const ms = formatNumber(Math.abs(offsetMs));
  return offsetMs > 0 ? t("sync.detailAhead", { ms, uncertainty }) : t("sync.detailBehind", { ms, uncertainty });
}
