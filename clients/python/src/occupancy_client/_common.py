"""Logic shared by the blocking and the asyncio client.

Everything here is transport-agnostic: argument checking, request building,
and the fail-open decision, so both clients behave identically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ._errors import ErrorHook, OccupancyError
from ._generated.occupancy.v1 import occupancy_pb2

__all__ = ["PublishResult"]

logger = logging.getLogger("occupancy_client")

DEFAULT_TIMEOUT = 1.0
DEFAULT_PUBLISH_TIMEOUT = 5.0

ChannelOptions = Sequence[tuple[str, Any]]

# gRPC's default reconnect backoff grows to 120 s, so after a gate restart a
# fail-open client could keep answering "occupied" without asking for minutes.
# The gate is a nearby service; cap the backoff so recovery is noticed quickly.
# (grpc.min_reconnect_backoff_ms is deliberately left alone: gRPC core also uses
# it as the connection handshake timeout.)
_DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.max_reconnect_backoff_ms", 5000),)


@dataclass(frozen=True)
class PublishResult:
    """What ``publish_if_occupied`` did, channel by channel.

    Every requested channel appears in exactly one of the two tuples (once,
    even if it was requested twice), in request order.

    Attributes:
        published: Channels that were occupied; the event was sent to them in
            one Pusher API call.
        skipped: Channels that were vacant and received nothing.
    """

    published: tuple[str, ...]
    skipped: tuple[str, ...]


def check_timeout(name: str, value: float) -> float:
    """Rejects deadlines that would make every call fail or never time out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def channel_options(options: ChannelOptions | None) -> list[tuple[str, Any]]:
    """Merges caller channel arguments over the library defaults (caller wins)."""
    merged = dict(_DEFAULT_CHANNEL_OPTIONS)
    if options:
        merged.update(dict(options))
    return list(merged.items())


def is_occupied_request(channel: str) -> occupancy_pb2.IsOccupiedRequest:
    """Builds the request, turning a non-string into a TypeError up front."""
    if not isinstance(channel, str):
        raise TypeError(f"channel must be a str, got {type(channel).__name__}")
    return occupancy_pb2.IsOccupiedRequest(channel=channel)


def publish_request(
    channels: Iterable[str], event: str, data: str, socket_id: str | None
) -> occupancy_pb2.PublishIfOccupiedRequest:
    """Builds the request, catching the classic single-string mistake.

    A ``str`` is itself an iterable of strings, so ``publish_if_occupied("jobs",
    ...)`` would otherwise publish to the channels ``"j"``, ``"o"``, ...
    """
    if isinstance(channels, (str, bytes)):
        raise TypeError("channels must be an iterable of channel names, not a single string")
    names = list(channels)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"every channel must be a str, got {type(name).__name__}")
    for field, value in (("event", event), ("data", data)):
        if not isinstance(value, str):
            raise TypeError(f"{field} must be a str, got {type(value).__name__}")
    if socket_id is not None and not isinstance(socket_id, str):
        raise TypeError(f"socket_id must be a str or None, got {type(socket_id).__name__}")
    return occupancy_pb2.PublishIfOccupiedRequest(
        channels=names, event=event, data=data, socket_id=socket_id or ""
    )


def publish_result(response: occupancy_pb2.PublishIfOccupiedResponse) -> PublishResult:
    """Copies the protobuf containers into an immutable, protobuf-free value."""
    return PublishResult(published=tuple(response.published), skipped=tuple(response.skipped))


def occupied_or_raise(error: grpc.RpcError, *, fail_open: bool, on_error: ErrorHook | None) -> bool:
    """The failure policy of ``is_occupied``: answer True or raise.

    INVALID_ARGUMENT always raises: the request itself is wrong, so retrying
    or assuming "occupied" would only hide a bug in the caller.
    """
    err = OccupancyError._from_rpc_error("IsOccupied", error)
    if not fail_open or err.code is grpc.StatusCode.INVALID_ARGUMENT:
        raise err from error
    err.__cause__ = error
    report_swallowed(err, on_error)
    return True


def report_swallowed(err: OccupancyError, on_error: ErrorHook | None) -> None:
    """Makes a swallowed error visible: via the hook, or a log warning."""
    if on_error is None:
        logger.warning("occupancy gate unusable, assuming the channel is occupied: %s", err)
        return
    try:
        on_error(err)
    except Exception:  # noqa: BLE001 - a broken hook must not break fail-open
        logger.exception("occupancy_client on_error hook raised; ignoring it")
