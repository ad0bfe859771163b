"""The asyncio client, built on ``grpc.aio``.

Same options, behaviour and failure policy as :class:`occupancy_client.Client`,
with coroutines instead of blocking calls::

    async with occupancy_client.aio.Client("gate:50051") as gate:
        if await gate.is_occupied("private-job-42"):
            ...
"""

from __future__ import annotations

import asyncio
import gc
import os
import weakref
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from .. import _common
from .._common import ChannelOptions, Metadata, PublishResult, WatchState
from .._errors import ClientClosedError, ErrorHook, NotCachedError, OccupancyError
from .._generated.occupancy.v1 import occupancy_pb2, occupancy_pb2_grpc

__all__ = ["Client"]

_SYNCED = occupancy_pb2.WatchOccupancyResponse.Kind.KIND_SYNCED


class Client:
    """Asyncio client for the occupancy gate.

    Construction touches neither the network nor gRPC, so the client may be
    built outside a running loop. The ``grpc.aio`` channel opens on first use,
    in the running loop, and is reused for every call from that loop. A
    ``grpc.aio`` channel belongs to its loop: a call from another loop (a
    second ``asyncio.run``) or from a forked child opens a new channel there
    and abandons the old one. Cached mode's subscription is a task in the
    loop of the first call.

    Takes the same keyword arguments as :class:`occupancy_client.Client`;
    ``on_error`` must be a plain (non-async) callable and runs inside the loop.
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
        self._closed = False
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inherited = False
        self._forked_while_open = False
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._state = WatchState()
        self._synced_event: asyncio.Event | None = None
        self._watch_task: asyncio.Task[None] | None = None
        _live.add(self)

    @property
    def target(self) -> str:
        """The gate's address."""
        return self._settings.target

    async def is_occupied(self, channel: str) -> bool:
        """Whether anyone is subscribed to ``channel`` right now.

        Same answers and errors as :meth:`occupancy_client.Client.is_occupied`.
        """
        stub = self._open("IsOccupied")
        request = _common.is_occupied_request(channel, self._settings.app_id)
        if self._settings.cached:
            state = self._state
            if not state.settled.is_set() and self._synced_event is not None:
                try:
                    await asyncio.wait_for(self._synced_event.wait(), self._settings.check_timeout)
                except asyncio.TimeoutError:
                    pass
            return state.answer(channel, fail_open=self._settings.fail_open, hook=self._hook)
        try:
            response: occupancy_pb2.IsOccupiedResponse = await stub.IsOccupied(
                request, timeout=self._settings.check_timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            err = OccupancyError._from_rpc_error("IsOccupied", error)
            return _common.occupied_or_raise(
                err, fail_open=self._settings.fail_open, hook=self._hook
            )
        return bool(response.occupied)

    async def publish_if_occupied(
        self,
        channels: Iterable[str],
        event: str,
        data: str,
        socket_id: str | None = None,
    ) -> PublishResult:
        """Triggers ``event`` with ``data`` on those ``channels`` that are occupied.

        Same arguments, answers and errors as
        :meth:`occupancy_client.Client.publish_if_occupied`.
        """
        stub = self._open("PublishIfOccupied")
        request = _common.publish_request(channels, event, data, socket_id, self._settings.app_id)
        try:
            response: occupancy_pb2.PublishIfOccupiedResponse = await stub.PublishIfOccupied(
                request, timeout=self._settings.publish_timeout, metadata=self._settings.metadata
            )
        except grpc.RpcError as error:
            raise OccupancyError._from_rpc_error("PublishIfOccupied", error) from error
        return _common.publish_result(response)

    async def wait_synced(self, timeout: float = 5.0) -> bool:
        """Cached mode: starts the subscription if needed and waits until the
        local copy is current; returns whether it is after at most ``timeout`` s
        (default 5). Raises as the blocking client's ``wait_synced``."""
        if self._closed:
            raise ClientClosedError(method="WatchOccupancy")
        if not self._settings.cached:
            raise NotCachedError()
        self._open("WatchOccupancy")
        deadline = _common.monotonic() + timeout
        while not self._state.synced:
            if _common.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def close(self) -> None:
        """Closes the channel and ends cached mode's subscription. Idempotent."""
        if self._closed:
            return
        self._closed = True
        task, channel = self._watch_task, self._channel
        self._watch_task = self._channel = self._stub = None
        same_loop = self._loop is _running_loop() and self._pid == os.getpid()
        if not same_loop:
            return  # the channel belongs to another loop or process: abandon it
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        if channel is not None:
            await channel.close(None)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _release_idle_channel(self) -> bool:
        loop = self._loop
        if self._channel is None or self._pid != os.getpid():
            return False
        if loop is not None and not loop.is_closed() and loop.is_running():
            return False
        self._channel = self._stub = self._watch_task = None
        self._loop = None
        return True

    def _open(self, method: str) -> Any:
        if self._closed:
            raise ClientClosedError(method=method)
        loop = asyncio.get_running_loop()
        pid = os.getpid()
        if self._stub is not None and self._loop is loop and self._pid == pid:
            return self._stub
        if self._pid is not None and self._pid != pid:
            # A forked child of a process that used this client.
            self._inherited = True
            if self._channel is not None:
                # It was forked while the channel was open, i.e. while grpc.aio's
                # poller thread was inside gRPC, so gRPC skipped its fork
                # handlers and cannot work in this process. The channel shares
                # the parent's connection: keep it referenced, never tear it down.
                self._forked_while_open = True
                _common.abandoned.append((self._channel, self._stub, self._watch_task))
                self._channel = self._stub = self._watch_task = None
            if isinstance(self._hook, _common.WarnAtMostEvery):
                self._hook._after_fork()
        if self._forked_while_open:
            raise _aio_fork_error(method)
        if self._inherited and _common.fork_support_disabled():
            raise _common.fork_error(method)
        # Another loop of this process opened the channel: that loop is
        # finished (or the client is misused from two loops at once) and the
        # channel cannot be awaited from here, so it is dropped; gRPC closes it
        # when it is collected.
        self._channel = self._stub = self._watch_task = None
        s = self._settings
        if s.tls:
            channel = grpc.aio.secure_channel(
                s.target, s.credentials(), options=list(s.channel_args)
            )
        else:
            channel = grpc.aio.insecure_channel(s.target, options=list(s.channel_args))
        self._channel = channel
        self._stub = occupancy_pb2_grpc.OccupancyStub(channel)  # type: ignore[no-untyped-call]
        self._loop, self._pid = loop, pid
        self._watch_task = None
        if s.cached:
            self._state = WatchState()
            self._synced_event = asyncio.Event()
            self._watch_task = loop.create_task(
                _watch(
                    self._stub,
                    _common.watch_request(s.app_id),
                    s.metadata,
                    self._state,
                    self._synced_event,
                ),
                name="occupancy-watch",
            )
        return self._stub


def _aio_fork_error(method: str) -> OccupancyError:
    return OccupancyError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "this process was forked while the asyncio client's channel was open in a running "
        "event loop: grpc.aio's poller thread was inside gRPC at the fork, so grpc.aio cannot "
        "be used in this child (the blocking occupancy_client.Client can). Fork before the "
        "client's first call or after asyncio.run() returns, or create the client in the child",
        method,
    )


