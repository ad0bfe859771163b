"""Test support: the environment the Rust harness provides, and helpers to
drive the real gate (signed webhooks) and inspect the Pusher stand-in."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

REQUIRED_ENV = (
    "OCCUPANCY_ADDR",
    "OCCUPANCY_WEBHOOK_URL",
    "TEST_PUSHER_APP_ID",
    "TEST_PUSHER_KEY",
    "TEST_PUSHER_SECRET",
    "PUSHER_STUB_URL",
    "OCCUPANCY_DEAD_ADDR",
)


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
        """POSTs a correctly signed Pusher webhook and waits for it to apply."""
        body = json.dumps(
            {"time_ms": int(time.time() * 1000), "events": [{"name": name, "channel": channel}]}
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


def unique_channel(prefix: str = "py") -> str:
    """A channel name no other test (or other client's suite) will use."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"
