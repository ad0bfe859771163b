"""The blocking client against the real gate and Pusher stand-in."""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from occupancy_client import Client, ClientClosedError, OccupancyError, PublishResult, _common

from _support import Env, Forwarder, eventually, unique_channel


@pytest.fixture
def client(env: Env) -> Iterator[Client]:
    with Client(env.addr) as c:
        yield c


def test_occupied_after_webhook_and_vacant_after_vacated(env: Env, client: Client) -> None:
    channel = unique_channel()
    assert client.is_occupied(channel) is False
    env.occupy(channel)
    assert client.is_occupied(channel) is True
    env.vacate(channel)
    assert client.is_occupied(channel) is False


def test_publish_to_occupied_channel_reaches_pusher_once(env: Env, client: Client) -> None:
    channel = unique_channel("private-py")
    env.occupy(channel)
    data = json.dumps({"job": channel, "pct": 40})

    result = client.publish_if_occupied([channel], "progress", data)

    assert result == PublishResult(published=(channel,), skipped=())
    calls = env.calls_for(channel)
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["method"] == "POST"
    assert call["path"] == f"/apps/{env.app_id}/events"
    assert call["signature_valid"] is True
    assert call["body"]["name"] == "progress"
    assert call["body"]["data"] == data
    assert call["body"]["channels"] == [channel]
    assert "socket_id" not in call["body"]


def test_publish_passes_socket_id(env: Env, client: Client) -> None:
    channel = unique_channel()
    env.occupy(channel)

    result = client.publish_if_occupied([channel], "progress", "{}", socket_id="123.456")

    assert result.published == (channel,)
    calls = env.calls_for(channel)
    assert len(calls) == 1, calls
    assert calls[0]["signature_valid"] is True
    assert calls[0]["body"]["socket_id"] == "123.456"


def test_publish_to_vacant_channel_makes_no_call(env: Env, client: Client) -> None:
    channel = unique_channel()

    result = client.publish_if_occupied([channel], "progress", "{}")

    assert result == PublishResult(published=(), skipped=(channel,))
    assert env.calls_for(channel) == []


def test_publish_to_a_mix_sends_one_call_for_the_occupied_ones(env: Env, client: Client) -> None:
    occupied = [unique_channel("occ"), unique_channel("occ")]
    vacant = [unique_channel("vac"), unique_channel("vac")]
    for channel in occupied:
        env.occupy(channel)
    requested = [vacant[0], occupied[0], vacant[1], occupied[1]]

    result = client.publish_if_occupied(requested, "done", '{"ok":true}')

    assert result.published == (occupied[0], occupied[1])
    assert result.skipped == (vacant[0], vacant[1])
    calls = env.calls_for(*requested)
    assert len(calls) == 1, calls
    assert calls[0]["signature_valid"] is True
    assert calls[0]["body"]["name"] == "done"
    assert calls[0]["body"]["data"] == '{"ok":true}'
    assert calls[0]["body"]["channels"] == occupied


def test_publish_counts_duplicate_channels_once(env: Env, client: Client) -> None:
    occupied, vacant = unique_channel(), unique_channel()
    env.occupy(occupied)

    result = client.publish_if_occupied([occupied, vacant, occupied, vacant], "progress", "{}")

    assert result == PublishResult(published=(occupied,), skipped=(vacant,))
    calls = env.calls_for(occupied, vacant)
    assert len(calls) == 1, calls
    assert calls[0]["body"]["channels"] == [occupied]


def test_publish_accepts_any_iterable(env: Env, client: Client) -> None:
    channel = unique_channel()
    result = client.publish_if_occupied(iter([channel]), "progress", "{}")
    assert result.skipped == (channel,)


def test_publish_rejects_a_single_string_locally(client: Client) -> None:
    with pytest.raises(TypeError, match="single string"):
        client.publish_if_occupied("jobs", "progress", "{}")


