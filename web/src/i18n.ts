// Every word the client shows comes from here: a typed catalog per language (i18n/en.ts is the
// reference, i18n/zh.ts must have exactly its keys or the build fails), placeholders filled in
// by name, plurals chosen by the browser's Intl.PluralRules, and times, dates and durations
// formatted by Intl in the viewer's own locale and time zone.
//
// A small catalog rather than i18next or @formatjs/intl: the browser already ships plural rules
// and date, number, list and unit formatting, so a library would add 15-40 KB gzipped to the
// first load for message lookup alone; and typed keys let the compiler, not a run-time warning,
// catch a missing translation or a misspelt key.

import { en } from "./i18n/en";
import { zh } from "./i18n/zh";

export type Language = "en" | "zh";
export const LANGUAGES: readonly Language[] = ["en", "zh"];

/**
 * Text that may be put on the page: it came from the catalog, from Intl formatting, or is the
 * people's own data (names, messages, titles) marked with `userText`. The DOM helpers accept
 * only this, so a bare string literal shown to a person does not type-check.
 */
export type Shown = string & { readonly __shown: unique symbol };

/** A message: plain text, or one text per plural category (`other` always present). */
export type Message = string | PluralMessage;
export type PluralMessage = Readonly<{ other: string } & Partial<Record<Intl.LDMLPluralRule, string>>>;

export type MessageKey = keyof typeof en;
/** What every other language's catalog must provide: each key, as plain text or plurals. */
export type Catalog = { readonly [K in MessageKey]: (typeof en)[K] extends string ? string : PluralMessage };

export const CATALOGS: Readonly<Record<Language, Readonly<Record<MessageKey, Message>>>> = { en, zh };

export type Params = Readonly<Record<string, string | number>>;

// Intl objects are slow to make (tens of microseconds to milliseconds each, more for the first
// of a locale) and the player formats several times a second: one of each per locale and options.
const formatters = new Map<string, Intl.NumberFormat | Intl.DateTimeFormat | Intl.PluralRules | Intl.ListFormat | Intl.DisplayNames>();
function cached<T extends Intl.NumberFormat | Intl.DateTimeFormat | Intl.PluralRules | Intl.ListFormat | Intl.DisplayNames>(kind: string, locale: string, options: object, make: () => T): T {
  const key = `${kind}|${locale}|${JSON.stringify(options)}`;
  let formatter = formatters.get(key) as T | undefined;
  if (!formatter) {
    formatter = make();
    formatters.set(key, formatter);
  }
  return formatter;
}
const numberFormat = (locale: string, options: Intl.NumberFormatOptions = {}): Intl.NumberFormat =>
  cached("number", locale, options, () => new Intl.NumberFormat(locale, options));
const dateFormat = (locale: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat =>
  cached("date", locale, options, () => new Intl.DateTimeFormat(locale, options));

const STORAGE_KEY = "xiaowo.lang";
let current: Language = "en";
/** The locale Intl formats with: the viewer's own variant of the chosen language (en-GB, zh-TW). */
let formatLocale = "en";
const listeners: ((language: Language) => void)[] = [];

/** The people's own words (names, messages, titles, links): shown as they are, never translated. */
export function userText(value: string): Shown {
  return value as Shown;
}

/** The language for a browser's `navigator.languages`: the first one we speak, else English. */
export function pickLanguage(preferred: readonly string[]): Language {
  for (const tag of preferred) {
    const primary = tag.toLowerCase().split("-")[0];
    if (primary === "zh") {
      return "zh";
    }
    if (primary === "en") {
      return "en";
    }
  }
  return "en";
}

/** The Intl locale for `language`: the viewer's own variant of it when they listed one. */
export function localeFor(language: Language, preferred: readonly string[]): string {
  // Taken as given: Intl falls back by itself for a variant it lacks, and asking it first
  // (supportedLocalesOf) loads locale data, which costs a slow phone tens of milliseconds.
  const own = preferred.find((tag) => tag.toLowerCase().split("-")[0] === language);
  return own ?? (language === "zh" ? "zh-CN" : "en");
}

export function language(): Language {
  return current;
}

export function locale(): string {
  return formatLocale;
}

/** The BCP 47 tag for `lang` attributes. */
export function languageTag(language: Language = current): string {
  return language === "zh" ? "zh-CN" : "en";
}

/**
 * Sets the language (remembered on this device when `remember`), updates the document's
 * `lang`, and tells the listeners (the page re-renders).
 */
export function setLanguage(next: Language, remember = true, preferred: readonly string[] = browserLanguages()): void {
  current = next;
  formatLocale = localeFor(next, preferred);
  if (typeof document !== "undefined") {
    document.documentElement.lang = languageTag(next);
  }
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, next);
    } catch {
      // Storage may be off (private mode); the choice then lasts for this page only.
    }
  }
  for (const listener of listeners) {
    listener(next);
  }
}

/** The remembered choice, else the browser's languages. */
export function initLanguage(): Language {
  let stored: string | null = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  const chosen = stored === "en" || stored === "zh" ? stored : pickLanguage(browserLanguages());
  setLanguage(chosen, false);
  return chosen;
}

