package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.logging.Level;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * Runs the client against the real gate, Redis and Pusher stand-in started by the Rust harness
 * ({@code cargo test --test clients -- java}); nothing here is mocked.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OccupancyClientTest {
  private static final Set<Status.Code> GATE_DOWN =
      Set.of(Status.Code.UNAVAILABLE, Status.Code.DEADLINE_EXCEEDED);

  private Harness harness;
  private OccupancyClient client;

  @BeforeAll
  void start() {
    harness = new Harness();
    client = OccupancyClient.builder(harness.addr).failOpen(false).build();
  }

  @AfterAll
  void stop() {
    if (client != null) {
      client.close();
    }
  }

  @Test
  void channelIsOccupiedAfterWebhookAndVacantAfterVacated() throws Exception {
    String channel = Harness.channel("occ");
    assertFalse(client.isOccupied(channel), "a channel nobody joined is vacant");

    harness.occupy(channel);
    assertTrue(client.isOccupied(channel));

    harness.vacate(channel);
    assertFalse(client.isOccupied(channel));
  }

  @Test
  void publishToOccupiedChannelMakesOneSignedPusherCall() throws Exception {
    String channel = Harness.channel("pub");
    harness.occupy(channel);

    String data = "{\"job\":\"" + channel + "\",\"pct\":40}";
    PublishResult result = client.publishIfOccupied(List.of(channel), "progress", data);

    assertEquals(List.of(channel), result.published());
    assertEquals(List.of(), result.skipped());
    assertTrue(result.anyPublished());

    List<JsonObject> calls = harness.callsFor(channel);
    assertEquals(1, calls.size(), "calls naming " + channel + ": " + calls);
    JsonObject call = calls.get(0);
    assertTrue(call.get("signature_valid").getAsBoolean(), "Pusher signature: " + call);
    assertEquals("POST", call.get("method").getAsString());
    JsonObject body = call.getAsJsonObject("body");
    assertEquals("progress", body.get("name").getAsString());
    assertEquals(data, body.get("data").getAsString());
    assertEquals(List.of(channel), Harness.stringsOf(body.getAsJsonArray("channels")));
    assertFalse(body.has("socket_id"), "no socket_id was given: " + body);
  }

  @Test
  void publishPassesSocketIdOn() throws Exception {
    String channel = Harness.channel("sock");
    harness.occupy(channel);

    PublishResult result =
        client.publishIfOccupied(List.of(channel), "progress", "{\"pct\":1}", "123.456");
    assertEquals(List.of(channel), result.published());

    List<JsonObject> calls = harness.callsFor(channel);
    assertEquals(1, calls.size(), "calls naming " + channel + ": " + calls);
    JsonObject body = calls.get(0).getAsJsonObject("body");
    assertTrue(calls.get(0).get("signature_valid").getAsBoolean());
    assertEquals("123.456", body.get("socket_id").getAsString());
  }

  @Test
  void publishToVacantChannelIsSkippedWithoutPusherCall() throws Exception {
    String channel = Harness.channel("vacant");

    PublishResult result = client.publishIfOccupied(List.of(channel), "progress", "{}");

    assertEquals(List.of(), result.published());
    assertEquals(List.of(channel), result.skipped());
    assertFalse(result.anyPublished());
    assertEquals(List.of(), harness.callsFor(channel));
  }

  @Test
  void publishToMixOfChannelsCallsPusherOnceWithOnlyTheOccupied() throws Exception {
    String first = Harness.channel("mix-a");
    String vacant = Harness.channel("mix-b");
    String last = Harness.channel("mix-c");
    harness.occupy(first, last);

    PublishResult result =
        client.publishIfOccupied(List.of(first, vacant, last), "done", "{\"ok\":true}");

    assertEquals(List.of(first, last), result.published());
    assertEquals(List.of(vacant), result.skipped());

    List<JsonObject> calls = harness.callsFor(first);
    assertEquals(1, calls.size(), "calls naming " + first + ": " + calls);
    JsonObject call = calls.get(0);
    assertTrue(call.get("signature_valid").getAsBoolean());
    JsonObject body = call.getAsJsonObject("body");
    assertEquals("done", body.get("name").getAsString());
    assertEquals("{\"ok\":true}", body.get("data").getAsString());
    assertEquals(List.of(first, last), Harness.stringsOf(body.getAsJsonArray("channels")));
    assertEquals(calls, harness.callsFor(last), "the same single call names both");
    assertEquals(List.of(), harness.callsFor(vacant));
  }

  @Test
  void invalidChannelRaisesInvalidArgumentInRaiseMode() {
    OccupancyException error =
        assertThrows(OccupancyException.class, () -> client.isOccupied("bad channel!"));
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode());
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getStatus().getCode());
    assertNotNull(error.getDescription(), "the server's message is kept");
    assertFalse(error.getDescription().isBlank());
  }

  @Test
  void invalidChannelRaisesEvenWhenFailingOpen() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient failOpen =
        OccupancyClient.builder(harness.addr).onError(reported::add).build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> failOpen.isOccupied("bad channel!"));
      assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode());
      assertEquals(List.of(), reported, "a raised error is not also reported to the hook");
    }
  }

  @Test
  void publishWithInvalidChannelRaisesInvalidArgument() {
    OccupancyException error =
        assertThrows(
            OccupancyException.class,
            () -> client.publishIfOccupied(List.of("bad channel!"), "progress", "{}"));
    assertEquals(Status.Code.INVALID_ARGUMENT, error.getCode());
  }

  @Test
  void deadGateFailsOpenAndReportsTheError() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient failOpen =
        OccupancyClient.builder(harness.deadAddr)
            .timeout(Duration.ofMillis(500))
            .onError(reported::add)
            .build()) {
      assertTrue(failOpen.isOccupied(Harness.channel("dead")));
      assertEquals(1, reported.size(), "the hook sees the swallowed error");
      Status.Code code = reported.get(0).getCode();
      assertTrue(GATE_DOWN.contains(code), "code " + code);
    }
  }

  @Test
  void deadGateFailsOpenWithTheDefaultHookLoggingAWarning() {
    try (CapturedLog log = new CapturedLog();
        OccupancyClient failOpen = OccupancyClient.builder(harness.deadAddr).build()) {
      assertTrue(failOpen.isOccupied(Harness.channel("dead-log")));
      assertEquals(1, log.records.size(), "one warning per swallowed error");
      assertEquals(Level.WARNING, log.records.get(0).getLevel());
      assertTrue(log.records.get(0).getThrown() instanceof OccupancyException);
    }
  }

  @Test
  void deadGateFailsOpenEvenWhenTheHookThrows() {
    try (CapturedLog log = new CapturedLog();
        OccupancyClient failOpen =
            OccupancyClient.builder(harness.deadAddr)
                .onError(
                    e -> {
                      throw new IllegalStateException("broken hook");
                    })
                .build()) {
      assertTrue(failOpen.isOccupied(Harness.channel("dead-hook")));
      assertEquals(1, log.records.size(), "the hook's failure is logged");
      assertEquals("broken hook", log.records.get(0).getThrown().getMessage());
    }
  }

  @Test
  void deadGateRaisesInRaiseMode() {
    try (OccupancyClient raising =
        OccupancyClient.builder(harness.deadAddr).failOpen(false).build()) {
      OccupancyException error =
          assertThrows(
              OccupancyException.class, () -> raising.isOccupied(Harness.channel("dead-raise")));
      assertTrue(GATE_DOWN.contains(error.getCode()), "code " + error.getCode());
    }
  }

  @Test
  void deadGatePublishRaisesEvenWhenFailingOpen() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient failOpen =
        OccupancyClient.builder(harness.deadAddr).onError(reported::add).build()) {
      OccupancyException error =
          assertThrows(
              OccupancyException.class,
              () ->
                  failOpen.publishIfOccupied(
                      List.of(Harness.channel("dead-pub")), "progress", "{}"));
      assertTrue(GATE_DOWN.contains(error.getCode()), "code " + error.getCode());
      assertEquals(List.of(), reported, "publish errors are thrown, not reported");
    }
  }
}
