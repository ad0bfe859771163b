package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.lang.reflect.RecordComponent;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * The five points every client says the same way (clients/CONTRACT.md, "Conformance"): the publish
 * result's fields, the fake's vocabulary and failure policy, waitSynced, the closed error's type,
 * ADDRESS_ENV.
 */
class ConformanceTest {
  private final Harness harness = new Harness();

  @Test
  void publishResultFieldsFromTheGateAndTheFake() throws Exception {
    assertEquals(
        List.of("published", "skipped", "deferred", "superseded", "storeUnavailable"),
        Arrays.stream(PublishResult.class.getRecordComponents()).map(RecordComponent::getName).toList());
    String channel = Harness.channel("conf");
    String vacant = Harness.channel("conf-vacant");
    harness.occupy(channel);
    try (OccupancyClient client = OccupancyClient.builder(harness.addr).build()) {
      assertEquals(
          new PublishResult(List.of(channel), List.of(vacant), List.of(), 0, false),
          client.publishIfOccupied(List.of(channel, vacant), "e", "{}"));
    }
    assertEquals(
        new PublishResult(List.of("a"), List.of("b"), List.of(), 0, false),
        new FakeOccupancyGate().occupy("a").publishIfOccupied(List.of("a", "b"), "e", "{}"));
  }

  @Test
  void fakeVocabularyAndFailurePolicy() {
    List<OccupancyException> seen = new CopyOnWriteArrayList<>();
    OccupancyException down = new OccupancyException(Status.UNAVAILABLE.withDescription("down"), null);
    FakeOccupancyGate gate = new FakeOccupancyGate().onError(seen::add).occupy("a", "b").vacate("b");
    assertTrue(gate.isOccupied("a"));
    assertFalse(gate.isOccupied("b"));
    gate.failWith(down);
    assertTrue(gate.isOccupied("b"), "UNAVAILABLE fails open");
    assertEquals(List.of(down), seen);
    assertEquals(
        Status.Code.UNAVAILABLE,
        assertThrows(OccupancyException.class, () -> gate.publishIfOccupied(List.of("a"), "e", "{}"))
            .getCode());
    FakeOccupancyGate strict = new FakeOccupancyGate().failOpen(false).failWith(down);
    assertEquals(
        Status.Code.UNAVAILABLE,
        assertThrows(OccupancyException.class, () -> strict.isOccupied("a")).getCode());
    gate.failWith(new OccupancyException(Status.INVALID_ARGUMENT.withDescription("bad"), null));
    assertEquals(
        Status.Code.INVALID_ARGUMENT,
        assertThrows(OccupancyException.class, () -> gate.isOccupied("a")).getCode());
    assertFalse(gate.recover().isOccupied("b"));
    assertTrue(gate.waitSynced(Duration.ofSeconds(1)));
  }

  @Test
  void waitSynced() throws Exception {
    try (OccupancyClient cached =
            OccupancyClient.builder(harness.addr).cached(true).failOpen(false).build();
        OccupancyClient dead =
            OccupancyClient.builder(harness.deadAddr).cached(true).failOpen(false).build();
        OccupancyClient plain = OccupancyClient.builder(harness.addr).build()) {
      assertTrue(cached.waitSynced(Duration.ofSeconds(5)));
      assertFalse(dead.waitSynced(Duration.ofMillis(300)));
      assertEquals(
          Status.Code.FAILED_PRECONDITION,
          assertThrows(OccupancyException.class, () -> plain.waitSynced(Duration.ofSeconds(1)))
              .getCode());
      cached.close();
      assertThrows(OccupancyClosedException.class, () -> cached.waitSynced(Duration.ofSeconds(1)));
    }
  }

  @Test
  void theClosedErrorIsAnOccupancyException() {
    OccupancyClient client = OccupancyClient.builder(harness.addr).build();
    client.close();
    FakeOccupancyGate fake = new FakeOccupancyGate();
    fake.close();
    for (OccupancyGate gate : List.<OccupancyGate>of(client, fake)) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> gate.isOccupied("a"));
      assertInstanceOf(OccupancyClosedException.class, error);
      assertEquals(Status.Code.CANCELLED, error.getCode());
    }
  }

  @Test
  @SuppressWarnings("deprecation")
  void addressEnv() {
    assertEquals("OCCUPANCY_ADDR", OccupancyClient.ADDRESS_ENV);
    assertEquals(OccupancyClient.ADDRESS_ENV, OccupancyClient.ADDR_ENV);
  }
}
