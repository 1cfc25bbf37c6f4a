// Builds the web client: generates the protobuf code from ../proto, type-checks, and bundles
// everything into dist/ (index.html, app.js, app.css) with no external URL, so that the strict
// same-origin content security policy holds. The first load fetches only app.js and the chunks
// it imports statically (announced with modulepreload links so that they load in parallel); the
// room page, hls.js, the QR encoder and the operator console (/admin, with uPlot and admin.css)
// are chunks fetched when needed. The build fails when that
// first load would exceed INITIAL_JS_BUDGET gzipped. `node build.mjs --tests` also bundles the
// unit tests into build-test/ for `node --test`.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const bin = (name) => join(here, "node_modules", ".bin", name);
// buf finds the protoc-gen-es plugin on PATH.
const env = { ...process.env, PATH: `${join(here, "node_modules", ".bin")}:${process.env.PATH ?? ""}` };
const run = (command, args) => {
  try {
    execFileSync(command, args, { cwd: here, stdio: "inherit", env });
  } catch {
    console.error(`build failed: ${command.split("/").pop()} ${args.join(" ")}`);
    process.exit(1);
  }
};

const withTests = process.argv.includes("--tests");
/** The JavaScript a first visit may fetch before the lobby works, gzipped. */
const INITIAL_JS_BUDGET = 80 * 1024;

run(bin("buf"), ["generate", "--template", "buf.gen.yaml"]);
run(bin("tsc"), ["--noEmit", "-p", "tsconfig.json"]);
if (withTests) {
  run(bin("tsc"), ["--noEmit", "-p", "test/tsconfig.json"]);
}

const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
cpSync(join(here, "static"), dist, { recursive: true });
// The operator console's stylesheet starts with uPlot's own (its charts' layout), as shipped.
const adminCss = join(dist, "admin.css");
writeFileSync(adminCss, readFileSync(join(here, "node_modules", "uplot", "dist", "uPlot.min.css"), "utf8") + "\n" + readFileSync(adminCss, "utf8"));
const built = await esbuild.build({
  entryPoints: { app: join(here, "src", "main.ts") },
  metafile: true,
  outdir: dist,
  bundle: true,
  format: "esm",
  // hls.js goes into its own chunk, fetched only for HLS playlists.
  splitting: true,
  chunkNames: "chunks/[name]-[hash]",
  target: ["es2022"],
  minify: true,
  sourcemap: "linked",
  legalComments: "none",
  logLevel: "warning",
});

// The first load: app.js and, transitively, every chunk it imports statically.
const outputs = built.metafile.outputs;
const entry = Object.keys(outputs).find((path) => outputs[path].entryPoint?.endsWith("src/main.ts"));
const initial = new Set([entry]);
for (const path of initial) {
  for (const imported of outputs[path].imports) {
    if (imported.kind === "import-statement" && !imported.external) {
      initial.add(imported.path);
    }
  }
}
const initialBytes = [...initial].reduce((sum, path) => sum + gzipSync(readFileSync(join(here, path)), { level: 9 }).length, 0);
const preloads = [...initial]
  .filter((path) => path !== entry)
  .map((path) => `    <link rel="modulepreload" href="/${relative(dist, join(here, path))}">`)
  .join("\n");
const indexPath = join(dist, "index.html");
writeFileSync(indexPath, readFileSync(indexPath, "utf8").replace(/(\s*<script type="module")/, `\n${preloads}$1`));
console.log(`initial JavaScript: ${(initialBytes / 1024).toFixed(1)} KB gzipped (budget ${INITIAL_JS_BUDGET / 1024} KB; ${initial.size} files)`);
if (initialBytes > INITIAL_JS_BUDGET) {
  console.error("build failed: the first load's JavaScript is over budget; load the new code lazily (import()) instead");
  process.exit(1);
}

if (withTests) {
  const testDir = join(here, "test");
  const outdir = join(here, "build-test");
  rmSync(outdir, { recursive: true, force: true });
  await esbuild.build({
    entryPoints: readdirSync(testDir)
      .filter((name) => name.endsWith(".test.ts"))
      .map((name) => join(testDir, name)),
    outdir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: ["node20"],
    packages: "external",
    logLevel: "warning",
  });
}
