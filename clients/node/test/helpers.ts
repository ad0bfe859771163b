// Helpers for the suite: environment from the Rust harness (tests/clients.rs),
// signed Pusher webhooks, the Pusher stand-in's record and behaviour, the
// harness's gate restart, and a TCP proxy that can stop and start the path to
// the real gate and counts the HTTP/2 frames the client sends.
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";
import { it } from "node:test";

import { OccupancyError, status } from "@occupancy/client";

/** Variables every part of the suite needs; see clients/CONTRACT.md. */
export const REQUIRED_ENV = [
  "OCCUPANCY_ADDR",
  "OCCUPANCY_WEBHOOK_URL",
  "TEST_PUSHER_APP_ID",
  "TEST_PUSHER_KEY",
  "TEST_PUSHER_SECRET",
  "PUSHER_STUB_URL",
  "OCCUPANCY_DEAD_ADDR",
] as const;

export type Env = Record<(typeof REQUIRED_ENV)[number], string>;

const HOW_TO_RUN =
  "this suite runs against the real occupancy service started by the Rust harness; run it from the " +
  "repo root with `cargo test --test clients -- node`";

/**
 * The harness environment. When it is missing, the test file defines one
 * failing test instead of its suite: a suite that silently does nothing hides
 * a broken harness.
 */
export function withEnv(define: (env: Env) => void): void {
  const missing = REQUIRED_ENV.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    it("has the harness environment", () => {
      throw new Error(`missing environment variable(s) ${missing.join(", ")}: ${HOW_TO_RUN}`);
    });
    return;
  }
  define(Object.fromEntries(REQUIRED_ENV.map((name) => [name, process.env[name] as string])) as Env);
}

/**
 * A variable only some tests need (the secure gate, the harness URL). Throws,
 * so the test fails (never skips) when the harness does not provide it.
 */
