package io.occupancy.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.pusher.rest.Pusher;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * What every test of this suite needs: the environment tests/pusher_sdks.rs sets (described in
 * tests/sdk/README.md), Pusher clients pointed at the gate, signed webhooks that mark channels
 * occupied, and what the Pusher stand-in received.
 */
final class Harness {
    private Harness() {}

    static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            throw new IllegalStateException(
                    name + " is not set: run this suite with `cargo test --test pusher_sdks java`");
        }
        return value;
    }

    static final String HOST = env("PUSHER_GATE_HOST");
    static final int PORT = Integer.parseInt(env("PUSHER_GATE_PORT"));
    static final int ORPHAN_PORT = Integer.parseInt(env("PUSHER_ORPHAN_GATE_PORT"));
    static final int CLOSED_PORT = Integer.parseInt(env("PUSHER_CLOSED_PORT"));
    static final String APP_ID = env("PUSHER_APP_ID");
    static final String KEY = env("PUSHER_KEY");
    static final String SECRET = env("PUSHER_SECRET");
    static final String MASTER_KEY = env("PUSHER_ENCRYPTION_MASTER_KEY_BASE64");
    static final String WEBHOOK_URL = env("OCCUPANCY_WEBHOOK_URL");
    static final String STUB_URL = env("PUSHER_STUB_URL");
    static final int SUBSCRIPTION_COUNT = Integer.parseInt(env("STUB_SUBSCRIPTION_COUNT"));
    static final int USER_COUNT = Integer.parseInt(env("STUB_USER_COUNT"));
    static final int UPSTREAM_TIMEOUT_MS = Integer.parseInt(env("PUSHER_GATE_UPSTREAM_TIMEOUT_MS"));

    static final Gson GSON = new Gson();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static final SecureRandom RANDOM = new SecureRandom();

    /**
     * A Pusher client configured as a user would point it at the gate. pusher-http-java has no
     * port setter: `setHost` takes "host:port" (the URL constructor is the other way).
     */
    static Pusher pusherAt(int port) {
        return pusherAt(port, SECRET);
    }

    static Pusher pusherAt(int port, String secret) {
        Pusher pusher = new Pusher(APP_ID, KEY, secret, MASTER_KEY);
        pusher.setHost(HOST + ":" + port);
        pusher.setEncrypted(false);
        pusher.setRequestTimeout(10_000);
        return pusher;
    }

    /** A channel name no other test uses. */
    static String unique(String prefix) {
        byte[] bytes = new byte[5];
        RANDOM.nextBytes(bytes);
        return prefix + "java-" + HexFormat.of().formatHex(bytes);
    }

    private static HttpResponse<String> send(HttpRequest request) {
        try {
            return HTTP.send(request, HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new IllegalStateException("request to " + request.uri() + " failed", e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static HttpResponse<String> postJson(String url, String body) {
        return send(HttpRequest.newBuilder(URI.create(url))
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build());
    }

    /** Marks `channels` occupied with one webhook signed as Pusher signs it; 200 means applied. */
    static void occupy(String... channels) {
        List<Map<String, String>> events = new ArrayList<>();
        for (String channel : channels) {
            events.add(Map.of("name", "channel_occupied", "channel", channel));
        }
        String body = GSON.toJson(Map.of("time_ms", System.currentTimeMillis(), "events", events));
        String signature;
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(SECRET.getBytes(StandardCharsets.UTF_8), "HmacSHA256"));
            signature = HexFormat.of().formatHex(mac.doFinal(body.getBytes(StandardCharsets.UTF_8)));
        } catch (java.security.GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
        HttpResponse<String> response = send(HttpRequest.newBuilder(URI.create(WEBHOOK_URL))
                .header("Content-Type", "application/json")
                .header("X-Pusher-Key", KEY)
                .header("X-Pusher-Signature", signature)
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build());
        assertEquals(200, response.statusCode(), "webhook refused: " + response.body());
    }

    private static final Pattern CHANNEL_PATH = Pattern.compile("^/apps/[^/]+/channels/([^/]+)");

    /** The channels a recorded call names, whatever the endpoint. */
    static List<String> channelsOf(JsonObject call) {
        List<String> channels = new ArrayList<>();
        JsonElement body = call.get("body");
        if (body != null && body.isJsonObject()) {
            JsonObject object = body.getAsJsonObject();
            if (object.has("batch")) {
                for (JsonElement event : object.getAsJsonArray("batch")) {
                    channels.add(event.getAsJsonObject().get("channel").getAsString());
                }
                return channels;
            }
            if (object.has("channels")) {
                for (JsonElement channel : object.getAsJsonArray("channels")) {
                    channels.add(channel.getAsString());
                }
                return channels;
            }
        }
        Matcher m = CHANNEL_PATH.matcher(call.get("path").getAsString());
        if (m.find()) {
            channels.add(m.group(1));
        }
        return channels;
    }

    static List<JsonObject> stubCalls() {
        HttpResponse<String> response =
                send(HttpRequest.newBuilder(URI.create(STUB_URL + "/_stub/calls")).GET().build());
        assertEquals(200, response.statusCode());
        List<JsonObject> calls = new ArrayList<>();
        JsonArray array = JsonParser.parseString(response.body()).getAsJsonObject().getAsJsonArray("calls");
        for (JsonElement call : array) {
            calls.add(call.getAsJsonObject());
        }
        return calls;
    }

    /** Every call the stand-in received that names any of `channels`. */
    static List<JsonObject> callsFor(String... channels) {
        List<String> wanted = List.of(channels);
        List<JsonObject> calls = new ArrayList<>();
        for (JsonObject call : stubCalls()) {
            if (channelsOf(call).stream().anyMatch(wanted::contains)) {
                calls.add(call);
            }
        }
        return calls;
    }

    static void assertNeverForwarded(String... channels) {
        assertEquals(List.of(), callsFor(channels), "vacant channels reached Pusher");
    }

    /** Makes the stand-in answer every request naming `channel` with `status` and `body`. */
    static void upstreamAnswers(String channel, int status, String body) {
        upstreamAnswers(channel, status, body, 0);
    }

    /** The same, after `delayMs`. */
    static void upstreamAnswers(String channel, int status, String body, int delayMs) {
        HttpResponse<String> response = postJson(STUB_URL + "/_stub/behaviour",
                GSON.toJson(Map.of("channel", channel, "status", status, "body", body, "delay_ms", delayMs)));
        assertEquals(200, response.statusCode());
    }

    /** What the stand-in lists for GET channels from now on. */
    static void upstreamLists(JsonObject channels) {
        JsonObject request = new JsonObject();
        request.add("channels", channels);
        assertEquals(200, postJson(STUB_URL + "/_stub/listing", request.toString()).statusCode());
    }

    static JsonObject json(String text) {
        return JsonParser.parseString(text).getAsJsonObject();
    }
}
