"""Logic shared by the blocking client, the asyncio client and the fake.

Everything here is transport-agnostic: option checking, local name checks,
request building, the failure policy, the default error hook, and the state
machine of cached mode, so every client behaves identically.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import grpc

from ._errors import ErrorHook, OccupancyError
from ._generated.occupancy.v1 import occupancy_pb2

__all__ = ["ADDRESS_ENV", "PublishResult"]

ADDRESS_ENV = "OCCUPANCY_ADDR"
"""The environment variable read when no target is given (the same name in every client)."""

logger = logging.getLogger("occupancy_client")

DEFAULT_CHECK_TIMEOUT = 1.0
DEFAULT_PUBLISH_TIMEOUT = 5.0

#: The reconnect backoff cap, for the gRPC channel and for cached mode's
#: resubscription (gRPC's own default cap is 120 s).
MAX_BACKOFF_S = 2.0
#: Cached mode's first resubscription delay; it doubles up to MAX_BACKOFF_S.
WATCH_INITIAL_BACKOFF_S = 0.1
#: The default hook logs at most one warning per this many seconds.
WARN_INTERVAL_S = 30.0

MAX_CHANNEL_NAME_LEN = 164
MAX_CHANNELS = 100
MAX_EVENT_NAME_LEN = 200
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,164}")

#: Statuses that mean "the gate could not answer right now": fail-open answers
#: True for these. gRPC reports transport errors (refused, reset, dropped) as
#: UNAVAILABLE. Every other status is a configuration or caller bug and raises.
OUTAGE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

ChannelOptions = Sequence[tuple[str, Any]]
MetadataValue = Union[str, bytes]
Metadata = Union[Mapping[str, MetadataValue], Iterable[tuple[str, MetadataValue]]]

_FALSE_VALUES = frozenset({"0", "false", "no", "off", "n", "f"})


@dataclass(frozen=True)
class PublishResult:
    """What ``publish_if_occupied`` did, channel by channel.

    Every requested channel appears in exactly one of ``published``,
    ``skipped`` and ``deferred`` (once, even if it was requested twice), in
    request order.

    Attributes:
        published: Channels that were occupied; the event was sent to them in
            one Pusher API call.
        skipped: Channels that were vacant and received nothing.
        deferred: Occupied channels whose update the gate holds to coalesce
            it (empty unless the gate coalesces).
        superseded: How many held updates of earlier calls this call replaced
            (0 unless the gate coalesces).
        store_unavailable: True when the gate could not ask its store and,
            configured to publish when the store is down, published to every
            requested channel.
    """

    published: tuple[str, ...]
    skipped: tuple[str, ...]
    deferred: tuple[str, ...] = ()
    superseded: int = 0
    store_unavailable: bool = False


@dataclass(frozen=True)
class Settings:
    """Every constructor option, checked once and shared by both clients."""

    target: str
    metadata: tuple[tuple[str, MetadataValue], ...]
    tls: bool
    root_certificates: bytes | None
    channel_args: tuple[tuple[str, Any], ...]
    app_id: str
    check_timeout: float
    publish_timeout: float
    fail_open: bool
    cached: bool

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)


def settings(
    target: str | None,
    *,
    token: str | None,
    tls: bool,
    ca_file: str | os.PathLike[str] | None,
    metadata: Metadata | None,
    keepalive: float | None,
    app_id: str,
    check_timeout: float,
    publish_timeout: float,
    fail_open: bool,
    cached: bool,
    options: ChannelOptions | None,
) -> Settings:
    """Checks the constructor's options; touches neither gRPC nor the network."""
    if target is None:
        target = os.environ.get(ADDRESS_ENV) or None
        if target is None:
            raise ValueError(
                f"no gate address: pass target='host:port' or set {ADDRESS_ENV} in the environment"
            )
    if not isinstance(target, str) or not target.strip():
        raise ValueError(f"target must be a non-empty 'host:port' string, got {target!r}")
    pairs = _metadata_pairs(metadata)
    if token is not None:
        if not isinstance(token, str) or not token or token != token.strip():
            raise ValueError("token must be a non-empty string without surrounding whitespace")
        if any(key == "authorization" for key, _ in pairs):
            raise ValueError("give either token= or an 'authorization' metadata entry, not both")
        pairs.append(("authorization", f"Bearer {token}"))
    root_certificates = None
    if ca_file is not None:
        with open(ca_file, "rb") as pem:  # a missing file fails here, not on first use
            root_certificates = pem.read()
        tls = True
    if not isinstance(app_id, str):
        raise TypeError(f"app_id must be a str, got {type(app_id).__name__}")
    args: dict[str, Any] = {
        # Recover from a gate restart within seconds, not minutes.
        "grpc.max_reconnect_backoff_ms": int(MAX_BACKOFF_S * 1000),
        # gRPC shares connections between channels to the same address through
        # a process-wide pool; a channel built in a forked child would then pick
        # up the parent's connection and fail ("Wrong file descriptor
        # generation"). A pool per channel keeps every process on its own.
        "grpc.use_local_subchannel_pool": 1,
    }
    if keepalive is not None:
        seconds = check_timeout_value("keepalive", keepalive)
        args.update(
            {
                "grpc.keepalive_time_ms": max(1, int(seconds * 1000)),
                "grpc.keepalive_timeout_ms": 20_000,
                "grpc.keepalive_permit_without_calls": 1,
                "grpc.http2.max_pings_without_data": 0,
            }
        )
    if options:
        args.update(dict(options))
    return Settings(
        target=target.strip(),
        metadata=tuple(pairs),
        tls=bool(tls),
        root_certificates=root_certificates,
        channel_args=tuple(args.items()),
        app_id=app_id,
        check_timeout=check_timeout_value("check_timeout", check_timeout),
        publish_timeout=check_timeout_value("publish_timeout", publish_timeout),
        fail_open=bool(fail_open),
        cached=bool(cached),
    )


