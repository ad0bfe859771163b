package io.occupancy.sdk;

import static io.occupancy.sdk.Harness.APP_ID;
import static io.occupancy.sdk.Harness.CLOSED_PORT;
import static io.occupancy.sdk.Harness.HOST;
import static io.occupancy.sdk.Harness.KEY;
import static io.occupancy.sdk.Harness.MASTER_KEY;
import static io.occupancy.sdk.Harness.ORPHAN_PORT;
import static io.occupancy.sdk.Harness.PORT;
import static io.occupancy.sdk.Harness.SECRET;
import static io.occupancy.sdk.Harness.SUBSCRIPTION_COUNT;
import static io.occupancy.sdk.Harness.UPSTREAM_TIMEOUT_MS;
import static io.occupancy.sdk.Harness.USER_COUNT;
import static io.occupancy.sdk.Harness.assertNeverForwarded;
import static io.occupancy.sdk.Harness.callsFor;
import static io.occupancy.sdk.Harness.json;
import static io.occupancy.sdk.Harness.occupy;
import static io.occupancy.sdk.Harness.pusherAt;
import static io.occupancy.sdk.Harness.stubCalls;
import static io.occupancy.sdk.Harness.unique;
import static io.occupancy.sdk.Harness.upstreamAnswers;
import static io.occupancy.sdk.Harness.upstreamLists;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.pusher.rest.Pusher;
import com.pusher.rest.crypto.CryptoUtil;
import com.pusher.rest.data.EncryptedMessage;
import com.pusher.rest.data.Event;
import com.pusher.rest.data.Result;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Pusher's Java server SDK (com.pusher:pusher-http-java 1.3.4), configured with `setHost` and
 * `setEncrypted(false)`, publishing through the gate. Each test asserts what the SDK returns and
 * what the Pusher stand-in behind the gate received: only occupied channels (plus those always
 * forwarded), every other field unchanged, signed afresh and correctly.
 *
 * <p>pusher-http-java has no `info` option on trigger and no `info` field on batch events; a
 * caller wanting it uses the SDK's own signed `post(path, body)`, which is what the info tests do.
 */
class GateTest {
    private static final Pusher PUSHER = pusherAt(PORT);
    private static final String EVENTS_PATH = "/apps/" + APP_ID + "/events";
    private static final String BATCH_PATH = "/apps/" + APP_ID + "/batch_events";

    private static void assertSuccess(Result result, String body) {
        assertEquals(Result.Status.SUCCESS, result.getStatus(), result.getMessage());
        assertEquals(200, result.getHttpStatus());
        assertEquals(json(body), json(result.getMessage()));
    }

    private static void assertSigned(JsonObject call) {
        assertTrue(call.get("signature_valid").getAsBoolean(), call.get("reason").getAsString());
    }

    private static List<String> strings(JsonElement array) {
        List<String> out = new ArrayList<>();
        array.getAsJsonArray().forEach(e -> out.add(e.getAsString()));
        return out;
    }

    private static List<JsonObject> batchOf(JsonObject call) {
        List<JsonObject> out = new ArrayList<>();
        call.getAsJsonObject("body").getAsJsonArray("batch").forEach(e -> out.add(e.getAsJsonObject()));
        return out;
    }

    // --- trigger --------------------------------------------------------------------------------

    @Test
    void triggerForwardsOnlyTheOccupiedChannelsWithDataByteForByte() {
        String a = unique("mix-a-"), b = unique("mix-b-");
        String v1 = unique("mix-v1-"), v2 = unique("mix-v2-");
        occupy(a, b);

        Result result = PUSHER.trigger(List.of(a, v1, b, v2), "greeting", Map.of("hello", "wörld"), "123.456");

        assertSuccess(result, "{}");
        List<JsonObject> calls = callsFor(a, b, v1, v2);
        assertEquals(1, calls.size(), calls.toString());
        JsonObject call = calls.get(0);
        assertEquals("POST", call.get("method").getAsString());
        assertEquals(EVENTS_PATH, call.get("path").getAsString());
        assertSigned(call);
        JsonObject body = call.getAsJsonObject("body");
        assertEquals(List.of(a, b), strings(body.get("channels")));
        assertEquals("greeting", body.get("name").getAsString());
        assertEquals("123.456", body.get("socket_id").getAsString());
        // Gson without HTML escaping: the data token the SDK wrote reaches Pusher as written.
        assertEquals("{\"hello\":\"wörld\"}", body.get("data").getAsString());
        assertTrue(call.get("raw_body").getAsString().contains("\"data\":\"{\\\"hello\\\":\\\"wörld\\\"}\""),
                call.get("raw_body").getAsString());
    }

