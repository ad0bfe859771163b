package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * CONTRACT.md's failure policy, the hook, the closed error and the local checks, against the real
 * gate, the dead address (connection refused), and a black hole that accepts and never answers.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class FailurePolicyTest {
  private Harness harness;

  @BeforeAll
  void start() {
    harness = new Harness();
  }

  private OccupancyClient.Builder dead() {
    return OccupancyClient.builder(harness.deadAddr);
  }

  @Test
  void refusedConnectionFailsOpenAndEveryErrorReachesACallersHook() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient client = dead().onError(reported::add).build()) {
      for (int i = 0; i < 3; i++) {
        assertTrue(client.isOccupied(Harness.channel("dead")));
      }
      assertEquals(3, reported.size(), "a caller's hook sees every swallowed error");
      for (OccupancyException error : reported) {
        assertEquals(Status.Code.UNAVAILABLE, error.getCode());
      }
    }
  }

  @Test
  void refusedConnectionRaisesUnavailableInRaiseMode() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient client = dead().failOpen(false).onError(reported::add).build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("dead")));
      assertEquals(Status.Code.UNAVAILABLE, error.getCode());
      assertEquals(List.of(), reported, "a raised error is not also reported");
    }
  }

  @Test
  void hangingGateFailsOpenWithDeadlineExceeded() throws Exception {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (WireTap hole = WireTap.blackHole();
        OccupancyClient client =
            OccupancyClient.builder(hole.address())
                .checkTimeout(Duration.ofMillis(300))
                .onError(reported::add)
                .build()) {
      long started = System.nanoTime();
      assertTrue(client.isOccupied(Harness.channel("hang")));
      long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      assertTrue(tookMs < 2000, "bounded by the check timeout, took " + tookMs + " ms");
      assertEquals(1, reported.size());
      assertEquals(Status.Code.DEADLINE_EXCEEDED, reported.get(0).getCode());
    }
  }

  @Test
  void hangingGateRaisesDeadlineExceededInRaiseMode() throws Exception {
    try (WireTap hole = WireTap.blackHole();
        OccupancyClient client =
            OccupancyClient.builder(hole.address())
                .checkTimeout(Duration.ofMillis(300))
                .failOpen(false)
                .build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> client.isOccupied(Harness.channel("hang")));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, error.getCode());
    }
  }

  @Test
  void onlyOutageCodesFailOpen() {
    List<Status.Code> open = new ArrayList<>();
    for (Status.Code code : Status.Code.values()) {
      if (OccupancyClient.failsOpen(code)) {
        open.add(code);
      }
    }
    assertEquals(
        List.of(
            Status.Code.DEADLINE_EXCEEDED, Status.Code.RESOURCE_EXHAUSTED, Status.Code.UNAVAILABLE),
        open);
  }

  @Test
  void publishRaisesOnADeadGateEvenWhenFailingOpen() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient client = dead().onError(reported::add).build()) {
      OccupancyException error =
          assertThrows(
              OccupancyException.class,
              () -> client.publishIfOccupied(List.of(Harness.channel("dead")), "e", "{}"));
      assertEquals(Status.Code.UNAVAILABLE, error.getCode());
      ExecutionException async =
          assertThrows(
              ExecutionException.class,
              () ->
                  client
                      .publishIfOccupiedAsync(List.of(Harness.channel("dead")), "e", "{}", null)
                      .get(10, TimeUnit.SECONDS));
      assertEquals(Status.Code.UNAVAILABLE, ((OccupancyException) async.getCause()).getCode());
      assertEquals(List.of(), reported, "publish errors are thrown, not reported");
    }
  }

  @Test
  void asyncCheckFailsOpenOrRaisesLikeTheBlockingOne() throws Exception {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient open = dead().onError(reported::add).build();
        OccupancyClient raising = dead().failOpen(false).build()) {
      assertTrue(open.isOccupiedAsync(Harness.channel("dead")).get(10, TimeUnit.SECONDS));
      assertEquals(1, reported.size());
      ExecutionException error =
          assertThrows(
              ExecutionException.class,
              () -> raising.isOccupiedAsync(Harness.channel("dead")).get(10, TimeUnit.SECONDS));
      assertEquals(Status.Code.UNAVAILABLE, ((OccupancyException) error.getCause()).getCode());
      Throwable seenByHandler =
          raising
              .isOccupiedAsync(Harness.channel("dead"))
              .handle((answer, thrown) -> thrown)
              .get(10, TimeUnit.SECONDS);
      assertInstanceOf(OccupancyException.class, seenByHandler, "not wrapped");
    }
  }

  @Test
  void defaultHookWarnsAtMostOncePerThirtySecondsCountingSwallowedErrors() {
    AtomicLong now = new AtomicLong(1_000_000_000L);
    try (CapturedLog log = new CapturedLog();
        OccupancyClient client = dead().nanoTime(now::get).build()) {
      for (int i = 0; i < 3; i++) {
        assertTrue(client.isOccupied(Harness.channel("warn")));
      }
      assertEquals(1, log.records.size(), "one warning for the first error: " + messages(log));
      LogRecord first = log.records.get(0);
      assertEquals(Level.WARNING, first.getLevel());
      assertTrue(first.getMessage().contains("1 error swallowed"), first.getMessage());
      assertInstanceOf(OccupancyException.class, first.getThrown());

      now.addAndGet(TimeUnit.SECONDS.toNanos(29));
      assertTrue(client.isOccupied(Harness.channel("warn")));
      assertEquals(1, log.records.size(), "still quiet 29 s later: " + messages(log));

      now.addAndGet(TimeUnit.SECONDS.toNanos(1));
      assertTrue(client.isOccupied(Harness.channel("warn")));
      assertEquals(2, log.records.size(), "a second warning 30 s later: " + messages(log));
      assertTrue(
          log.records.get(1).getMessage().contains("4 errors swallowed"),
          log.records.get(1).getMessage());
    }
  }

  @Test
  void throwingHookIsLoggedAndTheCheckStillFailsOpen() {
    try (CapturedLog log = new CapturedLog();
        OccupancyClient client =
            dead()
                .onError(
                    e -> {
                      throw new IllegalStateException("broken hook");
                    })
                .build()) {
      assertTrue(client.isOccupied(Harness.channel("hook")));
      assertEquals(1, log.records.size(), "the hook's failure is logged");
      assertEquals("broken hook", log.records.get(0).getThrown().getMessage());
    }
  }

  @Test
  void malformedNamesRaiseInvalidArgumentWithoutACallEvenWhileTheGateIsDown() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    List<String> bad =
        List.of("", "bad channel!", "a".repeat(165), "caf\u00e9", "private-job/42", "tab\t");
    try (OccupancyClient client = dead().onError(reported::add).build()) {
      for (String name : bad) {
        OccupancyException error =
            assertThrows(OccupancyException.class, () -> client.isOccupied(name), name);
        assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode(), name);
        ExecutionException async =
            assertThrows(
                ExecutionException.class, () -> client.isOccupiedAsync(name).get(), name);
        assertEquals(
            Status.Code.INVALID_ARGUMENT, ((OccupancyException) async.getCause()).getCode());
        assertThrows(
            OccupancyException.class, () -> client.publishIfOccupied(List.of(name), "e", "{}"));
      }
      List<String> tooMany = Collections.nCopies(101, "private-x");
      assertInvalid(() -> client.publishIfOccupied(List.of(), "e", "{}"));
      assertInvalid(() -> client.publishIfOccupied(tooMany, "e", "{}"));
      assertInvalid(() -> client.publishIfOccupied(List.of("private-x"), "", "{}"));
      assertInvalid(() -> client.publishIfOccupied(List.of("private-x"), "e".repeat(201), "{}"));
      assertNull(client.openedChannel(), "no call was made, so no channel was opened");
      assertEquals(List.of(), reported, "a bad request is raised, never swallowed");
    }
  }

  @Test
  void longestValidNamesAndEventReachTheGate() {
    String name = ("A-Za-z09_-=@,.;" + "x".repeat(164)).substring(0, 164);
    List<String> hundred = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      hundred.add(Harness.channel("n" + i));
    }
    try (OccupancyClient client = OccupancyClient.builder(harness.addr).failOpen(false).build()) {
      assertFalse(client.isOccupied(name));
      PublishResult result = client.publishIfOccupied(hundred, "e".repeat(200), "{}");
      assertEquals(hundred, result.skipped());
    }
  }

  @Test
  void everyCallAfterCloseRaisesTheClosedErrorAndCloseTwiceIsHarmless() throws Exception {
    OccupancyClient client = OccupancyClient.builder(harness.addr).build();
    assertFalse(client.isOccupied(Harness.channel("closed")));
    client.close();
    client.close();
    assertThrows(OccupancyClosedException.class, () -> client.isOccupied("private-x"));
    assertThrows(OccupancyClosedException.class, () -> client.isOccupied("bad name!"));
    assertThrows(
        OccupancyClosedException.class,
        () -> client.publishIfOccupied(List.of("private-x"), "e", "{}"));
    CompletableFuture<Boolean> check = client.isOccupiedAsync("private-x");
    ExecutionException async = assertThrows(ExecutionException.class, check::get);
    assertInstanceOf(OccupancyClosedException.class, async.getCause());
    ExecutionException asyncPublish =
        assertThrows(
            ExecutionException.class,
            () -> client.publishIfOccupiedAsync(List.of("private-x"), "e", "{}", null).get());
    assertInstanceOf(OccupancyClosedException.class, asyncPublish.getCause());
    assertTrue(client.openedChannel().isShutdown());
  }

  private static void assertInvalid(org.junit.jupiter.api.function.Executable call) {
    OccupancyException error = assertThrows(OccupancyException.class, call);
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode());
  }

  private static List<String> messages(CapturedLog log) {
    List<String> out = new ArrayList<>();
    log.records.forEach(r -> out.add(r.getMessage()));
    return out;
  }
}
