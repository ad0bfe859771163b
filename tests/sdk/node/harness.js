// What every test of this suite needs: the environment tests/pusher_sdks.rs sets (described in
// tests/sdk/README.md), Pusher clients pointed at the gate, signed webhooks that mark channels
// occupied, and what the Pusher stand-in received.
"use strict"

const assert = require("node:assert/strict")
const crypto = require("node:crypto")
const Pusher = require("pusher")
const nacl = require("tweetnacl")
const naclUtil = require("tweetnacl-util")

function env(name) {
  const value = process.env[name]
  if (!value) {
    throw new Error(
      `${name} is not set: run this suite with \`cargo test --test pusher_sdks node\``
    )
  }
  return value
}

const config = {
  host: env("PUSHER_GATE_HOST"),
  port: Number(env("PUSHER_GATE_PORT")),
  orphanPort: Number(env("PUSHER_ORPHAN_GATE_PORT")),
  closedPort: Number(env("PUSHER_CLOSED_PORT")),
  appId: env("PUSHER_APP_ID"),
  key: env("PUSHER_KEY"),
  secret: env("PUSHER_SECRET"),
  masterKey: env("PUSHER_ENCRYPTION_MASTER_KEY_BASE64"),
  webhookUrl: env("OCCUPANCY_WEBHOOK_URL"),
  stubUrl: env("PUSHER_STUB_URL"),
  subscriptionCount: Number(env("STUB_SUBSCRIPTION_COUNT")),
  userCount: Number(env("STUB_USER_COUNT")),
  upstreamTimeoutMs: Number(env("PUSHER_GATE_UPSTREAM_TIMEOUT_MS")),
}

/** A Pusher client configured as a user would point it at the gate: host, port, no TLS. */
function pusherAt(port = config.port, overrides = {}) {
  return new Pusher({
    appId: config.appId,
    key: config.key,
    secret: config.secret,
    host: config.host,
    port,
    useTLS: false,
    encryptionMasterKeyBase64: config.masterKey,
    timeout: 10000,
    ...overrides,
  })
}

/** A channel name no other test uses. */
function unique(prefix) {
  return `${prefix}node-${crypto.randomBytes(5).toString("hex")}`
}

/** Marks `channels` occupied with one webhook signed as Pusher signs it; 200 means applied. */
async function occupy(...channels) {
  const body = JSON.stringify({
    time_ms: Date.now(),
    events: channels.map((channel) => ({ name: "channel_occupied", channel })),
  })
  const signature = crypto
    .createHmac("sha256", config.secret)
    .update(body)
    .digest("hex")
  const response = await fetch(config.webhookUrl, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-pusher-key": config.key,
      "x-pusher-signature": signature,
    },
    body,
  })
  assert.equal(response.status, 200, `webhook refused: ${await response.text()}`)
}

/** The channels a recorded call names, whatever the endpoint. */
function channelsOf(call) {
  const body = call.body || {}
  if (Array.isArray(body.batch)) return body.batch.map((e) => e.channel)
  if (Array.isArray(body.channels)) return body.channels
  if (typeof body.channel === "string") return [body.channel]
  const m = call.path.match(/^\/apps\/[^/]+\/channels\/([^/]+)/)
  return m ? [decodeURIComponent(m[1])] : []
}

async function stubCalls() {
  const response = await fetch(`${config.stubUrl}/_stub/calls`)
  assert.equal(response.status, 200)
  return (await response.json()).calls
}

/** Every call the stand-in received that names any of `channels`. */
async function callsFor(...channels) {
  return (await stubCalls()).filter((call) =>
    channelsOf(call).some((c) => channels.includes(c))
  )
}

/** Asserts that no call ever reached Pusher naming any of `channels`. */
async function assertNeverForwarded(...channels) {
  const calls = await callsFor(...channels)
  assert.deepEqual(calls, [], `vacant channels ${channels} reached Pusher`)
}

/** Makes the stand-in answer every request naming `channel` with `status` and `body`, after
 * `delayMs`. */
async function upstreamAnswers(channel, status, body, delayMs = 0) {
  const response = await fetch(`${config.stubUrl}/_stub/behaviour`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ channel, status, body, delay_ms: delayMs }),
  })
  assert.equal(response.status, 200)
}

/** What the stand-in lists for GET channels from now on. */
async function upstreamLists(channels) {
  const response = await fetch(`${config.stubUrl}/_stub/listing`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ channels }),
  })
  assert.equal(response.status, 200)
}

/** Opens an end-to-end encrypted payload as a subscriber would; throws if a byte changed. */
function decrypt(channel, data) {
  const { nonce, ciphertext } = JSON.parse(data)
  const sharedSecret = crypto
    .createHash("sha256")
    .update(Buffer.concat([Buffer.from(channel), Buffer.from(config.masterKey, "base64")]))
    .digest()
  const plain = nacl.secretbox.open(
    naclUtil.decodeBase64(ciphertext),
    naclUtil.decodeBase64(nonce),
    new Uint8Array(sharedSecret)
  )
  assert.ok(plain, "the ciphertext does not open with the channel's key: it was altered")
  return naclUtil.encodeUTF8(plain)
}

module.exports = {
  Pusher,
  config,
  pusherAt,
  unique,
  occupy,
  stubCalls,
  callsFor,
  assertNeverForwarded,
  upstreamAnswers,
  upstreamLists,
  decrypt,
}
