// Call options against the real gates: token, TLS with a CA file, extra
// metadata, keepalive, appId, channelOptions. Run by `cargo test --test clients -- node`.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { OccupancyClient, OccupancyError, status } from "@occupancy/client";

import {
  FRAME,
  rejectsWith,
  requireEnv,
  sendWebhook,
  sleep,
  stubCallsFor,
  TapProxy,
  uniqueChannel,
  withEnv,
  type Env,
} from "./helpers";

/** The secure gate: TLS with the harness's CA, tokens required. */
function secure(): { addr: string; ca: string; token: string; oldToken: string } {
  return {
    addr: requireEnv("OCCUPANCY_SECURE_ADDR"),
    ca: requireEnv("OCCUPANCY_TLS_CA"),
    token: requireEnv("OCCUPANCY_TEST_TOKEN"),
    oldToken: requireEnv("OCCUPANCY_TEST_TOKEN_OLD"),
  };
}

async function occupiedChannel(env: Env): Promise<string> {
  const channel = uniqueChannel();
  await sendWebhook(env, "channel_occupied", channel);
  return channel;
}

withEnv((env) => {
  describe("token and TLS (the secure gate)", () => {
    it("answers and publishes over TLS trusting caFile, with the token as authorization: Bearer", async () => {
      const gate = secure();
      const channel = await occupiedChannel(env);
      const client = new OccupancyClient(gate.addr, { caFile: gate.ca, token: gate.token, failOpen: false });
      try {
        assert.equal(await client.isOccupied(channel), true, "the secure gate serves the same state");
        assert.equal(await client.isOccupied(uniqueChannel()), false);
        const result = await client.publishIfOccupied([channel], "secure", "{}");
        assert.deepEqual(result.published, [channel]);
        assert.equal((await stubCallsFor(env, [channel])).length, 1);
      } finally {
        client.close();
      }
    });

    it("accepts both tokens of a rotation, and a token function asked on every call", async () => {
      const gate = secure();
      const channel = await occupiedChannel(env);
      const old = new OccupancyClient(gate.addr, { caFile: gate.ca, token: gate.oldToken, failOpen: false });
      let current = gate.oldToken;
      let asked = 0;
      const rotating = new OccupancyClient(gate.addr, {
        caFile: gate.ca,
        failOpen: false,
        token: () => {
          asked += 1;
          return current;
        },
      });
      try {
        assert.equal(await old.isOccupied(channel), true);
        assert.equal(await rotating.isOccupied(channel), true);
        current = gate.token;
        assert.equal(await rotating.isOccupied(channel), true);
        current = "not-a-valid-token";
        await rejectsWith(rotating.isOccupied(channel), [status.UNAUTHENTICATED]);
        assert.equal(asked, 3);
      } finally {
        old.close();
        rotating.close();
      }
    });

    it("raises UNAUTHENTICATED without a token or with a wrong one, even when failing open", async () => {
      const gate = secure();
      const seen: OccupancyError[] = [];
      for (const token of [undefined, "wrong-token"]) {
        const client = new OccupancyClient(gate.addr, { caFile: gate.ca, token, onError: (e) => seen.push(e) });
        try {
          await rejectsWith(client.isOccupied(uniqueChannel()), [status.UNAUTHENTICATED]);
          await rejectsWith(client.publishIfOccupied([uniqueChannel()], "e", "{}"), [status.UNAUTHENTICATED]);
        } finally {
          client.close();
        }
      }
      assert.deepEqual(seen, [], "a configuration error is raised, not swallowed");
    });

    it("raises UNAUTHENTICATED when the token function throws, even when failing open", async () => {
      const gate = secure();
      const client = new OccupancyClient(gate.addr, {
        caFile: gate.ca,
        token: () => {
          throw new Error("vault unreachable");
        },
      });
      try {
        const err = await rejectsWith(client.isOccupied(uniqueChannel()), [status.UNAUTHENTICATED]);
        assert.match(err.details, /vault unreachable/);
      } finally {
        client.close();
      }
    });

    it("verifies the certificate: tls without the CA cannot connect (a transport error: fail-open answers true)", async () => {
      const gate = secure();
      const seen: OccupancyError[] = [];
      const open = new OccupancyClient(gate.addr, { tls: true, token: gate.token, onError: (e) => seen.push(e) });
      const raising = new OccupancyClient(gate.addr, { tls: true, token: gate.token, failOpen: false });
      try {
        assert.equal(await open.isOccupied(uniqueChannel()), true);
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!.code, status.UNAVAILABLE);
        await rejectsWith(raising.isOccupied(uniqueChannel()), [status.UNAVAILABLE]);
      } finally {
        open.close();
        raising.close();
      }
    });

    it("sends extra metadata on every call (here: the authorization header itself)", async () => {
      const gate = secure();
      const channel = await occupiedChannel(env);
      const client = new OccupancyClient(gate.addr, {
        caFile: gate.ca,
        metadata: { authorization: `Bearer ${gate.token}`, "x-encoder": ["node-suite", "second-value"] },
        failOpen: false,
      });
      try {
        assert.equal(await client.isOccupied(channel), true);
        assert.deepEqual((await client.publishIfOccupied([channel], "md", "{}")).published, [channel]);
      } finally {
        client.close();
      }
    });
  });

  describe("keepalive", () => {
    async function pingsWhileIdle(options: { keepaliveMs?: number }): Promise<number> {
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const client = new OccupancyClient(proxy.target, { ...options, failOpen: false });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), false);
        await sleep(1300);
        return proxy.count(FRAME.PING);
      } finally {
        client.close();
        await proxy.stop();
      }
    }

    it("keepaliveMs sends HTTP/2 pings, also on an idle connection; off by default", async () => {
      const withKeepalive = await pingsWhileIdle({ keepaliveMs: 250 });
      assert.ok(withKeepalive >= 3, `expected >= 3 keepalive pings in 1.3 s, saw ${withKeepalive}`);
      assert.equal(await pingsWhileIdle({}), 0, "no keepalive pings by default");
    });
  });

  describe("appId", () => {
    it("sends the configured app's id (the gate answers for it) and publishes to that app", async () => {
      const channel = await occupiedChannel(env);
      const client = new OccupancyClient(env.OCCUPANCY_ADDR, { appId: env.TEST_PUSHER_APP_ID, failOpen: false });
      try {
        assert.equal(await client.isOccupied(channel), true);
        assert.deepEqual((await client.publishIfOccupied([channel], "app", "{}")).published, [channel]);
        const calls = await stubCallsFor(env, [channel]);
        assert.equal(calls[0]?.path, `/apps/${env.TEST_PUSHER_APP_ID}/events`);
      } finally {
        client.close();
      }
    });

    it("an unknown appId is NOT_FOUND, raised even when failing open", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(env.OCCUPANCY_ADDR, { appId: "no-such-app", onError: (e) => seen.push(e) });
      try {
        await rejectsWith(client.isOccupied(uniqueChannel()), [status.NOT_FOUND]);
        await rejectsWith(client.publishIfOccupied([uniqueChannel()], "e", "{}"), [status.NOT_FOUND]);
        assert.deepEqual(seen, []);
      } finally {
        client.close();
      }
    });
  });

  describe("channelOptions", () => {
    it("are passed to grpc-js over the defaults", async () => {
      const channel = await occupiedChannel(env);
      const client = new OccupancyClient(env.OCCUPANCY_ADDR, {
        channelOptions: { "grpc.max_receive_message_length": 1 },
        failOpen: false,
      });
      try {
        const err = await rejectsWith(client.isOccupied(channel), [status.RESOURCE_EXHAUSTED]);
        assert.match(err.details, /larger than max/);
      } finally {
        client.close();
      }
    });
  });
});
