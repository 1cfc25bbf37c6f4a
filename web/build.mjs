// Builds the web client: generates the protobuf code from ../proto, type-checks, and bundles
// everything into dist/ (index.html, app.js, app.css) with no external URL, so that the strict
// same-origin content security policy holds. `node build.mjs --tests` also bundles the unit
// tests into build-test/ for `node --test`.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

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

run(bin("buf"), ["generate", "--template", "buf.gen.yaml"]);
run(bin("tsc"), ["--noEmit", "-p", "tsconfig.json"]);
if (withTests) {
  run(bin("tsc"), ["--noEmit", "-p", "test/tsconfig.json"]);
}

const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
cpSync(join(here, "static"), dist, { recursive: true });
await esbuild.build({
  entryPoints: { app: join(here, "src", "main.ts") },
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
