// Unit test of cached mode's stream protocol and resubscribe backoff, on the
// built code (dist/cjs), for the paths the live gate cannot be made to take on
// demand: a RESET in the middle of a stream, kinds this client does not know,
// and the exact backoff sequence. Everything else about cached mode is tested
// against the real gate in cached.test.ts.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { status } from "@occupancy/client";

import { OccupancyCache } from "../dist/cjs/cache.js";
import { WatchOccupancyResponse_Kind as Kind } from "../dist/cjs/generated/occupancy/v1/occupancy.js";

/** Stands in for grpc-js's ClientReadableStream: "data", then one "status". */
class Stream extends EventEmitter {
  cancelled = false;
  send(kind: Kind | number, occupied: string[] = [], vacated: string[] = []): void {
    this.emit("data", { kind, occupied, vacated });
  }
  end(code: status, details = ""): void {
    if (code !== status.OK) this.emit("error", new Error(details));
    this.emit("status", { code, details, metadata: undefined });
  }
  cancel(): void {
    this.cancelled = true;
    this.end(status.CANCELLED, "Cancelled on client");
  }
}

function harness(): { cache: OccupancyCache; streams: Stream[] } {
  const streams: Stream[] = [];
  const cache = new OccupancyCache(() => {
    const stream = new Stream();
    streams.push(stream);
    return stream as never;
  });
  return { cache, streams };
}

function answers(cache: OccupancyCache, channels: string[]): Array<boolean | number> {
  return channels.map((c) => {
    const a = cache.answer(c);
    return typeof a === "boolean" ? a : a.code;
  });
}

describe("the WatchOccupancy protocol", () => {
  it("RESET drops the copy, SNAPSHOT adds, SYNCED makes it current, CHANGE applies; unknown kinds are ignored", () => {
    const { cache, streams } = harness();
    cache.start();
    const [s] = streams as [Stream];
    assert.deepEqual(answers(cache, ["a"]), [status.UNAVAILABLE], "not synchronised before SYNCED");
    s.send(Kind.KIND_RESET);
    s.send(Kind.KIND_SNAPSHOT, ["a", "b"]);
    s.send(Kind.KIND_SNAPSHOT, ["c"]);
    assert.equal(cache.isSynced, false);
    s.send(Kind.KIND_SYNCED);
    assert.deepEqual(answers(cache, ["a", "b", "c", "d"]), [true, true, true, false]);
    s.send(Kind.KIND_CHANGE, ["d"], ["a"]);
    s.send(99, ["x"]);
    assert.deepEqual(answers(cache, ["a", "b", "c", "d", "x"]), [false, true, true, true, false]);

    // The server starts over mid-stream: not synchronised until the next SYNCED,
    // and nothing of the old copy survives.
    s.send(Kind.KIND_RESET);
    assert.equal(cache.isSynced, false);
    assert.deepEqual(answers(cache, ["b"]), [status.UNAVAILABLE]);
    s.send(Kind.KIND_SNAPSHOT, ["e"]);
    s.send(Kind.KIND_SYNCED);
    assert.deepEqual(answers(cache, ["b", "c", "d", "e"]), [false, false, false, true]);
    assert.equal(streams.length, 1, "a RESET is not a reconnect");
    cache.stop();
    assert.equal(s.cancelled, true);
  });

  it("a stream that fails with a status other than an outage is what the cache answers with", () => {
    const { cache, streams } = harness();
    cache.start();
    streams[0]!.end(status.UNAUTHENTICATED, "missing token");
    const answer = cache.answer("a");
    assert.ok(typeof answer !== "boolean");
    assert.equal(answer.code, status.UNAUTHENTICATED);
    cache.stop();
  });

  describe("resubscribing", () => {
    beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
    afterEach(() => mock.timers.reset());

    it("waits 100 ms, doubling to at most 2 s, and starts again at 100 ms once synchronised", () => {
      const { cache, streams } = harness();
      cache.start();
      const gaps: number[] = [];
      for (let i = 0; i < 8; i++) {
        streams.at(-1)!.end(status.UNAVAILABLE, "connection refused");
        const before = streams.length;
        let waited = 0;
        while (streams.length === before) {
          mock.timers.tick(50);
          waited += 50;
          assert.ok(waited <= 5000, "never resubscribed");
        }
        gaps.push(waited);
      }
      assert.deepEqual(gaps, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);

      const live = streams.at(-1)!;
      live.send(Kind.KIND_RESET);
      live.send(Kind.KIND_SYNCED);
      live.end(status.OK); // the gate ended the stream: resubscribe as after a failure
      assert.equal(cache.isSynced, false);
      const count = streams.length;
      mock.timers.tick(50);
      assert.equal(streams.length, count);
      mock.timers.tick(50);
      assert.equal(streams.length, count + 1, "back to 100 ms after a synchronised stream");

      cache.stop();
      streams.at(-1)!.end(status.UNAVAILABLE, "late");
      mock.timers.tick(5000);
      assert.equal(streams.length, count + 1, "no resubscription after stop");
    });
  });
});
