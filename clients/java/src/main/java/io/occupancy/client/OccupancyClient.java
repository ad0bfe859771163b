package io.occupancy.client;

import io.grpc.CallOptions;
import io.grpc.ChannelCredentials;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import io.occupancy.v1.IsOccupiedRequest;
import io.occupancy.v1.IsOccupiedResponse;
import io.occupancy.v1.OccupancyGrpc;
import io.occupancy.v1.PublishIfOccupiedRequest;
import io.occupancy.v1.PublishIfOccupiedResponse;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.function.LongSupplier;

/**
 * The real {@link OccupancyGate}: a connection to the occupancy gate, the service that knows which
 * Pusher Channels channels have subscribers, so that encoders publish progress only where someone
 * is watching. It implements {@code clients/CONTRACT.md}.
 *
 * <p>One instance holds one gRPC channel for its whole life, opened on the first call (building a
 * client touches neither the network nor the gRPC runtime) and re-established as needed, with
 * reconnect attempts at least every 2 seconds. It is thread-safe and meant to be built once per
 * process and shared. {@link #close()} releases it.
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
 * the gate is unreachable or overloaded (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, or a
 * transport error, which grpc-java reports as UNAVAILABLE) it answers {@code true} ("someone may
 * be watching") and hands the error to the {@link Builder#onError} hook. Any other status
 * (INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, UNIMPLEMENTED, ...) means the
 * client or the gate is misconfigured, and is thrown whatever the policy. With {@link
 * Builder#failOpen failOpen(false)} every error is thrown. {@link #publishIfOccupied} always
 * throws on error. After {@link #close()} every call throws {@link OccupancyClosedException}.
 *
 * <h2>Async</h2>
 *
 * <p>{@link #isOccupiedAsync} and {@link #publishIfOccupiedAsync} return {@link
 * CompletableFuture}s that follow the same policy; every error (including a bad channel name or a
 * closed client) arrives through the future. Cancelling the future cancels the call.
 */
public final class OccupancyClient implements OccupancyGate {
  /** Deadline of {@link #isOccupied} unless {@link Builder#checkTimeout} says otherwise. */
  public static final Duration DEFAULT_CHECK_TIMEOUT = Duration.ofSeconds(1);

  /**
   * Deadline of {@link #publishIfOccupied} unless {@link Builder#publishTimeout} says otherwise.
   * Longer than the gate's own 3 s Pusher timeout, so a slow Pusher shows up as the gate's
   * DEADLINE_EXCEEDED rather than as this client giving up first.
   */
  public static final Duration DEFAULT_PUBLISH_TIMEOUT = Duration.ofSeconds(5);

  /** The environment variable naming the gate when the builder is given no target. */
  public static final String ADDRESS_ENV = "OCCUPANCY_ADDR";

  /**
   * The old name of {@link #ADDRESS_ENV}.
   *
   * @deprecated use {@link #ADDRESS_ENV}, the name every client uses
   */
  @Deprecated
  public static final String ADDR_ENV = ADDRESS_ENV;

  /** How long {@link #close()} lets in-flight calls finish before cancelling them. */
  private static final Duration CLOSE_GRACE = Duration.ofSeconds(5);

  private static final System.Logger LOG = System.getLogger(OccupancyClient.class.getName());

  private final String target;
  private final Builder settings;
  private final ChannelCredentials credentials;
  private final Consumer<OccupancyException> onError;
  private final OccupancyCache cache;
  private final AtomicBoolean closed = new AtomicBoolean();

  /** Opened on first use; {@code null} until then. Guarded by {@code this} for writes. */
  private volatile ManagedChannel channel;

  private OccupancyClient(Builder builder, String target, ChannelCredentials credentials) {
    this.target = target;
    this.settings = builder.copy();
    this.credentials = credentials;
    this.onError =
        builder.onError != null
            ? builder.onError
            : new DefaultErrorHook("OccupancyClient[" + target + "]", builder.nanoTime);
    this.cache =
        builder.cached
            ? new OccupancyCache(
                () -> OccupancyGrpc.newStub(channel()), builder.appId, this::report)
            : null;
  }

