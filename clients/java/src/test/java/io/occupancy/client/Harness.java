package io.occupancy.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.UUID;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The test side of clients/CONTRACT.md: the environment the Rust harness sets, signed Pusher
 * webhooks to the real gate, and the Pusher stand-in's record of calls.
 */
final class Harness {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  final String addr = env("OCCUPANCY_ADDR");
  final String deadAddr = env("OCCUPANCY_DEAD_ADDR");
  final String webhookUrl = env("OCCUPANCY_WEBHOOK_URL");
  final String pusherKey = env("TEST_PUSHER_KEY");
  final String pusherSecret = env("TEST_PUSHER_SECRET");
  final String stubUrl = env("PUSHER_STUB_URL");
  final String appId = env("TEST_PUSHER_APP_ID");

  /** Last time_ms sent per channel: a later event on a channel must carry a larger one. */
  private static final java.util.Map<String, Long> LAST_TIME_MS =
      new java.util.concurrent.ConcurrentHashMap<>();

  /** Reads a required variable; a missing one fails the suite rather than skipping it. */
  static String env(String name) {
    String value = System.getenv(name);
    if (value == null || value.isEmpty()) {
      fail(
          "environment variable "
              + name
              + " is not set: this suite runs against the real gate, started by the Rust harness;"
              + " run it via `cargo test --test clients -- java` from the repo root");
    }
    return value;
  }

  /** A channel name no other test or suite uses (suites share one gate). */
  static String channel(String label) {
    return "private-java-" + label + "-" + UUID.randomUUID().toString().replace("-", "");
  }

  void occupy(String... channels) throws IOException, InterruptedException {
    webhook("channel_occupied", channels);
  }

  void vacate(String... channels) throws IOException, InterruptedException {
    webhook("channel_vacated", channels);
  }

  /** Sends one signed webhook with one event per channel and expects it to be applied (200). */
  void webhook(String eventName, String... channels) throws IOException, InterruptedException {
    long timeMs = System.currentTimeMillis();
    for (String channel : channels) {
      long last = LAST_TIME_MS.getOrDefault(channel, 0L);
      timeMs = Math.max(timeMs, last + 1);
    }
    for (String channel : channels) {
      LAST_TIME_MS.put(channel, timeMs);
    }
    StringBuilder body = new StringBuilder();
    body.append("{\"time_ms\":").append(timeMs).append(",\"events\":[");
    for (int i = 0; i < channels.length; i++) {
      if (i > 0) {
        body.append(',');
      }
      body.append("{\"name\":\"")
          .append(eventName)
          .append("\",\"channel\":\"")
          .append(channels[i])
          .append("\"}");
    }
    body.append("]}");
    byte[] bytes = body.toString().getBytes(StandardCharsets.UTF_8);
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(webhookUrl))
            .timeout(Duration.ofSeconds(10))
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", pusherKey)
            .header("X-Pusher-Signature", hmacSha256Hex(pusherSecret, bytes))
            .POST(HttpRequest.BodyPublishers.ofByteArray(bytes))
            .build();
    HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    assertEquals(200, response.statusCode(), "webhook answer: " + response.body());
  }

  /**
   * Makes the Pusher stand-in answer every later trigger that includes {@code channel} with
   * {@code status} after {@code delayMs} (CONTRACT.md, "Making Pusher fail").
   */
  void pusherAnswers(String channel, int status, String body, long delayMs)
      throws IOException, InterruptedException {
    String json =
        "{\"channel\":\""
            + channel
            + "\",\"status\":"
            + status
            + ",\"body\":"
            + new com.google.gson.JsonPrimitive(body)
            + ",\"delay_ms\":"
            + delayMs
            + "}";
    post(stubUrl + "/_stub/behaviour", json);
  }

  /** Restarts the plaintext gate at the same address; returns once it listens again. */
  static void restartGate() throws IOException, InterruptedException {
    post(env("OCCUPANCY_HARNESS_URL") + "/restart-gate", "");
  }

  private static void post(String url, String json) throws IOException, InterruptedException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(30))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(json))
            .build();
    HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    assertEquals(200, response.statusCode(), "answer of " + url + ": " + response.body());
  }

  /** Polls {@code condition} every 20 ms for up to {@code timeout}; whether it became true. */
  static boolean eventually(Duration timeout, java.util.function.BooleanSupplier condition)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      if (condition.getAsBoolean()) {
        return true;
      }
      if (System.nanoTime() > deadline) {
        return false;
      }
      Thread.sleep(20);
    }
  }

  /** The Pusher stand-in's recorded event triggers whose channel list names {@code channel}. */
  List<JsonObject> callsFor(String channel) throws IOException, InterruptedException {
    HttpRequest request =
        HttpRequest.newBuilder(URI.create(stubUrl + "/_stub/calls"))
            .timeout(Duration.ofSeconds(10))
            .GET()
            .build();
    HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString());
    assertEquals(200, response.statusCode(), "stub answer: " + response.body());
    JsonArray calls = JsonParser.parseString(response.body()).getAsJsonObject().getAsJsonArray("calls");
    List<JsonObject> matching = new ArrayList<>();
    for (JsonElement element : calls) {
      JsonObject call = element.getAsJsonObject();
      JsonElement body = call.get("body");
      if (body == null || !body.isJsonObject()) {
        continue;
      }
      JsonArray names = body.getAsJsonObject().getAsJsonArray("channels");
      if (names != null && stringsOf(names).contains(channel)) {
        matching.add(call);
      }
    }
    return matching;
  }

  static List<String> stringsOf(JsonArray array) {
    List<String> out = new ArrayList<>();
    for (JsonElement element : array) {
      out.add(element.getAsString());
    }
    return out;
  }

  static String hmacSha256Hex(String secret, byte[] body) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
      return HexFormat.of().formatHex(mac.doFinal(body));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("HmacSHA256 unavailable", e);
    }
  }
}
