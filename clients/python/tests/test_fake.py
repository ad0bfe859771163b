"""The shipped test doubles, tested as a product (no gate involved)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from occupancy_client import ClientClosedError, OccupancyError, PublishResult
from occupancy_client.testing import AsyncFakeClient, FakeClient, Published


def test_channels_are_marked_by_hand() -> None:
    gate = FakeClient(occupied={"a"})
    assert gate.is_occupied("a") is True
    assert gate.is_occupied("b") is False
    gate.occupy("b", "c")
    gate.vacate("a")
    assert [gate.is_occupied(x) for x in "abc"] == [False, True, True]


def test_publishes_are_recorded() -> None:
    gate = FakeClient(occupied=["a", "b"])
    result = gate.publish_if_occupied(["a", "x", "b", "a"], "progress", '{"pct":1}', "1.2")
    assert result == PublishResult(published=("a", "b"), skipped=("x",))
    gate.publish_if_occupied(["x"], "done", "{}")
    assert gate.published == [
        Published(("a", "x", "b", "a"), "progress", '{"pct":1}', "1.2", result),
        Published(("x",), "done", "{}", None, PublishResult(published=(), skipped=("x",))),
    ]


@pytest.mark.parametrize("name", ["", "bad channel!", "x" * 165, "caf\u00e9"])
def test_name_checks_are_the_real_clients(name: str) -> None:
    gate = FakeClient()
    with pytest.raises(OccupancyError) as info:
        gate.is_occupied(name)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(OccupancyError) as info:
        gate.publish_if_occupied(["ok", name], "progress", "{}")
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(OccupancyError):
        gate.occupy(name)
    assert gate.published == []


def test_publish_checks_are_the_real_clients() -> None:
    gate = FakeClient()
    for channels, event in (([], "e"), ([f"c{i}" for i in range(101)], "e"), (["a"], "")):
        with pytest.raises(OccupancyError) as info:
            gate.publish_if_occupied(channels, event, "{}")
        assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(TypeError):
        gate.publish_if_occupied("a", "e", "{}")


def test_simulated_outage_follows_the_failure_policy() -> None:
    hooked: list[OccupancyError] = []
    gate = FakeClient(on_error=hooked.append)
    gate.fail_with(grpc.StatusCode.UNAVAILABLE)
    assert gate.is_occupied("a") is True
    assert [e.code for e in gate.errors] == [grpc.StatusCode.UNAVAILABLE]
    assert hooked == gate.errors
    with pytest.raises(OccupancyError) as info:
        gate.publish_if_occupied(["a"], "e", "{}")
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    gate.fail_with(grpc.StatusCode.UNAUTHENTICATED)
    with pytest.raises(OccupancyError):
        gate.is_occupied("a")  # not an outage: raised even failing open
    gate.recover()
    assert gate.is_occupied("a") is False

    strict = FakeClient(fail_open=False)
    strict.fail_with(grpc.StatusCode.DEADLINE_EXCEEDED)
    with pytest.raises(OccupancyError) as info:
        strict.is_occupied("a")
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_closed_fake_raises_the_closed_error() -> None:
    with FakeClient() as gate:
        pass
    with pytest.raises(ClientClosedError):
        gate.is_occupied("a")
    with pytest.raises(ClientClosedError):
        gate.publish_if_occupied(["a"], "e", "{}")


def test_async_fake() -> None:
    async def scenario() -> None:
        async with AsyncFakeClient(occupied=["a"]) as gate:
            assert await gate.is_occupied("a") is True
            assert await gate.is_occupied("b") is False
            result = await gate.publish_if_occupied(["a", "b"], "e", "{}")
            assert result == PublishResult(published=("a",), skipped=("b",))
            assert gate.published[0].result == result
            with pytest.raises(OccupancyError) as info:
                await gate.is_occupied("bad channel!")
            assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
            gate.fail_with(grpc.StatusCode.UNAVAILABLE)
            assert await gate.is_occupied("b") is True
            assert len(gate.errors) == 1
        with pytest.raises(ClientClosedError):
            await gate.is_occupied("a")

    asyncio.run(scenario())
