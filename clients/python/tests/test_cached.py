"""Cached mode against the real gate: a local copy kept by WatchOccupancy."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import grpc
import pytest

import occupancy_client.aio
from occupancy_client import Client, ClientClosedError, OccupancyError, _common
from occupancy_client._common import WatchState
from occupancy_client._generated.occupancy.v1 import occupancy_pb2

from _support import Env, Forwarder, Secure, eventually, restart_gate, secure_env, unique_channel

Kind = occupancy_pb2.WatchOccupancyResponse.Kind


def watch_threads() -> int:
    return sum(t.name == "occupancy-watch" for t in threading.enumerate())


def test_a_webhook_is_seen_locally(env: Env) -> None:
    channel = unique_channel("cached")
    with Client(env.addr, cached=True, fail_open=False) as c:
        assert c.wait_synced(10), "never synchronised"
        assert c.is_occupied(channel) is False
        env.occupy(channel)
        assert eventually(lambda: c.is_occupied(channel), timeout=5)
        env.vacate(channel)
        assert eventually(lambda: not c.is_occupied(channel), timeout=5)


def test_the_snapshot_holds_channels_occupied_before_subscribing(env: Env) -> None:
    channel = unique_channel("cached")
    env.occupy(channel)
    with Client(env.addr, cached=True, fail_open=False) as c:
        # No wait_synced: the first check waits (up to check_timeout) for sync.
        assert c.is_occupied(channel) is True


def test_checks_make_no_calls(env: Env, forwarder: Forwarder) -> None:
    forwarder.open()
    channel = unique_channel("cached")
    env.occupy(channel)
    with Client(forwarder.addr, cached=True, fail_open=False) as c:
        assert c.wait_synced(10)
        time.sleep(0.3)
        before = forwarder.bytes_up
        for _ in range(200):
            assert c.is_occupied(channel) is True
        assert forwarder.bytes_up == before, "a cached check sent something to the gate"


def test_a_gate_restart_is_survived(env: Env) -> None:
    before, after = unique_channel("restart"), unique_channel("restart")
    env.occupy(before)
    seen: list[OccupancyError] = []
    with Client(env.addr, cached=True, on_error=seen.append) as c:
        assert c.wait_synced(10)
        assert c.is_occupied(before) is True
        restart_gate()
        env.occupy(after)
        assert eventually(lambda: c.wait_synced(0.1) and c.is_occupied(after), timeout=10), (
            "the cached copy never caught up after the restart"
        )
        assert c.is_occupied(before) is True


def test_not_synchronised_answers_the_outage_answer(env: Env) -> None:
    seen: list[OccupancyError] = []
    with Client(env.dead_addr, cached=True, check_timeout=0.3, on_error=seen.append) as c:
        assert c.is_occupied(unique_channel()) is True
        assert c.is_occupied(unique_channel()) is True
    assert [e.code for e in seen] == [grpc.StatusCode.UNAVAILABLE] * 2
    assert "not synchronised" in seen[0].details
    assert "last stream error: UNAVAILABLE" in seen[0].details

    with Client(env.dead_addr, cached=True, check_timeout=0.3, fail_open=False) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.UNAVAILABLE


def test_a_configuration_error_of_the_stream_is_raised() -> None:
    secure: Secure = secure_env()
    seen: list[OccupancyError] = []
    with Client(secure.addr, ca_file=secure.ca_file, cached=True, on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert seen == []


def test_cached_mode_with_token_and_tls(env: Env) -> None:
    # The secure gate is a second process on the same store: its snapshot
    # holds what the plaintext gate applied (its change feed is its own).
    secure = secure_env()
    channel = unique_channel("cached-tls")
    env.occupy(channel)
    with Client(
        secure.addr, token=secure.token, ca_file=secure.ca_file, cached=True, fail_open=False
    ) as c:
        assert c.wait_synced(10)
        assert c.is_occupied(channel) is True
        assert c.is_occupied(unique_channel("cached-tls")) is False


def test_local_name_checks_apply(env: Env) -> None:
    with Client(env.addr, cached=True) as c:
        assert c.wait_synced(10)
        with pytest.raises(OccupancyError) as info:
            c.is_occupied("bad channel!")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_close_ends_the_subscription(env: Env) -> None:
    threads = watch_threads()
    c = Client(env.addr, cached=True)
    assert watch_threads() == threads, "construction starts nothing"
    assert c.wait_synced(10)
    assert watch_threads() == threads + 1
    c.close()
    assert watch_threads() == threads
    with pytest.raises(ClientClosedError):
        c.is_occupied(unique_channel())
    with pytest.raises(ClientClosedError):
        c.wait_synced(1)


def test_publish_still_asks_the_gate(env: Env) -> None:
    channel = unique_channel("cached")
    env.occupy(channel)
    with Client(env.addr, cached=True) as c:
        assert c.publish_if_occupied([channel], "progress", "{}").published == (channel,)


def test_resubscribe_backoff_is_100ms_doubling_to_2s() -> None:
    delays = list(itertools.islice(_common.backoff_delays(), 8))
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]


def test_resubscribes_while_the_gate_is_down(env: Env, forwarder: Forwarder) -> None:
    channel = unique_channel("cached")
    with Client(forwarder.addr, cached=True, check_timeout=0.3, fail_open=False) as c:
        with pytest.raises(OccupancyError):
            c.is_occupied(channel)
        time.sleep(3)  # several failed subscriptions, backoff at its 2 s cap
        forwarder.open()
        back = time.monotonic()
        assert c.wait_synced(10)
        assert time.monotonic() - back < 4.5
        env.occupy(channel)
        assert eventually(lambda: c.is_occupied(channel), timeout=5)


def msg(
    kind: Any, occupied: tuple[str, ...] = (), vacated: tuple[str, ...] = ()
) -> occupancy_pb2.WatchOccupancyResponse:
    return occupancy_pb2.WatchOccupancyResponse(kind=kind, occupied=occupied, vacated=vacated)


def test_stream_protocol() -> None:
    # The protocol's states, some of which a healthy gate rarely sends (a RESET
    # in the middle of a stream).
    seen: list[OccupancyError] = []

    def answer(channel: str) -> bool:
        return state.answer(channel, fail_open=True, hook=seen.append)

    state = WatchState()
    state.apply(msg(Kind.KIND_RESET))
    state.apply(msg(Kind.KIND_SNAPSHOT, ("a", "b")))
    assert answer("zzz") is True and len(seen) == 1, "not synchronised yet: the outage answer"
    state.apply(msg(Kind.KIND_SNAPSHOT, ("c",)))
    state.apply(msg(Kind.KIND_SYNCED))
    assert [answer(x) for x in "abcd"] == [True, True, True, False]
    state.apply(msg(Kind.KIND_CHANGE, ("d",), ("a",)))
    assert [answer(x) for x in "abcd"] == [False, True, True, True]
    state.apply(msg(Kind.KIND_RESET))
    assert answer("zzz") is True and len(seen) == 2
    state.apply(msg(Kind.KIND_SNAPSHOT, ("x",)))
    state.apply(msg(Kind.KIND_SYNCED))
    assert [answer(x) for x in "abcdx"] == [False, False, False, False, True]
    state.broken(OccupancyError(grpc.StatusCode.UNAVAILABLE, "gone", "WatchOccupancy"))
    with pytest.raises(OccupancyError) as info:
        state.answer("x", fail_open=False, hook=seen.append)
    assert info.value.code is grpc.StatusCode.UNAVAILABLE and "gone" in info.value.details


def test_asyncio_cached_mode(env: Env) -> None:
    channel = unique_channel("aio-cached")
    env.occupy(channel)
    later = unique_channel("aio-cached")

    async def scenario() -> None:
        async with occupancy_client.aio.Client(env.addr, cached=True, fail_open=False) as c:
            assert await c.is_occupied(channel) is True  # waits for the first sync
            env.occupy(later)
            deadline = time.monotonic() + 5
            while not await c.is_occupied(later):
                assert time.monotonic() < deadline, "webhook never seen locally"
                await asyncio.sleep(0.05)
            restart_gate()
            env.vacate(later)

            async def vacant_locally() -> bool:
                try:
                    return not await c.is_occupied(later)
                except OccupancyError:  # resubscribing: not synchronised yet
                    return False

            deadline = time.monotonic() + 10
            while not await vacant_locally():
                assert time.monotonic() < deadline, "restart not survived"
                await asyncio.sleep(0.05)
            assert await c.is_occupied(channel) is True

    asyncio.run(scenario())


def test_asyncio_cached_not_synchronised(env: Env) -> None:
    seen: list[OccupancyError] = []

    async def scenario() -> bool:
        async with occupancy_client.aio.Client(
            env.dead_addr, cached=True, check_timeout=0.3, on_error=seen.append
        ) as c:
            return await c.is_occupied(unique_channel())

    assert asyncio.run(scenario()) is True
    assert [e.code for e in seen] == [grpc.StatusCode.UNAVAILABLE]