def _metadata_pairs(metadata: Metadata | None) -> list[tuple[str, MetadataValue]]:
    if metadata is None:
        return []
    items = metadata.items() if isinstance(metadata, Mapping) else metadata
    pairs: list[tuple[str, MetadataValue]] = []
    for item in items:
        key, value = item
        if not isinstance(key, str) or not key:
            raise TypeError(f"metadata keys must be non-empty str, got {key!r}")
        key = key.lower()  # HTTP/2 header names are lower case; gRPC rejects others
        if key.endswith("-bin"):
            if not isinstance(value, (bytes, str)):
                raise TypeError(f"metadata {key!r} must be bytes or str")
        elif not isinstance(value, str):
            raise TypeError(f"metadata {key!r} must be a str (only '-bin' keys take bytes)")
        pairs.append((key, value))
    return pairs


def check_timeout_value(name: str, value: float) -> float:
    """Rejects durations that would make every call fail or never time out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


# -- local checks and requests ------------------------------------------------


def check_channel(channel: str, method: str) -> str:
    """The proto's channel name rule, checked before any call."""
    if not isinstance(channel, str):
        raise TypeError(f"channel must be a str, got {type(channel).__name__}")
    if _CHANNEL_NAME.fullmatch(channel) is None:
        if not channel:
            why = "is empty"
        elif len(channel) > MAX_CHANNEL_NAME_LEN:
            why = f"is {len(channel)} characters long; the limit is {MAX_CHANNEL_NAME_LEN}"
        else:
            bad = next(c for c in channel if _CHANNEL_NAME.fullmatch(c) is None)
            why = f"contains {bad!r}"
        raise OccupancyError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"channel name {channel[:40]!r} {why}: a Pusher channel name is 1 to "
            f"{MAX_CHANNEL_NAME_LEN} characters of A-Z a-z 0-9 _ - = @ , . ;",
            method,
        )
    return channel


