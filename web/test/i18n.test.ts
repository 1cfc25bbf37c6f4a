import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import { CATALOGS, formatSpan, LANGUAGES, localeFor, type MessageKey, pickLanguage, placeholders, setLanguage, translate } from "../src/i18n";

const webRoot = join(import.meta.dirname, "..");
const keysOf = (language: "en" | "zh") => Object.keys(CATALOGS[language]).sort();

/** Texts that are the same in both languages on purpose (language names, digits, a URL). */
const SAME_IN_BOTH = new Set<MessageKey>([
  "lang.nameZh",
  "lang.nameEn",
  "lang.switchToZh",
  "lang.switchToEn",
  "player.time",
  "player.rate",
  "player.unknownLength",
  "sync.detailJoin",
  "add.urlPlaceholder",
  "subtitles.join",
]);

describe("the catalogs", () => {
  it("have exactly the same keys in every language", () => {
    const english = keysOf("en");
    for (const language of LANGUAGES) {
      const keys = keysOf(language);
      assert.deepEqual(english.filter((key) => !keys.includes(key)), [], `${language} lacks keys`);
      assert.deepEqual(keys.filter((key) => !english.includes(key)), [], `${language} has keys English does not`);
    }
  });

  it("use the same placeholders in every language", () => {
    for (const key of keysOf("en") as MessageKey[]) {
      for (const language of LANGUAGES) {
        assert.deepEqual(placeholders(CATALOGS[language][key]), placeholders(CATALOGS.en[key]), `${language} ${key}`);
      }
    }
  });

  it("give every plural message the forms its language needs", () => {
    for (const key of keysOf("en") as MessageKey[]) {
      const english = CATALOGS.en[key];
      const chinese = CATALOGS.zh[key];
      assert.equal(typeof english, typeof chinese, `${key}: plural in one language only`);
      if (typeof english !== "string" && typeof chinese !== "string") {
        assert.ok(english.one && english.other, `en ${key} needs "one" and "other"`);
        assert.ok(chinese.other, `zh ${key} needs "other"`);
        assert.ok(placeholders(english).includes("count"), `${key} counts something`);
      }
    }
  });

  it("translate every Chinese text (no English left behind)", () => {
    for (const key of keysOf("zh") as MessageKey[]) {
      if (SAME_IN_BOTH.has(key)) {
        continue;
      }
      const message = CATALOGS.zh[key];
      for (const text of typeof message === "string" ? [message] : Object.values(message)) {
        assert.match(text, /[\u3000-\u30ff\u4e00-\u9fff\uff00-\uffef]/, `zh ${key} is not Chinese: ${text}`);
      }
    }
  });

  it("are used: every key appears in web/src", () => {
    const sources = readdirSync(join(webRoot, "src"), { recursive: true, encoding: "utf8" })
      .filter((name) => name.endsWith(".ts") && !name.startsWith("gen") && !name.startsWith("i18n"))
      .map((name) => readFileSync(join(webRoot, "src", name), "utf8"))
      .join("\n");
    const unused = keysOf("en").filter((key) => !sources.includes(`"${key}"`));
    assert.deepEqual(unused, [], "keys no code shows");
  });
});

describe("translation", () => {
  it("fills placeholders and picks the plural form", () => {
    assert.equal(translate("en", "lobby.members", { count: 1 }), "1 person");
    assert.equal(translate("en", "lobby.members", { count: 3 }), "3 people");
    assert.equal(translate("zh", "lobby.members", { count: 1 }), "1 人");
    assert.equal(translate("zh", "lobby.members", { count: 3 }), "3 人");
    assert.equal(translate("en", "kick.done", { name: "Mei" }), "Mei was removed from the room.");
    assert.equal(translate("zh", "kick.done", { name: "小美" }), "小美 已被移出房间。");
  });

  it("chooses the language from navigator.languages", () => {
    assert.equal(pickLanguage(["zh-TW", "en"]), "zh");
    assert.equal(pickLanguage(["fr-FR", "en-GB", "zh"]), "en");
    assert.equal(pickLanguage(["de"]), "en");
    assert.equal(pickLanguage([]), "en");
  });

  it("formats in the viewer's own variant of the language", () => {
    assert.equal(localeFor("en", ["en-GB", "zh-CN"]), "en-GB");
    assert.equal(localeFor("zh", ["en-GB", "zh-TW"]), "zh-TW");
    assert.equal(localeFor("zh", ["en-GB"]), "zh-CN");
  });

  it("says lengths of time as people do", () => {
    setLanguage("en", false, ["en-US"]);
    assert.equal(formatSpan(600), "10 minutes");
    assert.equal(formatSpan(90), "2 minutes");
    assert.equal(formatSpan(3600), "1 hour");
    assert.equal(formatSpan(1), "1 second");
    assert.equal(formatSpan(86_400 * 2), "2 days");
    setLanguage("zh", false, ["zh-CN"]);
    assert.equal(formatSpan(600), "10分钟");
    setLanguage("en", false, ["en-US"]);
  });
});
