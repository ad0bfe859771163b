package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ExecutionException;
import org.junit.jupiter.api.Test;

/** The shipped test double, tested as a product: no gate needed. */
class FakeOccupancyGateTest {
  /** What an encoder team writes: code that only knows the interface. */
  private static boolean reportProgress(OccupancyGate gate, String job, int pct) {
    String channel = "private-job-" + job;
    if (!gate.isOccupied(channel)) {
      return false;
    }
    gate.publishIfOccupied(List.of(channel), "progress", "{\"pct\":" + pct + "}");
    return true;
  }

  @Test
  void channelsAreOccupiedByHandAndPublishesRecorded() {
    FakeOccupancyGate gate = new FakeOccupancyGate();
    assertFalse(reportProgress(gate, "42", 10));
    gate.occupy("private-job-42");
    assertTrue(reportProgress(gate, "42", 40));
    assertEquals(1, gate.publishes().size());
    FakeOccupancyGate.Publish publish = gate.publishes().get(0);
    assertEquals(List.of("private-job-42"), publish.channels());
    assertEquals("progress", publish.event());
    assertEquals("{\"pct\":40}", publish.data());
    assertNull(publish.socketId());
    assertEquals(List.of("private-job-42"), publish.result().published());
    gate.vacate("private-job-42");
    assertFalse(gate.isOccupied("private-job-42"));
  }

  @Test
  void publishSplitsOccupiedFromVacantOnceEachInOrder() throws Exception {
    FakeOccupancyGate gate = new FakeOccupancyGate().occupy("c", "a");
    PublishResult result =
        gate.publishIfOccupiedAsync(List.of("a", "b", "a", "c"), "e", "{}", "1.2").get();
    assertEquals(List.of("a", "c"), result.published());
    assertEquals(List.of("b"), result.skipped());
    assertEquals("1.2", gate.publishes().get(0).socketId());
    assertTrue(gate.isOccupiedAsync("a").get());
  }

  @Test
  void nameChecksAreTheRealClients() throws Exception {
    FakeOccupancyGate gate = new FakeOccupancyGate();
    for (String bad : List.of("", "bad name!", "x".repeat(165))) {
      assertEquals(
          Status.Code.INVALID_ARGUMENT,
          assertThrows(OccupancyException.class, () -> gate.isOccupied(bad)).getCode());
      ExecutionException async =
          assertThrows(ExecutionException.class, () -> gate.isOccupiedAsync(bad).get());
      assertInstanceOf(OccupancyException.class, async.getCause());
      assertThrows(OccupancyException.class, () -> gate.occupy(bad));
    }
    assertThrows(OccupancyException.class, () -> gate.publishIfOccupied(List.of(), "e", "{}"));
    assertThrows(
        OccupancyException.class,
        () -> gate.publishIfOccupied(Collections.nCopies(101, "a"), "e", "{}"));
    assertThrows(OccupancyException.class, () -> gate.publishIfOccupied(List.of("a"), "", "{}"));
    assertThrows(
        OccupancyException.class,
        () -> gate.publishIfOccupied(List.of("a"), "e".repeat(201), "{}"));
    assertEquals(List.of(), gate.publishes(), "refused publishes are not recorded");
  }

  @Test
  void failWithMakesCallsThrowUntilCleared() {
    OccupancyException outage = new OccupancyException(Status.UNAVAILABLE, null);
    FakeOccupancyGate gate = new FakeOccupancyGate().failOpen(false).occupy("a").failWith(outage);
    assertSame(outage, assertThrows(OccupancyException.class, () -> gate.isOccupied("a")));
    assertSame(
        outage,
        assertThrows(
            OccupancyException.class, () -> gate.publishIfOccupied(List.of("a"), "e", "{}")));
    assertEquals(
        Status.Code.INVALID_ARGUMENT,
        assertThrows(OccupancyException.class, () -> gate.isOccupied("bad name")).getCode(),
        "name checks come first");
    gate.failWith(null);
    assertTrue(gate.isOccupied("a"));
  }

  @Test
  void afterCloseEveryCallRaisesTheClosedError() throws Exception {
    FakeOccupancyGate gate = new FakeOccupancyGate();
    try (OccupancyGate asInterface = gate) {
      asInterface.isOccupied("a");
    }
    assertTrue(gate.isClosed());
    gate.close();
    assertThrows(OccupancyClosedException.class, () -> gate.isOccupied("a"));
    assertThrows(
        OccupancyClosedException.class, () -> gate.publishIfOccupied(List.of("a"), "e", "{}"));
    ExecutionException async =
        assertThrows(ExecutionException.class, () -> gate.isOccupiedAsync("a").get());
    assertInstanceOf(OccupancyClosedException.class, async.getCause());
  }
}
