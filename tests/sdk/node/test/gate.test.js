// Pusher's Node server SDK (npm `pusher`), configured with `host`, `port` and `useTLS: false`,
// publishing through the gate. Each test asserts what the SDK returns and what the Pusher
// stand-in behind the gate received: only occupied channels (plus those always forwarded), every
// other field unchanged, signed afresh and correctly.
"use strict"

const { describe, test } = require("node:test")
const assert = require("node:assert/strict")
const {
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
} = require("../harness")

const pusher = pusherAt()
const eventsPath = `/apps/${config.appId}/events`
const batchPath = `/apps/${config.appId}/batch_events`

describe("trigger", () => {
  test("to occupied and vacant channels forwards one request with only the occupied ones", async () => {
    const [a, b] = [unique("mix-a-"), unique("mix-b-")]
    const [v1, v2] = [unique("mix-v1-"), unique("mix-v2-")]
    await occupy(a, b)

    const response = await pusher.trigger([a, v1, b, v2], "greeting", { hello: "wörld" }, {
      socket_id: "123.456",
    })

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {})
    const calls = await callsFor(a, b, v1, v2)
    assert.equal(calls.length, 1, JSON.stringify(calls))
    const [call] = calls
    assert.equal(call.method, "POST")
    assert.equal(call.path, eventsPath)
    assert.equal(call.signature_valid, true, call.reason)
    assert.deepEqual(call.body.channels, [a, b])
    assert.equal(call.body.name, "greeting")
    assert.equal(call.body.data, JSON.stringify({ hello: "wörld" }))
    assert.equal(call.body.socket_id, "123.456")
  })

  test("to one occupied channel is forwarded", async () => {
    const channel = unique("single-")
    await occupy(channel)

    const response = await pusher.trigger(channel, "one", "plain text data")

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {})
    const calls = await callsFor(channel)
    assert.equal(calls.length, 1)
    assert.equal(calls[0].signature_valid, true, calls[0].reason)
    assert.deepEqual(calls[0].body.channels, [channel])
    assert.equal(calls[0].body.data, "plain text data")
  })

  test("from a client made with Pusher.forURL(http://key:secret@host:port/apps/id)", async () => {
    const channel = unique("for-url-")
    await occupy(channel)
    const byUrl = Pusher.forURL(
      `http://${config.key}:${config.secret}@${config.host}:${config.port}/apps/${config.appId}`
    )

    const response = await byUrl.trigger(channel, "via-url", {})

    assert.equal(response.status, 200)
    const calls = await callsFor(channel)
    assert.equal(calls.length, 1)
    assert.equal(calls[0].signature_valid, true, calls[0].reason)
  })

  test("to vacant channels only answers {} without calling Pusher", async () => {
    const [one, two] = [unique("vacant-"), unique("vacant-")]

    const single = await pusher.trigger(one, "nobody", { x: 1 })
    const several = await pusher.trigger([one, two], "nobody", { x: 1 })

    for (const response of [single, several]) {
      assert.equal(response.status, 200)
      assert.deepEqual(await response.json(), {})
    }
    await assertNeverForwarded(one, two)
  })

  test("with info=subscription_count answers for every channel, 0 for the dropped ones", async () => {
    const [occupied, vacant] = [unique("info-o-"), unique("info-v-")]
    await occupy(occupied)

    const response = await pusher.trigger([occupied, vacant], "counted", {}, {
      info: "subscription_count",
    })

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {
      channels: {
        [occupied]: { subscription_count: config.subscriptionCount },
        [vacant]: { subscription_count: 0 },
      },
    })
    const calls = await callsFor(occupied, vacant)
    assert.equal(calls.length, 1)
    assert.equal(calls[0].signature_valid, true, calls[0].reason)
    assert.deepEqual(calls[0].body.channels, [occupied])
    assert.equal(calls[0].body.info, "subscription_count")
  })

  test("with info=user_count on presence channels answers user_count 0 for the dropped ones", async () => {
    const [occupied, vacant] = [unique("presence-info-o-"), unique("presence-info-v-")]
    await occupy(occupied)

    const response = await pusher.trigger([occupied, vacant], "counted", {}, {
      info: "user_count",
    })

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {
      channels: {
        [occupied]: { user_count: config.userCount },
        [vacant]: { user_count: 0 },
      },
    })
    const calls = await callsFor(occupied, vacant)
    assert.equal(calls.length, 1)
    assert.deepEqual(calls[0].body.channels, [occupied])
  })

  test("on a private-encrypted channel forwards the SDK's ciphertext unchanged", async () => {
    const channel = unique("private-encrypted-")
    const vacant = unique("private-encrypted-vacant-")
    await occupy(channel)
    const payload = { secret: "only subscribers read this", n: 42 }

    const response = await pusher.trigger(channel, "sealed", payload)
    const dropped = await pusher.trigger(vacant, "sealed", payload)

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {})
    assert.deepEqual(await dropped.json(), {})
    const calls = await callsFor(channel)
    assert.equal(calls.length, 1)
    assert.equal(calls[0].signature_valid, true, calls[0].reason)
    assert.deepEqual(calls[0].body.channels, [channel])
    assert.deepEqual(Object.keys(JSON.parse(calls[0].body.data)).sort(), ["ciphertext", "nonce"])
    assert.equal(decrypt(channel, calls[0].body.data), JSON.stringify(payload))
    await assertNeverForwarded(vacant)
  })

  test("to vacant cache channels and to a user (#server-to-user-) always forwards", async () => {
    const cache = unique("cache-")
    const privateCache = unique("private-cache-")
    const presenceCache = unique("presence-cache-")
    const vacant = unique("beside-cache-")
    const user = unique("user-")

    const response = await pusher.trigger(
      [cache, vacant, privateCache, presenceCache],
      "replayed",
      { last: true }
    )
    const toUser = await pusher.sendToUser(user, "direct", { hi: 1 })

    assert.equal(response.status, 200)
    assert.equal(toUser.status, 200)
    const calls = await callsFor(cache, vacant, privateCache, `#server-to-user-${user}`)
    assert.equal(calls.length, 2, JSON.stringify(calls))
    assert.deepEqual(calls[0].body.channels, [cache, privateCache, presenceCache])
    assert.deepEqual(calls[1].body.channels, [`#server-to-user-${user}`])
    assert.ok(calls.every((c) => c.signature_valid))
  })

  test("to a vacant private-encrypted-cache channel forwards the ciphertext", async () => {
    const channel = unique("private-encrypted-cache-")

    const response = await pusher.trigger(channel, "sealed", { kept: "for the next subscriber" })

    assert.equal(response.status, 200)
    const [call] = await callsFor(channel)
    assert.equal(call.signature_valid, true, call.reason)
    assert.equal(decrypt(channel, call.body.data), JSON.stringify({ kept: "for the next subscriber" }))
  })

  test("with info to vacant channels only answers 0 for each without calling Pusher", async () => {
    const [one, two] = [unique("info-vacant-"), unique("info-vacant-")]

    const response = await pusher.trigger([one, two], "counted", {}, { info: "subscription_count" })

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {
      channels: { [one]: { subscription_count: 0 }, [two]: { subscription_count: 0 } },
    })
    await assertNeverForwarded(one, two)
  })
})