  /**
   * Starts configuring a client for the gate named by the {@code OCCUPANCY_ADDR} environment
   * variable; {@link Builder#build()} fails with a clear error when it is not set.
   *
   * @return a builder with the defaults
   */
  public static Builder builder() {
    return new Builder(null);
  }

  /**
   * Starts configuring a client for the gate at {@code target}. No connection is made until the
   * first call, so building a client for a gate that is down succeeds.
   *
   * @param target the gate's address as {@code host:port} (e.g. {@code "127.0.0.1:50051"}); any
   *     gRPC target URI such as {@code dns:///occupancy:50051} is accepted too
   * @return a builder with the defaults: 1 s check timeout, 5 s publish timeout, fail open,
   *     plaintext, swallowed errors logged at WARNING at most every 30 s
   */
  public static Builder builder(String target) {
    Objects.requireNonNull(target, "target");
    return new Builder(target);
  }

  /**
   * Asks the gate (or, in cached mode, the local copy) whether anyone is subscribed to {@code
   * channel} right now. Bounded by the {@linkplain Builder#checkTimeout check timeout}.
   *
   * @param channel a Pusher channel name, prefix included (e.g. {@code "private-job-42"})
   * @return {@code true} while the channel has at least one subscriber (or, failing open, when
   *     the gate could not tell); {@code false} when it is vacant
   * @throws OccupancyException {@code INVALID_ARGUMENT} for a malformed name (before any call);
   *     any status that does not fail open; any status when not failing open
   * @throws OccupancyClosedException after {@link #close()}
   */
  @Override
  public boolean isOccupied(String channel) {
    Objects.requireNonNull(channel, "channel");
    ensureOpen();
    Names.checkChannel(channel);
    if (cache != null) {
      return cachedAnswer(channel);
    }
    try {
      return OccupancyGrpc.newBlockingStub(channel())
          .withDeadlineAfter(settings.checkTimeout.toNanos(), TimeUnit.NANOSECONDS)
          .isOccupied(checkRequest(channel))
          .getOccupied();
    } catch (StatusRuntimeException e) {
      return failedCheck(new OccupancyException(e));
    }
  }

  /**
   * {@link #isOccupied} without blocking: the future completes on a gRPC thread (or the
   * {@linkplain Builder#executor executor} given), and the {@code onError} hook runs there too.
   *
   * @param channel a Pusher channel name
   * @return the answer, or completed exceptionally with the {@link OccupancyException} or {@link
   *     OccupancyClosedException} that {@link #isOccupied} would throw
   */
  @Override
  public CompletableFuture<Boolean> isOccupiedAsync(String channel) {
    Objects.requireNonNull(channel, "channel");
    try {
      ensureOpen();
      Names.checkChannel(channel);
    } catch (RuntimeException e) {
      return CompletableFuture.failedFuture(e);
    }
    if (cache != null) {
      return cachedAnswerAsync(channel);
    }
    CallFuture<IsOccupiedResponse> call =
        startUnary(OccupancyGrpc.getIsOccupiedMethod(), checkRequest(channel), settings.checkTimeout);
    CallFuture<Boolean> answer = new CallFuture<>(call);
    call.whenComplete(
        (response, error) -> {
          if (error == null) {
            answer.complete(response.getOccupied());
            return;
          }
          try {
            answer.complete(failedCheck((OccupancyException) error));
          } catch (RuntimeException thrown) {
            answer.completeExceptionally(thrown);
          }
        });
    return answer;
  }

