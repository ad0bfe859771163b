"""Pusher's Python server SDK (PyPI `pusher`), configured with `host`, `port` and `ssl=False`,
publishing through the gate. Each test asserts what the SDK returns and what the Pusher stand-in
behind the gate received: only occupied channels (plus those always forwarded), every other field
unchanged, signed afresh and correctly.

The Python SDK's `trigger` has no `info` parameter; `trigger_batch` passes each event's fields
through, so `info` is tested there."""

import json

import pusher.errors
import pytest
import requests

from helpers import (
    APP_ID,
    CLOSED_PORT,
    HOST,
    KEY,
    ORPHAN_PORT,
    PORT,
    SECRET,
    SUBSCRIPTION_COUNT,
    UPSTREAM_TIMEOUT_MS,
    USER_COUNT,
    assert_never_forwarded,
    calls_for,
    decrypt,
    occupy,
    pusher_at,
    stub_calls,
    unique,
    upstream_answers,
    upstream_lists,
)

client = pusher_at()
EVENTS_PATH = f"/apps/{APP_ID}/events"
BATCH_PATH = f"/apps/{APP_ID}/batch_events"


def assert_signed(call):
    assert call["signature_valid"], call["reason"]


# --- trigger ------------------------------------------------------------------------------------


def test_trigger_forwards_only_the_occupied_channels_with_data_byte_for_byte():
    a, b = unique("mix-a-"), unique("mix-b-")
    v1, v2 = unique("mix-v1-"), unique("mix-v2-")
    occupy(a, b)
    data = {"hello": "wörld"}

    answer = client.trigger([a, v1, b, v2], "greeting", data, socket_id="123.456")

    assert answer == {}
    calls = calls_for(a, b, v1, v2)
    assert len(calls) == 1, calls
    call = calls[0]
    assert (call["method"], call["path"]) == ("POST", EVENTS_PATH)
    assert_signed(call)
    assert call["body"]["channels"] == [a, b]
    assert call["body"]["name"] == "greeting"
    assert call["body"]["socket_id"] == "123.456"
    # The SDK sends data as json.dumps(json.dumps(data, ensure_ascii=False)): the same JSON
    # token, \u-escapes included, must reach Pusher.
    sent_data = json.dumps(data, ensure_ascii=False)
    assert call["body"]["data"] == sent_data
    assert json.dumps(sent_data) in call["raw_body"], call["raw_body"]


def test_trigger_on_one_occupied_channel_is_forwarded():
    channel = unique("single-")
    occupy(channel)

    assert client.trigger(channel, "one", "plain text data") == {}

    calls = calls_for(channel)
    assert len(calls) == 1
    assert_signed(calls[0])
    assert calls[0]["body"]["channels"] == [channel]
    assert calls[0]["body"]["data"] == "plain text data"


def test_trigger_on_vacant_channels_answers_empty_object_without_calling_pusher():
    one, two = unique("vacant-"), unique("vacant-")

    assert client.trigger(one, "nobody", {"x": 1}) == {}
    assert client.trigger([one, two], "nobody", {"x": 1}) == {}

    assert_never_forwarded(one, two)


def test_trigger_on_private_encrypted_channel_forwards_the_ciphertext_unchanged():
    channel = unique("private-encrypted-")
    vacant = unique("private-encrypted-vacant-")
    occupy(channel)
    payload = {"secret": "only subscribers read this", "n": 42}

    assert client.trigger(channel, "sealed", payload) == {}
    assert client.trigger(vacant, "sealed", payload) == {}

    calls = calls_for(channel)
    assert len(calls) == 1
    assert_signed(calls[0])
    assert calls[0]["body"]["channels"] == [channel]
    assert decrypt(channel, calls[0]["body"]["data"]) == json.dumps(payload, ensure_ascii=False)
    assert json.dumps(calls[0]["body"]["data"]) in calls[0]["raw_body"]
    assert_never_forwarded(vacant)


def test_cache_channels_and_send_to_user_are_always_forwarded():
    cache, private_cache = unique("cache-"), unique("private-cache-")
    vacant = unique("beside-cache-")
    user = unique("user-")

    assert client.trigger([cache, vacant, private_cache], "replayed", {"last": True}) == {}
    assert client.send_to_user(user, "direct", {"hi": 1}) == {}

    calls = calls_for(cache, vacant, private_cache, f"#server-to-user-{user}")
    assert [c["body"]["channels"] for c in calls] == [
        [cache, private_cache],
        [f"#server-to-user-{user}"],
    ]
    assert all(c["signature_valid"] for c in calls)


# --- trigger_batch ------------------------------------------------------------------------------


