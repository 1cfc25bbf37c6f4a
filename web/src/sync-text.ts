// The sentences the sync code adds, in English and Simplified Chinese, in one object so that
// they can move into the client's message catalog as they are.

function signed(value: number): string {
  return `${value >= 0 ? "+" : ""}${value}`;
}

export const SYNC_TEXT = {
  en: {
    /** A player's measured offset from the room and how far off that measurement may be. */
    offset: (offsetMs: number, uncertaintyMs: number) => `offset ${signed(offsetMs)} ms ± ${uncertaintyMs} ms`,
    /** The same, short, beside a member's name. */
    memberOffset: (offsetMs: number, uncertaintyMs: number) => `${signed(offsetMs)} ± ${uncertaintyMs} ms`,
  },
  zh: {
    offset: (offsetMs: number, uncertaintyMs: number) => `偏差 ${signed(offsetMs)} 毫秒 ± ${uncertaintyMs} 毫秒`,
    memberOffset: (offsetMs: number, uncertaintyMs: number) => `${signed(offsetMs)} ± ${uncertaintyMs} 毫秒`,
  },
} as const;

/** The sentences in the page's language. */
export function syncText(): (typeof SYNC_TEXT)["en"] {
  return document.documentElement.lang.toLowerCase().startsWith("zh") ? SYNC_TEXT.zh : SYNC_TEXT.en;
}
