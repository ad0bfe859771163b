// The failure policy against real failures: a stopped gate, a gate that never
// answers, a gRPC server that is not the gate, a gate restart, Pusher errors,
// and the default hook. Run by `cargo test --test clients -- node`.
import assert from "node:assert/strict";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";

import { Server as GrpcServer, ServerCredentials } from "@grpc/grpc-js";
import {
  createWarningHook,
  DEFAULT_WARNING_INTERVAL_MS,
  OccupancyClient,
  OccupancyError,
  OUTAGE_CODES,
  status,
} from "@occupancy/client";

import {
  eventually,
  rejectsWith,
  restartGate,
  sendWebhook,
  setStubBehaviour,
  sleep,
  stubCallsFor,
  TapProxy,
  uniqueChannel,
  withEnv,
  type Env,
} from "./helpers";

const unreachable = [status.UNAVAILABLE, status.DEADLINE_EXCEEDED];

/** Collects the process warnings the default hook emits while `body` runs. */
async function collectWarnings(body: () => Promise<void>): Promise<Error[]> {
  const warnings: Error[] = [];
  const listener = (warning: Error): void => {
    if (warning.name === "OccupancyWarning") warnings.push(warning);
  };
  process.on("warning", listener);
  try {
    await body();
    await sleep(50); // process warnings are emitted on the next tick
  } finally {
    process.off("warning", listener);
  }
  return warnings;
}