def is_occupied_request(channel: str, app_id: str) -> occupancy_pb2.IsOccupiedRequest:
    check_channel(channel, "IsOccupied")
    return occupancy_pb2.IsOccupiedRequest(channel=channel, app_id=app_id)


def check_publish(
    channels: Iterable[str], event: str, data: str, socket_id: str | None
) -> list[str]:
    """Checks a publish locally; returns the channel list.

    A ``str`` is itself an iterable of strings, so ``publish_if_occupied("jobs",
    ...)`` would otherwise publish to the channels ``"j"``, ``"o"``, ...
    """
    if isinstance(channels, (str, bytes)):
        raise TypeError("channels must be an iterable of channel names, not a single string")
    names = list(channels)
    for field, value in (("event", event), ("data", data)):
        if not isinstance(value, str):
            raise TypeError(f"{field} must be a str, got {type(value).__name__}")
    if socket_id is not None and not isinstance(socket_id, str):
        raise TypeError(f"socket_id must be a str or None, got {type(socket_id).__name__}")
    method = "PublishIfOccupied"
    if not 1 <= len(names) <= MAX_CHANNELS:
        raise OccupancyError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{len(names)} channels given: publish to 1 to {MAX_CHANNELS} channels",
            method,
        )
    for name in names:
        check_channel(name, method)
    if not 1 <= len(event) <= MAX_EVENT_NAME_LEN:
        raise OccupancyError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"event name is {len(event)} characters long: it must be 1 to "
            f"{MAX_EVENT_NAME_LEN} characters",
            method,
        )
    return names


def publish_request(
    channels: Iterable[str], event: str, data: str, socket_id: str | None, app_id: str
) -> occupancy_pb2.PublishIfOccupiedRequest:
    names = check_publish(channels, event, data, socket_id)
    return occupancy_pb2.PublishIfOccupiedRequest(
        channels=names, event=event, data=data, socket_id=socket_id or "", app_id=app_id
    )


def publish_result(response: occupancy_pb2.PublishIfOccupiedResponse) -> PublishResult:
    """Copies the protobuf containers into an immutable, protobuf-free value."""
    return PublishResult(
        published=tuple(response.published),
        skipped=tuple(response.skipped),
        deferred=tuple(response.deferred),
        superseded=response.superseded,
        store_unavailable=response.store_unavailable,
    )


# -- the failure policy ---------------------------------------------------------


def occupied_or_raise(err: OccupancyError, *, fail_open: bool, hook: ErrorHook) -> bool:
    """The failure policy of ``is_occupied``: answer True (outages only) or raise."""
    if not fail_open or err.code not in OUTAGE_CODES:
        raise err
    report_swallowed(err, hook)
    return True


def report_swallowed(err: OccupancyError, hook: ErrorHook) -> None:
    """Hands a swallowed error to the hook; a broken hook is logged, not raised."""
    try:
        hook(err)
    except Exception:  # noqa: BLE001 - a broken hook must not break fail-open
        logger.exception("occupancy_client on_error hook raised; ignoring it")


class WarnAtMostEvery:
    """The default ``on_error`` hook: a warning at most once per interval.

    The first swallowed error is logged at once; later ones within the
    interval are only counted, and the next warning says how many there were,
    so an outage never floods an encoder's log.
    """

    def __init__(self, interval: float = WARN_INTERVAL_S) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._last: float | None = None
        self._suppressed = 0

    def __call__(self, err: OccupancyError) -> None:
        now = monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        more = f"; {suppressed} more swallowed since the last warning" if suppressed else ""
        logger.warning(
            "occupancy gate unusable, assuming the channel is occupied (fail-open): %s%s",
            err,
            more,
        )

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


def monotonic() -> float:
    """The clock of the default hook (a module function so tests can advance it)."""
    return time.monotonic()