def twelve(channels):
    return [
        {"channel": channels[i % len(channels)], "name": f"batch-{i}", "data": {"i": i}}
        for i in range(12)
    ]


def test_batch_of_12_drops_the_vacant_events_and_forwards_the_rest_in_order():
    occupied = [unique("b-o1-"), unique("b-o2-"), unique("b-o3-")]
    vacant = unique("b-v-")
    occupy(*occupied)
    batch = twelve(occupied + [vacant])
    expected = [
        {"channel": e["channel"], "name": e["name"], "data": json.dumps(e["data"])}
        for e in batch
        if e["channel"] != vacant
    ]

    assert client.trigger_batch(batch) == {}

    calls = calls_for(*occupied, vacant)
    assert calls
    for call in calls:
        assert call["path"] == BATCH_PATH
        assert_signed(call)
        assert len(call["body"]["batch"]) <= 10
    assert [e for c in calls for e in c["body"]["batch"]] == expected


def test_batch_of_12_on_occupied_channels_reaches_pusher_in_chunks_of_at_most_10():
    occupied = [unique("chunk-1-"), unique("chunk-2-")]
    occupy(*occupied)
    batch = twelve(occupied)

    assert client.trigger_batch(batch) == {}

    calls = calls_for(*occupied)
    assert [len(c["body"]["batch"]) for c in calls] == [10, 2]
    assert all(c["signature_valid"] for c in calls)
    assert [e["name"] for c in calls for e in c["body"]["batch"]] == [e["name"] for e in batch]


def test_batch_with_info_answers_one_entry_per_event_zero_for_the_dropped_ones():
    occupied, vacant = unique("binfo-o-"), unique("binfo-v-")
    presence, presence_vacant = unique("presence-binfo-o-"), unique("presence-binfo-v-")
    occupy(occupied, presence)

    answer = client.trigger_batch(
        [
            {"channel": occupied, "name": "a", "data": "1", "info": "subscription_count"},
            {"channel": vacant, "name": "b", "data": "2", "info": "subscription_count"},
            {"channel": occupied, "name": "c", "data": "3"},
            {"channel": presence, "name": "d", "data": "4", "info": "user_count"},
            {"channel": presence_vacant, "name": "e", "data": "5", "info": "user_count"},
        ]
    )

    assert answer == {
        "batch": [
            {"subscription_count": SUBSCRIPTION_COUNT},
            {"subscription_count": 0},
            {},
            {"user_count": USER_COUNT},
            {"user_count": 0},
        ]
    }
    calls = calls_for(occupied, vacant, presence, presence_vacant)
    assert len(calls) == 1
    assert_signed(calls[0])
    assert [e["name"] for e in calls[0]["body"]["batch"]] == ["a", "c", "d"]


def test_batch_of_12_with_info_merges_the_chunks_answers_in_request_order():
    occupied = [unique("binfo12-1-"), unique("binfo12-2-")]
    vacant = unique("binfo12-v-")
    occupy(*occupied)
    # 12 occupied events (two chunks upstream) with a vacant one in the middle.
    batch = [dict(e, info="subscription_count") for e in twelve(occupied)]
    batch.insert(6, {"channel": vacant, "name": "dropped", "data": "{}", "info": "subscription_count"})
    expected = [
        {"subscription_count": 0 if e["channel"] == vacant else SUBSCRIPTION_COUNT} for e in batch
    ]

    assert client.trigger_batch(batch) == {"batch": expected}

    calls = calls_for(*occupied, vacant)
    assert [len(c["body"]["batch"]) for c in calls] == [10, 2]


def test_batch_with_info_on_vacant_channels_only_answers_zeros_without_calling_pusher():
    one, two = unique("binfo-vacant-"), unique("binfo-vacant-")

    answer = client.trigger_batch(
        [
            {"channel": one, "name": "a", "data": "1", "info": "subscription_count"},
            {"channel": two, "name": "b", "data": "2"},
        ]
    )

    assert answer == {"batch": [{"subscription_count": 0}, {}]}
    assert_never_forwarded(one, two)


def test_batch_on_private_encrypted_channel_forwards_the_ciphertext_unchanged():
    channel = unique("private-encrypted-batch-")
    occupy(channel)

    assert client.trigger_batch([{"channel": channel, "name": "sealed", "data": {"k": "v"}}]) == {}

    [call] = calls_for(channel)
    assert_signed(call)
    assert decrypt(channel, call["body"]["batch"][0]["data"]) == json.dumps({"k": "v"})


# --- queries ------------------------------------------------------------------------------------


