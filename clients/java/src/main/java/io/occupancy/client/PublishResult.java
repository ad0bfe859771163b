package io.occupancy.client;

import java.util.List;
import java.util.Objects;

/**
 * What {@link OccupancyClient#publishIfOccupied} did with each requested channel.
 *
 * <p>Every requested channel (duplicates counted once) ends up in exactly one of the two lists,
 * each in request order. Both lists are immutable.
 *
 * @param published the occupied channels the event was triggered on, in one Pusher API call
 * @param skipped the vacant channels, which received nothing and cost no Pusher message
 */
public record PublishResult(List<String> published, List<String> skipped) {
  /**
   * Copies both lists so a result can be shared and kept without defensive copies.
   *
   * @param published the occupied channels the event was triggered on
   * @param skipped the vacant channels that received nothing
   */
  public PublishResult {
    published = List.copyOf(Objects.requireNonNull(published, "published"));
    skipped = List.copyOf(Objects.requireNonNull(skipped, "skipped"));
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
