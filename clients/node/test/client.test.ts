// The client against the real gate: answers, publishes, local checks, close,
// construction. Run by `cargo test --test clients -- node`.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  DEFAULT_CHANNEL_OPTIONS,
  DEFAULT_CHECK_TIMEOUT_MS,
  DEFAULT_PUBLISH_TIMEOUT_MS,
  DEFAULT_SYNC_TIMEOUT_MS,
  OccupancyClient,
  OccupancyClosedError,
  OccupancyError,
  status,
} from "@occupancy/client";

import { TapProxy, FRAME, rejectsWith, sendWebhook, sleep, stubCallsFor, uniqueChannel, withEnv } from "./helpers";

withEnv((env) => {
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

    it("accepts every character of the channel name rule, and 164 characters", async () => {
      const channel = `${uniqueChannel("private-n")}_-=@,.;`;
      await sendWebhook(env, "channel_occupied", channel);
      assert.equal(await client.isOccupied(channel), true);
      const longest = uniqueChannel("x").padEnd(164, "y");
      assert.equal(longest.length, 164);
      assert.equal(await client.isOccupied(longest), false);
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

      assert.deepEqual(result, {
        published: [channel],
        skipped: [],
        deferred: [],
        superseded: 0,
        storeUnavailable: false,
      });
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

      assert.deepEqual(result.published, [channel]);
      const calls = await stubCallsFor(env, [channel]);
      assert.equal(calls.length, 1, `calls: ${JSON.stringify(calls)}`);
      assert.equal(calls[0]!.signature_valid, true);
      assert.equal(calls[0]!.body.socket_id, "123.456");
    });

    it("skips a vacant channel without calling Pusher", async () => {
      const channel = uniqueChannel();

      const result = await client.publishIfOccupied([channel], "progress", "{}");

      assert.deepEqual(result.published, []);
      assert.deepEqual(result.skipped, [channel]);
      assert.deepEqual(await stubCallsFor(env, [channel]), []);
    });

    it("splits a mix of occupied and vacant channels, with one call listing only the occupied", async () => {
      const first = uniqueChannel("node-a");
      const vacant = uniqueChannel("node-b");
      const last = uniqueChannel("node-c");
      await sendWebhook(env, "channel_occupied", first);
      await sendWebhook(env, "channel_occupied", last);

      const result = await client.publishIfOccupied([first, vacant, last, first], "mixed", '{"n":3}');

      assert.deepEqual(result.published, [first, last]);
      assert.deepEqual(result.skipped, [vacant]);
      const calls = await stubCallsFor(env, [first, vacant, last]);
      assert.equal(calls.length, 1, `calls: ${JSON.stringify(calls)}`);
      assert.equal(calls[0]!.signature_valid, true);
      assert.equal(calls[0]!.body.name, "mixed");
      assert.equal(calls[0]!.body.data, '{"n":3}');
      assert.deepEqual(calls[0]!.body.channels, [first, last]);
    });
  });

  describe("local checks, before any call", () => {
    // Against the stopped gate: a bad argument must raise (never fail open to
    // "occupied") although the gate is down, so the check cannot be the gate's.
    const badNames: unknown[] = [
      "",
      "bad channel!",
      "a".repeat(165),
      "naïve",
      "tab\there",
      "slash/no",
      42,
      undefined,
      null,
    ];

    it("rejects malformed channel names with INVALID_ARGUMENT while the gate is down, for both policies", async () => {
      for (const failOpen of [true, false]) {
        const seen: OccupancyError[] = [];
        const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { failOpen, onError: (e) => seen.push(e) });
        try {
          for (const name of badNames) {
            const err = await rejectsWith(client.isOccupied(name as string), [status.INVALID_ARGUMENT]);
            assert.match(err.details, /channel/);
          }
          assert.deepEqual(seen, [], "an invalid argument is thrown, never handed to onError");
        } finally {
          client.close();
        }
      }
    });

    it("checks publishes: 1 to 100 valid channels, an event of 1 to 200 characters, string data", async () => {
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      const ok = uniqueChannel();
      try {
        const cases: Array<[unknown, unknown, unknown, RegExp]> = [
          [[], "e", "{}", /1 to 100/],
          [Array.from({ length: 101 }, (_, i) => `c${i}`), "e", "{}", /1 to 100/],
          [[ok, "bad channel!"], "e", "{}", /channels\[1\]/],
          ["not-an-array", "e", "{}", /array/],
          [[ok], "", "{}", /event/],
          [[ok], "e".repeat(201), "{}", /event/],
          [[ok], 7, "{}", /event/],
          [[ok], "e", { a: 1 }, /JSON\.stringify/],
        ];
        for (const [channels, event, data, detail] of cases) {
          const err = await rejectsWith(
            client.publishIfOccupied(channels as string[], event as string, data as string),
            [status.INVALID_ARGUMENT],
          );
          assert.match(err.details, detail);
        }
        await rejectsWith(client.publishIfOccupied([ok], "e", "{}", { socketId: 5 as unknown as string }), [
          status.INVALID_ARGUMENT,
        ]);
      } finally {
        client.close();
      }
    });

    it("accepts the limits themselves (100 channels, a 200-character event) and calls nobody for bad ones", async () => {
      const client = new OccupancyClient(env.OCCUPANCY_ADDR);
      try {
        const channels = Array.from({ length: 100 }, () => uniqueChannel());
        const result = await client.publishIfOccupied(channels, "e".repeat(200), "{}");
        assert.equal(result.skipped.length, 100);

        const good = uniqueChannel();
        await sendWebhook(env, "channel_occupied", good);
        await rejectsWith(client.publishIfOccupied([good, "bad channel!"], "progress", "{}"), [
          status.INVALID_ARGUMENT,
        ]);
        assert.deepEqual(await stubCallsFor(env, [good]), []);
      } finally {
        client.close();
      }
    });
  });

  describe("close", () => {
    it("makes every call reject with OccupancyClosedError (CANCELLED), for both policies; close twice is harmless", async () => {
      for (const failOpen of [true, false]) {
        const seen: OccupancyError[] = [];
        const closing = new OccupancyClient(env.OCCUPANCY_ADDR, { failOpen, onError: (e) => seen.push(e) });
        assert.equal(await closing.isOccupied(uniqueChannel()), false);
        closing.close();
        closing.close();
        for (const call of [
          () => closing.isOccupied(uniqueChannel()),
          () => closing.isOccupied("bad channel!"),
          () => closing.publishIfOccupied([uniqueChannel()], "e", "{}"),
        ]) {
          const err = await rejectsWith(call(), [status.CANCELLED]);
          assert.ok(err instanceof OccupancyClosedError);
        }
        assert.deepEqual(seen, []);
      }
    });

    it("raises the closed error also for a client that never made a call", async () => {
      const unused = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      unused.close();
      assert.ok((await rejectsWith(unused.isOccupied("x"), [status.CANCELLED])) instanceof OccupancyClosedError);
    });
  });

  describe("construction", () => {
    it("has the documented defaults: 1 s check, 5 s publish, 5 s waitForSync, reconnect backoff 100 ms to 2 s", () => {
      assert.equal(DEFAULT_CHECK_TIMEOUT_MS, 1000);
      assert.equal(DEFAULT_SYNC_TIMEOUT_MS, 5000);
      assert.equal(DEFAULT_PUBLISH_TIMEOUT_MS, 5000);
      assert.deepEqual(
        { ...DEFAULT_CHANNEL_OPTIONS },
        { "grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 2000 },
      );
    });

    it("takes the target from OCCUPANCY_ADDR when none is given", async () => {
      const channel = uniqueChannel();
      await sendWebhook(env, "channel_occupied", channel);
      for (const client of [new OccupancyClient(), new OccupancyClient({ failOpen: false })]) {
        try {
          assert.equal(client.target, env.OCCUPANCY_ADDR);
          assert.equal(await client.isOccupied(channel), true);
        } finally {
          client.close();
        }
      }
    });

    it("fails with a clear error when there is neither a target nor OCCUPANCY_ADDR", () => {
      const saved = process.env.OCCUPANCY_ADDR;
      delete process.env.OCCUPANCY_ADDR;
      try {
        assert.throws(() => new OccupancyClient(), (err: Error) => err instanceof TypeError && /OCCUPANCY_ADDR/.test(err.message));
        assert.throws(() => new OccupancyClient({}), /OCCUPANCY_ADDR/);
      } finally {
        process.env.OCCUPANCY_ADDR = saved;
      }
    });

    it("rejects invalid options", () => {
      const a = env.OCCUPANCY_ADDR;
      assert.throws(() => new OccupancyClient(""), TypeError);
      assert.throws(() => new OccupancyClient(a, { checkTimeoutMs: 0 }), RangeError);
      assert.throws(() => new OccupancyClient(a, { publishTimeoutMs: -1 }), RangeError);
      assert.throws(() => new OccupancyClient(a, { checkTimeoutMs: Number.NaN }), TypeError);
      assert.throws(() => new OccupancyClient(a, { keepaliveMs: 0 }), RangeError);
      assert.throws(() => new OccupancyClient(a, { failOpen: "no" as unknown as boolean }), TypeError);
      assert.throws(() => new OccupancyClient(a, { onError: "log" as unknown as () => void }), TypeError);
      assert.throws(() => new OccupancyClient(a, { token: "" }), TypeError);
      assert.throws(() => new OccupancyClient(a, { token: "a\nb" }), TypeError);
      assert.throws(() => new OccupancyClient(a, { caFile: "/nonexistent/ca.pem" }), /cannot read caFile/);
      assert.throws(() => new OccupancyClient(a, { caFile: __filename, tls: false }), TypeError);
      assert.throws(() => new OccupancyClient(a, { metadata: { "Bad Key!": "x" } }), TypeError);
      assert.throws(() => new OccupancyClient(a, { token: "t", metadata: { authorization: "Bearer u" } }), TypeError);
      assert.throws(() => new OccupancyClient(a, { cached: 1 as unknown as boolean }), TypeError);
      assert.throws(() => new OccupancyClient(a, { appId: 5 as unknown as string }), TypeError);
    });

    it("touches no network until the first call, then reuses one connection for every call", async () => {
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      try {
        const client = new OccupancyClient(proxy.target, { failOpen: false });
        try {
          await sleep(300);
          assert.equal(proxy.connections, 0, "construction must not connect");
          for (let i = 0; i < 5; i++) {
            assert.equal(await client.isOccupied(uniqueChannel()), false);
          }
          await client.publishIfOccupied([uniqueChannel()], "e", "{}");
          assert.equal(proxy.connections, 1, "one channel, reused");
          assert.equal(proxy.count(FRAME.HEADERS), 6, "one HEADERS frame per call");
        } finally {
          client.close();
        }
      } finally {
        await proxy.stop();
      }
    });
  });
});
