package io.occupancy.client;

import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * What an encoder needs from the occupancy gate, implemented by the real {@link OccupancyClient}
 * and by the in-memory {@link FakeOccupancyGate} for unit tests. Write code against this
 * interface, pass an {@code OccupancyClient} in production and a {@code FakeOccupancyGate} in
 * tests.
 *
 * <p>The behaviour every implementation follows is in {@code clients/CONTRACT.md}: channel names
 * are checked locally before anything else (an {@link OccupancyException} with {@code
 * INVALID_ARGUMENT}), and after {@link #close()} every call throws {@link
 * OccupancyClosedException}. The async methods report every such error through the returned
 * future (completed exceptionally), never by throwing; only {@code null} arguments throw {@link
 * NullPointerException} at once.
 */
public interface OccupancyGate extends AutoCloseable {
  /**
   * Whether anyone is subscribed to {@code channel} right now.
   *
   * @param channel a Pusher channel name, prefix included (e.g. {@code "private-job-42"})
   * @return {@code true} while the channel has at least one subscriber (or, failing open, when
   *     the gate could not tell); {@code false} when it is vacant
   * @throws OccupancyException {@code INVALID_ARGUMENT} for a malformed name (checked before any
   *     call); otherwise as the failure policy says
   * @throws OccupancyClosedException after {@link #close()}
   */
  boolean isOccupied(String channel);

  /**
   * {@link #isOccupied} without blocking the calling thread.
   *
   * @param channel a Pusher channel name
   * @return the answer; completed exceptionally with what {@link #isOccupied} would throw
   */
  CompletableFuture<Boolean> isOccupiedAsync(String channel);

  /**
   * Triggers {@code event} on the occupied ones of {@code channels}, in one Pusher API call, and
   * makes no call at all when all are vacant. Always throws on error, whatever the failure policy.
   *
   * @param channels 1 to 100 Pusher channel names; duplicates count once
   * @param event the Pusher event name, 1 to 200 characters
   * @param data the event payload, passed to Pusher verbatim (usually JSON), at most 10 KiB
   * @return which channels got the event and which were skipped as vacant
   * @throws OccupancyException on any error
   * @throws OccupancyClosedException after {@link #close()}
   */
  default PublishResult publishIfOccupied(List<String> channels, String event, String data) {
    return publishIfOccupied(channels, event, data, null);
  }

  /**
   * Like {@link #publishIfOccupied(List, String, String)}, excluding one Pusher connection from
   * receiving the event, as Pusher's own {@code socket_id} does.
   *
   * @param channels 1 to 100 Pusher channel names; duplicates count once
   * @param event the Pusher event name, 1 to 200 characters
   * @param data the event payload, at most 10 KiB
   * @param socketId the Pusher socket id to exclude ({@code "123.456"}); {@code null} or empty
   *     excludes nobody
   * @return which channels got the event and which were skipped as vacant
   * @throws OccupancyException on any error
   * @throws OccupancyClosedException after {@link #close()}
   */
  PublishResult publishIfOccupied(List<String> channels, String event, String data, String socketId);

  /**
   * {@link #publishIfOccupied(List, String, String, String)} without blocking the calling thread.
   *
   * @param channels 1 to 100 Pusher channel names
   * @param event the Pusher event name
   * @param data the event payload
   * @param socketId the Pusher socket id to exclude, or {@code null}
   * @return the result; completed exceptionally with what the blocking call would throw
   */
  CompletableFuture<PublishResult> publishIfOccupiedAsync(
      List<String> channels, String event, String data, String socketId);

  /** Releases the gate's resources; afterwards every call fails. Harmless to call twice. */
  @Override
  void close();
}
