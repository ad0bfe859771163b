"""Test support: the environment the Rust harness provides, helpers to drive
the real gate (signed webhooks, restarts) and the Pusher stand-in, and a TCP
forwarder to put in front of the real gate."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

REQUIRED_ENV = (
    "OCCUPANCY_ADDR",
    "OCCUPANCY_WEBHOOK_URL",
    "TEST_PUSHER_APP_ID",
    "TEST_PUSHER_KEY",
    "TEST_PUSHER_SECRET",
    "PUSHER_STUB_URL",
    "OCCUPANCY_DEAD_ADDR",
)

_last_ms: dict[str, int] = {}
_last_ms_lock = threading.Lock()


def require(name: str) -> str:
    """An environment variable the harness must provide: a missing one fails the
    test (never skips it), naming what is missing."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(
            f"missing environment variable {name}: this test needs the harness "
            "(`cargo test --test clients -- python` from the repo root) to provide it; "
            "see clients/CONTRACT.md",
            pytrace=False,
        )
    return value


def _post_json(url: str, payload: Any, timeout: float = 10) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)


@dataclass(frozen=True)
class Env:
    """The running services, as described in clients/CONTRACT.md."""

    addr: str
    webhook_url: str
    app_id: str
    key: str
    secret: str
    stub_url: str
    dead_addr: str

    def send_webhook(self, name: str, channel: str) -> None:
        """POSTs a correctly signed Pusher webhook and waits for it to apply.

        time_ms is now, and strictly later than the previous event this process
        sent for the same channel (the gate ignores older events).
        """
        now = int(time.time() * 1000)
        with _last_ms_lock:
            time_ms = max(now, _last_ms.get(channel, 0) + 1)
            _last_ms[channel] = time_ms
        body = json.dumps(
            {"time_ms": time_ms, "events": [{"name": name, "channel": channel}]}
        ).encode()
        signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Pusher-Key": self.key,
                "X-Pusher-Signature": signature,
            },
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200, f"webhook answered {response.status}"

    def occupy(self, channel: str) -> None:
        self.send_webhook("channel_occupied", channel)

    def vacate(self, channel: str) -> None:
        self.send_webhook("channel_vacated", channel)

    def calls_for(self, *channels: str) -> list[dict[str, Any]]:
        """The Pusher calls the stand-in received that name any of ``channels``."""
        with urllib.request.urlopen(f"{self.stub_url}/_stub/calls", timeout=5) as response:
            calls: list[dict[str, Any]] = json.load(response)["calls"]
        wanted = set(channels)
        return [c for c in calls if wanted.intersection(c.get("body", {}).get("channels", []))]

    def pusher_answers(self, channel: str, status: int, body: str = "", delay_ms: int = 0) -> None:
        """Makes the Pusher stand-in answer every trigger naming ``channel`` so."""
        status_code = _post_json(
            f"{self.stub_url}/_stub/behaviour",
            {"channel": channel, "status": status, "body": body, "delay_ms": delay_ms},
        )
        assert status_code == 200, f"/_stub/behaviour answered {status_code}"


@dataclass(frozen=True)
class Secure:
    """The TLS gate that requires tokens."""

    addr: str
    ca_file: str
    token: str
    old_token: str


def secure_env() -> Secure:
    return Secure(
        addr=require("OCCUPANCY_SECURE_ADDR"),
        ca_file=require("OCCUPANCY_TLS_CA"),
        token=require("OCCUPANCY_TEST_TOKEN"),
        old_token=require("OCCUPANCY_TEST_TOKEN_OLD"),
    )


def restart_gate() -> None:
    """Restarts the plaintext gate at the same address; returns once it listens."""
    url = require("OCCUPANCY_HARNESS_URL").rstrip("/")
    status = _post_json(f"{url}/restart-gate", {}, timeout=60)
    assert status == 200, f"restart-gate answered {status}"


def unique_channel(prefix: str = "py") -> str:
    """A channel name no other test (or other client's suite) will use."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def eventually(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Polls ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Forwarder:
    """A TCP forwarder in front of the real gate, on a port of its own.

    It starts closed (connections are refused, as by a stopped gate); ``open()``
    starts forwarding, ``close()`` stops listening and drops every connection.
    It counts the bytes clients send, to see keepalive pings on an idle
    connection. Not a mock: the gate behind it is the real one.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.addr = f"127.0.0.1:{self.port}"
        self.bytes_up = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            except OSError:
                pass
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if up:
                    with self._lock:
                        self.bytes_up += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
