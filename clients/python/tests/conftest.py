"""Fixtures shared by the blocking and asyncio suites."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from _support import REQUIRED_ENV, Env, Forwarder


@pytest.fixture(scope="session")
def env() -> Env:
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"missing environment variables {', '.join(missing)}: this suite runs against the "
            "real gate; run it via `cargo test --test clients -- python` from the repo root",
            pytrace=False,
        )
    e = os.environ
    return Env(
        addr=e["OCCUPANCY_ADDR"],
        webhook_url=e["OCCUPANCY_WEBHOOK_URL"],
        app_id=e["TEST_PUSHER_APP_ID"],
        key=e["TEST_PUSHER_KEY"],
        secret=e["TEST_PUSHER_SECRET"],
        stub_url=e["PUSHER_STUB_URL"].rstrip("/"),
        dead_addr=e["OCCUPANCY_DEAD_ADDR"],
    )


@pytest.fixture
def blackhole_addr() -> Iterator[str]:
    """An address that accepts TCP connections but never speaks HTTP/2.

    Calls to it can only end by their deadline, which is how the suite checks
    that deadlines are applied (not a mock of the gate: nothing answers).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        host, port = listener.getsockname()
        yield f"{host}:{port}"


@pytest.fixture
def forwarder(env: Env) -> Iterator[Forwarder]:
    """A TCP forwarder to the real gate, closed until the test opens it."""
    fwd = Forwarder(env.addr)
    try:
        yield fwd
    finally:
        fwd.close()
