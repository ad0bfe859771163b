package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Checks that need no gate: argument validation, lifecycle and value types. */
class OccupancyClientUnitTest {
  @Test
  void builderRejectsNonPositiveTimeouts() {
    OccupancyClient.Builder builder = OccupancyClient.builder("127.0.0.1:1");
    assertThrows(IllegalArgumentException.class, () -> builder.timeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> builder.timeout(Duration.ofMillis(-1)));
    assertThrows(IllegalArgumentException.class, () -> builder.publishTimeout(Duration.ZERO));
    assertThrows(NullPointerException.class, () -> builder.timeout(null));
    assertThrows(NullPointerException.class, () -> builder.onError(null));
    assertThrows(IllegalArgumentException.class, () -> OccupancyClient.builder(" "));
  }

  @Test
  void closedClientRefusesCallsAndClosesTwice() {
    OccupancyClient client = OccupancyClient.builder("127.0.0.1:1").build();
    client.close();
    client.close();
    assertThrows(IllegalStateException.class, () -> client.isOccupied("private-x"));
    assertThrows(
        IllegalStateException.class, () -> client.publishIfOccupied(List.of("a"), "e", "{}"));
  }

  @Test
  void publishRejectsNullArgumentsBeforeCalling() {
    try (OccupancyClient client = OccupancyClient.builder("127.0.0.1:1").build()) {
      List<String> withNull = new ArrayList<>();
      withNull.add(null);
      assertThrows(NullPointerException.class, () -> client.publishIfOccupied(withNull, "e", "d"));
      assertThrows(
          NullPointerException.class, () -> client.publishIfOccupied(List.of("a"), null, "d"));
      assertThrows(NullPointerException.class, () -> client.isOccupied(null));
    }
  }

  @Test
  void publishResultIsImmutableCopy() {
    List<String> published = new ArrayList<>(List.of("a"));
    PublishResult result = new PublishResult(published, List.of());
    published.add("b");
    assertEquals(List.of("a"), result.published());
    assertThrows(UnsupportedOperationException.class, () -> result.skipped().add("x"));
  }

  @Test
  void exceptionCarriesCodeAndServerMessage() {
    OccupancyException error =
        new OccupancyException(
            Status.INVALID_ARGUMENT.withDescription("channel: bad").asRuntimeException());
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode());
    assertEquals("channel: bad", error.getDescription());
    assertEquals("INVALID_ARGUMENT: channel: bad", error.getMessage());
  }
}
