"""In-memory fakes of the clients, for encoder teams' own unit tests.

:class:`FakeClient` stands in for :class:`occupancy_client.Client` and
:class:`AsyncFakeClient` for :class:`occupancy_client.aio.Client`: same
methods, same local checks (a malformed channel name raises
``INVALID_ARGUMENT``), same failure policy, same closed error. Nothing touches
the network or gRPC::

    from occupancy_client.testing import FakeClient

    gate = FakeClient(occupied={"private-job-42"})
    run_encoder(gate)                                  # code under test
    assert [p.event for p in gate.published] == ["progress"]

Mark channels with :meth:`~FakeClient.occupy` / :meth:`~FakeClient.vacate`,
read what was published from :attr:`~FakeClient.published`, and simulate an
outage or a misconfiguration with :meth:`~FakeClient.fail_with`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import grpc

from . import _common
from ._common import PublishResult
from ._errors import ClientClosedError, ErrorHook, OccupancyError

__all__ = ["AsyncFakeClient", "FakeClient", "Published"]


@dataclass(frozen=True)
class Published:
    """One ``publish_if_occupied`` call the fake answered.

    ``channels`` are the requested names as given; ``result`` says which were
    published (occupied) and which skipped. A call whose channels were all
    vacant is recorded too, with an empty ``result.published``.
    """

    channels: tuple[str, ...]
    event: str
    data: str
    socket_id: str | None
    result: PublishResult


class _FakeCore:
    def __init__(
        self, occupied: Iterable[str], fail_open: bool, on_error: ErrorHook | None
    ) -> None:
        self._lock = threading.Lock()
        self._occupied: set[str] = set()
        self.published: list[Published] = []
        self.fail_open = bool(fail_open)
        self.errors: list[OccupancyError] = []
        # As in the real client: without a hook, a warning at most every 30 s.
        self._hook: ErrorHook = on_error if on_error is not None else _common.WarnAtMostEvery()
        self._failure: OccupancyError | None = None
        self.closed = False
        self.occupy(*occupied)

    def occupy(self, *channels: str) -> None:
        for channel in channels:
            _common.check_channel(channel, "IsOccupied")
        with self._lock:
            self._occupied.update(channels)

    def vacate(self, *channels: str) -> None:
        with self._lock:
            self._occupied.difference_update(channels)

    def fail_with(
        self, error: grpc.StatusCode | OccupancyError, details: str = "simulated by FakeClient"
    ) -> None:
        if isinstance(error, OccupancyError):
            self._failure = error
        elif isinstance(error, grpc.StatusCode):
            self._failure = OccupancyError(error, details, "")
        else:
            raise TypeError(
                "fail_with() takes an OccupancyError or a grpc.StatusCode; call recover() to end a failure"
            )

    def wait_synced(self) -> bool:
        if self.closed:
            raise ClientClosedError(method="WatchOccupancy")
        return True

    def recover(self) -> None:
        self._failure = None

    def _swallowed(self, err: OccupancyError) -> None:
        self.errors.append(err)
        self._hook(err)

    def is_occupied(self, channel: str) -> bool:
        if self.closed:
            raise ClientClosedError(method="IsOccupied")
        _common.is_occupied_request(channel, "")
        failure = self._failure
        if failure is not None:
            err = OccupancyError(failure.code, failure.details, "IsOccupied")
            return _common.occupied_or_raise(err, fail_open=self.fail_open, hook=self._swallowed)
        with self._lock:
            return channel in self._occupied

    def publish_if_occupied(
        self, channels: Iterable[str], event: str, data: str, socket_id: str | None
    ) -> PublishResult:
        if self.closed:
            raise ClientClosedError(method="PublishIfOccupied")
        names = _common.check_publish(channels, event, data, socket_id)
        failure = self._failure
        if failure is not None:
            raise OccupancyError(failure.code, failure.details, "PublishIfOccupied")
        with self._lock:
            distinct = list(dict.fromkeys(names))
            result = PublishResult(
                published=tuple(c for c in distinct if c in self._occupied),
                skipped=tuple(c for c in distinct if c not in self._occupied),
            )
            self.published.append(Published(tuple(names), event, data, socket_id, result))
        return result


class FakeClient:
    """A blocking in-memory stand-in for :class:`occupancy_client.Client`.

    Args:
        occupied: Channels occupied from the start.
        fail_open: The failure policy applied while :meth:`fail_with` is in
            force, as in the real client.
        on_error: Also called with each error fail-open swallowed (all of
            them are in :attr:`errors` as well). Default: the real client's
            warning, at most once per 30 s.
    """

    def __init__(
        self,
        *,
        occupied: Iterable[str] = (),
        fail_open: bool = True,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._core = _FakeCore(occupied, fail_open, on_error)

    @property
    def published(self) -> list[Published]:
        """Every publish call answered, in order."""
        return self._core.published

    @property
    def errors(self) -> list[OccupancyError]:
        """Every error that fail-open swallowed, in order."""
        return self._core.errors

    def occupy(self, *channels: str) -> None:
        """Marks channels occupied (names are checked like the real client's)."""
        self._core.occupy(*channels)

    def vacate(self, *channels: str) -> None:
        """Marks channels vacant."""
        self._core.vacate(*channels)

    def fail_with(
        self, error: grpc.StatusCode | OccupancyError, details: str = "simulated by FakeClient"
    ) -> None:
        """Makes every later call fail with ``error`` (an :class:`OccupancyError`,
        or a status code and ``details``) until :meth:`recover`: ``is_occupied``
        applies the failure policy (an outage fails open: ``True``, and the
        hook sees it), publishing always raises."""
        self._core.fail_with(error, details)

    def wait_synced(self, timeout: float = 5.0) -> bool:
        """As the real client's: the fake's copy is always current, so ``True``."""
        return self._core.wait_synced()

    def recover(self) -> None:
        """Ends :meth:`fail_with`."""
        self._core.recover()

    def is_occupied(self, channel: str) -> bool:
        return self._core.is_occupied(channel)

    def publish_if_occupied(
        self, channels: Iterable[str], event: str, data: str, socket_id: str | None = None
    ) -> PublishResult:
        return self._core.publish_if_occupied(channels, event, data, socket_id)

    def close(self) -> None:
        self._core.closed = True

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncFakeClient:
    """The asyncio twin of :class:`FakeClient` (same arguments and helpers),
    standing in for :class:`occupancy_client.aio.Client`."""

    def __init__(
        self,
        *,
        occupied: Iterable[str] = (),
        fail_open: bool = True,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._core = _FakeCore(occupied, fail_open, on_error)

    @property
    def published(self) -> list[Published]:
        return self._core.published

    @property
    def errors(self) -> list[OccupancyError]:
        return self._core.errors

    def occupy(self, *channels: str) -> None:
        self._core.occupy(*channels)

    def vacate(self, *channels: str) -> None:
        self._core.vacate(*channels)

    def fail_with(
        self, error: grpc.StatusCode | OccupancyError, details: str = "simulated by FakeClient"
    ) -> None:
        self._core.fail_with(error, details)

    async def wait_synced(self, timeout: float = 5.0) -> bool:
        return self._core.wait_synced()

    def recover(self) -> None:
        self._core.recover()

    async def is_occupied(self, channel: str) -> bool:
        return self._core.is_occupied(channel)

    async def publish_if_occupied(
        self, channels: Iterable[str], event: str, data: str, socket_id: str | None = None
    ) -> PublishResult:
        return self._core.publish_if_occupied(channels, event, data, socket_id)

    async def close(self) -> None:
        self._core.closed = True

    async def __aenter__(self) -> AsyncFakeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
