// The shipped test double, tested as a product: it must behave like the real
// client for everything an encoder's unit tests rely on.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  FakeOccupancyClient,
  OccupancyClient,
  OccupancyClosedError,
  OccupancyError,
  OUTAGE_CODES,
  isOutage,
  status,
  type OccupancyGate,
} from "@occupancy/client";

import { rejectsWith, sleep, withEnv } from "./helpers";

/** Encoder code written against the interface, as the README recommends. */
async function publishProgress(gate: OccupancyGate, job: string, pct: number): Promise<string> {
  if (!(await gate.isOccupied(`private-job-${job}`))) {
    return "skipped";
  }
  const result = await gate.publishIfOccupied([`private-job-${job}`], "progress", JSON.stringify({ pct }));
  return result.published.length > 0 ? "published" : "skipped";
}

withEnv((env) => {
  describe("FakeOccupancyClient", () => {
    it("implements the same OccupancyGate interface as the real client", async () => {
      const gates: OccupancyGate[] = [new FakeOccupancyClient(), new OccupancyClient(env.OCCUPANCY_ADDR)];
      try {
        for (const gate of gates) assert.equal(await publishProgress(gate, "1", 5), "skipped");
      } finally {
        for (const gate of gates) gate.close();
      }
    });

    it("answers from channels marked by hand, and records publishes split into published and skipped", async () => {
      const fake = new FakeOccupancyClient().occupy("private-job-7", "a", "b");
      assert.equal(await fake.isOccupied("private-job-7"), true);
      assert.equal(await fake.isOccupied("nobody"), false);
      assert.equal(await publishProgress(fake, "7", 42), "published");
      fake.vacate("b");
      assert.equal(await fake.isOccupied("b"), false);

      const result = await fake.publishIfOccupied(["a", "b", "c", "a"], "e", "{}", { socketId: "1.2" });
      assert.deepEqual(result, { published: ["a"], skipped: ["b", "c"], deferred: [], superseded: 0, storeUnavailable: false });
      assert.deepEqual(fake.publishes, [
        {
          channels: ["private-job-7"],
          event: "progress",
          data: '{"pct":42}',
          socketId: "",
          published: ["private-job-7"],
          skipped: [],
        },
        { channels: ["a", "b", "c", "a"], event: "e", data: "{}", socketId: "1.2", published: ["a"], skipped: ["b", "c"] },
      ]);
    });

    it("checks names and arguments exactly as the real client does", async () => {
      const fake = new FakeOccupancyClient();
      const real = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      const checks: Array<(gate: OccupancyGate) => Promise<unknown>> = [
        (g) => g.isOccupied("bad channel!"),
        (g) => g.isOccupied(""),
        (g) => g.isOccupied("x".repeat(165)),
        (g) => g.isOccupied(7 as unknown as string),
        (g) => g.publishIfOccupied([], "e", "{}"),
        (g) => g.publishIfOccupied(["ok", "no way"], "e", "{}"),
        (g) => g.publishIfOccupied(["ok"], "", "{}"),
        (g) => g.publishIfOccupied(["ok"], "e".repeat(201), "{}"),
        (g) => g.publishIfOccupied(["ok"], "e", {} as unknown as string),
      ];
      try {
        for (const check of checks) {
          const fromFake = await rejectsWith(check(fake), [status.INVALID_ARGUMENT]);
          const fromReal = await rejectsWith(check(real), [status.INVALID_ARGUMENT]);
          assert.equal(fromFake.details, fromReal.details);
        }
        assert.throws(() => fake.occupy("bad channel!"), OccupancyError);
        assert.deepEqual(fake.publishes, []);
      } finally {
        real.close();
      }
    });

    it("applies the real failure policy to an error set with failWith: only outages fail open", async () => {
      const outages = new Set<status>([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED]);
      assert.deepEqual(new Set(OUTAGE_CODES), outages);
      for (let n = status.CANCELLED as number; n <= status.UNAUTHENTICATED; n++) {
        const code = n as status;
        const error: OccupancyError = new OccupancyError(code, `simulated ${status[code]}`);
        assert.equal(isOutage(error), outages.has(code));
        const seen: OccupancyError[] = [];
        const open = new FakeOccupancyClient({ onError: (e) => seen.push(e) }).occupy("ch").failWith(error);
        const raising = new FakeOccupancyClient({ failOpen: false }).occupy("ch").failWith(error);
        if (outages.has(code)) {
          assert.equal(await open.isOccupied("vacant"), true, `${status[code]} fails open`);
          assert.deepEqual(seen, [error]);
        } else {
          assert.equal(await rejectsWith(open.isOccupied("ch"), [code]), error, `${status[code]} is raised`);
          assert.deepEqual(seen, []);
        }
        assert.equal(await rejectsWith(raising.isOccupied("ch"), [code]), error);
        assert.equal(await rejectsWith(open.publishIfOccupied(["ch"], "e", "{}"), [code]), error, "publish always raises");
      }
      const healed = new FakeOccupancyClient().occupy("ch").failWith(new OccupancyError(status.UNAVAILABLE, "down"));
      healed.failWith(undefined);
      assert.equal(await healed.isOccupied("vacant"), false);
    });

    it("warns through the default hook at most once per 30 s, like the real client", async () => {
      const warnings: Error[] = [];
      const listener = (w: Error): void => {
        if (w.name === "OccupancyWarning") warnings.push(w);
      };
      process.on("warning", listener);
      try {
        const fake = new FakeOccupancyClient().failWith(new OccupancyError(status.UNAVAILABLE, "down"));
        for (let i = 0; i < 4; i++) assert.equal(await fake.isOccupied("ch"), true);
        await sleep(20);
      } finally {
        process.off("warning", listener);
      }
      assert.equal(warnings.length, 1);
    });

    it("after close every call raises OccupancyClosedError; close twice is harmless", async () => {
      const fake = new FakeOccupancyClient().occupy("ch");
      fake.close();
      fake.close();
      assert.ok((await rejectsWith(fake.isOccupied("ch"), [status.CANCELLED])) instanceof OccupancyClosedError);
      assert.ok(
        (await rejectsWith(fake.publishIfOccupied(["ch"], "e", "{}"), [status.CANCELLED])) instanceof OccupancyClosedError,
      );
    });
  });
});
