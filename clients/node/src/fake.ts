import { checkChannel, checkPublish } from "./checks.js";
import { OccupancyClosedError, OccupancyError } from "./errors.js";
import { FailurePolicy, type ErrorHook } from "./policy.js";
import type { OccupancyGate, PublishOptions, PublishResult } from "./types.js";

/** Options of {@link FakeOccupancyClient}: the failure policy, as in the real client. */
export interface FakeOccupancyClientOptions {
  /** As the real client's `failOpen` (default true); matters only after {@link FakeOccupancyClient.failWith}. */
  failOpen?: boolean;
  /** As the real client's `onError` (default: the throttled warning). */
  onError?: ErrorHook;
}

/** One `publishIfOccupied` the fake received (and answered). */
export interface RecordedPublish {
  channels: string[];
  event: string;
  data: string;
  /** `""` when none was given. */
  socketId: string;
  /** What the fake answered: the occupied channels. */
  published: string[];
  /** What the fake answered: the vacant channels. */
  skipped: string[];
}

/**
 * An in-memory stand-in for {@link OccupancyClient}, for encoder teams' own
 * unit tests: no gate, no network. It implements the same
 * {@link OccupancyGate} interface; channels are marked occupied by hand,
 * publishes are recorded, and channel names, event names and arguments are
 * checked exactly as the real client checks them. `failWith` makes it behave
 * as during an outage (or a misconfiguration), with the real failure policy.
 */
export class FakeOccupancyClient implements OccupancyGate {
  /** Every publish, in call order (those that failed are not recorded). */
  readonly publishes: RecordedPublish[] = [];
  private readonly occupied = new Set<string>();
  private readonly policy: FailurePolicy;
  private error: OccupancyError | undefined;
  private closed = false;

  constructor(options: FakeOccupancyClientOptions = {}) {
    this.policy = new FailurePolicy(options.failOpen ?? true, options.onError);
  }

  /** Marks channels occupied (as a `channel_occupied` webhook would). Returns `this`. */
  occupy(...channels: string[]): this {
    for (const channel of channels) this.occupied.add(checkChannel(channel));
    return this;
  }

  /** Marks channels vacant (as a `channel_vacated` webhook would). Returns `this`. */
  vacate(...channels: string[]): this {
    for (const channel of channels) this.occupied.delete(checkChannel(channel));
    return this;
  }

  /**
   * From now on every call fails with `error`, until {@link recover}:
   * `isOccupied` applies the failure policy (an outage code answers `true` and
   * reaches `onError` when failing open; any other code rejects),
   * `publishIfOccupied` always rejects. (`failWith(undefined)` still heals,
   * deprecated: use `recover()`.)
   */
  failWith(error: OccupancyError | undefined): this {
    if (error !== undefined && !(error instanceof OccupancyError)) {
      throw new TypeError("failWith takes an OccupancyError; call recover() to end a failure");
    }
    this.error = error;
    return this;
  }

  /** Ends a failure set with {@link failWith}: calls answer from the marked channels again. */
  recover(): this {
    this.error = undefined;
    return this;
  }

  /**
   * As the real client's `waitSynced`: the fake's copy is always current, so
   * this resolves `true` at once. Rejects with OccupancyClosedError once closed.
   */
  async waitSynced(_timeoutMs?: number): Promise<boolean> {
    this.ensureOpen();
    return true;
  }

  async isOccupied(channel: string): Promise<boolean> {
    this.ensureOpen();
    checkChannel(channel);
    if (this.error !== undefined) {
      return this.policy.answer(this.error);
    }
    return this.occupied.has(channel);
  }

  async publishIfOccupied(
    channels: readonly string[],
    event: string,
    data: string,
    options: PublishOptions = {},
  ): Promise<PublishResult> {
    this.ensureOpen();
    const checked = checkPublish(channels, event, data, options.socketId ?? "");
    if (this.error !== undefined) {
      throw this.error;
    }
    const distinct = [...new Set(checked.channels)];
    const published = distinct.filter((c) => this.occupied.has(c));
    const skipped = distinct.filter((c) => !this.occupied.has(c));
    this.publishes.push({ ...checked, published: [...published], skipped: [...skipped] });
    return { published, skipped, deferred: [], superseded: 0, storeUnavailable: false };
  }

  /** Every later call rejects with {@link OccupancyClosedError}, as the real client's. Idempotent. */
  close(): void {
    this.closed = true;
  }

  private ensureOpen(): void {
    if (this.closed) {
      throw new OccupancyClosedError();
    }
  }
}