def test_channels_info_returns_pushers_listing_the_query_forwarded_and_signed():
    # The Python SDK sends body_md5 (of the empty body) on GET: the gate must accept it.
    prefix = unique("presence-list-")
    listing = {f"{prefix}-a": {"user_count": 2}, f"{prefix}-b": {"user_count": 5}}
    upstream_lists(listing)

    answer = client.channels_info(prefix_filter=prefix, attributes=["user_count"])

    assert answer == {"channels": listing}
    calls = [
        c
        for c in stub_calls()
        if c["path"] == f"/apps/{APP_ID}/channels" and c["query"].get("filter_by_prefix") == prefix
    ]
    assert len(calls) == 1
    assert calls[0]["method"] == "GET"
    assert_signed(calls[0])
    assert calls[0]["query"] == {"filter_by_prefix": prefix, "info": "user_count"}


def test_channel_info_and_users_info_are_forwarded():
    channel = unique("presence-one-")

    info = client.channel_info(channel, attributes=["subscription_count"])
    users = client.users_info(channel)

    assert info == {"occupied": True, "subscription_count": SUBSCRIPTION_COUNT}
    assert users == {"users": [{"id": "user-1"}, {"id": "user-2"}]}
    calls = calls_for(channel)
    assert [(c["method"], c["path"], c["signature_valid"]) for c in calls] == [
        ("GET", f"/apps/{APP_ID}/channels/{channel}", True),
        ("GET", f"/apps/{APP_ID}/channels/{channel}/users", True),
    ]


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (403, "Over quota", pusher.errors.PusherForbidden),
        (413, "The data content of this event exceeds the allowed maximum (10240 bytes)",
         pusher.errors.PusherBadStatus),
        (429, "Too many requests", pusher.errors.PusherBadStatus),
        (500, "Internal error", pusher.errors.PusherBadStatus),
    ],
)
def test_pushers_error_reaches_the_sdk_as_its_usual_exception(status, body, error):
    channel = unique(f"fail-{status}-")
    occupy(channel)
    upstream_answers(channel, status, body)
    # PusherForbidden carries the body; PusherBadStatus carries "<status>: <body>".
    expected = body if error is pusher.errors.PusherForbidden else f"{status}: {body}"

    with pytest.raises(error) as trigger_error:
        client.trigger(channel, "refused", {})
    with pytest.raises(error) as batch_error:
        client.trigger_batch([{"channel": channel, "name": "refused", "data": "{}"}])

    assert str(trigger_error.value) == expected
    assert str(batch_error.value) == expected


def test_an_unreachable_pusher_reaches_the_sdk_as_bad_status_502():
    with pytest.raises(pusher.errors.PusherBadStatus) as error:
        pusher_at(ORPHAN_PORT).trigger(unique("cache-orphan-"), "lost", {})

    assert str(error.value).startswith("502: ")


def test_a_pusher_slower_than_the_gates_timeout_reaches_the_sdk_with_defaults_as_bad_status_504():
    channel = unique("slow-")
    occupy(channel)
    upstream_answers(channel, 200, "{}", delay_ms=UPSTREAM_TIMEOUT_MS + 500)
    defaults = pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, ssl=False, host=HOST, port=PORT)

    with pytest.raises(pusher.errors.PusherBadStatus) as error:
        defaults.trigger(channel, "late", {})

    assert str(error.value).startswith("504: ")


def test_a_closed_port_reaches_the_sdk_as_a_connection_error():
    with pytest.raises(requests.exceptions.ConnectionError):
        pusher_at(CLOSED_PORT).trigger("anything", "lost", {})


def test_a_wrong_secret_is_refused_with_bad_auth_and_nothing_is_forwarded():
    channel = unique("wrong-secret-")
    occupy(channel)

    with pytest.raises(pusher.errors.PusherBadAuth):
        pusher_at(PORT, secret="not-the-secret").trigger(channel, "forged", {})

    assert_never_forwarded(channel)


def test_data_over_the_gates_limit_is_refused_with_bad_status_413_and_nothing_is_forwarded():
    channel = unique("too-big-")
    occupy(channel)

    with pytest.raises(pusher.errors.PusherBadStatus) as error:
        client.trigger(channel, "big", "x" * 11 * 1024)

    assert str(error.value).startswith("413: ")
    assert_never_forwarded(channel)


def test_an_app_id_the_gate_does_not_serve_is_answered_bad_status_404():
    channel = unique("other-app-")

    with pytest.raises(pusher.errors.PusherBadStatus) as error:
        pusher_at(PORT, app_id="999999").trigger(channel, "x", {})

    assert str(error.value).startswith("404: ")
    assert_never_forwarded(channel)
