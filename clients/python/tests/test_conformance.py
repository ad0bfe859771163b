"""The five points every client says the same way (clients/CONTRACT.md,
"Conformance"): the publish result's fields, the fake's vocabulary and failure
policy, wait_synced, the closed error's type, ADDRESS_ENV."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import pytest

import occupancy_client
from occupancy_client import (
    ADDRESS_ENV,
    Client,
    ClientClosedError,
    NotCachedError,
    OccupancyError,
    PublishResult,
    aio,
)
from occupancy_client.testing import AsyncFakeClient, FakeClient

from _support import Env, unique_channel

PUBLISH_FIELDS = ["published", "skipped", "deferred", "superseded", "store_unavailable"]


def test_publish_result_fields_from_the_gate_and_the_fake(env: Env) -> None:
    channel = unique_channel("conf")
    env.occupy(channel)
    with Client(env.addr) as c:
        real = c.publish_if_occupied([channel, unique_channel("conf-vacant")], "e", "{}")
    assert [f.name for f in dataclasses.fields(real)] == PUBLISH_FIELDS
    assert real.published == (channel,)
    assert (real.deferred, real.superseded, real.store_unavailable) == ((), 0, False)
    fake = FakeClient(occupied={"a"}).publish_if_occupied(["a", "b"], "e", "{}")
    assert fake == PublishResult(
        published=("a",), skipped=("b",), deferred=(), superseded=0, store_unavailable=False
    )


def test_fake_vocabulary_and_failure_policy() -> None:
    seen: list[OccupancyError] = []
    down = OccupancyError(grpc.StatusCode.UNAVAILABLE, "down", "")
    gate = FakeClient(on_error=seen.append)
    gate.occupy("a", "b")
    gate.vacate("b")
    assert gate.is_occupied("a") is True
    assert gate.is_occupied("b") is False
    gate.fail_with(down)
    assert gate.is_occupied("b") is True, "UNAVAILABLE fails open"
    assert [e.code for e in seen] == [grpc.StatusCode.UNAVAILABLE]
    with pytest.raises(OccupancyError) as info:
        gate.publish_if_occupied(["a"], "e", "{}")
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    strict = FakeClient(fail_open=False)
    strict.fail_with(down)
    with pytest.raises(OccupancyError):
        strict.is_occupied("a")
    gate.fail_with(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    with pytest.raises(OccupancyError) as info:
        gate.is_occupied("a")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    gate.recover()
    assert gate.is_occupied("b") is False
    assert gate.wait_synced(1) is True
    assert asyncio.run(AsyncFakeClient().wait_synced(1)) is True
    with pytest.raises(TypeError, match="recover"):
        gate.fail_with(None)  # type: ignore[arg-type]


def test_wait_synced(env: Env) -> None:
    with Client(env.addr, cached=True, fail_open=False) as cached:
        assert cached.wait_synced(5) is True
    with Client(env.dead_addr, cached=True, fail_open=False) as dead:
        assert dead.wait_synced(0.3) is False
    with Client(env.addr) as plain:
        with pytest.raises(NotCachedError) as info:
            plain.wait_synced(1)
        assert info.value.code is grpc.StatusCode.FAILED_PRECONDITION
        assert isinstance(info.value, ValueError)
    with pytest.raises(ClientClosedError):
        cached.wait_synced(1)

    async def scenario() -> bool:
        async with aio.Client(env.addr, cached=True, fail_open=False) as c:
            return await c.wait_synced(5)

    assert asyncio.run(scenario()) is True


def test_the_closed_error_is_an_occupancy_error(env: Env) -> None:
    real = Client(env.addr)
    real.close()
    fake = FakeClient()
    fake.close()
    for gate in (real, fake):
        with pytest.raises(ClientClosedError) as info:
            gate.is_occupied("a")
        assert isinstance(info.value, OccupancyError)


def test_address_env() -> None:
    assert ADDRESS_ENV == "OCCUPANCY_ADDR"
    assert "ADDRESS_ENV" in occupancy_client.__all__
