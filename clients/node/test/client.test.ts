// Runs against the real occupancy gate started by `cargo test --test clients -- node`.
import assert from "node:assert/strict";
import { createServer, type Server, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";

import { OccupancyClient, OccupancyError, status } from "../src/index";
import { loadEnv, sendWebhook, stubCallsFor, uniqueChannel, type Env } from "./helpers";

const loaded = loadEnv();

if (loaded instanceof Error) {
  // Fail, never skip: a suite that silently does nothing hides a broken harness.
  it("has the harness environment", () => {
    throw loaded;
  });
} else {
  defineSuite(loaded);
}

function assertOccupancyError(err: unknown, codes: readonly status[]): OccupancyError {
  assert.ok(err instanceof OccupancyError, `expected OccupancyError, got ${String(err)}`);
  assert.ok(
    codes.includes(err.code),
    `expected code in [${codes.map((c) => status[c]).join(", ")}], got ${status[err.code]} (${err.details})`,
  );
  assert.equal(typeof err.details, "string");
  assert.ok(err.details.length > 0, "details must carry the cause");
  return err;
}

function defineSuite(env: Env): void {
  describe("against the live gate", () => {
    let client: OccupancyClient;

    before(() => {
      client = new OccupancyClient(env.OCCUPANCY_ADDR);
    });
    after(() => {
      client.close();
    });

    it("reports a channel occupied after channel_occupied and vacant after channel_vacated", async () => {
      const channel = uniqueChannel();
      assert.equal(await client.isOccupied(channel), false);
      await sendWebhook(env, "channel_occupied", channel);
      assert.equal(await client.isOccupied(channel), true);
      await sendWebhook(env, "channel_vacated", channel);
      assert.equal(await client.isOccupied(channel), false);
    });

    it("answers many concurrent checks over the one shared channel", async () => {
      const occupied = uniqueChannel();
      await sendWebhook(env, "channel_occupied", occupied);
      const channels = Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? occupied : uniqueChannel()));
      const answers = await Promise.all(channels.map((c) => client.isOccupied(c)));
      assert.deepEqual(
        answers,
        channels.map((_, i) => i % 2 === 0),
      );
    });

    it("publishes to an occupied channel with exactly one signed Pusher call", async () => {
      const channel = uniqueChannel();
      await sendWebhook(env, "channel_occupied", channel);
      const data = JSON.stringify({ job: channel, progress: 42 });

      const result = await client.publishIfOccupied([channel], "progress", data);

      assert.deepEqual(result, { published: [channel], skipped: [] });
      const calls = await stubCallsFor(env, [channel]);
      assert.equal(calls.length, 1, `calls: ${JSON.stringify(calls)}`);
      const [call] = calls;
      assert.equal(call!.method, "POST");
      assert.equal(call!.path, `/apps/${env.TEST_PUSHER_APP_ID}/events`);
      assert.equal(call!.signature_valid, true);
      assert.equal(call!.body.name, "progress");
      assert.equal(call!.body.data, data);
      assert.deepEqual(call!.body.channels, [channel]);
      assert.equal(call!.body.socket_id, undefined);
    });

    it("passes socketId through to Pusher", async () => {
      const channel = uniqueChannel();
      await sendWebhook(env, "channel_occupied", channel);

      const result = await client.publishIfOccupied([channel], "progress", '{"p":1}', { socketId: "123.456" });

      assert.deepEqual(result, { published: [channel], skipped: [] });
      const calls = await stubCallsFor(env, [channel]);
      assert.equal(calls.length, 1, `calls: ${JSON.stringify(calls)}`);
      assert.equal(calls[0]!.signature_valid, true);
      assert.equal(calls[0]!.body.socket_id, "123.456");
    });

    it("skips a vacant channel without calling Pusher", async () => {
      const channel = uniqueChannel();

      const result = await client.publishIfOccupied([channel], "progress", "{}");

      assert.deepEqual(result, { published: [], skipped: [channel] });
      assert.deepEqual(await stubCallsFor(env, [channel]), []);
    });

    it("splits a mix of occupied and vacant channels, with one call listing only the occupied", async () => {
      const first = uniqueChannel("node-a");
      const vacant = uniqueChannel("node-b");
      const last = uniqueChannel("node-c");
      await sendWebhook(env, "channel_occupied", first);
      await sendWebhook(env, "channel_occupied", last);

      const result = await client.publishIfOccupied([first, vacant, last], "mixed", '{"n":3}');

      assert.deepEqual(result, { published: [first, last], skipped: [vacant] });
      const calls = await stubCallsFor(env, [first, vacant, last]);
      assert.equal(calls.length, 1, `calls: ${JSON.stringify(calls)}`);
      assert.equal(calls[0]!.signature_valid, true);
      assert.equal(calls[0]!.body.name, "mixed");
      assert.equal(calls[0]!.body.data, '{"n":3}');
      assert.deepEqual(calls[0]!.body.channels, [first, last]);
    });

    it("rejects a bad channel name with INVALID_ARGUMENT even when failing open", async () => {
      const seen: OccupancyError[] = [];
      const failOpen = new OccupancyClient(env.OCCUPANCY_ADDR, { failOpen: true, onError: (e) => seen.push(e) });
      const raising = new OccupancyClient(env.OCCUPANCY_ADDR, { failOpen: false });
      try {
        await assert.rejects(failOpen.isOccupied("bad channel!"), (err) => {
          assertOccupancyError(err, [status.INVALID_ARGUMENT]);
          return true;
        });
        await assert.rejects(raising.isOccupied("bad channel!"), (err) => {
          assertOccupancyError(err, [status.INVALID_ARGUMENT]);
          return true;
        });
        assert.deepEqual(seen, [], "INVALID_ARGUMENT is thrown, not handed to onError");
      } finally {
        failOpen.close();
        raising.close();
      }
    });

    it("rejects a publish with a bad channel name with INVALID_ARGUMENT and calls nobody", async () => {
      const good = uniqueChannel();
      await sendWebhook(env, "channel_occupied", good);
      await assert.rejects(client.publishIfOccupied([good, "bad channel!"], "progress", "{}"), (err) => {
        assertOccupancyError(err, [status.INVALID_ARGUMENT]);
        return true;
      });
      assert.deepEqual(await stubCallsFor(env, [good]), []);
    });

    it("rejects wrongly typed arguments locally with INVALID_ARGUMENT even when failing open", async () => {
      await assert.rejects(client.isOccupied(42 as unknown as string), (err) => {
        assertOccupancyError(err, [status.INVALID_ARGUMENT]);
        return true;
      });
      await assert.rejects(client.publishIfOccupied("ch" as unknown as string[], "e", "{}"), (err) => {
        assertOccupancyError(err, [status.INVALID_ARGUMENT]);
        return true;
      });
      await assert.rejects(client.publishIfOccupied(["ch"], "e", { a: 1 } as unknown as string), (err) => {
        assertOccupancyError(err, [status.INVALID_ARGUMENT]);
        return true;
      });
    });

    it("rejects every call with CANCELLED once closed, even when failing open", async () => {
      const closing = new OccupancyClient(env.OCCUPANCY_ADDR);
      assert.equal(await closing.isOccupied(uniqueChannel()), false);
      closing.close();
      closing.close(); // idempotent
      await assert.rejects(closing.isOccupied(uniqueChannel()), (err) => {
        assertOccupancyError(err, [status.CANCELLED]);
        return true;
      });
      await assert.rejects(closing.publishIfOccupied([uniqueChannel()], "e", "{}"), (err) => {
        assertOccupancyError(err, [status.CANCELLED]);
        return true;
      });
    });
  });

  describe("with the gate stopped", () => {
    const unreachable = [status.UNAVAILABLE, status.DEADLINE_EXCEEDED];

    it("fails open: answers occupied and hands the error to onError", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { onError: (e) => seen.push(e) });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        assert.equal(seen.length, 1);
        assertOccupancyError(seen[0], unreachable);
      } finally {
        client.close();
      }
    });

    it("fails open even when the onError hook throws", async () => {
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, {
        onError: () => {
          throw new Error("broken hook");
        },
      });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), true);
      } finally {
        client.close();
      }
    });

    it("raises UNAVAILABLE or DEADLINE_EXCEEDED when not failing open", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { failOpen: false, onError: (e) => seen.push(e) });
      try {
        await assert.rejects(client.isOccupied(uniqueChannel()), (err) => {
          assertOccupancyError(err, unreachable);
          return true;
        });
        assert.deepEqual(seen, [], "a thrown error is not also reported to onError");
      } finally {
        client.close();
      }
    });

    it("always raises on publish, whatever the failure policy", async () => {
      for (const failOpen of [true, false]) {
        const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { failOpen });
        try {
          await assert.rejects(client.publishIfOccupied([uniqueChannel()], "progress", "{}"), (err) => {
            assertOccupancyError(err, unreachable);
            return true;
          });
        } finally {
          client.close();
        }
      }
    });
  });

  describe("with a gate that accepts connections but never answers", () => {
    let server: Server;
    let target: string;
    const sockets = new Set<Socket>();

    before(async () => {
      server = createServer((socket) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const address = server.address();
      assert.ok(address !== null && typeof address === "object");
      target = `127.0.0.1:${address.port}`;
    });
    after(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    it("enforces timeoutMs on isOccupied", async () => {
      const client = new OccupancyClient(target, { timeoutMs: 200, failOpen: false });
      try {
        const started = Date.now();
        await assert.rejects(client.isOccupied(uniqueChannel()), (err) => {
          assertOccupancyError(err, [status.DEADLINE_EXCEEDED]);
          return true;
        });
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 150 && elapsed < 900, `took ${elapsed} ms`);
      } finally {
        client.close();
      }
    });

    it("fails open on a deadline", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(target, { timeoutMs: 200, onError: (e) => seen.push(e) });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        assert.equal(seen.length, 1);
        assertOccupancyError(seen[0], [status.DEADLINE_EXCEEDED]);
      } finally {
        client.close();
      }
    });

    it("enforces publishTimeoutMs on publishIfOccupied", async () => {
      const client = new OccupancyClient(target, { timeoutMs: 5000, publishTimeoutMs: 300 });
      try {
        const started = Date.now();
        await assert.rejects(client.publishIfOccupied([uniqueChannel()], "progress", "{}"), (err) => {
          assertOccupancyError(err, [status.DEADLINE_EXCEEDED]);
          return true;
        });
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 4000, `took ${elapsed} ms`);
      } finally {
        client.close();
      }
    });
  });

  describe("construction", () => {
    it("rejects invalid options", () => {
      assert.throws(() => new OccupancyClient(""), TypeError);
      assert.throws(() => new OccupancyClient(env.OCCUPANCY_ADDR, { timeoutMs: 0 }), RangeError);
      assert.throws(() => new OccupancyClient(env.OCCUPANCY_ADDR, { publishTimeoutMs: -1 }), RangeError);
      assert.throws(() => new OccupancyClient(env.OCCUPANCY_ADDR, { timeoutMs: Number.NaN }), TypeError);
      assert.throws(
        () => new OccupancyClient(env.OCCUPANCY_ADDR, { failOpen: "no" as unknown as boolean }),
        TypeError,
      );
    });
  });
}
