import { status, type Metadata, type ServiceError } from "@grpc/grpc-js";

/**
 * Marks this library's errors so that `instanceof` holds across copies of the
 * package: the ESM and CommonJS builds are two copies of every class, and an
 * application that loads both (an ESM app with a CommonJS dependency) must
 * still be able to write `err instanceof OccupancyError`.
 */
const BRAND = Symbol.for("@occupancy/client.OccupancyError");
const CLOSED_BRAND = Symbol.for("@occupancy/client.OccupancyClosedError");

/**
 * The single error type of this library, so callers can branch on one class
 * whatever went wrong (gate answer, transport failure, deadline, misuse).
 *
 * `code` is a gRPC status number (compare it with the exported `status` enum,
 * e.g. `err.code === status.UNAVAILABLE`); `details` is the gate's own message
 * naming the cause, without the status prefix, so it can be logged as is.
 */
export class OccupancyError extends Error {
  /** The gRPC status code (`status.INVALID_ARGUMENT`, `status.UNAVAILABLE`, ...). */
  readonly code: status;
  /** The server's (or this library's) explanation of the failure. */
  readonly details: string;
  /** Trailing metadata sent with the error, when the failure came from the wire. */
  readonly metadata: Metadata | undefined;

  /**
   * Most callers never build one: the client creates them. Public so tests,
   * wrappers and {@link FakeOccupancyClient.failWith} can produce errors of the
   * same shape.
   */
  constructor(code: status, details: string, options: { cause?: unknown; metadata?: Metadata } = {}) {
    super(`${code} ${status[code] ?? "UNKNOWN"}: ${details}`, { cause: options.cause });
    this.name = "OccupancyError";
    this.code = code;
    this.details = details;
    this.metadata = options.metadata;
    Object.defineProperty(this, BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this === OccupancyError) {
      return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
    }
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /**
   * Converts anything a grpc-js call can fail with into an `OccupancyError`,
   * keeping the original as `cause` for debugging.
   */
  static from(err: unknown): OccupancyError {
    if (err instanceof OccupancyError) {
      return err;
    }
    if (isServiceError(err)) {
      return new OccupancyError(err.code, err.details || err.message, { cause: err, metadata: err.metadata });
    }
    const message = err instanceof Error ? err.message : String(err);
    return new OccupancyError(status.INTERNAL, message, { cause: err });
  }
}

/**
 * What every call of a closed client (real or fake) rejects with, whatever the
 * failure policy: code `CANCELLED`.
 */
export class OccupancyClosedError extends OccupancyError {
  constructor() {
    super(status.CANCELLED, "the occupancy client is closed");
    this.name = "OccupancyClosedError";
    Object.defineProperty(this, CLOSED_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this === OccupancyClosedError) {
      return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[CLOSED_BRAND] === true;
    }
    return Function.prototype[Symbol.hasInstance].call(this, value);
  }
}

/**
 * The statuses that mean "the gate could not answer right now" (an outage):
 * the only ones `isOccupied` swallows when failing open. Transport failures
 * (connection refused, reset, TLS handshake failed) reach grpc-js callers as
 * UNAVAILABLE. Every other status is a configuration or programming error
 * (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED,
 * NOT_FOUND, ...) that answering "occupied" would hide.
 */
export const OUTAGE_CODES: readonly status[] = Object.freeze([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
]);

/** Whether `error` is an outage that fail-open may swallow (see {@link OUTAGE_CODES}). */
export function isOutage(error: OccupancyError): boolean {
  return !(error instanceof OccupancyClosedError) && OUTAGE_CODES.includes(error.code);
}

function isServiceError(err: unknown): err is ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceError>).code === "number" &&
    typeof (err as Partial<ServiceError>).details === "string"
  );
}