    @Test
    void triggerOnOneOccupiedChannelIsForwarded() {
        String channel = unique("single-");
        occupy(channel);

        assertSuccess(PUSHER.trigger(channel, "one", "plain text data"), "{}");

        List<JsonObject> calls = callsFor(channel);
        assertEquals(1, calls.size());
        assertSigned(calls.get(0));
        assertEquals(List.of(channel), strings(calls.get(0).getAsJsonObject("body").get("channels")));
        // The SDK serialises data with Gson: a String becomes a JSON string.
        assertEquals("\"plain text data\"", calls.get(0).getAsJsonObject("body").get("data").getAsString());
    }

    @Test
    void triggerOnVacantChannelsAnswersEmptyObjectWithoutCallingPusher() {
        String one = unique("vacant-"), two = unique("vacant-");

        assertSuccess(PUSHER.trigger(one, "nobody", Map.of("x", 1)), "{}");
        assertSuccess(PUSHER.trigger(List.of(one, two), "nobody", Map.of("x", 1)), "{}");

        assertNeverForwarded(one, two);
    }

    @Test
    void theUrlConstructorWithAPortReachesTheGateToo() {
        String channel = unique("url-");
        occupy(channel);
        Pusher byUrl = new Pusher("http://" + KEY + ":" + SECRET + "@" + HOST + ":" + PORT + "/apps/" + APP_ID);

        assertSuccess(byUrl.trigger(channel, "via-url", Map.of()), "{}");

        assertEquals(1, callsFor(channel).size());
    }

    @Test
    void triggerOnAPrivateEncryptedChannelForwardsTheCiphertextUnchanged() {
        String channel = unique("private-encrypted-");
        String vacant = unique("private-encrypted-vacant-");
        occupy(channel);
        Map<String, Object> payload = Map.of("secret", "only subscribers read this");

        assertSuccess(PUSHER.trigger(channel, "sealed", payload), "{}");
        assertSuccess(PUSHER.trigger(vacant, "sealed", payload), "{}");

        List<JsonObject> calls = callsFor(channel);
        assertEquals(1, calls.size());
        assertSigned(calls.get(0));
        JsonObject sealed = json(calls.get(0).getAsJsonObject("body").get("data").getAsString());
        assertEquals(List.of("ciphertext", "nonce"), sealed.keySet().stream().sorted().collect(Collectors.toList()));
        String opened = new CryptoUtil(MASTER_KEY).decrypt(channel,
                new EncryptedMessage(sealed.get("nonce").getAsString(), sealed.get("ciphertext").getAsString()));
        assertEquals("{\"secret\":\"only subscribers read this\"}", opened);
        assertNeverForwarded(vacant);
    }

    @Test
    void vacantCacheChannelsAreAlwaysForwarded() {
        String cache = unique("cache-"), privateCache = unique("private-cache-");
        String vacant = unique("beside-cache-");

        assertSuccess(PUSHER.trigger(List.of(cache, vacant, privateCache), "replayed", Map.of("last", true)), "{}");

        List<JsonObject> calls = callsFor(cache, vacant, privateCache);
        assertEquals(1, calls.size());
        assertSigned(calls.get(0));
        assertEquals(List.of(cache, privateCache), strings(calls.get(0).getAsJsonObject("body").get("channels")));
    }

