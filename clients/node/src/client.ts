import {
  credentials as grpcCredentials,
  Metadata,
  status,
  type ChannelCredentials,
  type ChannelOptions,
} from "@grpc/grpc-js";

import { OccupancyError } from "./errors";
import {
  OccupancyClient as GeneratedClient,
  type IsOccupiedRequest,
  type IsOccupiedResponse,
  type PublishIfOccupiedRequest,
  type PublishIfOccupiedResponse,
} from "./generated/occupancy/v1/occupancy";

/** Default deadline of `isOccupied`: the check sits in front of every publish, so it must be cheap. */
export const DEFAULT_TIMEOUT_MS = 1000;
/**
 * Default deadline of `publishIfOccupied`: longer than the gate's own Pusher HTTP
 * timeout, so that a slow Pusher surfaces as the gate's DEADLINE_EXCEEDED
 * (with its message) rather than as a client-side deadline.
 */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5000;

/**
 * Channel options applied unless overridden through `channelOptions`.
 * grpc-js backs off reconnects up to 120 s by default; capping it at 10 s means
 * a client recovers within seconds of the gate coming back instead of failing
 * open (or raising) for up to two minutes.
 */
const DEFAULT_CHANNEL_OPTIONS: ChannelOptions = {
  "grpc.max_reconnect_backoff_ms": 10_000,
};

/** Construction options of {@link OccupancyClient}; every field is optional. */
export interface OccupancyClientOptions {
  /** Deadline of each `isOccupied` call, in milliseconds. Default 1000. */
  timeoutMs?: number;
  /** Deadline of each `publishIfOccupied` call, in milliseconds. Default 5000. */
  publishTimeoutMs?: number;
  /**
   * Failure policy of `isOccupied`. `true` (the default): when the gate cannot be
   * reached or answers an error, answer "occupied", so an encoder that publishes
   * by itself never loses a live update; the error goes to `onError`. `false`:
   * reject with the {@link OccupancyError}. INVALID_ARGUMENT always rejects, as it
   * is a bug in the caller that no retry or fallback can fix.
   */
  failOpen?: boolean;
  /**
   * Sees each error that `isOccupied` swallowed while failing open, so an
   * outage of the gate is visible in logs and metrics instead of silently
   * turning into "publish everything". Not called for errors that are thrown.
   * Exceptions thrown by the hook are ignored so they cannot break the check.
   */
  onError?: (error: OccupancyError) => void;
  /** Channel credentials, e.g. `credentials.createSsl()` for TLS. Default: plaintext. */
  credentials?: ChannelCredentials;
  /** Extra grpc-js channel options (keepalive, reconnect backoff, ...), merged over the defaults. */
  channelOptions?: ChannelOptions;
}

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
  /** Channels that were occupied and so received the event. */
  published: string[];
  /** Channels that were vacant and so received nothing. */
  skipped: string[];
}

/**
 * Client of the occupancy gate: asks whether anyone watches a Pusher channel
 * and publishes through the gate only to the channels someone watches.
 *
 * One instance holds one gRPC channel (connection) that is opened lazily and
 * reused by every call, so create it once per process and share it; call
 * {@link close} when done so the process can exit.
 */
export class OccupancyClient {
  private readonly stub: GeneratedClient;
  private readonly timeoutMs: number;
  private readonly publishTimeoutMs: number;
  private readonly failOpen: boolean;
  private readonly onError: ((error: OccupancyError) => void) | undefined;
  private closed = false;

