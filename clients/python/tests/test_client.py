"""The blocking client against the real gate and Pusher stand-in."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator

import grpc
import pytest

from occupancy_client import Client, OccupancyError, PublishResult

from _support import Env, unique_channel


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


@pytest.mark.parametrize("fail_open", [True, False])
def test_bad_channel_name_raises_invalid_argument(env: Env, fail_open: bool) -> None:
    seen: list[OccupancyError] = []
    with Client(env.addr, fail_open=fail_open, on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied("bad channel!")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details
    assert info.value.method == "IsOccupied"
    assert seen == [], "INVALID_ARGUMENT is raised, never swallowed"


def test_publish_with_bad_channel_name_raises_invalid_argument(client: Client) -> None:
    with pytest.raises(OccupancyError) as info:
        client.publish_if_occupied([unique_channel(), "bad channel!"], "progress", "{}")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.method == "PublishIfOccupied"


def test_fail_open_answers_true_when_gate_is_down_and_reports_it(env: Env) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, on_error=seen.append) as c:
        assert c.is_occupied(unique_channel()) is True
    assert len(seen) == 1
    assert seen[0].code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert isinstance(seen[0].__cause__, grpc.RpcError)


def test_fail_open_without_hook_logs_a_warning(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="occupancy_client")
    with Client(env.dead_addr) as c:
        assert c.is_occupied(unique_channel()) is True
    assert any("assuming the channel is occupied" in r.getMessage() for r in caplog.records)


def test_fail_open_survives_a_broken_hook(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: OccupancyError) -> None:
        raise RuntimeError("hook bug")

    with Client(env.dead_addr, on_error=broken) as c:
        assert c.is_occupied(unique_channel()) is True
    assert any("hook raised" in r.getMessage() for r in caplog.records)


def test_raise_mode_raises_unavailable_when_gate_is_down(env: Env) -> None:
    with Client(env.dead_addr, fail_open=False) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_publish_raises_when_gate_is_down_even_failing_open(env: Env) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, fail_open=True, on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied([unique_channel()], "progress", "{}")
    assert info.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert seen == []


def test_deadline_applies_to_the_check(blackhole_addr: str) -> None:
    seen: list[OccupancyError] = []
    with Client(blackhole_addr, timeout=0.2, on_error=seen.append) as c:
        assert c.is_occupied(unique_channel()) is True
    assert [e.code for e in seen] == [grpc.StatusCode.DEADLINE_EXCEEDED]

    with Client(blackhole_addr, timeout=0.2, fail_open=False) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_deadline_applies_to_publish(blackhole_addr: str) -> None:
    with Client(blackhole_addr, publish_timeout=0.2) as c:
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied([unique_channel()], "progress", "{}")
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_closed_client_refuses_calls(env: Env) -> None:
    c = Client(env.addr)
    c.close()
    c.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        c.is_occupied(unique_channel())


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_rejects_non_positive_timeouts(bad: float) -> None:
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", timeout=bad)
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", publish_timeout=bad)


def test_error_keeps_its_fields_through_pickle() -> None:
    err = OccupancyError(grpc.StatusCode.UNAVAILABLE, "store down", "IsOccupied")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.code, copy.details, copy.method) == (err.code, err.details, err.method)
    assert str(copy) == "IsOccupied failed: UNAVAILABLE: store down"
