// The package as users get it: both the CommonJS and the ESM build (this suite
// imports the built package by its name, never src/), what `npm pack` ships,
// and an install from the packed tarball used by an ESM and a CommonJS
// consumer, type-checked and run against the real gate.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, describe, it } from "node:test";

import * as cjsBuild from "@occupancy/client";

import { sendWebhook, uniqueChannel, withEnv, type Env } from "./helpers";

const run = promisify(execFile);
const packageDir = path.resolve(__dirname, "..");
const repoRoot = path.resolve(packageDir, "..", "..");
const pkg = JSON.parse(readFileSync(path.join(packageDir, "package.json"), "utf8")) as {
  name: string;
  version: string;
  license: string;
};

/** Runs `node` with `args` in `cwd`; returns stdout. */
async function node(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, args, { cwd, env: process.env, timeout: 30_000 });
  return stdout;
}

/** A script that loads the package one way and checks it against the live gate. */
function consumerScript(load: "import" | "require", channel: string): string {
  const head =
    load === "import"
      ? 'import * as m from "@occupancy/client";\nconst where = import.meta.resolve("@occupancy/client");\n'
      : 'const m = require("@occupancy/client");\nconst where = require.resolve("@occupancy/client");\n';
  const body = `
const client = new m.OccupancyClient({ failOpen: false });
const fake = new m.FakeOccupancyClient().occupy("a");
const main = async () => {
  const occupied = await client.isOccupied(${JSON.stringify(channel)});
  const bad = await client.isOccupied("bad channel!").catch((e) => e);
  client.close();
  console.log(JSON.stringify({
    where,
    exports: Object.keys(m).sort(),
    occupied,
    badCode: bad.code,
    badIsOccupancyError: bad instanceof m.OccupancyError,
    fake: await fake.isOccupied("a"),
  }));
};
`;
  return head + body + (load === "import" ? "await main();\n" : "main().catch((e) => { console.error(e); process.exit(1); });\n");
}

interface ConsumerReport {
  where: string;
  exports: string[];
  occupied: boolean;
  badCode: number;
  badIsOccupancyError: boolean;
  fake: boolean;
}

async function occupied(env: Env): Promise<string> {
  const channel = uniqueChannel("node-pkg");
  await sendWebhook(env, "channel_occupied", channel);
  return channel;
}

