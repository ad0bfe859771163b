package io.occupancy.client;

import io.grpc.Status;

/**
 * Thrown by every call on an {@link OccupancyGate} after {@link OccupancyGate#close()}: the client
 * was closed, so nothing was asked or published. It is an {@link OccupancyException} with code
 * {@code CANCELLED}, as the closed error of every client is that client's error type, and it is
 * never swallowed by failing open: using a closed client is a bug in the caller's lifecycle, not
 * an outage of the gate. (It was an {@link IllegalStateException} before 0.3.)
 */
public class OccupancyClosedException extends OccupancyException {
  private static final long serialVersionUID = 1L;

  /**
   * Creates the error for a closed client.
   *
   * @param message names the closed client, e.g. {@code "OccupancyClient for 127.0.0.1:50051 is
   *     closed"}
   */
  public OccupancyClosedException(String message) {
    super(Status.CANCELLED.withDescription(message), null);
  }
}
