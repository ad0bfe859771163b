package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/** Cached mode (CONTRACT.md) against the real gate's WatchOccupancy. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class CachedModeTest {
  private static final Duration SEEN_WITHIN = Duration.ofSeconds(5);

  private Harness harness;

  @BeforeAll
  void start() {
    harness = new Harness();
  }

  /** Records the method of every call started and the status of every call closed. */
  private static final class CallLog implements ClientInterceptor {
    final List<String> started = new CopyOnWriteArrayList<>();
    final List<Long> watchStarts = new CopyOnWriteArrayList<>();
    final List<String> closed = new CopyOnWriteArrayList<>();

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      String name = method.getBareMethodName();
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          started.add(name);
          if (name.equals("WatchOccupancy")) {
            watchStarts.add(System.nanoTime());
          }
          super.start(
              new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                @Override
                public void onClose(Status status, Metadata trailers) {
                  closed.add(name + " " + status.getCode());
                  super.onClose(status, trailers);
                }
              },
              headers);
        }
      };
    }
  }

  private static boolean seen(OccupancyClient client, String channel, boolean occupied)
      throws InterruptedException {
    return Harness.eventually(SEEN_WITHIN, () -> client.isOccupied(channel) == occupied);
  }

  @Test
  void webhooksAreSeenLocallyWithNoCallPerCheck() throws Exception {
    CallLog calls = new CallLog();
    String channel = Harness.channel("cache");
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr)
            .cached(true)
            .failOpen(false)
            .intercept(calls)
            .build()) {
      assertTrue(client.awaitSynchronised(SEEN_WITHIN), "synchronised");
      assertFalse(client.isOccupied(channel));
      harness.occupy(channel);
      assertTrue(seen(client, channel, true), "the occupied webhook reached the local copy");
      assertTrue(client.isOccupiedAsync(channel).get(1, TimeUnit.SECONDS));
      harness.vacate(channel);
      assertTrue(seen(client, channel, false), "the vacated webhook reached the local copy");
      assertEquals(List.of("WatchOccupancy"), calls.started, "no IsOccupied call was made");
    }
  }

  @Test
  void theFirstChecksWaitForTheSnapshot() throws Exception {
    String occupied = Harness.channel("snap");
    harness.occupy(occupied);
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr)
            .cached(true)
            .failOpen(false)
            .checkTimeout(Duration.ofSeconds(3))
            .build()) {
      assertTrue(client.isOccupied(occupied), "from the snapshot, not a not-synchronised error");
      assertFalse(client.isOccupied(Harness.channel("snap-vacant")));
    }
  }

  @Test
  void theSnapshotIsForTheConfiguredApp() throws Exception {
    String occupied = Harness.channel("snap-app");
    harness.occupy(occupied);
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr).cached(true).appId(harness.appId).build()) {
      assertTrue(client.awaitSynchronised(SEEN_WITHIN));
      assertTrue(client.isOccupied(occupied));
    }
  }

  @Test
  void notSynchronisedFailsOpenToTheHookOrRaisesUnavailable() throws Exception {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient open =
            OccupancyClient.builder(harness.deadAddr)
                .cached(true)
                .checkTimeout(Duration.ofMillis(200))
                .onError(reported::add)
                .build();
        OccupancyClient raising =
            OccupancyClient.builder(harness.deadAddr)
                .cached(true)
                .checkTimeout(Duration.ofMillis(200))
                .failOpen(false)
                .build()) {
      assertTrue(open.isOccupied(Harness.channel("nosync")));
      assertTrue(open.isOccupiedAsync(Harness.channel("nosync")).get(5, TimeUnit.SECONDS));
      assertFalse(reported.isEmpty());
      assertTrue(
          reported.stream().allMatch(e -> e.getCode() == Status.Code.UNAVAILABLE),
          reported.toString());
      OccupancyException error =
          assertThrows(
              OccupancyException.class, () -> raising.isOccupied(Harness.channel("nosync")));
      assertEquals(Status.Code.UNAVAILABLE, error.getCode());
      Throwable seenByHandler =
          raising
              .isOccupiedAsync(Harness.channel("nosync"))
              .handle((answer, thrown) -> thrown)
              .get(5, TimeUnit.SECONDS);
      assertEquals(Status.Code.UNAVAILABLE, ((OccupancyException) seenByHandler).getCode());
      assertFalse(raising.awaitSynchronised(Duration.ofMillis(300)));
    }
  }

  @Test
  void aConfigurationErrorOfTheStreamIsRaisedEvenWhenFailingOpen() throws Exception {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient client =
        OccupancyClient.builder(Harness.env("OCCUPANCY_SECURE_ADDR"))
            .caFile(Path.of(Harness.env("OCCUPANCY_TLS_CA")))
            .token("wrong-token")
            .cached(true)
            .checkTimeout(Duration.ofSeconds(2))
            .onError(reported::add)
            .build()) {
      long started = System.nanoTime();
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("cfg")));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      assertEquals(Status.Code.UNAUTHENTICATED, error.getCode(), error.getMessage());
      assertTrue(tookMs < 1500, "raised at once, not after the 2 s wait: " + tookMs + " ms");
    }
  }

  @Test
  void localNameChecksStillApply() {
    try (OccupancyClient client = OccupancyClient.builder(harness.addr).cached(true).build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> client.isOccupied("bad name!"));
      assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode());
    }
  }

  @Test
  void publishingStillCallsTheGate() throws Exception {
    String channel = Harness.channel("cache-pub");
    harness.occupy(channel);
    try (OccupancyClient client = OccupancyClient.builder(harness.addr).cached(true).build()) {
      assertEquals(
          List.of(channel), client.publishIfOccupied(List.of(channel), "e", "{}").published());
      assertEquals(1, harness.callsFor(channel).size());
    }
  }

  @Test
  void closeEndsTheSubscription() throws Exception {
    CallLog calls = new CallLog();
    OccupancyClient client =
        OccupancyClient.builder(harness.addr).cached(true).intercept(calls).build();
    assertTrue(client.awaitSynchronised(SEEN_WITHIN));
    client.close();
    assertTrue(
        Harness.eventually(
            Duration.ofSeconds(2), () -> calls.closed.contains("WatchOccupancy CANCELLED")),
        "closed calls: " + calls.closed);
    assertThrows(OccupancyClosedException.class, () -> client.isOccupied("private-x"));
    assertThrows(OccupancyClosedException.class, () -> client.awaitSynchronised(Duration.ZERO));
    Thread.sleep(500);
    assertEquals(1, calls.watchStarts.size(), "no resubscription after close");
  }

  @Test
  void aGateRestartIsSurvived() throws Exception {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    String before = Harness.channel("before-restart");
    String after = Harness.channel("after-restart");
    harness.occupy(before);
    try (OccupancyClient client =
        OccupancyClient.builder(harness.addr)
            .cached(true)
            .onError(reported::add)
            .failOpen(false)
            .build()) {
      assertTrue(client.awaitSynchronised(SEEN_WITHIN));
      assertTrue(client.isOccupied(before));
      Harness.restartGate();
      harness.occupy(after);
      assertTrue(client.awaitSynchronised(SEEN_WITHIN), "resynchronised after the restart");
      assertTrue(seen(client, after, true), "a webhook after the restart is seen locally");
      assertTrue(client.isOccupied(before), "the snapshot after the restart has the old state");
      assertFalse(reported.isEmpty(), "the stream's break reached the hook");
    }
  }

  @Test
  void resubscriptionBacksOffFrom100MsDoublingToTwoSeconds() throws Exception {
    CallLog calls = new CallLog();
    try (OccupancyClient client =
        OccupancyClient.builder(harness.deadAddr)
            .cached(true)
            .checkTimeout(Duration.ofMillis(50))
            .onError(e -> {})
            .intercept(calls)
            .build()) {
      client.isOccupied(Harness.channel("backoff"));
      Thread.sleep(5600); // attempts at about 0, 0.1, 0.3, 0.7, 1.5, 3.1, 5.1 s
    }
    List<Long> gapsMs = new ArrayList<>();
    for (int i = 1; i < calls.watchStarts.size(); i++) {
      gapsMs.add(TimeUnit.NANOSECONDS.toMillis(calls.watchStarts.get(i) - calls.watchStarts.get(i - 1)));
    }
    assertTrue(gapsMs.size() >= 5 && gapsMs.size() <= 7, "gaps " + gapsMs);
    assertTrue(gapsMs.get(0) >= 80 && gapsMs.get(0) < 400, "first gap ~100 ms: " + gapsMs);
    assertTrue(gapsMs.get(1) >= 180 && gapsMs.get(1) < 600, "second gap ~200 ms: " + gapsMs);
    long longest = gapsMs.stream().mapToLong(Long::longValue).max().orElse(0);
    assertTrue(longest >= 1800 && longest < 2600, "capped at ~2 s: " + gapsMs);
  }
}
