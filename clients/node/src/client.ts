import { readFileSync } from "node:fs";

import {
  credentials as grpcCredentials,
  Metadata,
  status,
  type ChannelCredentials,
  type ChannelOptions,
} from "@grpc/grpc-js";

import { OccupancyCache } from "./cache.js";
import { checkChannel, checkPublish } from "./checks.js";
import { OccupancyClosedError, OccupancyError } from "./errors.js";
import {
  OccupancyClient as GeneratedClient,
  type IsOccupiedRequest,
  type IsOccupiedResponse,
  type PublishIfOccupiedRequest,
  type PublishIfOccupiedResponse,
} from "./generated/occupancy/v1/occupancy.js";
import { FailurePolicy, type ErrorHook } from "./policy.js";
import type { OccupancyGate, PublishOptions, PublishResult } from "./types.js";

/** Default deadline of `isOccupied`: the check sits in front of every publish, so it must be cheap. */
export const DEFAULT_CHECK_TIMEOUT_MS = 1000;
/**
 * Default deadline of `publishIfOccupied`: longer than the gate's own 3 s Pusher
 * HTTP timeout, so that a slow Pusher surfaces as the gate's DEADLINE_EXCEEDED
 * (with its message) rather than as a client-side deadline.
 */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 5000;
/** Default time `waitSynced` waits for cached mode to synchronise. */
export const DEFAULT_SYNC_TIMEOUT_MS = 5000;
/** The environment variable read for the target when none is given (same name in every client). */
export const ADDRESS_ENV = "OCCUPANCY_ADDR";
/** @deprecated Renamed {@link ADDRESS_ENV}, the name every client uses; this alias will go. */
export const TARGET_ENV = ADDRESS_ENV;

/**
 * Channel options applied unless overridden through `channelOptions`.
 * grpc-js backs off reconnects up to 120 s by default; capping the backoff at
 * 2 s (starting at 100 ms) puts a client back on the gate within about two
 * seconds of a gate restart instead of failing open (or raising) for minutes.
 */
export const DEFAULT_CHANNEL_OPTIONS: Readonly<ChannelOptions> = Object.freeze({
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2000,
});

/** Construction options of {@link OccupancyClient}; every field is optional. */
export interface OccupancyClientOptions {
  /** Sent as `authorization: Bearer <token>` on every call; a function is asked on every call (rotation). */
  token?: string | (() => string);
  /** TLS to the gate, trusting the system's CAs (or `caFile`). Default: plaintext. */
  tls?: boolean;
  /** Path of a PEM CA bundle to trust for the gate's certificate; implies `tls`. Read at construction. */
  caFile?: string;
  /** Extra metadata (gRPC headers) sent on every call. Keys are lowercase ASCII. */
  metadata?: Readonly<Record<string, string | readonly string[]>>;
  /** HTTP/2 keepalive ping interval in milliseconds, also on an idle connection. Default: off. */
  keepaliveMs?: number;
  /** The Pusher app asked about, when the gate serves several. Default: empty, the gate's only app. */
  appId?: string;
  /** Deadline of each `isOccupied` call, in milliseconds. Default 1000. */
  checkTimeoutMs?: number;
  /** Deadline of each `publishIfOccupied` call, in milliseconds. Default 5000. */
  publishTimeoutMs?: number;
  /**
   * Failure policy of `isOccupied`. `true` (the default): on an outage
   * (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, connection refused or
   * dropped) answer "occupied", so an encoder never loses a live update; the
   * error goes to `onError`. `false`: reject. Any other status always rejects.
   */
  failOpen?: boolean;
  /**
   * Sees every error that `isOccupied` swallowed while failing open. Default: a
   * hook that emits a process warning at most once per 30 s (see
   * `createWarningHook`). Exceptions thrown by the hook are ignored.
   */
  onError?: ErrorHook;
  /** Answer `isOccupied` from a local copy kept by the WatchOccupancy stream. Default false. */
  cached?: boolean;
  /** Extra grpc-js channel options, merged over the defaults (advanced). */
  channelOptions?: ChannelOptions;
}