withEnv((env) => {
  describe("the built package", () => {
    it("is what this suite imports: the CommonJS build in dist/cjs", () => {
      assert.equal(require.resolve("@occupancy/client"), path.join(packageDir, "dist", "cjs", "index.js"));
      assert.equal(typeof cjsBuild.OccupancyClient, "function");
    });

    it("works with both require() and import, each from its own build, with the same exports", async () => {
      const channel = await occupied(env);
      const tmp = mkdtempSync(path.join(packageDir, ".consumer-"));
      try {
        // Inside the package folder, so the package resolves itself by name.
        writeFileSync(path.join(tmp, "esm.mjs"), consumerScript("import", channel));
        writeFileSync(path.join(tmp, "cjs.cjs"), consumerScript("require", channel));
        const esm = JSON.parse(await node(tmp, ["esm.mjs"])) as ConsumerReport;
        const cjs = JSON.parse(await node(tmp, ["cjs.cjs"])) as ConsumerReport;
        assert.match(esm.where, /\/dist\/esm\/index\.js$/);
        assert.match(cjs.where, /\/dist\/cjs\/index\.js$/);
        assert.deepEqual(esm.exports, cjs.exports);
        assert.deepEqual(cjs.exports, Object.keys(cjsBuild).sort());
        for (const report of [esm, cjs]) {
          assert.equal(report.occupied, true);
          assert.equal(report.badCode, cjsBuild.status.INVALID_ARGUMENT);
          assert.equal(report.badIsOccupancyError, true);
          assert.equal(report.fake, true);
        }
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    });

    it("keeps instanceof working across the two builds (an app may load both)", async () => {
      const out = await node(packageDir, [
        "--input-type=module",
        "-e",
        `import * as esm from "@occupancy/client";
         import { createRequire } from "node:module";
         const cjs = createRequire(import.meta.url)("@occupancy/client");
         console.log(JSON.stringify([
           new cjs.OccupancyClosedError() instanceof esm.OccupancyError,
           new cjs.OccupancyClosedError() instanceof esm.OccupancyClosedError,
           new esm.OccupancyError(14, "x") instanceof cjs.OccupancyError,
           new esm.OccupancyError(14, "x") instanceof cjs.OccupancyClosedError,
           esm.OccupancyClient === cjs.OccupancyClient,
         ]));`,
      ]);
      assert.deepEqual(JSON.parse(out), [true, true, true, false, false]);
    });

    it("declares MIT OR Apache-2.0 and ships both licence texts, identical to the repository's", () => {
      assert.equal(pkg.license, "MIT OR Apache-2.0");
      for (const name of ["LICENSE-MIT", "LICENSE-APACHE"]) {
        assert.equal(
          readFileSync(path.join(packageDir, name), "utf8"),
          readFileSync(path.join(repoRoot, name), "utf8"),
          `${name} must be a copy of the repository's`,
        );
      }
    });
  });

  describe("npm pack and install from the tarball", () => {
    let work: string;
    let tarball: string;

    before(async () => {
      work = mkdtempSync(path.join(tmpdir(), "occupancy-node-pack-"));
      // --ignore-scripts: dist/ is already built by `npm test`, and rebuilding
      // it here would pull it from under the other test files.
      const { stdout } = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], {
        cwd: packageDir,
        timeout: 60_000,
      });
      const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
      tarball = path.join(work, info!.filename);
      writeFileSync(path.join(work, "files.json"), JSON.stringify(info!.files.map((f) => f.path)));
    });
    after(() => {
      rmSync(work, { recursive: true, force: true });
    });

    it("is named occupancy-client-X.Y.Z.tgz and contains both builds, their types, README and licences only", () => {
      assert.equal(path.basename(tarball), `occupancy-client-${pkg.version}.tgz`);
      const files = JSON.parse(readFileSync(path.join(work, "files.json"), "utf8")) as string[];
      for (const needed of [
        "package.json",
        "README.md",
        "LICENSE-MIT",
        "LICENSE-APACHE",
        "dist/cjs/index.js",
        "dist/cjs/index.d.ts",
        "dist/cjs/package.json",
        "dist/cjs/generated/occupancy/v1/occupancy.js",
        "dist/esm/index.js",
        "dist/esm/index.d.ts",
        "dist/esm/package.json",
        "dist/esm/generated/occupancy/v1/occupancy.js",
        "src/index.ts",
      ]) {
        assert.ok(files.includes(needed), `${needed} missing from the tarball`);
      }
      for (const file of files) {
        assert.ok(!/^(test|build-test|node_modules|scripts)\//.test(file) && !file.startsWith(".consumer-"), `${file} must not ship`);
      }
    });

    it("installs with npm, and an ESM and a CommonJS consumer type-check and run against the gate", async () => {
      const channel = await occupied(env);
      const app = path.join(work, "app");
      mkdirSync(app, { recursive: true });
      writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "consumer", private: true }));
      await run(
        "npm",
        ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefer-offline", "--loglevel=error", tarball],
        { cwd: app, timeout: 180_000 },
      );
      writeFileSync(path.join(app, "esm.mjs"), consumerScript("import", channel));
      writeFileSync(path.join(app, "cjs.cjs"), consumerScript("require", channel));
      const esm = JSON.parse(await node(app, ["esm.mjs"])) as ConsumerReport;
      const cjs = JSON.parse(await node(app, ["cjs.cjs"])) as ConsumerReport;
      assert.match(esm.where, /node_modules\/@occupancy\/client\/dist\/esm\/index\.js$/);
      assert.match(cjs.where, /node_modules\/@occupancy\/client\/dist\/cjs\/index\.js$/);
      for (const report of [esm, cjs]) {
        assert.equal(report.occupied, true);
        assert.equal(report.badIsOccupancyError, true);
      }

      // Types for both: an .mts file resolves the "import" types, a .cts file the "require" ones.
      const typed = `
const gate: OccupancyGate = new FakeOccupancyClient();
const answer: Promise<boolean> = gate.isOccupied("a");
const code: number = status.UNAVAILABLE;
// @ts-expect-error checkTimeoutMs is a number of milliseconds
new OccupancyClient("127.0.0.1:1", { checkTimeoutMs: "1" });
void answer; void code;
`;
      writeFileSync(
        path.join(app, "esm.mts"),
        'import { FakeOccupancyClient, OccupancyClient, status, type OccupancyGate } from "@occupancy/client";\n' + typed,
      );
      writeFileSync(
        path.join(app, "cjs.cts"),
        'import occupancy = require("@occupancy/client");\n' +
          "const { FakeOccupancyClient, OccupancyClient, status } = occupancy;\n" +
          "type OccupancyGate = occupancy.OccupancyGate;\n" +
          typed,
      );
      writeFileSync(
        path.join(app, "tsconfig.json"),
        JSON.stringify({
          compilerOptions: {
            module: "node16",
            moduleResolution: "node16",
            target: "ES2022",
            strict: true,
            noEmit: true,
            typeRoots: [path.join(packageDir, "node_modules", "@types")],
            types: ["node"],
          },
          files: ["esm.mts", "cjs.cts"],
        }),
      );
      const tsc = require.resolve("typescript/bin/tsc", { paths: [packageDir] });
      await run(process.execPath, [tsc, "-p", app], { cwd: app, timeout: 60_000 }).catch((err: { stdout?: string }) => {
        throw new Error(`consumer type check failed:\n${err.stdout ?? String(err)}`);
      });
    });
  });
  describe("npm install from git", () => {
    it("installs from a git URL pinned to a commit with ::path:clients/node (prepare builds dist/ in the clone) and works", async () => {
      const channel = await occupied(env);
      const work = mkdtempSync(path.join(tmpdir(), "occupancy-node-git-"));
      try {
        // A repository holding this working tree's clients/node (what would be
        // pushed), so the test installs the files under test, not the last commit.
        const repo = path.join(work, "repo");
        const { stdout } = await run("git", ["ls-files", "--cached", "--others", "--exclude-standard", "-z", "."], {
          cwd: packageDir,
          maxBuffer: 16 * 1024 * 1024,
        });
        const files = stdout.split("\0").filter((f) => f !== "" && existsSync(path.join(packageDir, f)));
        for (const file of files) {
          const to = path.join(repo, "clients", "node", file);
          mkdirSync(path.dirname(to), { recursive: true });
          copyFileSync(path.join(packageDir, file), to);
        }
        const git = (...args: string[]) =>
          run("git", ["-c", "user.name=suite", "-c", "user.email=suite@example.invalid", ...args], { cwd: repo });
        await git("init", "-q");
        await git("add", "-A");
        await git("commit", "-q", "-m", "clients/node under test");
        // A full commit sha: with a branch or tag name, npm 11.19 drops ::path: when it
        // resolves the ref (pacote's addGitSha) and fails; the README says so.
        const sha = (await git("rev-parse", "HEAD")).stdout.trim();

        const app = path.join(work, "app");
        mkdirSync(app);
        writeFileSync(path.join(app, "package.json"), JSON.stringify({ name: "consumer", private: true }));
        await run(
          "npm",
          ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error", `git+file://${repo}#${sha}::path:clients/node`],
          { cwd: app, timeout: 300_000 },
        ).catch((err: { stderr?: string }) => {
          throw new Error(`npm install from git failed (npm 11 with ::path: support is needed):\n${err.stderr ?? String(err)}`);
        });
        writeFileSync(path.join(app, "esm.mjs"), consumerScript("import", channel));
        writeFileSync(path.join(app, "cjs.cjs"), consumerScript("require", channel));
        for (const script of ["esm.mjs", "cjs.cjs"]) {
          const report = JSON.parse(await node(app, [script])) as ConsumerReport;
          assert.match(report.where, /node_modules\/@occupancy\/client\/dist\/(esm|cjs)\/index\.js$/);
          assert.equal(report.occupied, true);
        }
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  });
});
