"""The blocking client."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc

from . import _common
from ._common import ChannelOptions, Metadata, PublishResult, WatchState
from ._errors import ClientClosedError, ErrorHook, NotCachedError, OccupancyError
from ._generated.occupancy.v1 import occupancy_pb2, occupancy_pb2_grpc

__all__ = ["Client"]

_SYNCED = occupancy_pb2.WatchOccupancyResponse.Kind.KIND_SYNCED

# Every live client, so the after-fork hook can reset them in the child.
_live: weakref.WeakSet[Client] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # Runs in the child right after os.fork() (also multiprocessing's 'fork'
    # start method), while the child has a single thread: nothing can hold the
    # locks being replaced.
    for client in list(_live):
        client._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """Blocking client for the occupancy gate.

    Construction checks the options and touches neither the network nor gRPC;
    the gRPC channel opens on first use and is reused by every call after that
    (the client is thread-safe: share one per process). A process forked after
    the first use (gunicorn ``--preload``, a multiprocessing or Celery prefork
    pool) gets its own channel on its first call; the parent's keeps working.
    Close the client with :meth:`close` or use it as a context manager.

    Args:
        target: ``host:port`` of the gate; default: ``$OCCUPANCY_ADDR``.
        token: Sent as ``authorization: Bearer <token>`` on every call.
        tls: Connect with TLS, trusting the system's CA roots.
        ca_file: Path of a PEM CA bundle to trust instead; implies ``tls``.
        metadata: Extra metadata (a mapping or ``(key, value)`` pairs) sent on
            every call.
        keepalive: HTTP/2 keepalive ping interval in seconds (default: off).
        app_id: The Pusher app asked about, when the gate serves several
            (default: empty, the gate's only app).
        check_timeout: Deadline in seconds of :meth:`is_occupied` (1 s).
        publish_timeout: Deadline in seconds of :meth:`publish_if_occupied`
            (5 s, longer than the gate's own Pusher timeout).
        fail_open: When True (the default), :meth:`is_occupied` answers True
            if the gate is unavailable, too slow or rate limited, and gives the
            error to ``on_error``; any other error raises. When False it
            always raises.
        on_error: Called with every error that fail-open swallowed. Default: a
            warning on the ``occupancy_client`` logger at most every 30 s.
        cached: Answer :meth:`is_occupied` from a local copy of the occupied
            set kept by a ``WatchOccupancy`` subscription in a background
            thread, with no call per check.
        options: Extra gRPC channel arguments, applied over the library's.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        ca_file: str | os.PathLike[str] | None = None,
        metadata: Metadata | None = None,
        keepalive: float | None = None,
        app_id: str = "",
        check_timeout: float = _common.DEFAULT_CHECK_TIMEOUT,
        publish_timeout: float = _common.DEFAULT_PUBLISH_TIMEOUT,
        fail_open: bool = True,
        on_error: ErrorHook | None = None,
        cached: bool = False,
        options: ChannelOptions | None = None,
    ) -> None:
        self._settings = _common.settings(
            target,
            token=token,
            tls=tls,
            ca_file=ca_file,
            metadata=metadata,
            keepalive=keepalive,
            app_id=app_id,
            check_timeout=check_timeout,
            publish_timeout=publish_timeout,
            fail_open=fail_open,
            cached=cached,
            options=options,
        )
        self._hook: ErrorHook = on_error if on_error is not None else _common.WarnAtMostEvery()
        self._lock = threading.Lock()
        self._closed = False
        self._pid: int | None = None  # the process that opened the channel
        self._inherited = False  # a channel was opened before this process forked
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._state = WatchState()
        self._watcher: _Watcher | None = None
        _live.add(self)

    @property
    def target(self) -> str:
        """The gate's address."""
        return self._settings.target

    def is_occupied(self, channel: str) -> bool:
        """Whether anyone is subscribed to ``channel`` right now.

        Returns True also when the gate is unavailable, too slow or rate
        limited and the client fails open (the error goes to ``on_error``).

        Raises:
            OccupancyError: ``INVALID_ARGUMENT`` for a malformed name (checked
                locally, before any call); any non-outage status whatever the
                policy; an outage status with ``fail_open=False``.
            ClientClosedError: The client is closed.
        """
        stub = self._open("IsOccupied")
        request = _common.is_occupied_request(channel, self._settings.app_id)
        if self._settings.cached:
            state = self._state
            if not state.settled.is_set():
                # The subscription has just started (first use, or first use in
                # a forked child): give it up to the check deadline to sync.
                state.settled.wait(self._settings.check_timeout)
            return state.answer(channel, fail_open=self._settings.fail_open, hook=self._hook)
        try:
            response: occupancy_pb2.IsOccupiedResponse = stub.IsOccupied(
                request, timeout=self._settings.check_timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            err = OccupancyError._from_rpc_error("IsOccupied", error)
            return _common.occupied_or_raise(
                err, fail_open=self._settings.fail_open, hook=self._hook
            )
        return bool(response.occupied)

    def publish_if_occupied(
        self,
        channels: Iterable[str],
        event: str,
        data: str,
        socket_id: str | None = None,
    ) -> PublishResult:
        """Triggers ``event`` with ``data`` on those ``channels`` that are occupied.

        The gate makes a single Pusher API call for all occupied channels and
        none when every channel is vacant. Cached mode does not change this
        call: the gate decides.

        Args:
            channels: 1 to 100 channel names (duplicates count once).
            event: The Pusher event name, 1 to 200 characters.
            data: The payload, sent verbatim (usually ``json.dumps(...)``).
            socket_id: A Pusher socket id to exclude from delivery, or None.

        Raises:
            OccupancyError: On any failure, whatever the failure policy: a
                failed publish is never silently dropped. With
                ``DEADLINE_EXCEEDED`` the event may still have been delivered.
            TypeError: ``channels`` is a single string, or an argument has the
                wrong type.
            ClientClosedError: The client is closed.
        """
        stub = self._open("PublishIfOccupied")
        request = _common.publish_request(channels, event, data, socket_id, self._settings.app_id)
        try:
            response: occupancy_pb2.PublishIfOccupiedResponse = stub.PublishIfOccupied(
                request, timeout=self._settings.publish_timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            raise OccupancyError._from_rpc_error("PublishIfOccupied", error) from error
        return _common.publish_result(response)

    def wait_synced(self, timeout: float = 5.0) -> bool:
        """Cached mode: starts the subscription if needed and waits until the
        local copy is current. Returns whether it is, after at most ``timeout``
        seconds (default 5). Optional: ``is_occupied`` works without it.

        Raises :class:`NotCachedError` (``FAILED_PRECONDITION``) without
        ``cached=True`` and :class:`ClientClosedError` after ``close()``.
        """
        if self._closed:
            raise ClientClosedError(method="WatchOccupancy")
        if not self._settings.cached:
            raise NotCachedError()
        self._open("WatchOccupancy")
        deadline = _common.monotonic() + timeout
        while True:
            if self._state.synced:
                return True
            remaining = deadline - _common.monotonic()
            if remaining <= 0:
                return False
            self._state.settled.wait(min(remaining, 0.05))

    def close(self) -> None:
        """Closes the channel and ends cached mode's subscription. Idempotent.

        Every later call raises :class:`ClientClosedError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channel, watcher = self._channel, self._watcher
            self._channel = self._stub = self._watcher = None
        if watcher is not None:
            watcher.stop()
        if channel is not None:
            channel.close()
        if watcher is not None and watcher.thread is not threading.current_thread():
            watcher.thread.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, method: str) -> Any:
        """The stub of this process's channel, opened (and cached mode's
        subscription started) on first use."""
        if self._closed:
            raise ClientClosedError(method=method)
        stub = self._stub
        if stub is not None and self._pid == os.getpid():
            return stub
        with self._lock:
            if self._closed:
                raise ClientClosedError(method=method)
            if self._pid is not None and self._pid != os.getpid():
                # Forked without the at-fork hook having run (not via os.fork).
                self._after_fork_in_child()
            if self._inherited and _common.fork_support_disabled():
                raise _common.fork_error(method)
            if self._stub is None:
                s = self._settings
                if s.tls:
                    channel = grpc.secure_channel(
                        s.target, s.credentials(), options=list(s.channel_args)
                    )
                else:
                    channel = grpc.insecure_channel(s.target, options=list(s.channel_args))
                self._channel = channel
                # The generated stub is untyped; responses are annotated at each call.
                self._stub = occupancy_pb2_grpc.OccupancyStub(channel)  # type: ignore[no-untyped-call]
                self._pid = os.getpid()
            if self._settings.cached and self._watcher is None:
                self._watcher = _Watcher(
                    self._stub,
                    _common.watch_request(self._settings.app_id),
                    self._settings.metadata,
                    self._state,
                )
                weakref.finalize(self, self._watcher.stop)
                self._watcher.thread.start()
            return self._stub

    def _after_fork_in_child(self) -> None:
        # The parent's channel and subscription thread are the parent's: the
        # thread does not exist here, and closing the channel could break the
        # parent's connection. Abandon them; the first call opens new ones.
        self._lock = threading.Lock()
        if self._channel is not None:
            _common.abandoned.append(self._channel)
            self._inherited = True
        if self._watcher is not None:
            _common.abandoned.append(self._watcher)
        self._channel = self._stub = self._watcher = None
        self._pid = None
        self._state = WatchState()
        if isinstance(self._hook, _common.WarnAtMostEvery):
            self._hook._after_fork()


class _Watcher:
    """Cached mode's subscription: a daemon thread reading WatchOccupancy into
    a WatchState, resubscribing with backoff (0.1 s doubling to 2 s) whenever
    the stream breaks, until stopped."""

    def __init__(
        self,
        stub: Any,
        request: occupancy_pb2.WatchOccupancyRequest,
        metadata: tuple[tuple[str, Any], ...],
        state: WatchState,
    ) -> None:
        self._stub = stub
        self._request = request
        self._metadata = metadata
        self._state = state
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="occupancy-watch", daemon=True)

    def stop(self) -> None:
        if os.getpid() != self._pid:
            return  # the parent's subscription, seen from a forked child: not ours
        self._stopped.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()

    def _run(self) -> None:
        delays: Iterator[float] = _common.backoff_delays()
        while not self._stopped.is_set():
            try:
                call = self._stub.WatchOccupancy(self._request, metadata=self._metadata)
                with self._lock:
                    self._call = call
                if self._stopped.is_set():
                    call.cancel()
                for message in call:
                    self._state.apply(message)
                    if message.kind == _SYNCED:
                        delays = _common.backoff_delays()
                err = OccupancyError(
                    grpc.StatusCode.UNAVAILABLE, "the gate ended the stream", "WatchOccupancy"
                )
            except grpc.RpcError as error:
                err = OccupancyError._from_rpc_error("WatchOccupancy", error)
            except Exception as error:  # noqa: BLE001 - the thread must keep going
                _common.logger.exception("occupancy_client watch thread failed; resubscribing")
                err = OccupancyError(grpc.StatusCode.UNKNOWN, repr(error), "WatchOccupancy")
            finally:
                with self._lock:
                    self._call = None
            if self._stopped.is_set():
                break
            self._state.broken(err)
            delay = next(delays)
            _common.logger.debug(
                "occupancy watch stream broke (%s); resubscribing in %.1fs", err, delay
            )
            self._stopped.wait(delay)
