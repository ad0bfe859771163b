package io.occupancy.client;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Objects;

/**
 * The one error type of this library: a call to the occupancy gate failed.
 *
 * <p>It carries the gRPC {@link Status} the call ended with, so callers can tell a caller bug
 * ({@link Status.Code#INVALID_ARGUMENT}, e.g. a malformed channel name) from a gate that is down
 * or overloaded ({@link Status.Code#UNAVAILABLE}, {@link Status.Code#DEADLINE_EXCEEDED}) or a
 * Pusher-side refusal ({@link Status.Code#PERMISSION_DENIED}, {@link
 * Status.Code#RESOURCE_EXHAUSTED}, {@link Status.Code#FAILED_PRECONDITION}) without parsing
 * messages. The exception message is the server's own description of the cause. The original
 * {@link StatusRuntimeException} is kept as the cause.
 *
 * <p>It is unchecked because most callers (encoders publishing progress) cannot do anything
 * useful per call site; those that can catch it and switch on {@link #getCode()}.
 */
public class OccupancyException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** Not serializable itself; kept transient so the exception stays serializable. */
  private final transient Status status;

  /**
   * Wraps a failed gRPC call.
   *
   * @param cause the exception grpc-java raised; its status becomes this exception's status
   */
  public OccupancyException(StatusRuntimeException cause) {
    this(Objects.requireNonNull(cause, "cause").getStatus(), cause);
  }

  /**
   * Builds an exception for a status that did not come from a call (or to re-wrap one).
   *
   * @param status the status the failed operation ended with
   * @param cause the underlying exception, or {@code null}
   */
  public OccupancyException(Status status, Throwable cause) {
    super(describe(Objects.requireNonNull(status, "status")), cause);
    this.status = status;
  }

  /**
   * The full gRPC status of the failed call, including the server's description.
   *
   * @return the status; {@code null} only on an instance that went through Java serialization
   */
  public Status getStatus() {
    return status;
  }

  /**
   * The gRPC status code, the part of the status to branch on.
   *
   * @return the code, e.g. {@link Status.Code#INVALID_ARGUMENT} or {@link Status.Code#UNAVAILABLE};
   *     {@link Status.Code#UNKNOWN} on an instance that went through Java serialization
   */
  public Status.Code getCode() {
    return status == null ? Status.Code.UNKNOWN : status.getCode();
  }

  /**
   * The server's (or the transport's) description of the cause, without the code.
   *
   * @return the description, or {@code null} when the status carried none
   */
  public String getDescription() {
    return status == null ? null : status.getDescription();
  }

  private static String describe(Status status) {
    String description = status.getDescription();
    return description == null || description.isEmpty()
        ? status.getCode().name()
        : status.getCode().name() + ": " + description;
  }
}
