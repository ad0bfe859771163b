// The five points every client says the same way (clients/CONTRACT.md,
// "Conformance"): the publish result's fields, the fake's vocabulary and
// failure policy, waitSynced, the closed error's type, ADDRESS_ENV.
// Run by `cargo test --test clients -- node`.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ADDRESS_ENV,
  FakeOccupancyClient,
  OccupancyClient,
  OccupancyClosedError,
  OccupancyError,
  TARGET_ENV,
  status,
} from "@occupancy/client";

import { rejectsWith, sendWebhook, uniqueChannel, withEnv } from "./helpers";

const PUBLISH_FIELDS = ["deferred", "published", "skipped", "storeUnavailable", "superseded"];

withEnv((env) => {
  describe("conformance", () => {
    it("publish result fields", async () => {
      const channel = uniqueChannel("node-conf");
      await sendWebhook(env, "channel_occupied", channel);
      const client = new OccupancyClient(env.OCCUPANCY_ADDR);
      try {
        const real = await client.publishIfOccupied([channel, uniqueChannel("node-conf-vacant")], "e", "{}");
        assert.deepEqual(Object.keys(real).sort(), PUBLISH_FIELDS);
        assert.deepEqual(real.published, [channel]);
        assert.deepEqual([real.deferred, real.superseded, real.storeUnavailable], [[], 0, false]);
      } finally {
        client.close();
      }
      const fake = await new FakeOccupancyClient().occupy("a").publishIfOccupied(["a", "b"], "e", "{}");
      assert.deepEqual(fake, { published: ["a"], skipped: ["b"], deferred: [], superseded: 0, storeUnavailable: false });
    });

    it("fake vocabulary and failure policy", async () => {
      const seen: OccupancyError[] = [];
      const down = new OccupancyError(status.UNAVAILABLE, "down");
      const fake = new FakeOccupancyClient({ onError: (e) => seen.push(e) }).occupy("a", "b").vacate("b");
      assert.equal(await fake.isOccupied("a"), true);
      assert.equal(await fake.isOccupied("b"), false);
      fake.failWith(down);
      assert.equal(await fake.isOccupied("b"), true, "UNAVAILABLE fails open");
      assert.deepEqual(seen, [down]);
      await rejectsWith(fake.publishIfOccupied(["a"], "e", "{}"), [status.UNAVAILABLE]);
      const raising = new FakeOccupancyClient({ failOpen: false }).failWith(down);
      await rejectsWith(raising.isOccupied("a"), [status.UNAVAILABLE]);
      fake.failWith(new OccupancyError(status.INVALID_ARGUMENT, "bad"));
      await rejectsWith(fake.isOccupied("a"), [status.INVALID_ARGUMENT]);
      fake.recover();
      assert.equal(await fake.isOccupied("b"), false);
      assert.equal(await fake.waitSynced(), true);
    });

    it("waitSynced", async () => {
      const cached = new OccupancyClient(env.OCCUPANCY_ADDR, { cached: true, failOpen: false });
      const dead = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { cached: true, failOpen: false });
      const plain = new OccupancyClient(env.OCCUPANCY_ADDR);
      try {
        assert.equal(await cached.waitSynced(5000), true);
        assert.equal(cached.isSynced, true);
        assert.equal(await dead.waitSynced(300), false);
        await rejectsWith(plain.waitSynced(), [status.FAILED_PRECONDITION]);
        cached.close();
        assert.ok((await rejectsWith(cached.waitSynced(), [status.CANCELLED])) instanceof OccupancyClosedError);
      } finally {
        for (const c of [cached, dead, plain]) c.close();
      }
    });

    it("closed error is an OccupancyError", async () => {
      const client = new OccupancyClient(env.OCCUPANCY_ADDR);
      const fake = new FakeOccupancyClient();
      client.close();
      fake.close();
      for (const err of [
        await rejectsWith(client.isOccupied("a"), [status.CANCELLED]),
        await rejectsWith(fake.isOccupied("a"), [status.CANCELLED]),
      ]) {
        assert.ok(err instanceof OccupancyClosedError);
        assert.ok(err instanceof OccupancyError);
      }
    });

    it("ADDRESS_ENV", () => {
      assert.equal(ADDRESS_ENV, "OCCUPANCY_ADDR");
      assert.equal(TARGET_ENV, ADDRESS_ENV);
    });
  });
});