  /**
   * @param target the gate's address, `host:port` (any grpc-js target such as
   *   `dns:///host:port` works too).
   * @param options deadlines, failure policy, error hook and transport options.
   * @throws TypeError / RangeError when an option has the wrong type or value.
   */
  constructor(target: string, options: OccupancyClientOptions = {}) {
    if (typeof target !== "string" || target === "") {
      throw new TypeError("target must be a non-empty string such as \"127.0.0.1:50051\"");
    }
    this.timeoutMs = checkTimeout("timeoutMs", options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.publishTimeoutMs = checkTimeout("publishTimeoutMs", options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS);
    this.failOpen = options.failOpen ?? true;
    if (typeof this.failOpen !== "boolean") {
      throw new TypeError("failOpen must be a boolean");
    }
    if (options.onError !== undefined && typeof options.onError !== "function") {
      throw new TypeError("onError must be a function");
    }
    this.onError = options.onError;
    this.stub = new GeneratedClient(target, options.credentials ?? grpcCredentials.createInsecure(), {
      ...DEFAULT_CHANNEL_OPTIONS,
      ...options.channelOptions,
    });
  }

  /**
   * Whether at least one client is subscribed to `channel`, as last reported to
   * the gate by Pusher's webhooks.
   *
   * When failing open (the default) this resolves `true` on any error except
   * INVALID_ARGUMENT, after handing the error to `onError`; otherwise it
   * rejects with an {@link OccupancyError}.
   *
   * @throws OccupancyError with `code` INVALID_ARGUMENT for a malformed channel
   *   name (always), CANCELLED once the client is closed (always), or any other
   *   status when `failOpen` is false (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
   */
  async isOccupied(channel: string): Promise<boolean> {
    this.ensureOpen();
    if (typeof channel !== "string") {
      throw invalidArgument("channel must be a string");
    }
    try {
      const response = await this.callIsOccupied({ channel });
      return response.occupied;
    } catch (err) {
      const error = OccupancyError.from(err);
      if (!this.failOpen || error.code === status.INVALID_ARGUMENT) {
        throw error;
      }
      this.report(error);
      return true;
    }
  }

  /**
   * Triggers `event` with `data` on those of `channels` that are occupied, in a
   * single Pusher API call made by the gate, and makes no call when none is.
   *
   * Always rejects on error, whatever `failOpen` says: the caller must know
   * that nothing was published (or, for DEADLINE_EXCEEDED, that delivery is
   * unknown) and decide itself whether to retry or publish directly.
   *
   * @param channels 1 to 100 channel names; duplicates count as one.
   * @param event the Pusher event name.
   * @param data the event payload, sent verbatim (usually `JSON.stringify(...)`).
   * @param options `socketId` to exclude one connection from receiving the event.
   * @throws OccupancyError carrying the gRPC status and the gate's message.
   */
  async publishIfOccupied(
    channels: readonly string[],
    event: string,
    data: string,
    options: PublishOptions = {},
  ): Promise<PublishResult> {
    this.ensureOpen();
    if (!Array.isArray(channels) || !channels.every((c) => typeof c === "string")) {
      throw invalidArgument("channels must be an array of strings");
    }
    if (typeof event !== "string") {
      throw invalidArgument("event must be a string");
    }
    if (typeof data !== "string") {
      throw invalidArgument("data must be a string (serialize objects with JSON.stringify)");
    }
    const socketId = options.socketId ?? "";
    if (typeof socketId !== "string") {
      throw invalidArgument("socketId must be a string");
    }
    try {
      const response = await this.callPublish({ channels: [...channels], event, data, socketId });
      return { published: response.published, skipped: response.skipped };
    } catch (err) {
      throw OccupancyError.from(err);
    }
  }

  /**
   * Closes the underlying gRPC channel. Calls still in flight finish or fail;
   * later calls reject with CANCELLED. Safe to call more than once.
   */
  close(): void {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.stub.close();
  }

  private ensureOpen(): void {
    if (this.closed) {
      throw new OccupancyError(status.CANCELLED, "the occupancy client is closed");
    }
  }

  private report(error: OccupancyError): void {
    if (this.onError === undefined) {
      return;
    }
    try {
      this.onError(error);
    } catch {
      // A faulty hook must not turn a fail-open answer into a failure.
    }
  }

  private callIsOccupied(request: IsOccupiedRequest): Promise<IsOccupiedResponse> {
    return new Promise((resolve, reject) => {
      this.stub.isOccupied(request, new Metadata(), { deadline: deadlineIn(this.timeoutMs) }, (err, response) =>
        err ? reject(err) : resolve(response),
      );
    });
  }

  private callPublish(request: PublishIfOccupiedRequest): Promise<PublishIfOccupiedResponse> {
    return new Promise((resolve, reject) => {
      this.stub.publishIfOccupied(
        request,
        new Metadata(),
        { deadline: deadlineIn(this.publishTimeoutMs) },
        (err, response) => (err ? reject(err) : resolve(response)),
      );
    });
  }
}

function deadlineIn(ms: number): Date {
  return new Date(Date.now() + ms);
}

function invalidArgument(details: string): OccupancyError {
  return new OccupancyError(status.INVALID_ARGUMENT, details);
}

function checkTimeout(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a finite number of milliseconds`);
  }
  if (value <= 0) {
    throw new RangeError(`${name} must be greater than 0, got ${value}`);
  }
  return value;
}