/**
 * Client of the occupancy gate: asks whether anyone watches a Pusher channel
 * and publishes through the gate only to the channels someone watches.
 *
 * Construction touches neither the network nor the gRPC runtime: one gRPC
 * channel is opened on first use and reused by every call. Create one client
 * per process, share it, and call {@link close} when done so the process can
 * exit.
 */
export class OccupancyClient implements OccupancyGate {
  /** The address the client talks to (`host:port`). */
  readonly target: string;
  private readonly checkTimeoutMs: number;
  private readonly publishTimeoutMs: number;
  private readonly policy: FailurePolicy;
  private readonly appId: string;
  private readonly token: string | (() => string) | undefined;
  private readonly baseMetadata: Metadata;
  private readonly ca: Buffer | undefined;
  private readonly tls: boolean;
  private readonly channelOptions: ChannelOptions;
  private readonly cache: OccupancyCache | undefined;
  private stubInstance: GeneratedClient | undefined;
  private closed = false;

  /**
   * @param target the gate's address, `host:port` (any grpc-js target such as
   *   `dns:///host:port` works too). Default: `process.env.OCCUPANCY_ADDR`.
   * @param options see {@link OccupancyClientOptions}.
   * @throws TypeError / RangeError when the target is missing or an option has
   *   the wrong type or value; Error when `caFile` cannot be read.
   */
  constructor(target?: string, options?: OccupancyClientOptions);
  constructor(options?: OccupancyClientOptions);
  constructor(targetOrOptions?: string | OccupancyClientOptions, maybeOptions?: OccupancyClientOptions) {
    let target: string | undefined;
    let options: OccupancyClientOptions;
    if (typeof targetOrOptions === "object" && targetOrOptions !== null) {
      target = undefined;
      options = targetOrOptions;
    } else {
      target = targetOrOptions;
      options = maybeOptions ?? {};
    }
    if (target === undefined) {
      target = process.env[ADDRESS_ENV];
      if (target === undefined || target === "") {
        throw new TypeError(
          `no target: pass the gate's address ("host:port") to new OccupancyClient(), or set ${ADDRESS_ENV}`,
        );
      }
    }
    if (typeof target !== "string" || target === "") {
      throw new TypeError('target must be a non-empty string such as "127.0.0.1:50051"');
    }
    this.target = target;
    this.checkTimeoutMs = checkMillis("checkTimeoutMs", options.checkTimeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS);
    this.publishTimeoutMs = checkMillis("publishTimeoutMs", options.publishTimeoutMs ?? DEFAULT_PUBLISH_TIMEOUT_MS);
    this.policy = new FailurePolicy(options.failOpen ?? true, options.onError);

    this.appId = options.appId ?? "";
    if (typeof this.appId !== "string") {
      throw new TypeError("appId must be a string");
    }
    if (options.token !== undefined) {
      if (typeof options.token === "string") {
        checkToken(options.token);
      } else if (typeof options.token !== "function") {
        throw new TypeError("token must be a string or a function returning one");
      }
    }
    this.token = options.token;
    this.baseMetadata = buildMetadata(options.metadata, this.token !== undefined);

    if (options.tls !== undefined && typeof options.tls !== "boolean") {
      throw new TypeError("tls must be a boolean");
    }
    if (options.caFile !== undefined) {
      if (typeof options.caFile !== "string" || options.caFile === "") {
        throw new TypeError("caFile must be the path of a PEM file");
      }
      if (options.tls === false) {
        throw new TypeError("caFile implies TLS; it cannot be combined with tls: false");
      }
      try {
        this.ca = readFileSync(options.caFile);
      } catch (err) {
        throw new Error(`cannot read caFile ${options.caFile}: ${(err as Error).message}`, { cause: err });
      }
    }
    this.tls = options.tls === true || this.ca !== undefined;

    const channelOptions: ChannelOptions = { ...DEFAULT_CHANNEL_OPTIONS };
    if (options.keepaliveMs !== undefined) {
      channelOptions["grpc.keepalive_time_ms"] = checkMillis("keepaliveMs", options.keepaliveMs);
      channelOptions["grpc.keepalive_permit_without_calls"] = 1;
    }
    if (options.channelOptions !== undefined && (typeof options.channelOptions !== "object" || options.channelOptions === null)) {
      throw new TypeError("channelOptions must be an object");
    }
    this.channelOptions = { ...channelOptions, ...options.channelOptions };

    if (options.cached !== undefined && typeof options.cached !== "boolean") {
      throw new TypeError("cached must be a boolean");
    }
    this.cache = options.cached
      ? new OccupancyCache(() =>
          this.stub().watchOccupancy({ appId: this.appId, channelPrefix: "" }, this.callMetadata(), {}),
        )
      : undefined;
  }

