// Helpers for the suite: environment from the Rust harness, signed Pusher
// webhooks, and the Pusher stand-in's record of calls.
import { createHmac, randomBytes } from "node:crypto";

/** Variables the harness (`tests/clients.rs`) sets; see clients/CONTRACT.md. */
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

/** The harness environment, or an error explaining how to run the suite. */
export function loadEnv(): Env | Error {
  const missing = REQUIRED_ENV.filter((name) => !process.env[name]);
  if (missing.length > 0) {
    return new Error(
      `missing environment variable(s) ${missing.join(", ")}: this suite runs against the real ` +
        "occupancy service started by the Rust harness; run it from the repo root with " +
        "`cargo test --test clients -- node`",
    );
  }
  return Object.fromEntries(REQUIRED_ENV.map((name) => [name, process.env[name] as string])) as Env;
}

/** A channel name no other test (or suite sharing the gate) uses. */
export function uniqueChannel(prefix = "node-test"): string {
  return `${prefix}-${Date.now()}-${randomBytes(6).toString("hex")}`;
}

/** Sends one signed Pusher webhook carrying `channel_occupied` / `channel_vacated` for `channel`. */
export async function sendWebhook(
  env: Env,
  name: "channel_occupied" | "channel_vacated",
  channel: string,
): Promise<void> {
  const body = JSON.stringify({ time_ms: Date.now(), events: [{ name, channel }] });
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