def _before_fork() -> None:
    # A channel whose event loop is not running (asyncio.run has returned) is
    # released before the fork: while any grpc.aio channel exists, grpc.aio's
    # poller thread sits inside gRPC, and gRPC then skips the fork handlers a
    # child needs. The next call reopens a channel in its own loop.
    released = False
    for client in list(_live):
        released = client._release_idle_channel() or released
    if released:
        gc.collect()


_live: weakref.WeakSet[Client] = weakref.WeakSet()
os.register_at_fork(before=_before_fork)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _watch(
    stub: Any,
    request: occupancy_pb2.WatchOccupancyRequest,
    metadata: tuple[tuple[str, Any], ...],
    state: WatchState,
    settled: asyncio.Event,
) -> None:
    """Cached mode's subscription, until cancelled by ``close()``."""
    delays: Iterator[float] = _common.backoff_delays()
    while True:
        try:
            call = stub.WatchOccupancy(request, metadata=metadata)
            async for message in call:
                state.apply(message)
                if message.kind == _SYNCED:
                    settled.set()
                    delays = _common.backoff_delays()
            err = OccupancyError(
                grpc.StatusCode.UNAVAILABLE, "the gate ended the stream", "WatchOccupancy"
            )
        except grpc.RpcError as error:
            err = OccupancyError._from_rpc_error("WatchOccupancy", error)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - the task must keep going
            _common.logger.exception("occupancy_client watch task failed; resubscribing")
            err = OccupancyError(grpc.StatusCode.UNKNOWN, repr(error), "WatchOccupancy")
        state.broken(err)
        settled.set()
        delay = next(delays)
        _common.logger.debug(
            "occupancy watch stream broke (%s); resubscribing in %.1fs", err, delay
        )
        await asyncio.sleep(delay)
