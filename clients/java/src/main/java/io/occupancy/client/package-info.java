/**
 * Java client for the occupancy gate, the gRPC service that knows which Pusher Channels channels
 * have subscribers right now. It implements {@code clients/CONTRACT.md}.
 *
 * <p>Code is written against {@link io.occupancy.client.OccupancyGate}: {@link
 * io.occupancy.client.OccupancyClient} is the real one (blocking and {@link
 * java.util.concurrent.CompletableFuture} calls, optional cached mode), {@link
 * io.occupancy.client.FakeOccupancyGate} the in-memory one for unit tests. Failures surface as
 * {@link io.occupancy.client.OccupancyException}, which carries the gRPC status code, and use
 * after close as {@link io.occupancy.client.OccupancyClosedException}.
 *
 * <p>The generated protocol classes live in {@code io.occupancy.v1}; they are built from {@code
 * proto/occupancy/v1/occupancy.proto} at build time and are not part of this package's API.
 */
package io.occupancy.client;
