package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Checks that need no gate: argument validation, lifecycle and value types. */
class OccupancyClientUnitTest {
  @Test
  void builderRejectsBadSettings() {
    OccupancyClient.Builder builder = OccupancyClient.builder("127.0.0.1:1");
    assertThrows(IllegalArgumentException.class, () -> builder.checkTimeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> builder.checkTimeout(Duration.ofMillis(-1)));
    assertThrows(IllegalArgumentException.class, () -> builder.publishTimeout(Duration.ZERO));
    assertThrows(IllegalArgumentException.class, () -> builder.keepalive(Duration.ZERO));
    assertThrows(NullPointerException.class, () -> builder.checkTimeout(null));
    assertThrows(NullPointerException.class, () -> builder.onError(null));
    assertThrows(IllegalArgumentException.class, () -> builder.token(""));
    assertThrows(IllegalArgumentException.class, () -> builder.token("a\nb"));
    assertThrows(IllegalArgumentException.class, () -> builder.metadata("Authorization", "x"));
    assertThrows(IllegalArgumentException.class, () -> builder.metadata("bad key", "x"));
    assertThrows(IllegalArgumentException.class, () -> OccupancyClient.builder(" "));
  }

  @Test
  void withNeitherTargetNorOccupancyAddrBuildFailsClearly() {
    IllegalStateException error =
        assertThrows(
            IllegalStateException.class,
            () -> OccupancyClient.builder().environment(Map.<String, String>of()::get).build());
    assertTrue(error.getMessage().contains("OCCUPANCY_ADDR"), error.getMessage());
  }

  @Test
  void occupancyAddrIsTheTargetWhenNoneIsGiven() {
    try (OccupancyClient client =
        OccupancyClient.builder()
            .environment(Map.of("OCCUPANCY_ADDR", "10.1.2.3:4567")::get)
            .build()) {
      assertTrue(client.toString().contains("10.1.2.3:4567"), client.toString());
    }
  }

  @Test
  void buildingTouchesNoNetworkAndOpensNoChannel() {
    try (OccupancyClient client =
        OccupancyClient.builder("no-such-host.invalid:1").cached(true).build()) {
      assertNull(client.openedChannel());
    }
  }

  @Test
  void aMissingCaFileFailsAtBuild() {
    assertThrows(
        UncheckedIOException.class,
        () -> OccupancyClient.builder("localhost:1").caFile(Path.of("/nonexistent/ca.pem")).build());
  }

  @Test
  void closedClientRefusesCallsAndClosesTwice() {
    OccupancyClient client = OccupancyClient.builder("127.0.0.1:1").build();
    client.close();
    client.close();
    assertThrows(OccupancyClosedException.class, () -> client.isOccupied("private-x"));
    assertThrows(
        OccupancyClosedException.class,
        () -> client.publishIfOccupied(List.of("a"), "e", "{}"));
    assertNull(client.openedChannel(), "closing an unused client opens nothing");
  }

  @Test
  void awaitSynchronisedNeedsCachedMode() {
    try (OccupancyClient client = OccupancyClient.builder("127.0.0.1:1").build()) {
      assertThrows(
          IllegalStateException.class, () -> client.awaitSynchronised(Duration.ofMillis(1)));
    }
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
      assertThrows(NullPointerException.class, () -> client.isOccupiedAsync(null));
    }
  }

  @Test
  void nameRuleMatchesTheProto() {
    assertTrue(Names.isValidChannel("private-job_42=@,.;"));
    assertTrue(Names.isValidChannel("x".repeat(164)));
    for (String bad : List.of("", "x".repeat(165), "a b", "a:b", "a/b", "\u00e9", "a#b", "a*b")) {
      assertEquals(false, Names.isValidChannel(bad), bad);
    }
  }

  @Test
  void cachedModeRaisesOnlyConfigurationErrorsOfTheStream() {
    List<Status.Code> raised = new ArrayList<>();
    for (Status.Code code : Status.Code.values()) {
      if (OccupancyCache.isConfigurationError(code)) {
        raised.add(code);
      }
    }
    assertEquals(
        List.of(
            Status.Code.INVALID_ARGUMENT,
            Status.Code.NOT_FOUND,
            Status.Code.PERMISSION_DENIED,
            Status.Code.FAILED_PRECONDITION,
            Status.Code.UNIMPLEMENTED,
            Status.Code.UNAUTHENTICATED),
        raised);
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
