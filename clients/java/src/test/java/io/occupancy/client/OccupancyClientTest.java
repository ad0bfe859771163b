package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import io.grpc.Status;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The calls themselves. Runs the client against the real gate, Redis and Pusher stand-in started by the Rust harness
 * ({@code cargo test --test clients -- java}); nothing here is mocked.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class OccupancyClientTest {
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
  void asyncCheckAnswersLikeTheBlockingOne() throws Exception {
    String channel = Harness.channel("async");
    assertFalse(client.isOccupiedAsync(channel).get(5, TimeUnit.SECONDS));
    harness.occupy(channel);
    assertTrue(client.isOccupiedAsync(channel).get(5, TimeUnit.SECONDS));
  }

  @Test
  void asyncPublishPublishesOnce() throws Exception {
    String channel = Harness.channel("async-pub");
    String vacant = Harness.channel("async-vacant");
    harness.occupy(channel);

    PublishResult result =
        client
            .publishIfOccupiedAsync(List.of(channel, vacant), "progress", "{\"pct\":7}", "1.2")
            .get(10, TimeUnit.SECONDS);

    assertEquals(List.of(channel), result.published());
    assertEquals(List.of(vacant), result.skipped());
    List<JsonObject> calls = harness.callsFor(channel);
    assertEquals(1, calls.size(), "calls naming " + channel + ": " + calls);
    assertEquals("1.2", calls.get(0).getAsJsonObject("body").get("socket_id").getAsString());
  }

  @Test
  void duplicatesCountOnce() throws Exception {
    String channel = Harness.channel("dup");
    harness.occupy(channel);
    PublishResult result = client.publishIfOccupied(List.of(channel, channel), "progress", "{}");
    assertEquals(List.of(channel), result.published());
    assertEquals(1, harness.callsFor(channel).size());
  }

  @Test
  void oneChannelIsReusedForEveryCall() throws Exception {
    try (OccupancyClient fresh = OccupancyClient.builder(harness.addr).failOpen(false).build()) {
      assertNull(fresh.openedChannel(), "building a client opens no channel");
      fresh.isOccupied(Harness.channel("reuse"));
      io.grpc.ManagedChannel first = fresh.openedChannel();
      assertNotNull(first, "the first call opens the channel");
      fresh.publishIfOccupied(List.of(Harness.channel("reuse")), "e", "{}");
      fresh.isOccupiedAsync(Harness.channel("reuse")).get(5, TimeUnit.SECONDS);
      assertSame(first, fresh.openedChannel(), "later calls reuse it");
    }
  }

  @Test
  void targetComesFromOccupancyAddrWhenNoneIsGiven() throws Exception {
    String channel = Harness.channel("env");
    harness.occupy(channel);
    try (OccupancyClient fromEnv = OccupancyClient.builder().failOpen(false).build()) {
      assertTrue(fromEnv.isOccupied(channel), "the client asked the gate at $OCCUPANCY_ADDR");
      assertTrue(fromEnv.toString().contains(harness.addr), fromEnv.toString());
    }
  }

  @Test
  void appIdNamesTheApp() throws Exception {
    String channel = Harness.channel("app");
    harness.occupy(channel);
    try (OccupancyClient named =
        OccupancyClient.builder(harness.addr).appId(harness.appId).failOpen(false).build()) {
      assertTrue(named.isOccupied(channel));
      assertEquals(
          List.of(channel), named.publishIfOccupied(List.of(channel), "e", "{}").published());
    }
  }

  @Test
  void unknownAppIdRaisesNotFoundEvenWhenFailingOpen() {
    List<OccupancyException> reported = new CopyOnWriteArrayList<>();
    try (OccupancyClient unknown =
        OccupancyClient.builder(harness.addr).appId("no-such-app").onError(reported::add).build()) {
      OccupancyException error =
          assertThrows(OccupancyException.class, () -> unknown.isOccupied(Harness.channel("app")));
      assertEquals(Status.Code.NOT_FOUND, error.getCode());
      assertEquals(List.of(), reported, "a configuration error is raised, not swallowed");
    }
  }
}