def backoff_delays() -> Iterator[float]:
    """Cached mode's resubscription delays: 0.1 s doubling to at most 2 s."""
    delay = WATCH_INITIAL_BACKOFF_S
    while True:
        yield delay
        delay = min(delay * 2, MAX_BACKOFF_S)


# -- fork ------------------------------------------------------------------------


def fork_support_disabled() -> bool:
    """Whether GRPC_ENABLE_FORK_SUPPORT turns gRPC core's fork handlers off.

    Without them a child of a process that used gRPC hangs in its first call
    (measured with grpcio 1.85, deadline or not).
    """
    value = os.environ.get("GRPC_ENABLE_FORK_SUPPORT")
    return value is not None and value.strip().lower() in _FALSE_VALUES


def fork_error(method: str) -> OccupancyError:
    return OccupancyError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "this process was forked after the occupancy client used gRPC, and "
        "GRPC_ENABLE_FORK_SUPPORT=false turns off gRPC's fork handlers, so any gRPC call "
        "here would hang: unset GRPC_ENABLE_FORK_SUPPORT (gRPC's Linux wheels enable fork "
        "support by default), or create the client only after the fork",
        method,
    )


#: Channels a forked child inherited: kept referenced, never closed or garbage
#: collected in the child, since tearing one down could disturb the parent's
#: connection that shares its file descriptors.
abandoned: list[object] = []


# -- cached mode -----------------------------------------------------------------

_Kind = occupancy_pb2.WatchOccupancyResponse.Kind


class WatchState:
    """The local copy kept from a WatchOccupancy stream, and its protocol.

    RESET drops the copy (not synchronised), SNAPSHOT adds, SYNCED marks the
    copy current, CHANGE applies. A broken stream drops the copy too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._occupied: set[str] = set()
        self._pending: set[str] = set()
        self.synced = False
        self.last_error: OccupancyError | None = None
        #: Set once the first subscription attempt has synchronised or failed.
        self.settled = threading.Event()

    def apply(self, message: occupancy_pb2.WatchOccupancyResponse) -> None:
        kind = message.kind
        with self._lock:
            if kind == _Kind.KIND_RESET:
                self.synced = False
                self._occupied = set()
                self._pending = set()
            elif kind == _Kind.KIND_SNAPSHOT:
                self._pending.update(message.occupied)
            elif kind == _Kind.KIND_SYNCED:
                self._occupied, self._pending = self._pending, set()
                self.synced = True
                self.last_error = None
            elif kind == _Kind.KIND_CHANGE:
                target = self._occupied if self.synced else self._pending
                target.difference_update(message.vacated)
                target.update(message.occupied)
            # KIND_UNSPECIFIED or a kind added later: ignored.
        if kind == _Kind.KIND_SYNCED:
            self.settled.set()

    def broken(self, err: OccupancyError) -> None:
        with self._lock:
            self.synced = False
            self._occupied = set()
            self._pending = set()
            self.last_error = err
        self.settled.set()

    def answer(self, channel: str, *, fail_open: bool, hook: ErrorHook) -> bool:
        with self._lock:
            if self.synced:
                return channel in self._occupied
            last = self.last_error
        if last is not None and last.code not in OUTAGE_CODES:
            # UNAUTHENTICATED, UNIMPLEMENTED, NOT_FOUND...: a configuration bug,
            # raised as the uncached client would raise it.
            raise OccupancyError(last.code, last.details, "IsOccupied")
        cause = f" (last stream error: {last.code.name}: {last.details})" if last else ""
        err = OccupancyError(
            grpc.StatusCode.UNAVAILABLE,
            f"cached mode is not synchronised with the gate{cause}",
            "IsOccupied",
        )
        return occupied_or_raise(err, fail_open=fail_open, hook=hook)


def watch_request(app_id: str) -> occupancy_pb2.WatchOccupancyRequest:
    return occupancy_pb2.WatchOccupancyRequest(app_id=app_id)
