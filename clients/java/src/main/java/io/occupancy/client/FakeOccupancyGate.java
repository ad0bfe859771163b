package io.occupancy.client;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;

/**
 * An in-memory {@link OccupancyGate} for encoder teams' own unit tests: no gate, no network.
 * Channels are marked occupied by hand, every publish is recorded, and requests are checked with
 * exactly the rules of {@link OccupancyClient} (a malformed name throws {@code INVALID_ARGUMENT};
 * after {@link #close()} every call throws {@link OccupancyClosedException}). {@link #failWith}
 * simulates an outage or a misconfiguration under the real client's failure policy (fail-open by
 * default: an outage answers {@code true} and reaches the hook), until {@link #recover()}.
 * Thread-safe.
 *
 * <pre>{@code
 * FakeOccupancyGate gate = new FakeOccupancyGate();
 * gate.occupy("private-job-42");
 * new Encoder(gate).reportProgress(40);          // code under test, written against OccupancyGate
 * assertEquals(List.of("private-job-42"), gate.publishes().get(0).result().published());
 * }</pre>
 */
public final class FakeOccupancyGate implements OccupancyGate {
  /**
   * One recorded {@code publishIfOccupied} call.
   *
   * @param channels the channels asked for, as given
   * @param event the event name
   * @param data the payload
   * @param socketId the excluded socket id, or {@code null}
   * @param result what the fake answered (occupied channels published, vacant ones skipped)
   */
  public record Publish(
      List<String> channels, String event, String data, String socketId, PublishResult result) {
    /**
     * Copies the channel list.
     *
     * @param channels the channels asked for
     * @param event the event name
     * @param data the payload
     * @param socketId the excluded socket id, or {@code null}
     * @param result what the fake answered
     */
    public Publish {
      channels = List.copyOf(channels);
    }
  }

  private final Set<String> occupied = ConcurrentHashMap.newKeySet();
  private final List<Publish> publishes = new CopyOnWriteArrayList<>();
  private volatile OccupancyException failure;
  private volatile boolean closed;
  private volatile boolean failOpen = true;
  private volatile Consumer<OccupancyException> onError =
      new DefaultErrorHook("FakeOccupancyGate", System::nanoTime);

  /** Creates a fake where every channel is vacant and nothing was published. */
  public FakeOccupancyGate() {}

  /**
   * Marks channels occupied, as a {@code channel_occupied} webhook would.
   *
   * @param channels valid channel names
   * @return this fake
   */
  public FakeOccupancyGate occupy(String... channels) {
    for (String channel : channels) {
      Names.checkChannel(channel);
      occupied.add(channel);
    }
    return this;
  }

  /**
   * Marks channels vacant, as a {@code channel_vacated} webhook would.
   *
   * @param channels valid channel names
   * @return this fake
   */
  public FakeOccupancyGate vacate(String... channels) {
    for (String channel : channels) {
      Names.checkChannel(channel);
      occupied.remove(channel);
    }
    return this;
  }

  /**
   * The failure policy applied while {@link #failWith} is in force, as {@link
   * OccupancyClient.Builder#failOpen}: {@code true} (the default) answers {@code true} for an
   * outage and hands the error to the hook, {@code false} throws it.
   *
   * @param failOpen {@code true} to fail open (default), {@code false} to raise
   * @return this fake
   */
  public FakeOccupancyGate failOpen(boolean failOpen) {
    this.failOpen = failOpen;
    return this;
  }

  /**
   * The hook that sees every error failing open swallows, as {@link
   * OccupancyClient.Builder#onError} (default: a warning at most once per 30 seconds).
   *
   * @param onError the hook
   * @return this fake
   */
  public FakeOccupancyGate onError(Consumer<OccupancyException> onError) {
    this.onError = Objects.requireNonNull(onError, "onError");
    return this;
  }