  /**
   * Whether at least one client is subscribed to `channel`, as last reported to
   * the gate by Pusher's webhooks (in cached mode: by the local copy).
   *
   * On an outage (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, transport
   * failure; in cached mode: not synchronised) this resolves `true` when failing
   * open, after handing the error to `onError`, and rejects otherwise. Every
   * other error rejects.
   *
   * @throws OccupancyError INVALID_ARGUMENT for a malformed channel name (checked
   *   locally, before any call), OccupancyClosedError once closed, or the
   *   gate's status as the failure policy says.
   */
  async isOccupied(channel: string): Promise<boolean> {
    this.ensureOpen();
    checkChannel(channel);
    if (this.cache !== undefined) {
      this.cache.start();
      const answer = this.cache.answer(channel);
      return typeof answer === "boolean" ? answer : this.policy.answer(answer);
    }
    try {
      const response = await this.callIsOccupied({ channel, appId: this.appId });
      return response.occupied;
    } catch (err) {
      return this.policy.answer(this.closed ? new OccupancyClosedError() : OccupancyError.from(err));
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
   * @param event the Pusher event name, 1 to 200 characters.
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
    const checked = checkPublish(channels, event, data, options.socketId ?? "");
    try {
      const response = await this.callPublish({ ...checked, appId: this.appId, coalesceMs: 0 });
      return {
        published: response.published,
        skipped: response.skipped,
        deferred: response.deferred,
        superseded: response.superseded,
        storeUnavailable: response.storeUnavailable,
      };
    } catch (err) {
      throw OccupancyError.from(err);
    }
  }

  /**
   * Cached mode: starts the subscription if needed and waits until the local
   * copy is synchronised with the gate, for at most `timeoutMs`. Call it at
   * startup so the first checks are answered from the copy rather than by the
   * failure policy. The same call, by the same name, in every client.
   *
   * @returns `true` once synchronised, `false` when `timeoutMs` passed first
   *   (the subscription keeps retrying in the background).
   * @throws OccupancyError FAILED_PRECONDITION without `cached`,
   *   OccupancyClosedError once closed (also when closed while waiting).
   */
  async waitSynced(timeoutMs: number = DEFAULT_SYNC_TIMEOUT_MS): Promise<boolean> {
    try {
      await this.waitForSync(timeoutMs);
      return true;
    } catch (err) {
      if (err instanceof OccupancyError && !(err instanceof OccupancyClosedError) && err.code === status.DEADLINE_EXCEEDED) {
        return false;
      }
      throw err;
    }
  }

  /**
   * @deprecated Use {@link waitSynced}, which resolves `false` on timeout
   * instead of rejecting. This one resolves once synchronised and rejects with
   * OccupancyError DEADLINE_EXCEEDED (its `cause` is the last stream error)
   * when not synchronised within `timeoutMs`, FAILED_PRECONDITION without
   * `cached`, OccupancyClosedError once closed.
   */
  async waitForSync(timeoutMs: number = DEFAULT_SYNC_TIMEOUT_MS): Promise<void> {
    this.ensureOpen();
    checkMillis("timeoutMs", timeoutMs);
    if (this.cache === undefined) {
      throw new OccupancyError(status.FAILED_PRECONDITION, "waitSynced needs a client built with cached: true");
    }
    await this.cache.whenSynced(timeoutMs);
  }

  /** Cached mode: whether the local copy is current (false without `cached`). */
  get isSynced(): boolean {
    return this.cache?.isSynced ?? false;
  }

  /**
   * Ends the cached-mode subscription and closes the gRPC channel. Calls
   * still in flight finish or fail; every later call rejects with
   * {@link OccupancyClosedError}. Safe to call more than once.
   */
  close(): void {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.cache?.stop();
    this.stubInstance?.close();
  }

  private ensureOpen(): void {
    if (this.closed) {
      throw new OccupancyClosedError();
    }
  }

  /** The generated stub, built on first use: its channel connects on its first call. */
  private stub(): GeneratedClient {
    if (this.stubInstance === undefined) {
      const credentials: ChannelCredentials = this.tls
        ? grpcCredentials.createSsl(this.ca ?? null)
        : grpcCredentials.createInsecure();
      this.stubInstance = new GeneratedClient(this.target, credentials, this.channelOptions);
    }
    return this.stubInstance;
  }

  /** The metadata of one call: the extra metadata plus the bearer token. */
  private callMetadata(): Metadata {
    const metadata = this.baseMetadata.clone();
    if (this.token !== undefined) {
      let token: unknown;
      try {
        token = typeof this.token === "function" ? this.token() : this.token;
        checkToken(token);
      } catch (err) {
        throw new OccupancyError(status.UNAUTHENTICATED, `the token function failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      metadata.set("authorization", `Bearer ${token as string}`);
    }
    return metadata;
  }

  private callIsOccupied(request: IsOccupiedRequest): Promise<IsOccupiedResponse> {
    const metadata = this.callMetadata();
    return new Promise((resolve, reject) => {
      this.stub().isOccupied(request, metadata, { deadline: deadlineIn(this.checkTimeoutMs) }, (err, response) =>
        err ? reject(err) : resolve(response),
      );
    });
  }

  private callPublish(request: PublishIfOccupiedRequest): Promise<PublishIfOccupiedResponse> {
    const metadata = this.callMetadata();
    return new Promise((resolve, reject) => {
      this.stub().publishIfOccupied(
        request,
        metadata,
        { deadline: deadlineIn(this.publishTimeoutMs) },
        (err, response) => (err ? reject(err) : resolve(response)),
      );
    });
  }
}

function deadlineIn(ms: number): Date {
  return new Date(Date.now() + ms);
}

function checkMillis(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a finite number of milliseconds`);
  }
  if (value <= 0) {
    throw new RangeError(`${name} must be greater than 0, got ${value}`);
  }
  return value;
}

function checkToken(token: unknown): asserts token is string {
  if (typeof token !== "string" || token === "" || /[\r\n]/.test(token)) {
    throw new TypeError("token must be a non-empty string without line breaks");
  }
}

function buildMetadata(
  extra: Readonly<Record<string, string | readonly string[]>> | undefined,
  hasToken: boolean,
): Metadata {
  const metadata = new Metadata();
  if (extra === undefined) {
    return metadata;
  }
  if (typeof extra !== "object" || extra === null) {
    throw new TypeError("metadata must be an object of header names to strings");
  }
  for (const [key, value] of Object.entries(extra)) {
    if (hasToken && key.toLowerCase() === "authorization") {
      throw new TypeError("metadata must not set authorization when token is given");
    }
    for (const item of typeof value === "string" ? [value] : value) {
      if (typeof item !== "string") {
        throw new TypeError(`metadata ${key} must be a string or an array of strings`);
      }
      try {
        metadata.add(key, item);
      } catch (err) {
        throw new TypeError(`metadata ${key}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
  return metadata;
}
