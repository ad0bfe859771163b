"""The asyncio client against the real gate and Pusher stand-in.

Each test drives coroutines with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import grpc
import pytest

import occupancy_client.aio
from occupancy_client import ClientClosedError, OccupancyError, PublishResult

from _support import Env, Forwarder, unique_channel


def test_occupied_after_webhook_and_vacant_after_vacated(env: Env) -> None:
    async def scenario() -> None:
        channel = unique_channel("aio")
        async with occupancy_client.aio.Client(env.addr) as client:
            assert await client.is_occupied(channel) is False
            env.occupy(channel)
            assert await client.is_occupied(channel) is True
            env.vacate(channel)
            assert await client.is_occupied(channel) is False

    asyncio.run(scenario())


def test_publish_to_occupied_channel_reaches_pusher_once(env: Env) -> None:
    channel = unique_channel("private-aio")
    env.occupy(channel)
    data = json.dumps({"job": channel, "pct": 90})

    async def scenario() -> PublishResult:
        async with occupancy_client.aio.Client(env.addr) as client:
            return await client.publish_if_occupied(
                [channel], "progress", data, socket_id="987.654"
            )

    result = asyncio.run(scenario())

    assert result == PublishResult(published=(channel,), skipped=())
    calls = env.calls_for(channel)
    assert len(calls) == 1, calls
    assert calls[0]["path"] == f"/apps/{env.app_id}/events"
    assert calls[0]["signature_valid"] is True
    assert calls[0]["body"]["name"] == "progress"
    assert calls[0]["body"]["data"] == data
    assert calls[0]["body"]["channels"] == [channel]
    assert calls[0]["body"]["socket_id"] == "987.654"


def test_publish_to_vacant_channel_makes_no_call(env: Env) -> None:
    channel = unique_channel("aio")

    async def scenario() -> PublishResult:
        async with occupancy_client.aio.Client(env.addr) as client:
            return await client.publish_if_occupied([channel], "progress", "{}")

    assert asyncio.run(scenario()) == PublishResult(published=(), skipped=(channel,))
    assert env.calls_for(channel) == []


def test_publish_to_a_mix_sends_one_call_for_the_occupied_ones(env: Env) -> None:
    occupied = [unique_channel("aio-occ"), unique_channel("aio-occ")]
    vacant = [unique_channel("aio-vac")]
    for channel in occupied:
        env.occupy(channel)
    requested = [occupied[0], vacant[0], occupied[1]]

    async def scenario() -> PublishResult:
        async with occupancy_client.aio.Client(env.addr) as client:
            return await client.publish_if_occupied(requested, "done", "{}")

    result = asyncio.run(scenario())

    assert result.published == tuple(occupied)
    assert result.skipped == tuple(vacant)
    calls = env.calls_for(*requested)
    assert len(calls) == 1, calls
    assert calls[0]["signature_valid"] is True
    assert calls[0]["body"]["channels"] == occupied


def test_concurrent_checks_share_one_client(env: Env) -> None:
    channels = [unique_channel("aio-many") for _ in range(20)]
    for channel in channels[::2]:
        env.occupy(channel)

    async def scenario() -> list[bool]:
        async with occupancy_client.aio.Client(env.addr) as client:
            return list(await asyncio.gather(*(client.is_occupied(c) for c in channels)))

    assert asyncio.run(scenario()) == [i % 2 == 0 for i in range(len(channels))]


def test_built_outside_a_loop_and_used_from_two_loops(env: Env, forwarder: Forwarder) -> None:
    forwarder.open()
    client = occupancy_client.aio.Client(forwarder.addr, fail_open=False)
    time.sleep(0.2)
    assert forwarder.connections == 0, "constructing a client must not connect"
    channel = unique_channel("aio")
    env.occupy(channel)

    async def check() -> bool:
        return await client.is_occupied(channel)

    assert asyncio.run(check()) is True
    assert asyncio.run(check()) is True  # a new loop gets a channel of its own
    asyncio.run(client.close())


def test_target_defaults_to_occupancy_addr(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCCUPANCY_ADDR", env.addr)

    async def scenario() -> bool:
        async with occupancy_client.aio.Client(fail_open=False) as client:
            return await client.is_occupied(unique_channel("aio"))

    assert asyncio.run(scenario()) is False
    monkeypatch.delenv("OCCUPANCY_ADDR")
    with pytest.raises(ValueError, match="OCCUPANCY_ADDR"):
        occupancy_client.aio.Client()


@pytest.mark.parametrize("fail_open", [True, False])
def test_bad_channel_name_raises_locally_even_when_the_gate_is_down(
    env: Env, fail_open: bool
) -> None:
    seen: list[OccupancyError] = []

    async def scenario() -> None:
        async with occupancy_client.aio.Client(
            env.dead_addr, fail_open=fail_open, on_error=seen.append
        ) as client:
            for name in ("bad channel!", "", "x" * 165):
                with pytest.raises(OccupancyError) as info:
                    await client.is_occupied(name)
                assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(OccupancyError) as info:
                await client.publish_if_occupied(["ok", "bad channel!"], "progress", "{}")
            assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(scenario())
    assert seen == []


def test_fail_open_answers_true_when_gate_is_down_and_reports_it(env: Env) -> None:
    seen: list[OccupancyError] = []

    async def scenario() -> bool:
        async with occupancy_client.aio.Client(env.dead_addr, on_error=seen.append) as client:
            return await client.is_occupied(unique_channel("aio"))

    assert asyncio.run(scenario()) is True
    assert len(seen) == 1
    assert seen[0].code is grpc.StatusCode.UNAVAILABLE


def test_fail_open_answers_true_for_resource_exhausted(env: Env) -> None:
    channel = unique_channel("aio")
    env.occupy(channel)
    seen: list[OccupancyError] = []
    tiny = [("grpc.max_receive_message_length", 1)]

    async def scenario() -> bool:
        async with occupancy_client.aio.Client(
            env.addr, options=tiny, on_error=seen.append
        ) as client:
            return await client.is_occupied(channel)

    assert asyncio.run(scenario()) is True
    assert [e.code for e in seen] == [grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_fail_open_without_hook_logs_one_warning(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="occupancy_client")

    async def scenario() -> list[bool]:
        async with occupancy_client.aio.Client(env.dead_addr) as client:
            return [await client.is_occupied(unique_channel("aio")) for _ in range(3)]

    assert asyncio.run(scenario()) == [True, True, True]
    warnings = [r.getMessage() for r in caplog.records if r.name == "occupancy_client"]
    assert len(warnings) == 1, warnings
    assert "assuming the channel is occupied" in warnings[0]


def test_raise_mode_raises_unavailable_when_gate_is_down(env: Env) -> None:
    async def scenario() -> None:
        async with occupancy_client.aio.Client(env.dead_addr, fail_open=False) as client:
            await client.is_occupied(unique_channel("aio"))

    with pytest.raises(OccupancyError) as info:
        asyncio.run(scenario())
    assert info.value.code is grpc.StatusCode.UNAVAILABLE


def test_publish_raises_when_gate_is_down_even_failing_open(env: Env) -> None:
    async def scenario() -> None:
        async with occupancy_client.aio.Client(env.dead_addr, fail_open=True) as client:
            await client.publish_if_occupied([unique_channel("aio")], "progress", "{}")

    with pytest.raises(OccupancyError) as info:
        asyncio.run(scenario())
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert info.value.method == "PublishIfOccupied"


def test_deadlines_apply(blackhole_addr: str) -> None:
    async def scenario() -> None:
        seen: list[OccupancyError] = []
        async with occupancy_client.aio.Client(
            blackhole_addr, check_timeout=0.2, publish_timeout=0.3, on_error=seen.append
        ) as client:
            assert await client.is_occupied(unique_channel("aio")) is True
            assert [e.code for e in seen] == [grpc.StatusCode.DEADLINE_EXCEEDED]
            with pytest.raises(OccupancyError) as info:
                await client.publish_if_occupied([unique_channel("aio")], "progress", "{}")
            assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED

    asyncio.run(scenario())


def test_closed_client_raises_the_closed_error_for_every_call(env: Env) -> None:
    async def scenario() -> None:
        client = occupancy_client.aio.Client(env.addr)
        assert await client.is_occupied(unique_channel("aio")) is False
        await client.close()
        await client.close()  # idempotent
        with pytest.raises(ClientClosedError, match="closed"):
            await client.is_occupied(unique_channel("aio"))
        with pytest.raises(ClientClosedError):
            await client.publish_if_occupied([unique_channel("aio")], "progress", "{}")

    asyncio.run(scenario())