describe("triggerBatch", () => {
  /** Twelve events, for channels[i % channels.length]. */
  const twelve = (channels) =>
    Array.from({ length: 12 }, (_, i) => ({
      channel: channels[i % channels.length],
      name: `batch-${i}`,
      data: { i },
    }))

  test("of 12 events drops the vacant ones and forwards the rest in order", async () => {
    const occupied = [unique("b-o1-"), unique("b-o2-"), unique("b-o3-")]
    const vacant = unique("b-v-")
    await occupy(...occupied)
    const batch = twelve([...occupied, vacant])
    const expected = batch
      .filter((e) => e.channel !== vacant)
      .map((e) => ({ channel: e.channel, name: e.name, data: JSON.stringify(e.data) }))

    const response = await pusher.triggerBatch(batch)

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {})
    const calls = await callsFor(...occupied, vacant)
    assert.ok(calls.length >= 1)
    for (const call of calls) {
      assert.equal(call.path, batchPath)
      assert.equal(call.signature_valid, true, call.reason)
      assert.ok(call.body.batch.length <= 10, `a batch of ${call.body.batch.length} reached Pusher`)
    }
    assert.deepEqual(calls.flatMap((c) => c.body.batch), expected)
  })

  test("of 12 events on occupied channels reaches Pusher in chunks of at most 10, in order", async () => {
    const occupied = [unique("chunk-1-"), unique("chunk-2-")]
    await occupy(...occupied)
    const batch = twelve(occupied)

    const response = await pusher.triggerBatch(batch)

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {})
    const calls = await callsFor(...occupied)
    assert.deepEqual(
      calls.map((c) => c.body.batch.length),
      [10, 2]
    )
    assert.ok(calls.every((c) => c.signature_valid))
    assert.deepEqual(
      calls.flatMap((c) => c.body.batch.map((e) => e.name)),
      batch.map((e) => e.name)
    )
  })

  test("with info answers one entry per event in order, 0 for the dropped ones", async () => {
    const [occupied, vacant] = [unique("binfo-o-"), unique("binfo-v-")]
    await occupy(occupied)

    const response = await pusher.triggerBatch([
      { channel: occupied, name: "a", data: "1", info: "subscription_count" },
      { channel: vacant, name: "b", data: "2", info: "subscription_count" },
      { channel: occupied, name: "c", data: "3" },
    ])

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), {
      batch: [{ subscription_count: config.subscriptionCount }, { subscription_count: 0 }, {}],
    })
    const calls = await callsFor(occupied, vacant)
    assert.equal(calls.length, 1)
    assert.deepEqual(
      calls[0].body.batch.map((e) => e.name),
      ["a", "c"]
    )
  })

  test("of 12 events with info merges the chunks' answers in request order", async () => {
    const occupied = [unique("binfo12-1-"), unique("binfo12-2-")]
    const vacant = unique("binfo12-v-")
    await occupy(...occupied)
    // 12 occupied events (two chunks upstream) with a vacant one in the middle.
    const batch = twelve(occupied).map((e) => ({ ...e, info: "subscription_count" }))
    batch.splice(6, 0, { channel: vacant, name: "dropped", data: "{}", info: "subscription_count" })

    const response = await pusher.triggerBatch(batch)

    assert.equal(response.status, 200)
    const expected = batch.map((e) => ({
      subscription_count: e.channel === vacant ? 0 : config.subscriptionCount,
    }))
    assert.deepEqual(await response.json(), { batch: expected })
    const calls = await callsFor(...occupied, vacant)
    assert.deepEqual(
      calls.map((c) => c.body.batch.length),
      [10, 2]
    )
  })

  test("on a private-encrypted channel forwards the SDK's ciphertext unchanged", async () => {
    const channel = unique("private-encrypted-batch-")
    await occupy(channel)

    const response = await pusher.triggerBatch([{ channel, name: "sealed", data: { k: "v" } }])

    assert.equal(response.status, 200)
    const [call] = await callsFor(channel)
    assert.equal(decrypt(channel, call.body.batch[0].data), JSON.stringify({ k: "v" }))
  })
})