def test_arguments_of_the_wrong_type_raise_type_error(env: Env) -> None:
    with Client(env.dead_addr) as c:
        with pytest.raises(TypeError):
            c.is_occupied(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.publish_if_occupied(["ok"], "progress", {"pct": 1})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.publish_if_occupied([b"ok"], "progress", "{}")  # type: ignore[list-item]


def test_construction_touches_nothing_and_one_channel_is_reused(
    env: Env, forwarder: Forwarder
) -> None:
    forwarder.open()
    c = Client(forwarder.addr)
    time.sleep(0.3)
    assert forwarder.connections == 0, "constructing a client must not connect"
    channel = unique_channel()
    env.occupy(channel)
    for _ in range(5):
        assert c.is_occupied(channel) is True
    c.publish_if_occupied([channel], "progress", "{}")
    assert forwarder.connections == 1, "every call goes through one channel"
    c.close()


def test_target_defaults_to_occupancy_addr(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCCUPANCY_ADDR", env.addr)
    channel = unique_channel()
    env.occupy(channel)
    with Client(fail_open=False) as c:
        assert c.target == env.addr
        assert c.is_occupied(channel) is True


def test_no_target_and_no_occupancy_addr_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCCUPANCY_ADDR", raising=False)
    with pytest.raises(ValueError, match="OCCUPANCY_ADDR"):
        Client()


def test_largest_valid_names_are_accepted_by_the_gate(env: Env, client: Client) -> None:
    longest = "x" * 148 + unique_channel("")[1:]
    assert len(longest) == 164
    every_allowed = "AZaz09_-=@,.;" + unique_channel("")
    assert client.is_occupied(longest) is False
    assert client.is_occupied(every_allowed) is False
    channels = [unique_channel() for _ in range(100)]
    result = client.publish_if_occupied(channels, "e" * 200, "{}")
    assert result.skipped == tuple(channels)


BAD_NAMES = ["", "bad channel!", "x" * 165, "caf\u00e9", "new\nline", "tab\t", "slash/"]


@pytest.mark.parametrize("fail_open", [True, False])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_channel_name_raises_locally_even_when_the_gate_is_down(
    env: Env, fail_open: bool, name: str
) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, fail_open=fail_open, on_error=seen.append) as c:
        started = time.monotonic()
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(name)
        assert time.monotonic() - started < 0.5, "no call, no connection attempt"
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "channel name" in info.value.details
    assert info.value.method == "IsOccupied"
    assert seen == [], "INVALID_ARGUMENT is raised, never swallowed"


@pytest.mark.parametrize(
    "channels, event",
    [
        ([], "progress"),
        ([f"c{i}" for i in range(101)], "progress"),
        (["ok", "bad channel!"], "progress"),
        (["ok"], ""),
        (["ok"], "e" * 201),
    ],
    ids=["no-channels", "101-channels", "bad-name", "empty-event", "long-event"],
)
def test_publish_is_checked_locally_even_when_the_gate_is_down(
    env: Env, channels: list[str], event: str
) -> None:
    with Client(env.dead_addr) as c:
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied(channels, event, "{}")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.method == "PublishIfOccupied"


def test_publish_rejected_by_the_gate_raises_its_status(client: Client) -> None:
    # Larger than the gate's 10240-byte data limit: not checked locally.
    with pytest.raises(OccupancyError) as info:
        client.publish_if_occupied([unique_channel()], "progress", "x" * 10241)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.method == "PublishIfOccupied"


def test_fail_open_answers_true_when_gate_is_down_and_reports_it(env: Env) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, on_error=seen.append) as c:
        assert c.is_occupied(unique_channel()) is True
        assert c.is_occupied(unique_channel()) is True
    assert len(seen) == 2, "a caller's hook sees every swallowed error"
    assert seen[0].code is grpc.StatusCode.UNAVAILABLE
    assert isinstance(seen[0].__cause__, grpc.RpcError)


def test_fail_open_on_a_dropped_connection(env: Env, forwarder: Forwarder) -> None:
    seen: list[OccupancyError] = []
    forwarder.open()
    with Client(forwarder.addr, on_error=seen.append) as c:
        assert c.is_occupied(unique_channel()) is False
        forwarder.close()  # the connection drops, and nothing listens any more
        assert c.is_occupied(unique_channel()) is True
    assert [e.code for e in seen] == [grpc.StatusCode.UNAVAILABLE]


def test_fail_open_answers_true_for_resource_exhausted(env: Env) -> None:
    # gRPC itself answers RESOURCE_EXHAUSTED when a response exceeds the
    # receive limit: the real gate's 2-byte "occupied" answer exceeds 1 byte.
    channel = unique_channel()
    env.occupy(channel)
    seen: list[OccupancyError] = []
    tiny = [("grpc.max_receive_message_length", 1)]
    with Client(env.addr, options=tiny, on_error=seen.append) as c:
        assert c.is_occupied(channel) is True
    assert [e.code for e in seen] == [grpc.StatusCode.RESOURCE_EXHAUSTED]
    with Client(env.addr, options=tiny, fail_open=False) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(channel)
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_default_hook_warns_at_most_once_per_30_seconds(
    env: Env, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="occupancy_client")
    now = [1000.0]
    monkeypatch.setattr(_common, "monotonic", lambda: now[0])

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "occupancy_client"]

    with Client(env.dead_addr) as c:
        for _ in range(5):
            assert c.is_occupied(unique_channel()) is True
        assert len(warnings()) == 1, warnings()
        assert "assuming the channel is occupied" in warnings()[0]
        assert "UNAVAILABLE" in warnings()[0]
        now[0] += 29.0
        assert c.is_occupied(unique_channel()) is True
        assert len(warnings()) == 1, warnings()
        now[0] += 1.5
        assert c.is_occupied(unique_channel()) is True
        assert len(warnings()) == 2, warnings()
        assert "5 more swallowed since the last warning" in warnings()[1]


