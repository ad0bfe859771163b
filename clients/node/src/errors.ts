import { status, type Metadata, type ServiceError } from "@grpc/grpc-js";

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
  /** The server's (or gRPC runtime's) explanation of the failure. */
  readonly details: string;
  /** Trailing metadata sent with the error, when the failure came from the wire. */
  readonly metadata: Metadata | undefined;

  /**
   * Most callers never build one: the client creates them. Public so tests and
   * wrappers can produce errors of the same shape.
   */
  constructor(code: status, details: string, options: { cause?: unknown; metadata?: Metadata } = {}) {
    super(`${code} ${status[code] ?? "UNKNOWN"}: ${details}`, { cause: options.cause });
    this.name = "OccupancyError";
    this.code = code;
    this.details = details;
    this.metadata = options.metadata;
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
      return new OccupancyError(err.code, err.details, { cause: err, metadata: err.metadata });
    }
    const message = err instanceof Error ? err.message : String(err);
    return new OccupancyError(status.INTERNAL, message, { cause: err });
  }
}

function isServiceError(err: unknown): err is ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceError>).code === "number" &&
    typeof (err as Partial<ServiceError>).details === "string"
  );
}
