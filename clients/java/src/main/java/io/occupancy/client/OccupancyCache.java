package io.occupancy.client;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.occupancy.v1.OccupancyGrpc;
import io.occupancy.v1.WatchOccupancyRequest;
import io.occupancy.v1.WatchOccupancyResponse;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * Cached mode: a local copy of one app's occupied set, kept by a {@code WatchOccupancy}
 * subscription (clients/CONTRACT.md, "Cached mode").
 *
 * <p>It follows the stream's protocol: RESET drops the copy (not synchronised), SNAPSHOT adds to
 * the copy being built, SYNCED makes it current, CHANGE applies to the current copy. When the
 * stream ends, for any reason, it resubscribes after a backoff that starts at 100 ms and doubles
 * to at most 2 s; a SYNCED resets the backoff. Messages arrive one at a time (grpc-java never
 * delivers two callbacks of one call at once), so only {@link #current} is shared with readers.
 */
final class OccupancyCache {
  static final Duration INITIAL_BACKOFF = Duration.ofMillis(100);
  static final Duration MAX_BACKOFF = Duration.ofSeconds(2);

  private final Supplier<OccupancyGrpc.OccupancyStub> stub;
  private final String appId;
  private final Consumer<OccupancyException> onStreamError;

  /** The current copy, or {@code null} while not synchronised. Written by the stream only. */
  private volatile Set<String> current;
  /** The last stream error while not synchronised, for the answer given meanwhile. */
  private volatile OccupancyException lastError;
  /**
   * Completed at the first SYNCED, or at a configuration error of the stream: what the first
   * checks wait for (up to their timeout).
   */
  private final CompletableFuture<Void> firstSync = new CompletableFuture<>();

  private Set<String> building;
  private Duration backoff = INITIAL_BACKOFF;
  private ClientCallStreamObserver<WatchOccupancyRequest> call;
  private boolean started;
  private volatile long startedNanos;
  private boolean closed;

  OccupancyCache(
      Supplier<OccupancyGrpc.OccupancyStub> stub,
      String appId,
      Consumer<OccupancyException> onStreamError) {
    this.stub = stub;
    this.appId = appId;
    this.onStreamError = onStreamError;
  }

  /** Subscribes, the first time only. */
  synchronized void start() {
    if (started || closed) {
      return;
    }
    started = true;
    startedNanos = System.nanoTime();
    subscribe();
  }

  /** When {@link #start()} first ran ({@link System#nanoTime()}). */
  long startedNanos() {
    return startedNanos;
  }

  /**
   * The local answer for {@code channel}, or {@code null} when not synchronised (then {@link
   * #notSynchronised()} says why).
   */
  Boolean answer(String channel) {
    Set<String> set = current;
    return set == null ? null : set.contains(channel);
  }

  boolean isSynchronised() {
    return current != null;
  }

  /** Completes once the copy is first synchronised or the stream is refused; never fails. */
  CompletableFuture<Void> firstSync() {
    return firstSync;
  }

  /**
   * Why there is no answer. When the stream's last error says the client is misconfigured
   * (UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION,
   * UNIMPLEMENTED), that error, raised as the direct call would raise it. Otherwise an outage: an
   * UNAVAILABLE error that carries the last stream error as its cause. A stream can also break with
   * INTERNAL, UNKNOWN or CANCELLED when the gate goes away mid-stream (an HTTP/2 reset), so those
   * count as an outage here, unlike for a unary call.
   */
  OccupancyException notSynchronised() {
    OccupancyException last = lastError;
    if (last != null && isConfigurationError(last.getCode())) {
      return last;
    }
    return new OccupancyException(
        Status.UNAVAILABLE.withDescription(
            "cached mode: the local copy is not synchronised with the gate"
                + (last == null ? " yet" : " (last stream error: " + last.getMessage() + ")")),
        last);
  }

  static boolean isConfigurationError(Status.Code code) {
    return switch (code) {
      case UNAUTHENTICATED,
          PERMISSION_DENIED,
          NOT_FOUND,
          INVALID_ARGUMENT,
          FAILED_PRECONDITION,
          UNIMPLEMENTED -> true;
      default -> false;
    };
  }

  /** Ends the subscription; no resubscription follows. */
  synchronized void close() {
    closed = true;
    current = null;
    if (call != null) {
      call.cancel("client closed", null);
      call = null;
    }
  }

  private synchronized void subscribe() {
    if (closed) {
      return;
    }
    WatchOccupancyRequest request = WatchOccupancyRequest.newBuilder().setAppId(appId).build();
    stub.get().watchOccupancy(request, new Watcher());
  }

  private synchronized void resubscribeLater(Watcher ended) {
    if (closed || call != ended.requestStream) {
      return;
    }
    call = null;
    Duration delay = backoff;
    backoff = backoff.multipliedBy(2).compareTo(MAX_BACKOFF) > 0 ? MAX_BACKOFF : backoff.multipliedBy(2);
    Scheduling.timer().schedule(this::subscribe, delay.toMillis(), TimeUnit.MILLISECONDS);
  }

  private final class Watcher
      implements ClientResponseObserver<WatchOccupancyRequest, WatchOccupancyResponse> {
    private ClientCallStreamObserver<WatchOccupancyRequest> requestStream;

    @Override
    public void beforeStart(ClientCallStreamObserver<WatchOccupancyRequest> requestStream) {
      this.requestStream = requestStream;
      synchronized (OccupancyCache.this) {
        call = requestStream;
      }
    }

    @Override
    public void onNext(WatchOccupancyResponse message) {
      switch (message.getKind()) {
        case KIND_RESET -> {
          current = null;
          building = ConcurrentHashMap.newKeySet();
        }
        case KIND_SNAPSHOT -> {
          if (building != null) {
            building.addAll(message.getOccupiedList());
          }
        }
        case KIND_SYNCED -> {
          if (building != null) {
            current = building;
            building = null;
            lastError = null;
            synchronized (OccupancyCache.this) {
              backoff = INITIAL_BACKOFF;
            }
            firstSync.complete(null);
          }
        }
        case KIND_CHANGE -> {
          Set<String> set = current != null ? current : building;
          if (set != null) {
            set.addAll(message.getOccupiedList());
            message.getVacatedList().forEach(set::remove);
          }
        }
        default -> {
          // A kind this client does not know (a newer gate): ignore it, as proto3 expects.
        }
      }
    }

    @Override
    public void onError(Throwable t) {
      ended(
          t instanceof StatusRuntimeException e
              ? new OccupancyException(e)
              : new OccupancyException(Status.fromThrowable(t), t));
    }

    @Override
    public void onCompleted() {
      ended(
          new OccupancyException(
              Status.UNAVAILABLE.withDescription("the gate ended the WatchOccupancy stream"), null));
    }

    private void ended(OccupancyException error) {
      boolean byClose;
      synchronized (OccupancyCache.this) {
        byClose = closed;
      }
      if (byClose) {
        return;
      }
      current = null;
      building = null;
      lastError = error;
      if (isConfigurationError(error.getCode())) {
        firstSync.complete(null); // checks waiting for the first snapshot: stop, raise this now
      }
      onStreamError.accept(error);
      resubscribeLater(this);
    }
  }
}