    @Test
    void triggerWithInfoThroughTheSdksSignedPostAnswersZeroForTheDroppedChannels() {
        String occupied = unique("info-o-"), vacant = unique("info-v-");
        String presence = unique("presence-info-o-"), presenceVacant = unique("presence-info-v-");
        occupy(occupied, presence);

        Result counted = PUSHER.post("/events", Harness.GSON.toJson(Map.of(
                "name", "counted", "data", "{}", "channels", List.of(occupied, vacant),
                "info", "subscription_count")));
        Result users = PUSHER.post("/events", Harness.GSON.toJson(Map.of(
                "name", "counted", "data", "{}", "channels", List.of(presence, presenceVacant),
                "info", "user_count")));

        assertSuccess(counted, "{\"channels\":{\"" + occupied + "\":{\"subscription_count\":" + SUBSCRIPTION_COUNT
                + "},\"" + vacant + "\":{\"subscription_count\":0}}}");
        assertSuccess(users, "{\"channels\":{\"" + presence + "\":{\"user_count\":" + USER_COUNT
                + "},\"" + presenceVacant + "\":{\"user_count\":0}}}");
        List<JsonObject> calls = callsFor(occupied, vacant, presence, presenceVacant);
        assertEquals(2, calls.size());
        assertEquals(List.of(occupied), strings(calls.get(0).getAsJsonObject("body").get("channels")));
        assertEquals(List.of(presence), strings(calls.get(1).getAsJsonObject("body").get("channels")));
        calls.forEach(GateTest::assertSigned);
    }

    // --- batch ----------------------------------------------------------------------------------