describe("queries", () => {
  test("GET channels returns Pusher's listing, the query forwarded and signed", async () => {
    const prefix = unique("presence-list-")
    const listing = {
      [`${prefix}-a`]: { user_count: 2 },
      [`${prefix}-b`]: { user_count: 5 },
    }
    await upstreamLists(listing)

    const response = await pusher.get({
      path: "/channels",
      params: { filter_by_prefix: prefix, info: "user_count" },
    })

    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), { channels: listing })
    const calls = (await stubCalls()).filter(
      (c) => c.path === `/apps/${config.appId}/channels` && c.query.filter_by_prefix === prefix
    )
    assert.equal(calls.length, 1)
    assert.equal(calls[0].method, "GET")
    assert.equal(calls[0].signature_valid, true, calls[0].reason)
    assert.deepEqual(calls[0].query, { filter_by_prefix: prefix, info: "user_count" })
  })

  test("GET channels/{name} and its users are forwarded", async () => {
    const channel = unique("presence-one-")

    const info = await pusher.get({
      path: `/channels/${channel}`,
      params: { info: "subscription_count" },
    })
    const users = await pusher.get({ path: `/channels/${channel}/users` })

    assert.deepEqual(await info.json(), {
      occupied: true,
      subscription_count: config.subscriptionCount,
    })
    assert.deepEqual(await users.json(), { users: [{ id: "user-1" }, { id: "user-2" }] })
    const calls = await callsFor(channel)
    assert.deepEqual(
      calls.map((c) => [c.method, c.path, c.signature_valid]),
      [
        ["GET", `/apps/${config.appId}/channels/${channel}`, true],
        ["GET", `/apps/${config.appId}/channels/${channel}/users`, true],
      ]
    )
  })

  test("terminateUserConnections is forwarded", async () => {
    const user = unique("terminated-")

    const response = await pusher.terminateUserConnections(user)

    assert.equal(response.status, 200)
    const calls = (await stubCalls()).filter((c) => c.path.includes(`/users/${user}/`))
    assert.equal(calls.length, 1)
    assert.equal(calls[0].path, `/apps/${config.appId}/users/${user}/terminate_connections`)
    assert.equal(calls[0].signature_valid, true, calls[0].reason)
  })
})