export function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: the harness must provide it for this test (${HOW_TO_RUN})`);
  }
  return value;
}

/** A channel name no other test (or suite sharing the gate) uses. */
export function uniqueChannel(prefix = "node"): string {
  return `${prefix}-${Date.now()}-${randomBytes(6).toString("hex")}`;
}

const lastTimeMs = new Map<string, number>();

/**
 * Sends one signed Pusher webhook carrying `channel_occupied` / `channel_vacated`
 * for `channel`. time_ms is now, and strictly later than this process's last
 * event on the same channel (the gate orders events per channel by time_ms).
 */
export async function sendWebhook(
  env: Env,
  name: "channel_occupied" | "channel_vacated",
  channel: string,
): Promise<void> {
  const timeMs = Math.max(Date.now(), (lastTimeMs.get(channel) ?? 0) + 1);
  lastTimeMs.set(channel, timeMs);
  const body = JSON.stringify({ time_ms: timeMs, events: [{ name, channel }] });
  const signature = createHmac("sha256", env.TEST_PUSHER_SECRET).update(body, "utf8").digest("hex");
  const response = await fetch(env.OCCUPANCY_WEBHOOK_URL, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Pusher-Key": env.TEST_PUSHER_KEY,
      "X-Pusher-Signature": signature,
    },
    body,
  });
  if (response.status !== 200) {
    throw new Error(`webhook ${name} for ${channel} answered ${response.status}: ${await response.text()}`);
  }
}

/** One call recorded by the Pusher stand-in. */
export interface StubCall {
  method: string;
  path: string;
  signature_valid: boolean;
  body: { name: string; data: string; channels: string[]; socket_id?: string };
}

/** The calls that reached the Pusher stand-in and name at least one of `channels`. */
export async function stubCallsFor(env: Env, channels: readonly string[]): Promise<StubCall[]> {
  const response = await fetch(`${env.PUSHER_STUB_URL}/_stub/calls`);
  if (response.status !== 200) {
    throw new Error(`stub calls answered ${response.status}: ${await response.text()}`);
  }
  const { calls } = (await response.json()) as { calls: StubCall[] };
  return calls.filter((call) => (call.body?.channels ?? []).some((c) => channels.includes(c)));
}

/** Makes "Pusher" answer every later trigger that includes `channel` with `answer`. */
export async function setStubBehaviour(
  env: Env,
  channel: string,
  answer: { status: number; body?: string; delayMs?: number },
): Promise<void> {
  const response = await fetch(`${env.PUSHER_STUB_URL}/_stub/behaviour`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      channel,
      status: answer.status,
      body: answer.body ?? JSON.stringify({ error: `stub answer ${answer.status}` }),
      delay_ms: answer.delayMs ?? 0,
    }),
  });
  if (response.status !== 200) {
    throw new Error(
      `POST ${env.PUSHER_STUB_URL}/_stub/behaviour answered ${response.status}: ${await response.text()} ` +
        "(the harness's Pusher stand-in must support it; see clients/CONTRACT.md)",
    );
  }
}

/** Restarts the plaintext gate at the same address (same Redis); resolves once it listens again. */
export async function restartGate(): Promise<void> {
  const url = `${requireEnv("OCCUPANCY_HARNESS_URL")}/restart-gate`;
  const response = await fetch(url, { method: "POST" });
  if (response.status !== 200) {
    throw new Error(`POST ${url} answered ${response.status}: ${await response.text()}`);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `probe` every `everyMs` until it returns true; returns how long that took. Fails after `withinMs`. */
export async function eventually(
  what: string,
  probe: () => Promise<boolean> | boolean,
  withinMs: number,
  everyMs = 50,
): Promise<number> {
  const started = Date.now();
  let last: unknown;
  for (;;) {
    try {
      if (await probe()) {
        return Date.now() - started;
      }
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() - started > withinMs) {
      throw new Error(`${what}: not within ${withinMs} ms` + (last ? ` (last error: ${String(last)})` : ""));
    }
    await sleep(everyMs);
  }
}

/** Asserts `err` is an OccupancyError with one of `codes` and a cause in `details`. */
export function assertOccupancyError(err: unknown, codes: readonly status[]): OccupancyError {
  assert.ok(err instanceof OccupancyError, `expected OccupancyError, got ${String(err)}`);
  assert.ok(
    codes.includes(err.code),
    `expected code in [${codes.map((c) => status[c]).join(", ")}], got ${status[err.code]} (${err.details})`,
  );
  assert.equal(typeof err.details, "string");
  assert.ok(err.details.length > 0, "details must carry the cause");
  return err;
}

/** `assert.rejects` for an OccupancyError with one of `codes`; returns the error. */
export async function rejectsWith(promise: Promise<unknown>, codes: readonly status[]): Promise<OccupancyError> {
  let caught: unknown;
  await assert.rejects(promise, (err) => {
    caught = err;
    return true;
  });
  return assertOccupancyError(caught, codes);
}

const HTTP2_PREFACE = 24;
/** HTTP/2 frame types this suite counts. */
export const FRAME = { HEADERS: 0x1, PING: 0x6 } as const;

/**
 * A TCP proxy in front of the real gate (plaintext only). `stop()` makes the
 * gate unreachable (listener closed, connections dropped), `start()` brings it
 * back on the same port; `refusing` closes each new connection at once and
 * `acceptedAt` records when each arrived, so reconnect attempts can be timed. It counts accepted connections and the HTTP/2 frames
 * the client sends (a PING without the ACK flag is a keepalive ping; a HEADERS
 * frame opens a call).
 */
export class TapProxy {
  port = 0;
  connections = 0;
  /** When each connection was accepted (ms since the epoch). */
  readonly acceptedAt: number[] = [];
  /** While true, connections are accepted and closed at once: a gate that is down but whose port answers. */
  refusing = false;
  private readonly frames: Array<{ type: number; flags: number }> = [];
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(private readonly upstream: string) {}

  get target(): string {
    return `127.0.0.1:${this.port}`;
  }

  get openConnections(): number {
    return [...this.sockets].filter((s) => !s.destroyed).length / 2;
  }

  /** How many frames of `type` the client sent (PING: only those without ACK). */
  count(type: number): number {
    return this.frames.filter((f) => f.type === type && !(type === FRAME.PING && (f.flags & 0x1) !== 0)).length;
  }

  async start(): Promise<void> {
    const [host, port] = splitHostPort(this.upstream);
    const server = createServer((client) => {
      this.connections += 1;
      this.acceptedAt.push(Date.now());
      if (this.refusing) {
        client.destroy();
        return;
      }
      const upstream = connect(port, host);
      this.sockets.add(client);
      this.sockets.add(upstream);
      let buffered = Buffer.alloc(0);
      let prefaceSeen = false;
      client.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (!prefaceSeen && buffered.length >= HTTP2_PREFACE) {
          buffered = buffered.subarray(HTTP2_PREFACE);
          prefaceSeen = true;
        }
        while (prefaceSeen && buffered.length >= 9) {
          const length = buffered.readUIntBE(0, 3);
          if (buffered.length < 9 + length) break;
          this.frames.push({ type: buffered[3]!, flags: buffered[4]! });
          buffered = buffered.subarray(9 + length);
        }
      });
      client.pipe(upstream);
      upstream.pipe(client);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    assert.ok(address !== null && typeof address === "object");
    this.port = address.port;
    this.server = server;
  }

  /** Drops every open connection (the listener stays). */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(":");
  return [address.slice(0, i), Number(address.slice(i + 1))];
}
