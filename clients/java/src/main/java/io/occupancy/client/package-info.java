/**
 * Java client for the occupancy gate, the gRPC service that knows which Pusher Channels channels
 * have subscribers right now.
 *
 * <p>Encoders use {@link io.occupancy.client.OccupancyClient} either to ask before doing work
 * whose only audience is a channel ({@link io.occupancy.client.OccupancyClient#isOccupied}), or
 * to let the gate publish an event to just the occupied ones of several channels ({@link
 * io.occupancy.client.OccupancyClient#publishIfOccupied}). Failures surface as {@link
 * io.occupancy.client.OccupancyException}, which carries the gRPC status code.
 *
 * <p>The generated protocol classes live in {@code io.occupancy.v1}; they are built from {@code
 * proto/occupancy/v1/occupancy.proto} at build time and are not part of this package's API.
 */
package io.occupancy.client;