describe("errors", () => {
  /** Asserts `promise` rejects with the SDK's RequestError carrying `status` and `body`. */
  const rejectsWith = (promise, status, body) =>
    assert.rejects(promise, (err) => {
      assert.ok(err instanceof Pusher.RequestError, `not a RequestError: ${err}`)
      assert.equal(err.status, status)
      if (body !== undefined) assert.equal(err.body, body)
      return true
    })

  for (const [status, body] of [
    [403, "Over quota"],
    [413, "The data content of this event exceeds the allowed maximum (10240 bytes)"],
    [429, "Too many requests"],
    [500, "Internal error"],
  ]) {
    test(`Pusher's ${status} reaches the SDK as RequestError ${status} with Pusher's body`, async () => {
      const channel = unique(`fail-${status}-`)
      await occupy(channel)
      await upstreamAnswers(channel, status, body)

      await rejectsWith(pusher.trigger(channel, "refused", {}), status, body)
      await rejectsWith(
        pusher.triggerBatch([{ channel, name: "refused", data: "{}" }]),
        status,
        body
      )
    })
  }

  test("an unreachable Pusher reaches the SDK as RequestError 502", async () => {
    const channel = unique("cache-orphan-")

    await rejectsWith(pusherAt(config.orphanPort).trigger(channel, "lost", {}), 502)
  })

  test("a Pusher slower than the gate's timeout reaches the SDK (default options) as RequestError 504", async () => {
    const channel = unique("slow-")
    await occupy(channel)
    await upstreamAnswers(channel, 200, "{}", config.upstreamTimeoutMs + 500)
    const defaults = new Pusher({
      appId: config.appId,
      key: config.key,
      secret: config.secret,
      host: config.host,
      port: config.port,
    })

    await rejectsWith(defaults.trigger(channel, "late", {}), 504)
  })

  test("a closed port reaches the SDK as RequestError without a status (ECONNREFUSED)", async () => {
    await assert.rejects(pusherAt(config.closedPort).trigger("anything", "lost", {}), (err) => {
      assert.ok(err instanceof Pusher.RequestError)
      assert.equal(err.status, undefined)
      assert.equal(err.error.code, "ECONNREFUSED")
      return true
    })
  })

  test("data over the gate's limit is refused with RequestError 413 and nothing is forwarded", async () => {
    const channel = unique("too-big-")
    await occupy(channel)

    await rejectsWith(pusher.trigger(channel, "big", "x".repeat(11 * 1024)), 413)
    await assertNeverForwarded(channel)
  })

  test("an app id the gate does not serve is answered RequestError 404", async () => {
    const channel = unique("other-app-")

    await rejectsWith(pusherAt(config.port, { appId: "999999" }).trigger(channel, "x", {}), 404)
    await assertNeverForwarded(channel)
  })

  test("a wrong secret is refused with 401 and nothing is forwarded", async () => {
    const channel = unique("wrong-secret-")
    await occupy(channel)

    await rejectsWith(
      pusherAt(config.port, { secret: "not-the-secret" }).trigger(channel, "forged", {}),
      401
    )
    await assertNeverForwarded(channel)
  })
})
