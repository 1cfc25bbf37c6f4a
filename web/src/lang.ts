// Which language the media panels speak: Simplified Chinese when the browser prefers Chinese,
// English otherwise. Each module keeps its strings in one object with both languages, so that
// they can move into a shared catalog as they are.

export type Language = "en" | "zh";

export function language(): Language {
  const preferred = navigator.language || document.documentElement.lang || "en";
  return preferred.toLowerCase().startsWith("zh") ? "zh" : "en";
}

/** The strings of `catalog` in the page's language. */
export function pick<T>(catalog: Record<Language, T>): T {
  return catalog[language()];
}

/** Bytes as people read them: 1.4 MB, 820 KB. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}