  /**
   * Makes every later call fail with {@code error} until {@link #recover()}, under the real
   * client's failure policy: {@code isOccupied} answers {@code true} for an outage ({@code
   * UNAVAILABLE}, {@code DEADLINE_EXCEEDED}, {@code RESOURCE_EXHAUSTED}) when failing open, after
   * handing the error to the hook, and throws any other; publishing always throws. Name checks
   * and the closed error come first, as in the real client. {@code failWith(null)} still ends a
   * failure (deprecated: use {@link #recover()}).
   *
   * @param error the error, e.g. {@code new OccupancyException(Status.UNAVAILABLE, null)}
   * @return this fake
   */
  public FakeOccupancyGate failWith(OccupancyException error) {
    this.failure = error;
    return this;
  }

  /**
   * Ends a failure set with {@link #failWith}.
   *
   * @return this fake
   */
  public FakeOccupancyGate recover() {
    this.failure = null;
    return this;
  }

  /**
   * As {@link OccupancyClient#waitSynced}: the fake's copy is always current.
   *
   * @param timeout ignored
   * @return {@code true}
   * @throws OccupancyClosedException after {@link #close()}
   */
  public boolean waitSynced(Duration timeout) {
    Objects.requireNonNull(timeout, "timeout");
    ensureOpen();
    return true;
  }

  /**
   * Every {@code publishIfOccupied} call so far that passed the checks, in order (including
   * those that published nothing because every channel was vacant).
   *
   * @return an immutable snapshot
   */
  public List<Publish> publishes() {
    return List.copyOf(publishes);
  }

  /**
   * Whether {@link #close()} was called (so tests can check the code under test closes it).
   *
   * @return {@code true} once closed
   */
  public boolean isClosed() {
    return closed;
  }

  @Override
  public boolean isOccupied(String channel) {
    Objects.requireNonNull(channel, "channel");
    ensureOpen();
    Names.checkChannel(channel);
    OccupancyException error = failure;
    if (error != null) {
      if (!failOpen || !OccupancyClient.failsOpen(error.getCode())) {
        throw error;
      }
      try {
        onError.accept(error);
      } catch (RuntimeException hookFailure) {
        // As in the real client: a throwing hook must not turn fail-open into a failure.
      }
      return true;
    }
    return occupied.contains(channel);
  }

  @Override
  public CompletableFuture<Boolean> isOccupiedAsync(String channel) {
    Objects.requireNonNull(channel, "channel");
    try {
      return CompletableFuture.completedFuture(isOccupied(channel));
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  @Override
  public PublishResult publishIfOccupied(
      List<String> channels, String event, String data, String socketId) {
    Objects.requireNonNull(channels, "channels");
    Objects.requireNonNull(event, "event");
    Objects.requireNonNull(data, "data");
    for (String name : channels) {
      Objects.requireNonNull(name, "channels must not contain null");
    }
    ensureOpen();
    Names.checkPublish(channels, event);
    OccupancyException error = failure;
    if (error != null) {
      throw error;
    }
    List<String> published = new ArrayList<>();
    List<String> skipped = new ArrayList<>();
    for (String channel : new LinkedHashSet<>(channels)) {
      (occupied.contains(channel) ? published : skipped).add(channel);
    }
    PublishResult result = new PublishResult(published, skipped);
    publishes.add(
        new Publish(channels, event, data, socketId == null || socketId.isEmpty() ? null : socketId, result));
    return result;
  }

  @Override
  public CompletableFuture<PublishResult> publishIfOccupiedAsync(
      List<String> channels, String event, String data, String socketId) {
    Objects.requireNonNull(channels, "channels");
    try {
      return CompletableFuture.completedFuture(publishIfOccupied(channels, event, data, socketId));
    } catch (OccupancyException e) {
      return CompletableFuture.failedFuture(e);
    }
  }

  @Override
  public void close() {
    closed = true;
  }

  private void ensureOpen() {
    if (closed) {
      throw new OccupancyClosedException("FakeOccupancyGate is closed");
    }
  }
}
