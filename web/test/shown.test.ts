// Every string the client shows goes through the catalog. Two guards, each tested against a
// sample that breaks it, so that neither can pass by accident:
//
// * the types: the DOM helpers (dom.ts) take text only as `Shown`, which only the catalog, the
//   Intl formatters and `userText` (people's own words) produce, so `h("p", {}, "Hello")` or
//   `button("Save", …)` does not compile;
// * the sources: the ways around the helpers (assigning textContent or a title, creating text
//   nodes, casting to Shown, marking a literal as people's words, browser dialogs) appear
//   nowhere in web/src outside the two files that implement the rule.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";

const webRoot = join(import.meta.dirname, "..");
const tsc = join(webRoot, "node_modules", ".bin", "tsc");

/** Where the rule is implemented, and so the only places allowed to break it. */
const IMPLEMENTATION = new Set(["dom.ts", "i18n.ts"]);

/** A pattern that shows text without the catalog, and why it is refused. */
const BYPASSES: [RegExp, string][] = [
  [/\.textContent\s*=(?!=)/, "assigns textContent (use setText with a catalog text)"],
  [/\.(innerText|outerText|innerHTML|outerHTML)\b/, "writes text or markup directly"],
  [/insertAdjacent(HTML|Text)/, "inserts text or markup directly"],
  [/createTextNode/, "creates a text node (use h/append with a catalog text)"],
  [/\.(title|placeholder|ariaLabel|ariaDescription|ariaValueText|alt)\s*=(?!=)/, "assigns a label property (use setLabel)"],
  [/setAttribute\(\s*["'](title|placeholder|aria-label|aria-description|aria-valuetext|alt|label)["']/, "sets a label attribute (use setLabel)"],
  [/document\.title\s*=(?!=)/, "sets the page title (use setDocumentTitle)"],
  [/\bas\s+Shown\b/, "casts to Shown, skipping the catalog"],
  [/userText\(\s*["'`]/, "marks a literal as people's own words"],
  [/\b(window\.)?(alert|confirm|prompt)\(/, "uses a browser dialog (untranslatable)"],
];

function sourceFiles(): string[] {
  const src = join(webRoot, "src");
  return readdirSync(src, { recursive: true, encoding: "utf8" })
    .filter((name) => name.endsWith(".ts") && !name.startsWith("gen") && !name.startsWith("i18n/"))
    .map((name) => join(src, name));
}

/** The bypasses in `text`, as "line: reason". */
export function findBypasses(text: string): string[] {
  const found: string[] = [];
  text.split("\n").forEach((line, index) => {
    const code = line.replace(/\/\/.*$/, "");
    for (const [pattern, reason] of BYPASSES) {
      if (pattern.test(code)) {
        found.push(`${index + 1}: ${reason}: ${line.trim()}`);
      }
    }
  });
  return found;
}

/** Type-checks `code` (a module in web/src/) with the client's settings; the compiler's errors. */
function typeCheck(code: string): string {
  const dir = mkdtempSync(join(webRoot, "build-test", "fixture-"));
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "sample.ts"), code);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({ extends: relative(dir, join(webRoot, "tsconfig.json")), compilerOptions: { noUnusedLocals: false }, include: ["sample.ts"] }),
    );
    try {
      execFileSync(tsc, ["--noEmit", "-p", dir], { encoding: "utf8", stdio: "pipe" });
      return "";
    } catch (error) {
      return String((error as { stdout?: string }).stdout ?? error);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("every shown string goes through the catalog", () => {
  it("web/src uses no way around the DOM helpers", () => {
    const problems = sourceFiles()
      .filter((file) => !IMPLEMENTATION.has(relative(join(webRoot, "src"), file)))
      .flatMap((file) => findBypasses(readFileSync(file, "utf8")).map((problem) => `${relative(webRoot, file)}:${problem}`));
    assert.deepEqual(problems, []);
  });

  it("the source check catches each way around", () => {
    const samples = [
      `status.textContent = "Loading";`,
      `node.innerHTML = "<b>hi</b>";`,
      `parent.appendChild(document.createTextNode("Hi"));`,
      `button.title = "Play";`,
      `input.setAttribute("placeholder", "Name");`,
      `document.title = "Room";`,
      `const text = "Play" as Shown;`,
      `h("p", {}, userText("Welcome"));`,
      `if (!window.confirm("Close it?")) return;`,
    ];
    for (const sample of samples) {
      assert.ok(findBypasses(sample).length >= 1, sample);
    }
    assert.deepEqual(findBypasses(`setText(status, t("room.opening")); // status.textContent = "x"`), []);
  });

  it("the compiler refuses a bare string shown through the helpers, and accepts the catalog's", () => {
    const imports = `import { button, h, setLabel, setText } from "../../src/dom";\nimport { t, userText } from "../../src/i18n";\n`;
    const refused = typeCheck(
      `${imports}
const a = h("p", {}, "Hello");
const b = button("Save", () => undefined);
const c = h("input", { attrs: { placeholder: "Your name" } });
setText(a, "Loading");
setLabel(b, "title", "Save it");
const name: string = "Mei";
const d = h("span", {}, name);
export { c, d };
`,
    );
    const errors = refused.split("\n").filter((line) => /error TS\d+/.test(line));
    assert.equal(errors.length, 6, `six refusals expected:\n${refused}`);
    const accepted = typeCheck(
      `${imports}
const a = h("p", {}, t("room.opening"));
const b = button(t("action.save"), () => undefined);
h("input", { attrs: { placeholder: t("welcome.namePlaceholder"), id: "plain-attributes-are-strings" } });
setText(a, t("room.opening"));
setLabel(b, "title", t("action.save"));
h("span", {}, userText("Mei".toUpperCase()));
`,
    );
    assert.equal(accepted, "", accepted);
  });
});
