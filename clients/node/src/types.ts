/** Per-call options of `publishIfOccupied`. */
export interface PublishOptions {
  /**
   * A Pusher socket id (`"123.456"`) to exclude from receiving the event, as in
   * Pusher's own API: typically the connection that caused the update.
   */
  socketId?: string;
}

/** What `publishIfOccupied` did, channel by channel, in request order. */
export interface PublishResult {
  /** Occupied channels that received the event, each once, in request order. */
  published: string[];
  /** Vacant channels, which received nothing, each once, in request order. */
  skipped: string[];
  /** Occupied channels whose update the gate holds to coalesce it (empty unless the gate coalesces). */
  deferred: string[];
  /** How many held updates of earlier calls this call replaced (0 unless the gate coalesces). */
  superseded: number;
  /**
   * True when the gate could not ask its store and, configured to publish when
   * the store is down, published to every requested channel.
   */
  storeUnavailable: boolean;
}

/**
 * What encoder code should depend on: both {@link OccupancyClient} (the real
 * client) and {@link FakeOccupancyClient} (the in-memory test double)
 * implement it, so tests can hand the fake to code that takes an
 * `OccupancyGate`.
 */
export interface OccupancyGate {
  /**
   * Whether at least one client is subscribed to `channel`. Rejects with an
   * `OccupancyError` as the failure policy says (see the README).
   */
  isOccupied(channel: string): Promise<boolean>;
  /** Publishes `event` with `data` to the occupied ones of `channels`; always rejects on error. */
  publishIfOccupied(
    channels: readonly string[],
    event: string,
    data: string,
    options?: PublishOptions,
  ): Promise<PublishResult>;
  /** Releases the client; every later call rejects with `OccupancyClosedError`. Idempotent. */
  close(): void;
}
