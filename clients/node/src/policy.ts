// The failure policy of `isOccupied`, shared by the real client and the fake.
import { performance } from "node:perf_hooks";

import { isOutage, OccupancyError } from "./errors.js";

/** Receives every error that `isOccupied` swallowed while failing open. */
export type ErrorHook = (error: OccupancyError) => void;

/** The default hook warns at most once per this many milliseconds: 30 s. */
export const DEFAULT_WARNING_INTERVAL_MS = 30_000;

/** Options of {@link createWarningHook}. */
export interface WarningHookOptions {
  /** At most one warning per this many milliseconds. Default 30 000. */
  intervalMs?: number;
  /**
   * Where the warning goes. Default: `process.emitWarning(message, { type:
   * "OccupancyWarning", code: "OCCUPANCY_FAILED_OPEN" })`, which Node prints
   * on stderr and hands to `process.on("warning")` listeners.
   */
  warn?: (message: string) => void;
}

function emitProcessWarning(message: string): void {
  process.emitWarning(message, { type: "OccupancyWarning", code: "OCCUPANCY_FAILED_OPEN" });
}

/**
 * Builds the hook a client uses when it is given no `onError`: it logs a
 * warning at most once per `intervalMs` (30 s by default), saying how many
 * errors were swallowed since the last warning, so an outage of the gate is
 * visible without flooding the log. Exported so an application can keep this
 * behaviour and add its own (`onError: (e) => { metrics.inc(); warnHook(e); }`).
 */
export function createWarningHook(options: WarningHookOptions = {}): ErrorHook {
  const intervalMs = options.intervalMs ?? DEFAULT_WARNING_INTERVAL_MS;
  if (typeof intervalMs !== "number" || !Number.isFinite(intervalMs) || intervalMs < 0) {
    throw new RangeError("intervalMs must be a finite number of milliseconds >= 0");
  }
  const warn = options.warn ?? emitProcessWarning;
  let lastWarning = -Infinity;
  let swallowed = 0;
  return (error: OccupancyError) => {
    swallowed += 1;
    const now = performance.now();
    if (now - lastWarning < intervalMs) {
      return;
    }
    const count = swallowed;
    lastWarning = now;
    swallowed = 0;
    warn(
      `occupancy: isOccupied failed open (answered "occupied") on ${count} error(s) since the last warning; ` +
        `latest: ${error.message}. At most one warning per ${Math.round(intervalMs / 1000)} s; ` +
        "pass onError to see every error.",
    );
  };
}

/** The failure policy of `isOccupied` (see the README's failure table). */
export class FailurePolicy {
  readonly failOpen: boolean;
  private readonly hook: ErrorHook;

  constructor(failOpen: unknown, onError: unknown) {
    if (typeof failOpen !== "boolean") {
      throw new TypeError("failOpen must be a boolean");
    }
    if (onError !== undefined && typeof onError !== "function") {
      throw new TypeError("onError must be a function");
    }
    this.failOpen = failOpen;
    this.hook = (onError as ErrorHook | undefined) ?? createWarningHook();
  }

  /**
   * What `isOccupied` answers for `error`: `true` when failing open on an
   * outage (after handing the error to the hook); otherwise it throws `error`.
   */
  answer(error: OccupancyError): true {
    if (!this.failOpen || !isOutage(error)) {
      throw error;
    }
    try {
      this.hook(error);
    } catch {
      // A faulty hook must not turn a fail-open answer into a failure.
    }
    return true;
  }
}
