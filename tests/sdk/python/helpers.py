"""What every test of this suite needs: the environment tests/pusher_sdks.rs sets (described in
tests/sdk/README.md), Pusher clients pointed at the gate, signed webhooks that mark channels
occupied, and what the Pusher stand-in received."""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time

import nacl.secret
import pusher
import requests


def _env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run this suite with `cargo test --test pusher_sdks python`"
        )
    return value


HOST = _env("PUSHER_GATE_HOST")
PORT = int(_env("PUSHER_GATE_PORT"))
ORPHAN_PORT = int(_env("PUSHER_ORPHAN_GATE_PORT"))
CLOSED_PORT = int(_env("PUSHER_CLOSED_PORT"))
APP_ID = _env("PUSHER_APP_ID")
KEY = _env("PUSHER_KEY")
SECRET = _env("PUSHER_SECRET")
MASTER_KEY = _env("PUSHER_ENCRYPTION_MASTER_KEY_BASE64")
WEBHOOK_URL = _env("OCCUPANCY_WEBHOOK_URL")
STUB_URL = _env("PUSHER_STUB_URL")
SUBSCRIPTION_COUNT = int(_env("STUB_SUBSCRIPTION_COUNT"))
USER_COUNT = int(_env("STUB_USER_COUNT"))
UPSTREAM_TIMEOUT_MS = int(_env("PUSHER_GATE_UPSTREAM_TIMEOUT_MS"))


def pusher_at(port=PORT, **overrides):
    """A Pusher client configured as a user would point it at the gate: host, port, ssl=False."""
    options = dict(
        app_id=APP_ID,
        key=KEY,
        secret=SECRET,
        ssl=False,
        host=HOST,
        port=port,
        timeout=10,
        encryption_master_key_base64=MASTER_KEY,
    )
    options.update(overrides)
    return pusher.Pusher(**options)


def unique(prefix):
    """A channel name no other test uses."""
    return f"{prefix}py-{secrets.token_hex(5)}"


def occupy(*channels):
    """Marks `channels` occupied with one webhook signed as Pusher signs it; 200 means applied."""
    body = json.dumps(
        {
            "time_ms": int(time.time() * 1000),
            "events": [{"name": "channel_occupied", "channel": c} for c in channels],
        }
    ).encode()
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = requests.post(
        WEBHOOK_URL,
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Pusher-Key": KEY,
            "X-Pusher-Signature": signature,
        },
        timeout=10,
    )
    assert response.status_code == 200, f"webhook refused: {response.text}"


def channels_of(call):
    """The channels a recorded call names, whatever the endpoint."""
    body = call["body"] if isinstance(call["body"], dict) else {}
    if isinstance(body.get("batch"), list):
        return [e.get("channel") for e in body["batch"]]
    if isinstance(body.get("channels"), list):
        return body["channels"]
    if isinstance(body.get("channel"), str):
        return [body["channel"]]
    m = re.match(r"^/apps/[^/]+/channels/([^/]+)", call["path"])
    return [m.group(1)] if m else []


def stub_calls():
    response = requests.get(f"{STUB_URL}/_stub/calls", timeout=10)
    assert response.status_code == 200
    return response.json()["calls"]


def calls_for(*channels):
    """Every call the stand-in received that names any of `channels`."""
    return [c for c in stub_calls() if any(ch in channels for ch in channels_of(c))]


def assert_never_forwarded(*channels):
    calls = calls_for(*channels)
    assert calls == [], f"vacant channels {channels} reached Pusher: {calls}"


def upstream_answers(channel, status, body, delay_ms=0):
    """Makes the stand-in answer every request naming `channel` with `status` and `body`, after
    `delay_ms`."""
    response = requests.post(
        f"{STUB_URL}/_stub/behaviour",
        json={"channel": channel, "status": status, "body": body, "delay_ms": delay_ms},
        timeout=10,
    )
    assert response.status_code == 200


def upstream_lists(channels):
    """What the stand-in lists for GET channels from now on."""
    response = requests.post(f"{STUB_URL}/_stub/listing", json={"channels": channels}, timeout=10)
    assert response.status_code == 200


def decrypt(channel, data):
    """Opens an end-to-end encrypted payload as a subscriber would; raises if a byte changed."""
    sealed = json.loads(data)
    assert sorted(sealed) == ["ciphertext", "nonce"], sealed
    shared = hashlib.sha256(channel.encode() + base64.b64decode(MASTER_KEY)).digest()
    return (
        nacl.secret.SecretBox(shared)
        .decrypt(base64.b64decode(sealed["ciphertext"]), base64.b64decode(sealed["nonce"]))
        .decode()
    )
