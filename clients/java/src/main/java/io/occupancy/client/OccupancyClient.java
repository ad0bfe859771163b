package io.occupancy.client;

import io.grpc.ChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.occupancy.v1.IsOccupiedRequest;
import io.occupancy.v1.OccupancyGrpc;
import io.occupancy.v1.PublishIfOccupiedRequest;
import io.occupancy.v1.PublishIfOccupiedResponse;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * A connection to the occupancy gate, the service that knows which Pusher Channels channels have
 * subscribers, so that encoders publish progress only where someone is watching.
 *
 * <p>One instance holds one gRPC channel (one HTTP/2 connection, re-established as needed) for its
 * whole life. It is thread-safe and meant to be built once per process and shared; building one
 * per call would pay a connection handshake each time. {@link #close()} releases the connection.
 *
 * <pre>{@code
 * try (OccupancyClient gate = OccupancyClient.builder("occupancy:50051").build()) {
 *   if (gate.isOccupied("private-job-42")) { ... }
 *   PublishResult r = gate.publishIfOccupied(List.of("private-job-42"), "progress", "{\"pct\":40}");
 * }
 * }</pre>
 *
 * <h2>Failure policy</h2>
 *
 * <p>{@link #isOccupied} is a hint for skipping work, so by default it <em>fails open</em>: when
 * the gate cannot be reached, times out or answers an error, it answers {@code true} ("someone
 * may be watching"), and an encoder that then publishes by itself never loses a live update
 * because the gate was down. The swallowed error goes to the {@link Builder#onError} hook (by
 * default a WARNING on this class's {@link System.Logger}). With {@link Builder#failOpen
 * failOpen(false)} the error is thrown as an {@link OccupancyException} instead.
 *
 * <p>{@link Status.Code#INVALID_ARGUMENT} is never swallowed, even when failing open: it means
 * the request itself is wrong (e.g. a channel name Pusher would reject), a bug that retrying or
 * publishing directly would not fix.
 *
 * <p>{@link #publishIfOccupied} always throws on error, whatever the policy: a failed publish
 * means the event may not have been delivered, and only the caller can decide what to do.
 */
public final class OccupancyClient implements AutoCloseable {
  /** Deadline of {@link #isOccupied} unless {@link Builder#timeout} says otherwise. */
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(1);

  /**
   * Deadline of {@link #publishIfOccupied} unless {@link Builder#publishTimeout} says otherwise.
   * Longer than the check's because the gate calls Pusher's HTTP API before answering; the gate's
   * own Pusher timeout is shorter, so a slow Pusher shows up as the gate's DEADLINE_EXCEEDED
   * rather than as this client giving up first.
   */
  public static final Duration DEFAULT_PUBLISH_TIMEOUT = Duration.ofSeconds(5);

  /** How long {@link #close()} lets in-flight calls finish before cancelling them. */
  private static final Duration CLOSE_GRACE = Duration.ofSeconds(5);

  private static final System.Logger LOG = System.getLogger(OccupancyClient.class.getName());

  private final String target;
  private final ManagedChannel channel;
  private final OccupancyGrpc.OccupancyBlockingStub stub;
  private final Duration timeout;
  private final Duration publishTimeout;
  private final boolean failOpen;
  private final Consumer<OccupancyException> onError;

  private OccupancyClient(Builder builder) {
    this.target = builder.target;
    this.timeout = builder.timeout;
    this.publishTimeout = builder.publishTimeout;
    this.failOpen = builder.failOpen;
    this.onError = builder.onError;
    this.channel = Grpc.newChannelBuilder(builder.target, builder.credentials).build();
    this.stub = OccupancyGrpc.newBlockingStub(channel);
  }

  /**
   * Starts configuring a client for the gate at {@code target}. No connection is made until the
   * first call, so building a client for a gate that is down succeeds.
   *
   * @param target the gate's address as {@code host:port} (e.g. {@code "127.0.0.1:50051"}); any
   *     gRPC target URI such as {@code dns:///occupancy:50051} is accepted too
   * @return a builder with the defaults: 1 s check timeout, 5 s publish timeout, fail open,
   *     plaintext, swallowed errors logged at WARNING
   */
  public static Builder builder(String target) {
    return new Builder(target);
  }

  /**
   * Asks the gate whether anyone is subscribed to {@code channel} right now.
   *
   * <p>Bounded by the {@linkplain Builder#timeout check timeout}. When failing open (the default),
   * any error except INVALID_ARGUMENT is passed to the {@linkplain Builder#onError hook} and the
   * answer is {@code true}.
   *
   * @param channel a Pusher channel name, prefix included (e.g. {@code "private-job-42"})
   * @return {@code true} while the channel has at least one subscriber (or, failing open, when
   *     the gate could not tell); {@code false} when it is vacant
   * @throws OccupancyException with {@link Status.Code#INVALID_ARGUMENT} when the name is not a
   *     valid Pusher channel name; with the call's code for any other error when not failing open
   * @throws IllegalStateException after {@link #close()}
   */
  public boolean isOccupied(String channel) {
    Objects.requireNonNull(channel, "channel");
    ensureOpen();
    IsOccupiedRequest request = IsOccupiedRequest.newBuilder().setChannel(channel).build();
    try {
      return stub.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS)
          .isOccupied(request)
          .getOccupied();
    } catch (StatusRuntimeException e) {
      OccupancyException error = new OccupancyException(e);
      if (!failOpen || error.getCode() == Status.Code.INVALID_ARGUMENT) {
        throw error;
      }
      report(error, channel);
      return true;
    }
  }

  /**
   * Has the gate trigger {@code event} on the occupied ones of {@code channels}, in a single
   * Pusher API call, and on nobody (no call at all) when all are vacant. Nobody is excluded from
   * receiving it.
   *
   * @param channels 1 to 100 Pusher channel names; duplicates count once
   * @param event the Pusher event name, 1 to 200 characters
   * @param data the event payload, passed to Pusher verbatim (usually JSON), at most 10 KiB
   * @return which channels got the event and which were skipped as vacant
   * @throws OccupancyException on any error, whatever the failure policy; see {@link
   *     #publishIfOccupied(List, String, String, String)}
   * @throws IllegalStateException after {@link #close()}
   */
  public PublishResult publishIfOccupied(List<String> channels, String event, String data) {
    return publishIfOccupied(channels, event, data, null);
  }

  /**
   * Like {@link #publishIfOccupied(List, String, String)}, excluding one Pusher connection from
   * receiving the event, as Pusher's own {@code socket_id} does (typically the browser that caused
   * the event, so it does not see its own echo).
   *
   * <p>Bounded by the {@linkplain Builder#publishTimeout publish timeout}. Always throws on error:
   * with {@link Status.Code#INVALID_ARGUMENT} for a malformed request (or Pusher answering 400/413),
   * {@link Status.Code#UNAVAILABLE} when the gate, its store or Pusher cannot be reached (safe to
   * retry, nothing was published), {@link Status.Code#DEADLINE_EXCEEDED} when the deadline passed
   * (the event may or may not have been delivered), and {@link Status.Code#PERMISSION_DENIED},
   * {@link Status.Code#RESOURCE_EXHAUSTED} or {@link Status.Code#FAILED_PRECONDITION} for Pusher
   * refusing the call (403, 429, other 4xx).
   *
   * @param channels 1 to 100 Pusher channel names; duplicates count once
   * @param event the Pusher event name, 1 to 200 characters
   * @param data the event payload, passed to Pusher verbatim (usually JSON), at most 10 KiB
   * @param socketId the Pusher socket id to exclude, such as {@code "123.456"}; {@code null} or
   *     empty excludes nobody
   * @return which channels got the event and which were skipped as vacant
   * @throws OccupancyException on any error, whatever the failure policy
   * @throws IllegalStateException after {@link #close()}
   */
  public PublishResult publishIfOccupied(
      List<String> channels, String event, String data, String socketId) {
    Objects.requireNonNull(channels, "channels");
    Objects.requireNonNull(event, "event");
    Objects.requireNonNull(data, "data");
    for (String name : channels) {
      Objects.requireNonNull(name, "channels must not contain null");
    }
    ensureOpen();
    PublishIfOccupiedRequest.Builder request =
        PublishIfOccupiedRequest.newBuilder().addAllChannels(channels).setEvent(event).setData(data);
    if (socketId != null) {
      request.setSocketId(socketId);
    }
    PublishIfOccupiedResponse response;
    try {
      response =
          stub.withDeadlineAfter(publishTimeout.toNanos(), TimeUnit.NANOSECONDS)
              .publishIfOccupied(request.build());
    } catch (StatusRuntimeException e) {
      throw new OccupancyException(e);
    }
    return new PublishResult(response.getPublishedList(), response.getSkippedList());
  }

  /**
   * Closes the connection: new calls are refused, in-flight calls get up to five seconds to finish
   * and are then cancelled. Safe to call more than once. If the calling thread is interrupted
   * while waiting, in-flight calls are cancelled at once and the interrupt flag is kept.
   */
  @Override
  public void close() {
    channel.shutdown();
    try {
      if (!channel.awaitTermination(CLOSE_GRACE.toNanos(), TimeUnit.NANOSECONDS)) {
        channel.shutdownNow();
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Describes the client for logs.
   *
   * @return the target and the policy, e.g. {@code OccupancyClient[127.0.0.1:50051, fail-open]}
   */
  @Override
  public String toString() {
    return "OccupancyClient[" + target + ", " + (failOpen ? "fail-open" : "raise") + "]";
  }

  private void ensureOpen() {
    if (channel.isShutdown()) {
      throw new IllegalStateException("OccupancyClient for " + target + " is closed");
    }
  }

  /** Hands a swallowed error to the hook; a throwing hook must not turn fail-open into a failure. */
  private void report(OccupancyException error, String channelName) {
    try {
      onError.accept(error);
    } catch (RuntimeException hookFailure) {
      LOG.log(
          System.Logger.Level.WARNING,
          "occupancy onError hook threw while reporting a failed check of \""
              + channelName
              + "\"; answered occupied anyway",
          hookFailure);
    }
  }

  private static void logSwallowed(OccupancyException error) {
    LOG.log(
        System.Logger.Level.WARNING,
        "occupancy gate check failed, answering occupied (fail-open): " + error.getMessage(),
        error);
  }

  /**
   * Configures an {@link OccupancyClient}. Every setting has a default, so {@code
   * OccupancyClient.builder(target).build()} is a complete client. A builder is not thread-safe;
   * the clients it builds are.
   */
  public static final class Builder {
    private final String target;
    private Duration timeout = DEFAULT_TIMEOUT;
    private Duration publishTimeout = DEFAULT_PUBLISH_TIMEOUT;
    private boolean failOpen = true;
    private Consumer<OccupancyException> onError = OccupancyClient::logSwallowed;
    private ChannelCredentials credentials = InsecureChannelCredentials.create();

    private Builder(String target) {
      Objects.requireNonNull(target, "target");
      if (target.isBlank()) {
        throw new IllegalArgumentException("target must be host:port, got an empty string");
      }
      this.target = target;
    }

    /**
     * Sets the deadline of each {@link OccupancyClient#isOccupied} call. Keep it short: the check
     * sits in front of publishing, and when failing open a slow gate costs this much per check.
     *
     * @param timeout a positive duration; default 1 second
     * @return this builder
     */
    public Builder timeout(Duration timeout) {
      this.timeout = positive(timeout, "timeout");
      return this;
    }

    /**
     * Sets the deadline of each {@link OccupancyClient#publishIfOccupied} call, which includes the
     * gate's call to Pusher. Keep it longer than the gate's own Pusher timeout so that a slow
     * Pusher is reported by the gate rather than cut off here.
     *
     * @param publishTimeout a positive duration; default 5 seconds
     * @return this builder
     */
    public Builder publishTimeout(Duration publishTimeout) {
      this.publishTimeout = positive(publishTimeout, "publishTimeout");
      return this;
    }

    /**
     * Chooses what {@link OccupancyClient#isOccupied} does when the call fails with anything but
     * INVALID_ARGUMENT: answer {@code true} and report the error to the {@link #onError} hook
     * ({@code true}, the default), or throw it as an {@link OccupancyException} ({@code false}).
     * Publishing is not affected: it always throws.
     *
     * @param failOpen {@code true} to fail open (default), {@code false} to raise
     * @return this builder
     */
    public Builder failOpen(boolean failOpen) {
      this.failOpen = failOpen;
      return this;
    }

    /**
     * Sets who hears about errors swallowed by failing open, so a gate that is down is noticed
     * even though callers keep working (feed it to a metric or a rate-limited logger). Called on
     * the calling thread, once per swallowed error; errors that are thrown are not passed to it.
     * An exception thrown by the hook is logged and ignored, and the check still answers {@code
     * true}. Replaces the default, which logs each error at WARNING on the {@link System.Logger}
     * named {@code io.occupancy.client.OccupancyClient}.
     *
     * @param onError the hook; pass {@code e -> {}} to ignore swallowed errors deliberately
     * @return this builder
     */
    public Builder onError(Consumer<OccupancyException> onError) {
      this.onError = Objects.requireNonNull(onError, "onError");
      return this;
    }

    /**
     * Sets the channel credentials, for a gate behind TLS (e.g. {@code
     * TlsChannelCredentials.create()}). The default is plaintext, as the gate is normally reached
     * on a private network.
     *
     * @param credentials grpc-java channel credentials; default {@code
     *     InsecureChannelCredentials.create()}
     * @return this builder
     */
    public Builder credentials(ChannelCredentials credentials) {
      this.credentials = Objects.requireNonNull(credentials, "credentials");
      return this;
    }

    /**
     * Creates the client and its gRPC channel. Does not connect: the connection is made on the
     * first call and re-made after failures.
     *
     * @return a new client, to be {@linkplain OccupancyClient#close() closed} when done
     */
    public OccupancyClient build() {
      return new OccupancyClient(this);
    }

    private static Duration positive(Duration value, String name) {
      Objects.requireNonNull(value, name);
      if (value.isNegative() || value.isZero()) {
        throw new IllegalArgumentException(name + " must be positive, got " + value);
      }
      return value;
    }
  }
}
