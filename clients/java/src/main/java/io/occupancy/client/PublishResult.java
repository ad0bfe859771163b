package io.occupancy.client;

import java.util.List;
import java.util.Objects;

/**
 * What {@link OccupancyClient#publishIfOccupied} did with each requested channel.
 *
 * <p>Every requested channel (duplicates counted once) ends up in exactly one of {@code
 * published}, {@code skipped} and {@code deferred}, each in request order. The lists are
 * immutable. The fields are the same in every client (see {@code clients/CONTRACT.md}).
 *
 * @param published the occupied channels the event was triggered on, in one Pusher API call
 * @param skipped the vacant channels, which received nothing and cost no Pusher message
 * @param deferred occupied channels whose update the gate holds to coalesce it (empty unless the
 *     gate coalesces)
 * @param superseded how many held updates of earlier calls this call replaced (0 unless the gate
 *     coalesces)
 * @param storeUnavailable {@code true} when the gate could not ask its store and, configured to
 *     publish when the store is down, published to every requested channel
 */
public record PublishResult(
    List<String> published,
    List<String> skipped,
    List<String> deferred,
    int superseded,
    boolean storeUnavailable) {
  /**
   * Copies the lists so a result can be shared and kept without defensive copies.
   *
   * @param published the occupied channels the event was triggered on
   * @param skipped the vacant channels that received nothing
   * @param deferred the occupied channels whose update the gate holds
   * @param superseded how many held updates of earlier calls this call replaced
   * @param storeUnavailable whether the gate published without asking its store
   */
  public PublishResult {
    published = List.copyOf(Objects.requireNonNull(published, "published"));
    skipped = List.copyOf(Objects.requireNonNull(skipped, "skipped"));
    deferred = List.copyOf(Objects.requireNonNull(deferred, "deferred"));
  }

  /**
   * A result with nothing deferred or superseded and the store available, as the fake and a gate
   * that does not coalesce answer.
   *
   * @param published the occupied channels the event was triggered on
   * @param skipped the vacant channels that received nothing
   */
  public PublishResult(List<String> published, List<String> skipped) {
    this(published, skipped, List.of(), 0, false);
  }

  /**
   * Whether the event reached at least one channel, i.e. a Pusher API call was made.
   *
   * @return {@code true} when {@link #published()} is not empty
   */
  public boolean anyPublished() {
    return !published.isEmpty();
  }
}