  /**
   * Has the gate trigger {@code event} on the occupied ones of {@code channels}, in a single
   * Pusher API call, and on nobody (no call at all) when all are vacant. Bounded by the
   * {@linkplain Builder#publishTimeout publish timeout}. Always throws on error, whatever the
   * failure policy: INVALID_ARGUMENT for a malformed request (checked locally first; or Pusher
   * answering 400/413), UNAVAILABLE when the gate, its store or Pusher cannot be reached (nothing
   * was published; safe to retry), DEADLINE_EXCEEDED when the deadline passed (the event may or
   * may not have been delivered), PERMISSION_DENIED / RESOURCE_EXHAUSTED / FAILED_PRECONDITION
   * for Pusher answering 403 / 429 / another 4xx.
   *
   * @param channels 1 to 100 Pusher channel names; duplicates count once
   * @param event the Pusher event name, 1 to 200 characters
   * @param data the event payload, passed to Pusher verbatim (usually JSON), at most 10 KiB
   * @param socketId the Pusher socket id to exclude, such as {@code "123.456"}; {@code null} or
   *     empty excludes nobody
   * @return which channels got the event and which were skipped as vacant
   * @throws OccupancyException on any error
   * @throws OccupancyClosedException after {@link #close()}
   */
  @Override
  public PublishResult publishIfOccupied(
      List<String> channels, String event, String data, String socketId) {
    PublishIfOccupiedRequest request = publishRequest(channels, event, data, socketId);
    try {
      PublishIfOccupiedResponse response =
          OccupancyGrpc.newBlockingStub(channel())
              .withDeadlineAfter(settings.publishTimeout.toNanos(), TimeUnit.NANOSECONDS)
              .publishIfOccupied(request);
      return result(response);
    } catch (StatusRuntimeException e) {
      throw new OccupancyException(e);
    }
  }

  /**
   * {@link #publishIfOccupied(List, String, String, String)} without blocking; the future
   * completes on a gRPC thread (or the {@linkplain Builder#executor executor} given).
   *
   * @param channels 1 to 100 Pusher channel names
   * @param event the Pusher event name
   * @param data the event payload
   * @param socketId the Pusher socket id to exclude, or {@code null}
   * @return the result, or completed exceptionally with what the blocking call would throw
   */
  @Override
  public CompletableFuture<PublishResult> publishIfOccupiedAsync(
      List<String> channels, String event, String data, String socketId) {
    PublishIfOccupiedRequest request;
    try {
      request = publishRequest(channels, event, data, socketId);
    } catch (OccupancyException e) {
      return CompletableFuture.failedFuture(e);
    }
    CallFuture<PublishIfOccupiedResponse> call =
        startUnary(OccupancyGrpc.getPublishIfOccupiedMethod(), request, settings.publishTimeout);
    CallFuture<PublishResult> result = new CallFuture<>(call);
    call.whenComplete(
        (response, error) -> {
          if (error == null) {
            result.complete(result(response));
          } else {
            result.completeExceptionally(error);
          }
        });
    return result;
  }