export function onLanguageChange(listener: (language: Language) => void): void {
  listeners.push(listener);
}

function browserLanguages(): readonly string[] {
  if (typeof navigator === "undefined") {
    return [];
  }
  return navigator.languages?.length ? navigator.languages : [navigator.language];
}

/** The catalog text for `key` in the current language, with `{name}` placeholders filled. */
export function t(key: MessageKey, params: Params = {}): Shown {
  return translate(current, key, params);
}

export function translate(language: Language, key: MessageKey, params: Params = {}): Shown {
  const message = CATALOGS[language][key];
  let text: string;
  if (typeof message === "string") {
    text = message;
  } else {
    const count = Number(params.count ?? 0);
    const category = cached("plural", language, {}, () => new Intl.PluralRules(language === "zh" ? "zh" : "en")).select(count);
    text = message[category] ?? message.other;
  }
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => {
    const value = params[name];
    if (value === undefined) {
      return whole;
    }
    return typeof value === "number" ? numberFormat(formatLocaleOf(language)).format(value) : value;
  }) as Shown;
}

function formatLocaleOf(language: Language): string {
  return language === current ? formatLocale : languageTag(language);
}

/** The placeholders a message uses, for the catalog tests. */
export function placeholders(message: Message): string[] {
  const texts = typeof message === "string" ? [message] : Object.values(message);
  const names = new Set<string>();
  for (const text of texts) {
    for (const match of text.matchAll(/\{(\w+)\}/g)) {
      if (match[1]) {
        names.add(match[1]);
      }
    }
  }
  return [...names].sort();
}

// ---------------------------------------------------------------------------------------------
// Times, dates and durations, in the viewer's locale and time zone

/** "21:40" (or "9:40 PM" where the viewer's locale says so). */
export function formatTime(date: Date): Shown {
  return dateFormat(formatLocale, { hour: "numeric", minute: "2-digit" }).format(date) as Shown;
}

/** A time for "until …": the time alone today, with the day when it is later. */
export function formatMoment(date: Date, now = new Date()): Shown {
  const sameDay = date.toDateString() === now.toDateString();
  const options: Intl.DateTimeFormatOptions = sameDay
    ? { hour: "numeric", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" };
  return dateFormat(formatLocale, options).format(date) as Shown;
}

/** "12 Mar 2026, 21:40" in the viewer's locale. */
export function formatDateTime(date: Date): Shown {
  return dateFormat(formatLocale, { dateStyle: "medium", timeStyle: "short" }).format(date) as Shown;
}

/**
 * A length of time as people say it: "10 minutes", "1 hour", "30 seconds", "2 days"; rounded
 * up to whole units of the largest unit that fits, so a wait is never understated.
 */
export function formatSpan(seconds: number): Shown {
  const whole = Math.max(1, Math.ceil(seconds));
  const units: [Intl.NumberFormatOptions["unit"], number][] = [
    ["day", 86_400],
    ["hour", 3_600],
    ["minute", 60],
    ["second", 1],
  ];
  for (const [unit, size] of units) {
    if (whole >= size || unit === "second") {
      const value = Math.ceil(whole / size - 1e-9);
      // 90 s is better said "2 minutes" than "1 minute"; 59 min stays minutes.
      return numberFormat(formatLocale, { style: "unit", unit, unitDisplay: "long" }).format(value) as Shown;
    }
  }
  return String(whole) as Shown;
}

/** "Alice, Bob and Mei" / "Alice、Bob和Mei". */
export function formatList(items: readonly string[]): Shown {
  return cached("list", formatLocale, {}, () => new Intl.ListFormat(formatLocale, { style: "long", type: "conjunction" })).format(items) as Shown;
}

/** A language's name in the viewer's language ("Chinese (Simplified)", "简体中文"); the tag itself when Intl does not know it. */
export function formatLanguage(tag: string): Shown {
  try {
    const names = cached("language", formatLocale, {}, () => new Intl.DisplayNames([formatLocale], { type: "language" }));
    return (names.of(tag) ?? tag) as Shown;
  } catch {
    return tag as Shown;
  }
}

/** A plain number in the viewer's locale. */
export function formatNumber(value: number, options: Intl.NumberFormatOptions = {}): Shown {
  return numberFormat(formatLocale, options).format(value) as Shown;
}

/** A media position or length: "1:05" or "1:02:05". Digits only, the same in every language. */
export function formatClock(seconds: number): Shown {
  const whole = Math.max(0, Math.floor(seconds));
  const minutes = Math.floor(whole / 60);
  const rest = String(whole % 60).padStart(2, "0");
  if (minutes >= 60) {
    return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${rest}` as Shown;
  }
  return `${minutes}:${rest}` as Shown;
}

/** A size as people read it: "820 kB", "1.4 GB" (binary multiples, the locale's own unit names). */
export function formatBytes(bytes: number): Shown {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"] as const;
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return numberFormat(formatLocale, { style: "unit", unit: units[unit], unitDisplay: "short", maximumFractionDigits: value >= 10 || unit === 0 ? 0 : 1 }).format(value) as Shown;
}
