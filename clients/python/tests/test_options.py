"""Call options against the real gates: token, TLS with a CA file, metadata,
keepalive and app_id (target and deadlines are in test_client.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

import occupancy_client.aio
from occupancy_client import Client, OccupancyError

from _support import Env, Forwarder, Secure, secure_env, unique_channel


@pytest.fixture
def secure() -> Secure:
    return secure_env()


def test_token_and_ca_file_reach_the_secure_gate(env: Env, secure: Secure) -> None:
    channel = unique_channel("tls")
    env.occupy(channel)  # the secure gate serves the same state
    with Client(secure.addr, token=secure.token, ca_file=secure.ca_file, fail_open=False) as c:
        assert c.is_occupied(channel) is True
        result = c.publish_if_occupied([channel], "progress", "{}")
    assert result.published == (channel,)
    assert len(env.calls_for(channel)) == 1


def test_the_old_token_works_during_rotation(env: Env, secure: Secure) -> None:
    channel = unique_channel("tls")
    env.occupy(channel)
    with Client(secure.addr, token=secure.old_token, ca_file=secure.ca_file, fail_open=False) as c:
        assert c.is_occupied(channel) is True


@pytest.mark.parametrize("token", [None, "not-the-token"], ids=["no-token", "wrong-token"])
def test_unauthenticated_raises_even_failing_open(secure: Secure, token: str | None) -> None:
    seen: list[OccupancyError] = []
    with Client(secure.addr, token=token, ca_file=secure.ca_file, on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert seen == [], "a configuration error is raised, never swallowed"


def test_metadata_is_sent_on_every_call(env: Env, secure: Secure) -> None:
    # The secure gate only answers calls that carry the token: sending it as
    # plain extra metadata (with a mixed-case key) proves metadata is sent.
    channel = unique_channel("md")
    env.occupy(channel)
    metadata = {"Authorization": f"Bearer {secure.token}", "x-encoder": "py-suite"}
    with Client(secure.addr, metadata=metadata, ca_file=secure.ca_file, fail_open=False) as c:
        assert c.is_occupied(channel) is True
        assert c.publish_if_occupied([channel], "progress", "{}").published == (channel,)


def test_token_and_authorization_metadata_together_are_refused() -> None:
    with pytest.raises(ValueError, match="authorization"):
        Client("127.0.0.1:1", token="t", metadata=[("authorization", "Bearer u")])


def test_tls_without_the_ca_does_not_trust_the_test_gate(secure: Secure) -> None:
    # tls=True trusts only the system roots, which did not sign the test
    # certificate: the handshake fails, an outage for the failure policy.
    seen: list[OccupancyError] = []
    with Client(secure.addr, tls=True, token=secure.token, on_error=seen.append) as c:
        assert c.is_occupied(unique_channel()) is True
    assert [e.code for e in seen] == [grpc.StatusCode.UNAVAILABLE]


def test_plaintext_to_the_tls_gate_fails(secure: Secure) -> None:
    with Client(secure.addr, token=secure.token, fail_open=False) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(unique_channel())
    assert info.value.code is grpc.StatusCode.UNAVAILABLE


def test_missing_ca_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Client("localhost:1", ca_file=tmp_path / "missing.pem")


def test_asyncio_client_with_token_and_ca_file(env: Env, secure: Secure) -> None:
    channel = unique_channel("aio-tls")
    env.occupy(channel)

    async def scenario() -> bool:
        async with occupancy_client.aio.Client(
            secure.addr, token=secure.token, ca_file=secure.ca_file, fail_open=False
        ) as client:
            return await client.is_occupied(channel)

    assert asyncio.run(scenario()) is True

    async def no_token() -> bool:
        async with occupancy_client.aio.Client(secure.addr, ca_file=secure.ca_file) as client:
            return await client.is_occupied(channel)

    with pytest.raises(OccupancyError) as info:
        asyncio.run(no_token())
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_keepalive_pings_an_idle_connection(env: Env) -> None:
    def idle_bytes(keepalive: float | None) -> int:
        fwd = Forwarder(env.addr)
        fwd.open()
        try:
            with Client(fwd.addr, keepalive=keepalive, fail_open=False) as c:
                assert c.is_occupied(unique_channel()) is False
                time.sleep(0.3)
                before = fwd.bytes_up
                time.sleep(2.5)
                return fwd.bytes_up - before
        finally:
            fwd.close()

    assert idle_bytes(None) == 0, "keepalive is off by default"
    assert idle_bytes(0.5) > 0, "keepalive pings were sent on the idle connection"


def test_app_id_is_sent(env: Env) -> None:
    channel = unique_channel("app")
    env.occupy(channel)
    with Client(env.addr, app_id=env.app_id, fail_open=False) as c:
        assert c.is_occupied(channel) is True
        assert c.publish_if_occupied([channel], "progress", "{}").published == (channel,)
    seen: list[OccupancyError] = []
    with Client(env.addr, app_id="no-such-app", on_error=seen.append) as c:
        with pytest.raises(OccupancyError) as info:
            c.is_occupied(channel)
    assert info.value.code is grpc.StatusCode.NOT_FOUND, "the gate checks app_id"
    assert seen == []
