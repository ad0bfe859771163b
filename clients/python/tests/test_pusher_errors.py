"""Errors from Pusher reach the caller as the gate's statuses: the stand-in is
told to fail for one channel, and a publish through the real gate raises."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

import occupancy_client.aio
from occupancy_client import Client, OccupancyError

from _support import Env, unique_channel


@pytest.mark.parametrize(
    "status, delay_ms, code",
    [
        (403, 0, grpc.StatusCode.PERMISSION_DENIED),
        (429, 0, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, 0, grpc.StatusCode.UNAVAILABLE),
        (503, 0, grpc.StatusCode.UNAVAILABLE),
        (200, 4000, grpc.StatusCode.DEADLINE_EXCEEDED),  # over the gate's 3 s Pusher timeout
    ],
    ids=["403", "429", "500", "503", "timeout"],
)
def test_pusher_failure_reaches_the_publisher(
    env: Env, status: int, delay_ms: int, code: grpc.StatusCode
) -> None:
    channel = unique_channel("pf")
    env.occupy(channel)
    env.pusher_answers(channel, status, '{"error":"from the suite"}', delay_ms)
    seen: list[OccupancyError] = []
    with Client(env.addr, on_error=seen.append) as c:  # fail-open: publishing raises anyway
        started = time.monotonic()
        with pytest.raises(OccupancyError) as info:
            c.publish_if_occupied([channel], "progress", "{}")
        elapsed = time.monotonic() - started
    assert info.value.code is code, info.value
    assert info.value.method == "PublishIfOccupied"
    assert info.value.details
    assert seen == []
    if delay_ms:
        assert elapsed < 5.0, "the gate's timeout, not the client's 5 s deadline, ended it"


def test_other_channels_are_unaffected(env: Env) -> None:
    failing, fine = unique_channel("pf"), unique_channel("pf")
    env.occupy(failing)
    env.occupy(fine)
    env.pusher_answers(failing, 403)
    with Client(env.addr) as c:
        assert c.publish_if_occupied([fine], "progress", "{}").published == (fine,)


def test_asyncio_client_sees_pusher_failures(env: Env) -> None:
    channel = unique_channel("aio-pf")
    env.occupy(channel)
    env.pusher_answers(channel, 429)

    async def scenario() -> None:
        async with occupancy_client.aio.Client(env.addr) as client:
            await client.publish_if_occupied([channel], "progress", "{}")

    with pytest.raises(OccupancyError) as info:
        asyncio.run(scenario())
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