  /**
   * Cached mode: starts the subscription if needed and waits until the local copy is synchronised
   * with the gate, for at most {@code timeout}. Call it at startup (or in a readiness check) so
   * the first checks are answered from the copy rather than by the failure policy. The same call
   * in every client.
   *
   * @param timeout how long to wait at most
   * @return {@code true} once synchronised, {@code false} if {@code timeout} passed first (the
   *     subscription keeps retrying in the background)
   * @throws OccupancyException {@code FAILED_PRECONDITION} when the client was not built with
   *     {@link Builder#cached}
   * @throws OccupancyClosedException after {@link #close()}
   * @throws InterruptedException if interrupted while waiting
   */
  public boolean waitSynced(Duration timeout) throws InterruptedException {
    Objects.requireNonNull(timeout, "timeout");
    ensureOpen();
    if (cache == null) {
      throw new OccupancyException(
          Status.FAILED_PRECONDITION.withDescription(
              "waitSynced needs a client built with cached(true)"),
          null);
    }
    cache.start();
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!cache.isSynchronised()) {
      ensureOpen();
      if (deadline - System.nanoTime() <= 0) {
        return false;
      }
      Thread.sleep(10);
    }
    return true;
  }

  /**
   * The old name of {@link #waitSynced}.
   *
   * @param timeout how long to wait at most
   * @return {@code true} once synchronised, {@code false} if {@code timeout} passed first
   * @throws IllegalStateException when the client was not built with {@link Builder#cached}
   * @throws OccupancyClosedException after {@link #close()}
   * @throws InterruptedException if interrupted while waiting
   * @deprecated use {@link #waitSynced}, the name every client uses (it throws {@code
   *     FAILED_PRECONDITION} rather than {@link IllegalStateException} without cached mode)
   */
  @Deprecated
  public boolean awaitSynchronised(Duration timeout) throws InterruptedException {
    Objects.requireNonNull(timeout, "timeout");
    ensureOpen();
    if (cache == null) {
      throw new IllegalStateException("awaitSynchronised needs a client built with cached(true)");
    }
    return waitSynced(timeout);
  }

  /**
   * Closes the client: new calls are refused with {@link OccupancyClosedException}, the cached
   * mode's subscription ends, in-flight calls get up to five seconds to finish and are then
   * cancelled. Safe to call more than once. If the calling thread is interrupted while waiting,
   * in-flight calls are cancelled at once and the interrupt flag is kept.
   */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    if (cache != null) {
      cache.close();
    }
    ManagedChannel opened;
    synchronized (this) {
      opened = channel;
    }
    if (opened == null) {
      return;
    }
    opened.shutdown();
    try {
      if (!opened.awaitTermination(CLOSE_GRACE.toNanos(), TimeUnit.NANOSECONDS)) {
        opened.shutdownNow();
      }
    } catch (InterruptedException e) {
      opened.shutdownNow();
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
    return "OccupancyClient["
        + target
        + ", "
        + (settings.failOpen ? "fail-open" : "raise")
        + (cache != null ? ", cached" : "")
        + "]";
  }

  /**
   * Whether a status is one that failing open swallows: the gate is unreachable or overloaded
   * (UNAVAILABLE, which is also how grpc-java reports connection errors, DEADLINE_EXCEEDED and
   * RESOURCE_EXHAUSTED). Every other status is a configuration bug and is always thrown.
   */
  static boolean failsOpen(Status.Code code) {
    return code == Status.Code.UNAVAILABLE
        || code == Status.Code.DEADLINE_EXCEEDED
        || code == Status.Code.RESOURCE_EXHAUSTED;
  }

  /** For tests: the channel, or {@code null} when no call has opened it yet. */
  ManagedChannel openedChannel() {
    return channel;
  }

  // ---------------------------------------------------------------------------------------------

  private boolean failedCheck(OccupancyException error) {
    if (!settings.failOpen || !failsOpen(error.getCode())) {
      throw error;
    }
    report(error);
    return true;
  }

  private boolean cachedAnswer(String channel) {
    cache.start();
    Boolean answer = cache.answer(channel);
    if (answer == null && !cache.firstSync().isDone()) {
      long left = firstSyncGraceNanos();
      if (left > 0) {
        try {
          cache.firstSync().get(left, TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        } catch (ExecutionException | TimeoutException e) {
          // Not synchronised in time: answer as for an outage below.
        }
        answer = cache.answer(channel);
      }
    }
    if (answer != null) {
      return answer;
    }
    return failedCheck(cache.notSynchronised());
  }

  private CompletableFuture<Boolean> cachedAnswerAsync(String channel) {
    cache.start();
    Boolean answer = cache.answer(channel);
    if (answer != null) {
      return CompletableFuture.completedFuture(answer);
    }
    long left = cache.firstSync().isDone() ? 0 : firstSyncGraceNanos();
    CompletableFuture<Void> wait =
        left > 0
            ? cache.firstSync().copy().completeOnTimeout(null, left, TimeUnit.NANOSECONDS)
            : CompletableFuture.completedFuture(null);
    // Completed by hand, not with thenApply, so a raised error reaches the caller's handlers as
    // the OccupancyException itself rather than wrapped in a CompletionException.
    CompletableFuture<Boolean> result = new CompletableFuture<>();
    wait.whenComplete(
        (ignored, never) -> {
          Boolean now = cache.answer(channel);
          try {
            result.complete(now != null ? now : failedCheck(cache.notSynchronised()));
          } catch (RuntimeException raised) {
            result.completeExceptionally(raised);
          }
        });
    return result;
  }

  /**
   * How much longer checks may wait for the first synchronisation: until one check timeout after
   * the subscription started, so the first checks of a new cached client get the gate's answer
   * rather than the outage answer, and are bounded as a direct call would be.
   */
  private long firstSyncGraceNanos() {
    return cache.startedNanos() + settings.checkTimeout.toNanos() - System.nanoTime();
  }

  private IsOccupiedRequest checkRequest(String channel) {
    return IsOccupiedRequest.newBuilder().setChannel(channel).setAppId(settings.appId).build();
  }

  private PublishIfOccupiedRequest publishRequest(
      List<String> channels, String event, String data, String socketId) {
    Objects.requireNonNull(channels, "channels");
    Objects.requireNonNull(event, "event");
    Objects.requireNonNull(data, "data");
    for (String name : channels) {
      Objects.requireNonNull(name, "channels must not contain null");
    }
    ensureOpen();
    Names.checkPublish(channels, event);
    PublishIfOccupiedRequest.Builder request =
        PublishIfOccupiedRequest.newBuilder()
            .addAllChannels(channels)
            .setEvent(event)
            .setData(data)
            .setAppId(settings.appId);
    if (socketId != null) {
      request.setSocketId(socketId);
    }
    return request.build();
  }

  private static PublishResult result(PublishIfOccupiedResponse response) {
    return new PublishResult(
        response.getPublishedList(),
        response.getSkippedList(),
        response.getDeferredList(),
        response.getSuperseded(),
        response.getStoreUnavailable());
  }

  private <Req, Resp> CallFuture<Resp> startUnary(
      MethodDescriptor<Req, Resp> method, Req request, Duration timeout) {
    ClientCall<Req, Resp> call =
        channel()
            .newCall(method, CallOptions.DEFAULT.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS));
    CallFuture<Resp> future = new CallFuture<>(call);
    ClientCalls.asyncUnaryCall(
        call,
        request,
        new StreamObserver<Resp>() {
          private Resp response;

          @Override
          public void onNext(Resp value) {
            response = value;
          }

          @Override
          public void onError(Throwable t) {
            future.completeExceptionally(
                t instanceof StatusRuntimeException e
                    ? new OccupancyException(e)
                    : new OccupancyException(Status.fromThrowable(t), t));
          }

          @Override
          public void onCompleted() {
            future.complete(response);
          }
        });
    return future;
  }

  private void ensureOpen() {
    if (closed.get()) {
      throw new OccupancyClosedException("OccupancyClient for " + target + " is closed");
    }
  }

  /** The channel, opened on first use; throws the closed error once closed. */
  private ManagedChannel channel() {
    ManagedChannel opened = channel;
    if (opened != null) {
      return opened;
    }
    synchronized (this) {
      ensureOpen();
      if (channel == null) {
        channel = settings.openChannel(target, credentials);
        ReconnectCap.watch(channel);
      }
      return channel;
    }
  }

  /** Hands a swallowed error to the hook; a throwing hook must not turn fail-open into a failure. */
  private void report(OccupancyException error) {
    try {
      onError.accept(error);
    } catch (RuntimeException hookFailure) {
      LOG.log(
          System.Logger.Level.WARNING,
          "occupancy onError hook threw while reporting a swallowed error ("
              + error.getMessage()
              + "); ignored",
          hookFailure);
    }
  }

  /** A future whose cancellation cancels the gRPC call behind it. */
  private static final class CallFuture<T> extends CompletableFuture<T> {
    private final ClientCall<?, ?> call;

    CallFuture(ClientCall<?, ?> call) {
      this.call = call;
    }

    CallFuture(CallFuture<?> source) {
      this.call = source.call;
    }

    @Override
    public boolean cancel(boolean mayInterruptIfRunning) {
      boolean cancelled = super.cancel(mayInterruptIfRunning);
      if (cancelled) {
        call.cancel("cancelled by the caller", null);
      }
      return cancelled;
    }
  }

  /**
   * Configures an {@link OccupancyClient}. Every setting has a default, so {@code
   * OccupancyClient.builder(target).build()} is a complete client. A builder is not thread-safe;
   * the clients it builds are, and they keep a copy of its settings.
   */
  public static final class Builder {
    private final String target;
    private Duration checkTimeout = DEFAULT_CHECK_TIMEOUT;
    private Duration publishTimeout = DEFAULT_PUBLISH_TIMEOUT;
    private boolean failOpen = true;
    private Consumer<OccupancyException> onError;
    private boolean cached;
    private String appId = "";
    private String token;
    private boolean tls;
    private Path caFile;
    private ChannelCredentials credentials;
    private final Map<String, String> metadata = new LinkedHashMap<>();
    private Duration keepalive;
    private Executor executor;
    private final List<ClientInterceptor> interceptors = new ArrayList<>();
    private String userAgent;
    private Function<String, String> environment = System::getenv;
    private LongSupplier nanoTime = System::nanoTime;

    private Builder(String target) {
      if (target != null && target.isBlank()) {
        throw new IllegalArgumentException("target must be host:port, got an empty string");
      }
      this.target = target;
    }

    /**
     * Sets the deadline of each {@link OccupancyClient#isOccupied} call (and, in cached mode, how
     * long the first checks wait for the first snapshot). Keep it short: when failing open a slow
     * gate costs this much per check.
     *
     * @param timeout a positive duration; default 1 second
     * @return this builder
     */
    public Builder checkTimeout(Duration timeout) {
      this.checkTimeout = positive(timeout, "checkTimeout");
      return this;
    }

    /**
     * Sets the deadline of each {@link OccupancyClient#publishIfOccupied} call, which includes the
     * gate's call to Pusher. Keep it longer than the gate's own 3 s Pusher timeout so that a slow
     * Pusher is reported by the gate rather than cut off here.
     *
     * @param timeout a positive duration; default 5 seconds
     * @return this builder
     */
    public Builder publishTimeout(Duration timeout) {
      this.publishTimeout = positive(timeout, "publishTimeout");
      return this;
    }

    /**
     * Chooses what {@link OccupancyClient#isOccupied} does when the gate is unreachable or
     * overloaded (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED): answer {@code true} and
     * report the error to the {@link #onError} hook ({@code true}, the default), or throw it
     * ({@code false}). Other errors are always thrown; publishing always throws.
     *
     * @param failOpen {@code true} to fail open (default), {@code false} to raise
     * @return this builder
     */
    public Builder failOpen(boolean failOpen) {
      this.failOpen = failOpen;
      return this;
    }

    /**
     * Sets who hears about every error swallowed by failing open (and, in cached mode, every
     * break of the subscription), so a gate that is down is noticed even though callers keep
     * working. Called once per swallowed error on the thread that saw it; an exception it throws
     * is logged and ignored. Replaces the default, which logs a WARNING on the {@link
     * System.Logger} {@code io.occupancy.client.OccupancyClient} at most once per 30 seconds,
     * counting the errors swallowed since the previous warning.
     *
     * @param onError the hook; {@code e -> {}} ignores swallowed errors deliberately
     * @return this builder
     */
    public Builder onError(Consumer<OccupancyException> onError) {
      this.onError = Objects.requireNonNull(onError, "onError");
      return this;
    }

    /**
     * Cached mode: answer {@code isOccupied} from a local copy of the occupied set, kept by a
     * {@code WatchOccupancy} subscription started on first use, with no call per check. While the
     * copy is not synchronised, checks answer as the failure policy answers an outage. Publishing
     * still calls the gate.
     *
     * @param cached {@code true} for cached mode; default {@code false}
     * @return this builder
     */
    public Builder cached(boolean cached) {
      this.cached = cached;
      return this;
    }

    /**
     * Names the Pusher app asked about, when the gate serves several.
     *
     * @param appId the Pusher app id; default empty, the gate's only app
     * @return this builder
     */
    public Builder appId(String appId) {
      this.appId = Objects.requireNonNull(appId, "appId");
      return this;
    }

    /**
     * Sends {@code authorization: Bearer <token>} on every call, for a gate started with tokens.
     *
     * @param token the token; {@code null} (the default) sends none
     * @return this builder
     */
    public Builder token(String token) {
      if (token != null && (token.isEmpty() || token.chars().anyMatch(c -> c < 0x20 || c > 0x7e))) {
        throw new IllegalArgumentException("token must be non-empty printable ASCII");
      }
      this.token = token;
      return this;
    }

    /**
     * Uses TLS, trusting the JVM's default CA certificates. {@link #caFile} implies TLS.
     *
     * @param tls {@code true} for TLS; default {@code false} (plaintext)
     * @return this builder
     */
    public Builder tls(boolean tls) {
      this.tls = tls;
      return this;
    }

    /**
     * Uses TLS, trusting the CA certificates in this PEM file (e.g. a private CA). Read when the
     * client is built.
     *
     * @param caFile a PEM CA bundle
     * @return this builder
     */
    public Builder caFile(Path caFile) {
      this.caFile = Objects.requireNonNull(caFile, "caFile");
      return this;
    }

    /**
     * Sets grpc-java channel credentials directly (e.g. mutual TLS), overriding {@link #tls} and
     * {@link #caFile}.
     *
     * @param credentials grpc-java channel credentials
     * @return this builder
     */
    public Builder credentials(ChannelCredentials credentials) {
      this.credentials = Objects.requireNonNull(credentials, "credentials");
      return this;
    }

    /**
     * Adds a metadata entry sent on every call.
     *
     * @param key an ASCII metadata key, lower case (e.g. {@code "x-encoder"}); not {@code
     *     authorization}, which {@link #token} sets
     * @param value an ASCII value
     * @return this builder
     */
    public Builder metadata(String key, String value) {
      Objects.requireNonNull(key, "key");
      Objects.requireNonNull(value, "value");
      if (key.equalsIgnoreCase("authorization")) {
        throw new IllegalArgumentException("use token(...) for the authorization header");
      }
      Metadata.Key.of(key, Metadata.ASCII_STRING_MARSHALLER); // checks the key now
      this.metadata.put(key, value);
      return this;
    }

    /**
     * Adds metadata entries sent on every call; see {@link #metadata(String, String)}.
     *
     * @param metadata keys and values
     * @return this builder
     */
    public Builder metadata(Map<String, String> metadata) {
      metadata.forEach(this::metadata);
      return this;
    }

    /**
     * Sends an HTTP/2 keepalive ping after this long without traffic, so a dead connection (a
     * load balancer that dropped it silently) is noticed before the next call. grpc-java raises
     * anything below 10 seconds to 10 seconds.
     *
     * @param interval the ping interval; default none (off)
     * @return this builder
     */
    public Builder keepalive(Duration interval) {
      this.keepalive = positive(interval, "keepalive");
      return this;
    }

    /**
     * Runs gRPC callbacks (and so the async futures' completions and the hook for async checks)
     * on this executor instead of grpc-java's default cached thread pool. The caller owns it.
     *
     * @param executor the executor
     * @return this builder
     */
    public Builder executor(Executor executor) {
      this.executor = Objects.requireNonNull(executor, "executor");
      return this;
    }

    /**
     * Adds gRPC client interceptors (tracing, metrics), run on every call of the client in the
     * order given, after the client's own token and metadata are attached.
     *
     * @param interceptors the interceptors
     * @return this builder
     */
    public Builder intercept(ClientInterceptor... interceptors) {
      for (ClientInterceptor interceptor : interceptors) {
        this.interceptors.add(Objects.requireNonNull(interceptor, "interceptor"));
      }
      return this;
    }

    /**
     * Sets the user agent sent to the gate, put before grpc-java's own (e.g. {@code
     * "render-farm/2.3"}).
     *
     * @param userAgent the user agent
     * @return this builder
     */
    public Builder userAgent(String userAgent) {
      this.userAgent = Objects.requireNonNull(userAgent, "userAgent");
      return this;
    }

    /** For tests: where the builder reads {@code OCCUPANCY_ADDR}. */
    Builder environment(Function<String, String> environment) {
      this.environment = environment;
      return this;
    }

    /** For tests: the clock of the default hook's 30 s rate limit. */
    Builder nanoTime(LongSupplier nanoTime) {
      this.nanoTime = nanoTime;
      return this;
    }

    /**
     * Creates the client. Touches neither the network nor the gRPC runtime (the channel is
     * opened by the first call and re-made after failures); reads {@link #caFile} now, so a
     * missing file fails here.
     *
     * @return a new client, to be {@linkplain OccupancyClient#close() closed} when done
     * @throws IllegalStateException when no target was given and {@code OCCUPANCY_ADDR} is unset
     * @throws UncheckedIOException when the CA file cannot be read
     */
    public OccupancyClient build() {
      String resolved = target;
      if (resolved == null) {
        resolved = environment.apply(ADDRESS_ENV);
        if (resolved == null || resolved.isBlank()) {
          throw new IllegalStateException(
              "no gate address: pass one to OccupancyClient.builder(\"host:port\") or set "
                  + ADDRESS_ENV);
        }
      }
      return new OccupancyClient(this, resolved, channelCredentials());
    }

    private ChannelCredentials channelCredentials() {
      if (credentials != null) {
        return credentials;
      }
      if (caFile != null) {
        try {
          return TlsChannelCredentials.newBuilder().trustManager(caFile.toFile()).build();
        } catch (IOException e) {
          throw new UncheckedIOException("cannot read the CA file " + caFile, e);
        }
      }
      return tls ? TlsChannelCredentials.create() : InsecureChannelCredentials.create();
    }

    private ManagedChannel openChannel(String target, ChannelCredentials credentials) {
      ManagedChannelBuilder<?> builder = Grpc.newChannelBuilder(target, credentials);
      // ManagedChannelBuilder.intercept runs the last-added interceptor first: reversed, the
      // caller's run in the order given, after the one that attaches token and metadata.
      List<ClientInterceptor> chain = new ArrayList<>(interceptors);
      java.util.Collections.reverse(chain);
      Metadata headers = new Metadata();
      if (token != null) {
        headers.put(
            Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      }
      metadata.forEach(
          (key, value) -> headers.put(Metadata.Key.of(key, Metadata.ASCII_STRING_MARSHALLER), value));
      if (headers.keys().size() > 0) {
        chain.add(MetadataUtils.newAttachHeadersInterceptor(headers));
      }
      builder.intercept(chain);
      if (keepalive != null) {
        // Also between calls: the point is to find a dead connection before the next check.
        builder.keepAliveTime(keepalive.toNanos(), TimeUnit.NANOSECONDS).keepAliveWithoutCalls(true);
      }
      if (executor != null) {
        builder.executor(executor);
      }
      if (userAgent != null) {
        builder.userAgent(userAgent);
      }
      return builder.build();
    }

    private Builder copy() {
      Builder copy = new Builder(target);
      copy.checkTimeout = checkTimeout;
      copy.publishTimeout = publishTimeout;
      copy.failOpen = failOpen;
      copy.onError = onError;
      copy.cached = cached;
      copy.appId = appId;
      copy.token = token;
      copy.tls = tls;
      copy.caFile = caFile;
      copy.credentials = credentials;
      copy.metadata.putAll(metadata);
      copy.keepalive = keepalive;
      copy.executor = executor;
      copy.interceptors.addAll(interceptors);
      copy.userAgent = userAgent;
      copy.environment = environment;
      copy.nanoTime = nanoTime;
      return copy;
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
