// Cached mode: a local copy of the occupied set, kept by WatchOccupancy.
import { status, type ClientReadableStream, type StatusObject } from "@grpc/grpc-js";

import { OccupancyClosedError, OccupancyError, isOutage } from "./errors.js";
import { WatchOccupancyResponse_Kind, type WatchOccupancyResponse } from "./generated/occupancy/v1/occupancy.js";

/** First delay before resubscribing after the stream broke. */
export const RESUBSCRIBE_INITIAL_MS = 100;
/** The resubscribe delay doubles up to this. */
export const RESUBSCRIBE_MAX_MS = 2000;

/**
 * Follows the WatchOccupancy protocol (RESET drops the copy, SNAPSHOT adds,
 * SYNCED marks it current, CHANGE applies) and resubscribes with backoff when
 * the stream breaks. Started on first use, stopped by `stop()`.
 */
export class OccupancyCache {
  private readonly channels = new Set<string>();
  private synced = false;
  private started = false;
  private stopped = false;
  private lastError: OccupancyError | undefined;
  private stream: ClientReadableStream<WatchOccupancyResponse> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private delayMs = RESUBSCRIBE_INITIAL_MS;
  private readonly waiters = new Set<() => void>();

  /** @param open opens one WatchOccupancy stream (throws if it cannot). */
  constructor(private readonly open: () => ClientReadableStream<WatchOccupancyResponse>) {}

  get isSynced(): boolean {
    return this.synced;
  }

  /** Subscribes, unless already subscribed (or waiting to resubscribe). */
  start(): void {
    if (this.started || this.stopped) {
      return;
    }
    this.started = true;
    this.subscribe();
  }

  /**
   * The local answer for `channel`, or, while not synchronised, the error the
   * failure policy decides on: the last stream error when it is not an outage
   * (UNAUTHENTICATED, UNIMPLEMENTED, NOT_FOUND, ...), else UNAVAILABLE.
   */
  answer(channel: string): boolean | OccupancyError {
    if (this.synced) {
      return this.channels.has(channel);
    }
    return this.notSyncedError();
  }

  /** Resolves once synchronised; rejects after `timeoutMs` or when stopped. */
  whenSynced(timeoutMs: number): Promise<void> {
    this.start();
    if (this.synced) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timeout);
        this.waiters.delete(done);
        if (this.synced) {
          resolve();
        } else {
          reject(new OccupancyClosedError());
        }
      };
      const timeout = setTimeout(() => {
        this.waiters.delete(done);
        const cause = this.notSyncedError();
        reject(
          new OccupancyError(
            status.DEADLINE_EXCEEDED,
            `cached mode did not synchronise within ${timeoutMs} ms: ${cause.message}`,
            { cause },
          ),
        );
      }, timeoutMs);
      this.waiters.add(done);
    });
  }

  /** Ends the subscription for good. */
  stop(): void {
    if (this.stopped) {
      return;
    }
    this.stopped = true;
    this.synced = false;
    this.channels.clear();
    clearTimeout(this.timer);
    const stream = this.stream;
    this.stream = undefined;
    stream?.cancel();
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }

  private notSyncedError(): OccupancyError {
    const last = this.lastError;
    if (last !== undefined && !isOutage(last)) {
      return last;
    }
    return new OccupancyError(
      status.UNAVAILABLE,
      "cached mode is not synchronised with the gate" + (last ? ` (last stream error: ${last.message})` : " yet"),
      { cause: last },
    );
  }

  private subscribe(): void {
    this.timer = undefined;
    if (this.stopped) {
      return;
    }
    let stream: ClientReadableStream<WatchOccupancyResponse>;
    try {
      stream = this.open();
    } catch (err) {
      this.broken(OccupancyError.from(err));
      return;
    }
    this.stream = stream;
    stream.on("data", (message: WatchOccupancyResponse) => {
      if (this.stream === stream) {
        this.apply(message);
      }
    });
    // The outcome is read from "status", which follows every end; "error" needs
    // a listener only so that a failed stream is not an unhandled error.
    stream.on("error", () => {});
    stream.on("status", (outcome: StatusObject) => {
      if (this.stream !== stream) {
        return;
      }
      this.stream = undefined;
      this.broken(
        outcome.code === status.OK
          ? new OccupancyError(status.UNAVAILABLE, "the gate ended the WatchOccupancy stream")
          : new OccupancyError(outcome.code, outcome.details || status[outcome.code] || "stream failed", {
              metadata: outcome.metadata,
            }),
      );
    });
  }

  private apply(message: WatchOccupancyResponse): void {
    switch (message.kind) {
      case WatchOccupancyResponse_Kind.KIND_RESET:
        this.synced = false;
        this.channels.clear();
        this.lastError = undefined;
        break;
      case WatchOccupancyResponse_Kind.KIND_SNAPSHOT:
        for (const channel of message.occupied) this.channels.add(channel);
        break;
      case WatchOccupancyResponse_Kind.KIND_SYNCED:
        this.synced = true;
        this.lastError = undefined;
        this.delayMs = RESUBSCRIBE_INITIAL_MS;
        for (const waiter of [...this.waiters]) waiter();
        break;
      case WatchOccupancyResponse_Kind.KIND_CHANGE:
        for (const channel of message.occupied) this.channels.add(channel);
        for (const channel of message.vacated) this.channels.delete(channel);
        break;
      default:
        // A kind this client does not know: newer than the client; ignore it.
        break;
    }
  }

  private broken(error: OccupancyError): void {
    this.synced = false;
    this.channels.clear();
    this.lastError = error;
    if (this.stopped) {
      return;
    }
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, RESUBSCRIBE_MAX_MS);
    this.timer = setTimeout(() => this.subscribe(), delay);
  }
}