def test_fail_open_survives_a_broken_hook(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: OccupancyError) -> None:
        raise RuntimeError("hook bug")

    with Client(env.dead_addr, on_error=broken) as c:
        assert c.is_occupied(unique_channel()) is True
    assert any("hook raised" in r.getMessage() for r in caplog.records)


def test_raise_mode_raises_unavailable_when_gate_is_down(env: Env) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, fail_open=False, on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert seen == []


def test_publish_raises_when_gate_is_down_even_failing_open(env: Env) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, fail_open=True, on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied([unique_channel()], "progress", "{}")
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert seen == []


def test_deadline_applies_to_the_check(blackhole_addr: str) -> None:
    seen: list[OccupancyError] = []
    with Client(blackhole_addr, check_timeout=0.2, on_error=seen.append) as c:
        started = time.monotonic()
        assert c.is_occupied(unique_channel()) is True
        assert time.monotonic() - started < 1.0
    assert [e.code for e in seen] == [grpc.StatusCode.DEADLINE_EXCEEDED]

    with Client(blackhole_addr, check_timeout=0.2, fail_open=False) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_default_check_deadline_is_one_second(blackhole_addr: str) -> None:
    with Client(blackhole_addr, fail_open=False) as c:
        started = time.monotonic()
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
        elapsed = time.monotonic() - started
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.9 <= elapsed < 2.0, elapsed


def test_default_publish_deadline_is_five_seconds(blackhole_addr: str) -> None:
    with Client(blackhole_addr) as c:
        started = time.monotonic()
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied([unique_channel()], "progress", "{}")
        elapsed = time.monotonic() - started
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 4.9 <= elapsed < 6.0, elapsed


def test_deadline_applies_to_publish(blackhole_addr: str) -> None:
    with Client(blackhole_addr, publish_timeout=0.2) as c:
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied([unique_channel()], "progress", "{}")
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_reconnect_backoff_is_capped_at_two_seconds(env: Env, forwarder: Forwarder) -> None:
    # Down for 10 s: with gRPC's default backoff (1 s growing 1.6x to 120 s)
    # the next attempt would come about 6 s after the gate is back; capped at
    # 2 s (+20% jitter) it comes within 2.4 s.
    with Client(forwarder.addr, fail_open=False) as c:
        down_until = time.monotonic() + 10
        while time.monotonic() < down_until:
            with pytest.raises(OccupancyError):
                c.is_occupied(unique_channel())
            time.sleep(0.1)
        forwarder.open()
        back = time.monotonic()

        def answers() -> bool:
            try:
                return c.is_occupied(unique_channel()) is False
            except OccupancyError:
                return False

        assert eventually(answers, timeout=10, interval=0.05)
        assert time.monotonic() - back < 3.2, time.monotonic() - back


def test_closed_client_raises_the_closed_error_for_every_call(env: Env) -> None:
    c = Client(env.addr)
    assert c.is_occupied(unique_channel()) is False
    c.close()
    c.close()  # idempotent
    for call in (
        lambda: c.is_occupied(unique_channel()),
        lambda: c.is_occupied("bad channel!"),
        lambda: c.publish_if_occupied([unique_channel()], "progress", "{}"),
    ):
        with pytest.raises(ClientClosedError, match="closed") as info:
            call()
        assert isinstance(info.value, OccupancyError)
        assert isinstance(info.value, ValueError)
        assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION


def test_closed_before_first_use_and_in_raise_mode(env: Env) -> None:
    c = Client(env.dead_addr, fail_open=False)
    c.close()
    with pytest.raises(ClientClosedError):
        c.is_occupied(unique_channel())


def test_one_client_is_shared_by_threads(env: Env, client: Client) -> None:
    channels = [unique_channel("thr") for _ in range(16)]
    for channel in channels[::2]:
        env.occupy(channel)
    results: dict[str, bool] = {}

    def check(channel: str) -> None:
        results[channel] = client.is_occupied(channel)

    threads = [threading.Thread(target=check, args=(c,)) for c in channels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[c] for c in channels] == [i % 2 == 0 for i in range(len(channels))]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf")])
def test_rejects_bad_timeouts(bad: float) -> None:
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", check_timeout=bad)
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", publish_timeout=bad)
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", keepalive=bad)


def test_error_keeps_its_fields_through_pickle() -> None:
    err = OccupancyError(grpc.StatusCode.UNAVAILABLE, "store down", "IsOccupied")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.code, copy.details, copy.method) == (err.code, err.details, err.method)
    assert str(copy) == "IsOccupied failed: UNAVAILABLE: store down"
    closed = pickle.loads(pickle.dumps(ClientClosedError(method="IsOccupied")))
    assert isinstance(closed, ClientClosedError)