withEnv((env) => {
  describe("with the gate stopped (connection refused)", () => {
    it("fails open: answers occupied and hands UNAVAILABLE to onError", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { onError: (e) => seen.push(e) });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        assert.equal(seen.length, 2, "the caller's hook sees every swallowed error");
        for (const e of seen) assert.equal(e.code, status.UNAVAILABLE);
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

    it("raises UNAVAILABLE when not failing open, without calling onError", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { failOpen: false, onError: (e) => seen.push(e) });
      try {
        await rejectsWith(client.isOccupied(uniqueChannel()), [status.UNAVAILABLE]);
        assert.deepEqual(seen, []);
      } finally {
        client.close();
      }
    });

    it("always raises on publish, whatever the failure policy", async () => {
      for (const failOpen of [true, false]) {
        const seen: OccupancyError[] = [];
        const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { failOpen, onError: (e) => seen.push(e) });
        try {
          await rejectsWith(client.publishIfOccupied([uniqueChannel()], "progress", "{}"), [status.UNAVAILABLE]);
          assert.deepEqual(seen, []);
        } finally {
          client.close();
        }
      }
    });
  });

  describe("the default hook", () => {
    it("is a process warning, emitted at most once per 30 s however many errors are swallowed", async () => {
      assert.equal(DEFAULT_WARNING_INTERVAL_MS, 30_000);
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      try {
        const warnings = await collectWarnings(async () => {
          for (let i = 0; i < 5; i++) assert.equal(await client.isOccupied(uniqueChannel()), true);
        });
        assert.equal(warnings.length, 1, warnings.map(String).join("\n"));
        const [warning] = warnings as [Error & { code?: string }];
        assert.equal(warning.code, "OCCUPANCY_FAILED_OPEN");
        assert.match(warning.message, /failed open/);
        assert.match(warning.message, /1 error\(s\) since the last warning/);
        assert.match(warning.message, /UNAVAILABLE/);
      } finally {
        client.close();
      }
    });

    it("is per client, and is not used when the caller gives onError", async () => {
      const first = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      const second = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR);
      const own = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { onError: () => {} });
      try {
        const warnings = await collectWarnings(async () => {
          await first.isOccupied(uniqueChannel());
          await second.isOccupied(uniqueChannel());
          await own.isOccupied(uniqueChannel());
        });
        assert.equal(warnings.length, 2);
      } finally {
        first.close();
        second.close();
        own.close();
      }
    });

    it("says how many errors were swallowed since the last warning (createWarningHook, short interval)", async () => {
      const messages: string[] = [];
      const hook = createWarningHook({ intervalMs: 400, warn: (m) => messages.push(m) });
      const client = new OccupancyClient(env.OCCUPANCY_DEAD_ADDR, { onError: hook });
      try {
        for (let i = 0; i < 3; i++) await client.isOccupied(uniqueChannel());
        assert.equal(messages.length, 1);
        await sleep(450);
        await client.isOccupied(uniqueChannel());
        assert.equal(messages.length, 2);
        assert.match(messages[1]!, /3 error\(s\) since the last warning/);
        await client.isOccupied(uniqueChannel());
        assert.equal(messages.length, 2, "within the interval: counted, not logged");
      } finally {
        client.close();
      }
    });
  });

  describe("with a gate that accepts connections but never answers", () => {
    let server: NetServer;
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

    it("enforces checkTimeoutMs on isOccupied (DEADLINE_EXCEEDED raised when not failing open)", async () => {
      const client = new OccupancyClient(target, { checkTimeoutMs: 200, failOpen: false });
      try {
        const started = Date.now();
        await rejectsWith(client.isOccupied(uniqueChannel()), [status.DEADLINE_EXCEEDED]);
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 150 && elapsed < 900, `took ${elapsed} ms`);
      } finally {
        client.close();
      }
    });

    it("fails open on a deadline", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(target, { checkTimeoutMs: 200, onError: (e) => seen.push(e) });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), true);
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!.code, status.DEADLINE_EXCEEDED);
      } finally {
        client.close();
      }
    });

    it("enforces publishTimeoutMs on publishIfOccupied", async () => {
      const client = new OccupancyClient(target, { checkTimeoutMs: 5000, publishTimeoutMs: 300 });
      try {
        const started = Date.now();
        await rejectsWith(client.publishIfOccupied([uniqueChannel()], "progress", "{}"), [status.DEADLINE_EXCEEDED]);
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 4000, `took ${elapsed} ms`);
      } finally {
        client.close();
      }
    });
  });

  describe("statuses that are not an outage are raised even when failing open", () => {
    let server: GrpcServer;
    let target: string;

    before(async () => {
      // A real gRPC server without the Occupancy service: a client pointed at
      // the wrong service gets UNIMPLEMENTED, a configuration bug.
      server = new GrpcServer();
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
      );
      target = `127.0.0.1:${port}`;
    });
    after(() => {
      server.forceShutdown();
    });

    it("UNIMPLEMENTED (not the gate) raises, and onError is not called", async () => {
      const seen: OccupancyError[] = [];
      const client = new OccupancyClient(target, { onError: (e) => seen.push(e) });
      try {
        await rejectsWith(client.isOccupied(uniqueChannel()), [status.UNIMPLEMENTED]);
        await rejectsWith(client.publishIfOccupied([uniqueChannel()], "e", "{}"), [status.UNIMPLEMENTED]);
        assert.deepEqual(seen, []);
      } finally {
        client.close();
      }
    });

    it("RESOURCE_EXHAUSTED fails open (an answer too large for the channel's limit), and raises when not failing open", async () => {
      const channel = uniqueChannel();
      await sendWebhook(env, "channel_occupied", channel);
      assert.ok(OUTAGE_CODES.includes(status.RESOURCE_EXHAUSTED));
      const seen: OccupancyError[] = [];
      const limits = { "grpc.max_receive_message_length": 1 };
      const open = new OccupancyClient(env.OCCUPANCY_ADDR, { channelOptions: limits, onError: (e) => seen.push(e) });
      const raising = new OccupancyClient(env.OCCUPANCY_ADDR, { channelOptions: limits, failOpen: false });
      try {
        assert.equal(await open.isOccupied(channel), true);
        assert.equal(seen.length, 1);
        assert.equal(seen[0]!.code, status.RESOURCE_EXHAUSTED);
        await rejectsWith(raising.isOccupied(channel), [status.RESOURCE_EXHAUSTED]);
      } finally {
        open.close();
        raising.close();
      }
    });
  });

  describe("reconnecting", () => {
    it("retries the connection at most 2 s apart through a long outage (grpc-js would wait up to 120 s)", async () => {
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const client = new OccupancyClient(proxy.target, { failOpen: false, checkTimeoutMs: 500 });
      try {
        assert.equal(await client.isOccupied(uniqueChannel()), false);
        // The gate goes down: its port still accepts and closes every connection,
        // so each reconnect attempt of the client is seen and timed.
        proxy.refusing = true;
        const firstAttempt = proxy.acceptedAt.length;
        proxy.dropConnections();
        const downUntil = Date.now() + 9000;
        while (Date.now() < downUntil) {
          await rejectsWith(client.isOccupied(uniqueChannel()), unreachable);
          await sleep(100);
        }
        const attempts = proxy.acceptedAt.slice(firstAttempt);
        const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
        assert.ok(attempts.length >= 6, `only ${attempts.length} reconnect attempts in 9 s: ${gaps.join(", ")} ms apart`);
        // 2 s cap, grpc-js's 20 % jitter, and scheduling slack. Uncapped, the gap
        // after 9 s of an outage is over 4 s (1.6x growth from 100 ms).
        assert.ok(Math.max(...gaps) <= 2700, `reconnect attempts ${gaps.join(", ")} ms apart; the cap is 2 s`);
        assert.ok(gaps.slice(-2).every((g) => g >= 1400), `no backoff: attempts ${gaps.join(", ")} ms apart`);

        proxy.refusing = false;
        const took = await eventually("a call succeeds after the gate is back", async () => {
          await client.isOccupied(uniqueChannel());
          return true;
        }, 6000, 50);
        assert.ok(took < 3000, `back after ${took} ms`);
      } finally {
        client.close();
        await proxy.stop();
      }
    });

    it("survives a restart of the gate (POST $OCCUPANCY_HARNESS_URL/restart-gate)", async () => {
      const channel = uniqueChannel();
      await sendWebhook(env, "channel_occupied", channel);
      // Through the tap, to see the client open a new connection to the new gate process.
      const proxy = new TapProxy(env.OCCUPANCY_ADDR);
      await proxy.start();
      const client = new OccupancyClient(proxy.target, { failOpen: false });
      try {
        assert.equal(await client.isOccupied(channel), true);
        await restartGate();
        const took = await eventually("a call succeeds after the restart", async () => client.isOccupied(channel), 4000, 50);
        assert.ok(took < 3500, `back after ${took} ms`);
        assert.equal(await client.isOccupied(channel), true, "same Redis: the set survives");
        assert.ok(proxy.connections >= 2, "the client reconnected to the restarted gate");
      } finally {
        client.close();
        await proxy.stop();
      }
    });
  });

  describe("errors from Pusher reach the caller of publishIfOccupied", () => {
    async function publishAgainst(env: Env, answer: { status: number; delayMs?: number }): Promise<OccupancyError[]> {
      const errors: OccupancyError[] = [];
      for (const failOpen of [true, false]) {
        const channel = uniqueChannel("node-pusher");
        await sendWebhook(env, "channel_occupied", channel);
        await setStubBehaviour(env, channel, answer);
        const client = new OccupancyClient(env.OCCUPANCY_ADDR, { failOpen });
        try {
          let caught: unknown;
          await assert.rejects(client.publishIfOccupied([channel], "progress", "{}"), (err) => {
            caught = err;
            return true;
          });
          assert.ok(caught instanceof OccupancyError);
          errors.push(caught);
          assert.equal(await client.isOccupied(channel), true, "checks do not involve Pusher");
        } finally {
          client.close();
        }
        const calls = await stubCallsFor(env, [channel]);
        assert.ok(calls.length >= 1, "the gate called Pusher");
        assert.ok(calls.every((c) => c.signature_valid));
      }
      return errors;
    }

    const cases: Array<[string, { status: number; delayMs?: number }, status]> = [
      ["403 -> PERMISSION_DENIED", { status: 403 }, status.PERMISSION_DENIED],
      ["429 -> RESOURCE_EXHAUSTED", { status: 429 }, status.RESOURCE_EXHAUSTED],
      ["500 -> UNAVAILABLE", { status: 500 }, status.UNAVAILABLE],
      ["503 -> UNAVAILABLE", { status: 503 }, status.UNAVAILABLE],
      ["no answer within the gate's 3 s -> DEADLINE_EXCEEDED", { status: 200, delayMs: 4000 }, status.DEADLINE_EXCEEDED],
    ];
    for (const [name, answer, code] of cases) {
      it(`${name}, raised whatever the failure policy`, async () => {
        for (const err of await publishAgainst(env, answer)) {
          assert.equal(err.code, code, `got ${status[err.code]}: ${err.details}`);
          assert.ok(err.details.length > 0);
        }
      });
    }
  });
});
