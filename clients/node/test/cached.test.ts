// Cached mode against the real gate's WatchOccupancy stream.
// Run by `cargo test --test clients -- node`.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Server as GrpcServer, ServerCredentials } from "@grpc/grpc-js";
import {
  OccupancyClient,
  OccupancyClosedError,
  OccupancyError,
  RESUBSCRIBE_INITIAL_MS,
  RESUBSCRIBE_MAX_MS,
  status,
} from "@occupancy/client";

import {
  eventually,
  FRAME,
  rejectsWith,
  restartGate,
  sendWebhook,
  sleep,
  TapProxy,
  uniqueChannel,
  withEnv,
} from "./helpers";

/**
 * Polls a cached client that does NOT fail open (so "not synchronised" cannot
 * pass for "occupied") until it answers `expected` for `channel`.
 */
function seesLocally(client: OccupancyClient, channel: string, expected: boolean, withinMs = 5000): Promise<number> {
  return eventually(
    `the cached client answers ${expected} for ${channel}`,
    async () => (await client.isOccupied(channel)) === expected,
    withinMs,
    25,
  );
}

withEnv((env) => {
  describe("cached mode against the live gate", () => {
    it("synchronises, then sees webhooks locally: occupied, then vacated", async () => {
      const before = uniqueChannel("node-cached");
      await sendWebhook(env, "channel_occupied", before);
      const client = new OccupancyClient(env.OCCUPANCY_ADDR, { cached: true, failOpen: false });
      try {
        assert.equal(client.isSynced, false, "construction does not subscribe");
        await client.waitForSync();
        assert.equal(client.isSynced, true);
        assert.equal(await client.isOccupied(before), true, "the snapshot lists channels occupied before");

        const channel = uniqueChannel("node-cached");
        assert.equal(await client.isOccupied(channel), false);
        await sendWebhook(env, "channel_occupied", channel);
        await seesLocally(client, channel, true);
        await sendWebhook(env, "channel_vacated", channel);
        await seesLocally(client, channel, false);
      } finally {
        client.close();
      }
    });

    it("answers checks from the local copy, with no call per check; local name checks still apply", async () => {
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const client = new OccupancyClient(proxy.target, { cached: true, failOpen: false });
      try {
        await client.waitForSync();
        const calls = proxy.count(FRAME.HEADERS);
        assert.equal(calls, 1, "one call: the WatchOccupancy stream");
        for (let i = 0; i < 100; i++) await client.isOccupied(uniqueChannel());
        assert.equal(proxy.count(FRAME.HEADERS), calls, "no call per check");
        await rejectsWith(client.isOccupied("bad channel!"), [status.INVALID_ARGUMENT]);
      } finally {
        client.close();
        await proxy.stop();
      }
    });

    it("survives a restart of the gate: after it, a new webhook is seen locally", async () => {
      const kept = uniqueChannel("node-cached");
      await sendWebhook(env, "channel_occupied", kept);
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const client = new OccupancyClient(proxy.target, { cached: true, failOpen: false });
      try {
        await client.waitForSync();
        assert.equal(await client.isOccupied(kept), true);
        await restartGate();
        const channel = uniqueChannel("node-cached");
        await sendWebhook(env, "channel_occupied", channel);
        await seesLocally(client, channel, true, 8000);
        assert.equal(await client.isOccupied(kept), true, "the resynchronised copy keeps what Redis kept");
        assert.ok(proxy.connections >= 2, "the subscription was re-established on a new connection");
        assert.ok(proxy.count(FRAME.HEADERS) >= 2, "WatchOccupancy was called again after the restart");
      } finally {
        client.close();
        await proxy.stop();
      }
    });

    it("resubscribes after the stream breaks: fails open meanwhile, re-synchronised within seconds of a long outage ending", async () => {
      // The exact backoff sequence (100 ms doubling to 2 s) is checked in protocol.test.ts.
      assert.equal(RESUBSCRIBE_INITIAL_MS, 100);
      assert.equal(RESUBSCRIBE_MAX_MS, 2000);
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(proxy.target, { cached: true, onError: (e) => seen.push(e) });
      try {
        await client.waitForSync();
        await proxy.stop();
        await eventually("the cached client notices the broken stream", () => !client.isSynced, 2000, 10);
        const channel = uniqueChannel("node-cached");
        assert.equal(await client.isOccupied(channel), true, "not synchronised: fail-open answers true");
        assert.equal(seen.at(-1)?.code, status.UNAVAILABLE);
        await sleep(6000);
        await sendWebhook(env, "channel_occupied", channel);
        await proxy.start();
        const took = await eventually("re-synchronised", () => client.isSynced, 8000, 25);
        // At most 2 s of resubscribe backoff plus at most 2.4 s of grpc-js reconnect backoff.
        assert.ok(took < 5500, `re-synchronised after ${took} ms`);
        assert.equal(await client.isOccupied(channel), true);
        assert.equal(await client.isOccupied(uniqueChannel()), false);
      } finally {
        client.close();
        await proxy.stop();
      }
    });

    it("close ends the subscription and every later call raises the closed error", async () => {
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const client = new OccupancyClient(proxy.target, { cached: true, failOpen: false });
      try {
        await client.waitForSync();
        assert.equal(proxy.openConnections, 1);
        client.close();
        await eventually("the connection is closed", () => proxy.openConnections === 0, 3000, 25);
        assert.ok((await rejectsWith(client.isOccupied(uniqueChannel()), [status.CANCELLED])) instanceof OccupancyClosedError);
        await rejectsWith(client.waitForSync(), [status.CANCELLED]);
      } finally {
        client.close();
        await proxy.stop();
      }
    });
  });

  describe("cached mode while not synchronised", () => {
    it("fails open with the gate down: answers true and the hook sees UNAVAILABLE", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { cached: true, onError: (e) => seen.push(e) });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        await sleep(300);
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        assert.equal(seen.length, 2);
        for (const e of seen) assert.equal(e.code, status.UNAVAILABLE);
        assert.match(seen[1]!.details, /not synchronised/);
        await rejectsWith(client.isOccupied("bad channel!"), [status.INVALID_ARGUMENT]);
      } finally {
        client.close();
      }
    });

    it("raises UNAVAILABLE when not failing open; waitForSync times out with DEADLINE_EXCEEDED", async () => {
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { cached: true, failOpen: false });
      try {
        await rejectsWith(client.isOccupied(uniqueChannel()), [status.UNAVAILABLE]);
        const started = Date.now();
        const err = await rejectsWith(client.waitForSync(400), [status.DEADLINE_EXCEEDED]);
        assert.ok(Date.now() - started < 1500);
        assert.ok(err.cause instanceof OccupancyError, "the cause is the stream's last error");
        assert.match(err.details, /UNAVAILABLE/);
      } finally {
        client.close();
      }
    });

    it("waitForSync without cached is a FAILED_PRECONDITION", async () => {
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      try {
        await rejectsWith(client.waitForSync(), [status.FAILED_PRECONDITION]);
        assert.equal(client.isSynced, false);
      } finally {
        client.close();
      }
    });

    describe("against a gRPC server that is not the gate", () => {
      let server: GrpcServer;
      let target: string;

      before(async () => {
        server = new GrpcServer();
        const port = await new Promise<number>((resolve, reject) =>
          server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
        );
        target = `127.0.0.1:${port}`;
      });
      after(() => {
        server.forceShutdown();
      });

      it("raises the stream's UNIMPLEMENTED even when failing open (a configuration bug, not an outage)", async () => {
        const seen: OccupancyError[] = [];
        const client = new OccupancyClient(target, { cached: true, onError: (e) => seen.push(e) });
        try {
          await client.isOccupied(uniqueChannel()); // starts the subscription; not synchronised yet
          seen.length = 0;
          await eventually(
            "the cached client raises UNIMPLEMENTED",
            async () => {
              try {
                await client.isOccupied(uniqueChannel());
                return false;
              } catch (err) {
                return err instanceof OccupancyError && err.code === status.UNIMPLEMENTED;
              }
            },
            3000,
          );
          seen.length = 0;
          await rejectsWith(client.isOccupied(uniqueChannel()), [status.UNIMPLEMENTED]);
          assert.deepEqual(seen, []);
        } finally {
          client.close();
        }
      });
    });
  });
});
