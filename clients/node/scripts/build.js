// Builds dist/cjs (CommonJS) and dist/esm (ES modules), each with its type
// declarations, from src/. Each folder gets a package.json naming its module
// type, so Node and TypeScript read dist/esm as ESM and dist/cjs as CommonJS
// whatever the root package.json says.
"use strict";
const { execFileSync } = require("node:child_process");
const { mkdirSync, rmSync, writeFileSync } = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const tsc = require.resolve("typescript/bin/tsc", { paths: [root] });
const dist = path.join(root, "dist");

rmSync(dist, { recursive: true, force: true });
for (const [config, type] of [
  ["tsconfig.json", "commonjs"],
  ["tsconfig.esm.json", "module"],
]) {
  execFileSync(process.execPath, [tsc, "-p", path.join(root, config)], { stdio: "inherit" });
  const out = path.join(dist, type === "module" ? "esm" : "cjs");
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, "package.json"), JSON.stringify({ type }, null, 2) + "\n");
}