    private static List<Event> twelve(List<String> channels) {
        List<Event> batch = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            batch.add(new Event(channels.get(i % channels.size()), "batch-" + i, Map.of("i", i)));
        }
        return batch;
    }

    @Test
    void batchOf12DropsTheVacantEventsAndForwardsTheRestInOrder() {
        String o1 = unique("b-o1-"), o2 = unique("b-o2-"), o3 = unique("b-o3-");
        String vacant = unique("b-v-");
        occupy(o1, o2, o3);
        List<Event> batch = twelve(List.of(o1, o2, o3, vacant));

        assertSuccess(PUSHER.trigger(batch), "{}");

        List<JsonObject> calls = callsFor(o1, o2, o3, vacant);
        assertTrue(!calls.isEmpty());
        List<String> forwarded = new ArrayList<>();
        for (JsonObject call : calls) {
            assertEquals(BATCH_PATH, call.get("path").getAsString());
            assertSigned(call);
            assertTrue(batchOf(call).size() <= 10, "a batch of " + batchOf(call).size() + " reached Pusher");
            for (JsonObject event : batchOf(call)) {
                int i = Integer.parseInt(event.get("name").getAsString().substring("batch-".length()));
                assertEquals("{\"i\":" + i + "}", event.get("data").getAsString());
                forwarded.add(event.get("channel").getAsString() + "/" + event.get("name").getAsString());
            }
        }
        List<String> expected = batch.stream()
                .filter(e -> !e.getChannel().equals(vacant))
                .map(e -> e.getChannel() + "/" + e.getName())
                .collect(Collectors.toList());
        assertEquals(expected, forwarded);
    }

    @Test
    void batchOf12OnOccupiedChannelsReachesPusherInChunksOfAtMost10() {
        String o1 = unique("chunk-1-"), o2 = unique("chunk-2-");
        occupy(o1, o2);
        List<Event> batch = twelve(List.of(o1, o2));

        assertSuccess(PUSHER.trigger(batch), "{}");

        List<JsonObject> calls = callsFor(o1, o2);
        assertEquals(List.of(10, 2), calls.stream().map(c -> batchOf(c).size()).collect(Collectors.toList()));
        calls.forEach(GateTest::assertSigned);
        assertEquals(batch.stream().map(Event::getName).collect(Collectors.toList()),
                calls.stream().flatMap(c -> batchOf(c).stream()).map(e -> e.get("name").getAsString())
                        .collect(Collectors.toList()));
    }

    @Test
    void batchWithInfoThroughTheSdksSignedPostAnswersOneEntryPerEvent() {
        String occupied = unique("binfo-o-"), vacant = unique("binfo-v-");
        occupy(occupied);

        Result result = PUSHER.post("/batch_events", Harness.GSON.toJson(Map.of("batch", List.of(
                Map.of("channel", occupied, "name", "a", "data", "1", "info", "subscription_count"),
                Map.of("channel", vacant, "name", "b", "data", "2", "info", "subscription_count"),
                Map.of("channel", occupied, "name", "c", "data", "3")))));

        assertSuccess(result, "{\"batch\":[{\"subscription_count\":" + SUBSCRIPTION_COUNT
                + "},{\"subscription_count\":0},{}]}");
        List<JsonObject> calls = callsFor(occupied, vacant);
        assertEquals(1, calls.size());
        assertEquals(List.of("a", "c"),
                batchOf(calls.get(0)).stream().map(e -> e.get("name").getAsString()).collect(Collectors.toList()));
    }

    @Test
    void batchOf12WithInfoMergesTheChunksAnswersInRequestOrder() {
        String o1 = unique("binfo12-1-"), o2 = unique("binfo12-2-"), vacant = unique("binfo12-v-");
        occupy(o1, o2);
        // 12 occupied events (two chunks upstream) with a vacant one in the middle.
        List<Map<String, String>> batch = new ArrayList<>();
        StringBuilder expected = new StringBuilder("{\"batch\":[");
        for (int i = 0; i < 13; i++) {
            String channel = i == 6 ? vacant : (i % 2 == 0 ? o1 : o2);
            batch.add(Map.of("channel", channel, "name", "e" + i, "data", "{}", "info", "subscription_count"));
            expected.append(i == 0 ? "" : ",").append("{\"subscription_count\":")
                    .append(channel.equals(vacant) ? 0 : SUBSCRIPTION_COUNT).append("}");
        }
        expected.append("]}");

        Result result = PUSHER.post("/batch_events", Harness.GSON.toJson(Map.of("batch", batch)));

        assertSuccess(result, expected.toString());
        assertEquals(List.of(10, 2),
                callsFor(o1, o2, vacant).stream().map(c -> batchOf(c).size()).collect(Collectors.toList()));
    }

    @Test
    void batchOnAPrivateEncryptedChannelForwardsTheCiphertextUnchanged() {
        String channel = unique("private-encrypted-batch-");
        occupy(channel);

        assertSuccess(PUSHER.trigger(List.of(new Event(channel, "sealed", Map.of("k", "v")))), "{}");

        List<JsonObject> calls = callsFor(channel);
        assertEquals(1, calls.size());
        JsonObject sealed = json(batchOf(calls.get(0)).get(0).get("data").getAsString());
        assertEquals("{\"k\":\"v\"}", new CryptoUtil(MASTER_KEY).decrypt(channel,
                new EncryptedMessage(sealed.get("nonce").getAsString(), sealed.get("ciphertext").getAsString())));
    }

    // --- queries --------------------------------------------------------------------------------

    @Test
    void getChannelsReturnsPushersListingTheQueryForwardedAndSigned() {
        String prefix = unique("presence-list-");
        JsonObject listing = json("{\"" + prefix + "-a\":{\"user_count\":2},\"" + prefix + "-b\":{\"user_count\":5}}");
        upstreamLists(listing);

        Result result = PUSHER.get("/channels", Map.of("filter_by_prefix", prefix, "info", "user_count"));

        JsonObject expected = new JsonObject();
        expected.add("channels", listing);
        assertSuccess(result, expected.toString());
        List<JsonObject> calls = stubCalls().stream()
                .filter(c -> c.get("path").getAsString().equals("/apps/" + APP_ID + "/channels"))
                .filter(c -> c.getAsJsonObject("query").has("filter_by_prefix")
                        && c.getAsJsonObject("query").get("filter_by_prefix").getAsString().equals(prefix))
                .collect(Collectors.toList());
        assertEquals(1, calls.size());
        assertEquals("GET", calls.get(0).get("method").getAsString());
        assertSigned(calls.get(0));
        assertEquals(json("{\"filter_by_prefix\":\"" + prefix + "\",\"info\":\"user_count\"}"),
                calls.get(0).getAsJsonObject("query"));
    }

    @Test
    void getOneChannelAndItsUsersAreForwarded() {
        String channel = unique("presence-one-");

        Result info = PUSHER.get("/channels/" + channel, Map.of("info", "subscription_count"));
        Result users = PUSHER.get("/channels/" + channel + "/users");

        assertSuccess(info, "{\"occupied\":true,\"subscription_count\":" + SUBSCRIPTION_COUNT + "}");
        assertSuccess(users, "{\"users\":[{\"id\":\"user-1\"},{\"id\":\"user-2\"}]}");
        List<JsonObject> calls = callsFor(channel);
        assertEquals(List.of("/apps/" + APP_ID + "/channels/" + channel, "/apps/" + APP_ID + "/channels/" + channel + "/users"),
                calls.stream().map(c -> c.get("path").getAsString()).collect(Collectors.toList()));
        calls.forEach(GateTest::assertSigned);
    }

    // --- errors ---------------------------------------------------------------------------------

    @ParameterizedTest(name = "Pusher''s {0} reaches the SDK as {2}")
    @CsvSource({
        "403, Over quota, MESSAGE_QUOTA_EXCEEDED",
        "413, The data content of this event exceeds the allowed maximum (10240 bytes), UNKNOWN_ERROR",
        "429, Too many requests, UNKNOWN_ERROR",
        "500, Internal error, SERVER_ERROR",
    })
    void pushersErrorReachesTheSdkAsItsUsualResult(int status, String body, Result.Status expected) {
        String channel = unique("fail-" + status + "-");
        occupy(channel);
        upstreamAnswers(channel, status, body);

        for (Result result : List.of(
                PUSHER.trigger(channel, "refused", Map.of()),
                PUSHER.trigger(List.of(new Event(channel, "refused", Map.of()))))) {
            assertEquals(expected, result.getStatus(), result.getMessage());
            assertEquals(status, result.getHttpStatus());
            assertEquals(body, result.getMessage());
        }
    }

    @Test
    void anUnreachablePusherReachesTheSdkAsServerError502() {
        Result result = pusherAt(ORPHAN_PORT).trigger(unique("cache-orphan-"), "lost", Map.of());

        assertEquals(Result.Status.SERVER_ERROR, result.getStatus(), result.getMessage());
        assertEquals(502, result.getHttpStatus());
        assertTrue(result.getStatus().shouldRetry());
    }

    @Test
    void aPusherSlowerThanTheGatesTimeoutReachesTheSdkWithDefaultsAsServerError504() {
        String channel = unique("slow-");
        occupy(channel);
        upstreamAnswers(channel, 200, "{}", UPSTREAM_TIMEOUT_MS + 500);
        // The SDK's own default timeout (4 s) is left as it is.
        Pusher defaults = new Pusher(APP_ID, KEY, SECRET);
        defaults.setHost(HOST + ":" + PORT);

        Result result = defaults.trigger(channel, "late", Map.of());

        assertEquals(Result.Status.SERVER_ERROR, result.getStatus(), result.getMessage());
        assertEquals(504, result.getHttpStatus());
    }

    @Test
    void aClosedPortReachesTheSdkAsNetworkError() {
        Result result = pusherAt(CLOSED_PORT).trigger("anything", "lost", Map.of());

        assertEquals(Result.Status.NETWORK_ERROR, result.getStatus(), result.getMessage());
        assertNull(result.getHttpStatus());
    }

    @Test
    void aWrongSecretIsRefusedWithAuthenticationErrorAndNothingIsForwarded() {
        String channel = unique("wrong-secret-");
        occupy(channel);

        Result result = pusherAt(PORT, "not-the-secret").trigger(channel, "forged", Map.of());

        assertEquals(Result.Status.AUTHENTICATION_ERROR, result.getStatus(), result.getMessage());
        assertEquals(401, result.getHttpStatus());
        assertNeverForwarded(channel);
    }

    @Test
    void dataOverTheGatesLimitIsRefusedWith413AndNothingIsForwarded() {
        String channel = unique("too-big-");
        occupy(channel);

        Result result = PUSHER.trigger(channel, "big", "x".repeat(11 * 1024));

        assertEquals(Result.Status.UNKNOWN_ERROR, result.getStatus(), result.getMessage());
        assertEquals(413, result.getHttpStatus());
        assertNeverForwarded(channel);
    }

    @Test
    void anAppIdTheGateDoesNotServeIsAnsweredNotFound() {
        String channel = unique("other-app-");
        Pusher other = new Pusher("999999", KEY, SECRET);
        other.setHost(HOST + ":" + PORT);

        Result result = other.trigger(channel, "x", Map.of());

        assertEquals(Result.Status.NOT_FOUND, result.getStatus(), result.getMessage());
        assertEquals(404, result.getHttpStatus());
        assertNeverForwarded(channel);
    }
}
