"""The error types raised by the blocking client, the asyncio client and the fake."""

from __future__ import annotations

from typing import Callable

import grpc

__all__ = ["ClientClosedError", "ErrorHook", "OccupancyError"]


class OccupancyError(Exception):
    """A call to the occupancy gate failed, or was refused before it was made.

    Carries the gRPC status so callers can decide what to do without parsing
    messages: ``UNAVAILABLE`` is safe to retry, ``INVALID_ARGUMENT`` is a bug in
    the caller, ``DEADLINE_EXCEEDED`` on a publish means the event may or may
    not have reached Pusher. See the status table in ``occupancy.proto``.

    Attributes:
        code: The gRPC status code: as reported by the gate, produced by gRPC
            itself (``UNAVAILABLE`` when nothing listens, ``DEADLINE_EXCEEDED``
            when the deadline passed), or produced by the client before any
            call (``INVALID_ARGUMENT`` for a malformed channel name).
        details: The human-readable message; it always names the cause.
        method: The RPC concerned (``"IsOccupied"``, ``"PublishIfOccupied"``
            or ``"WatchOccupancy"``), so a shared hook or log line can tell
            them apart.
    """

    code: grpc.StatusCode
    details: str
    method: str

    def __init__(self, code: grpc.StatusCode, details: str, method: str) -> None:
        self.code = code
        self.details = details
        self.method = method
        super().__init__(f"{method} failed: {code.name}: {details}")

    def __reduce__(self) -> tuple[type[OccupancyError], tuple[grpc.StatusCode, str, str]]:
        # Exception's default pickling passes only the formatted message back to
        # __init__; keep the structured fields so errors survive multiprocessing.
        return (type(self), (self.code, self.details, self.method))

    @classmethod
    def _from_rpc_error(cls, method: str, error: grpc.RpcError) -> OccupancyError:
        """Builds the library error from whatever gRPC raised.

        Both ``grpc.Call`` errors (blocking stubs) and ``grpc.aio.AioRpcError``
        expose ``code()`` and ``details()``; anything else is reported as
        ``UNKNOWN`` instead of crashing the error path itself.
        """
        code_fn = getattr(error, "code", None)
        details_fn = getattr(error, "details", None)
        code = code_fn() if callable(code_fn) else None
        details = details_fn() if callable(details_fn) else None
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.UNKNOWN
        if not details:
            details = str(error) or code.name
        err = cls(code, str(details), method)
        err.__cause__ = error
        return err


class ClientClosedError(OccupancyError, ValueError):
    """A call was made on a client after ``close()``.

    Its code is ``FAILED_PRECONDITION``. It is also a ``ValueError``, like an
    operation on a closed file, and it is raised whatever the failure policy.
    """

    def __init__(
        self,
        code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
        details: str = "the occupancy client is closed",
        method: str = "",
    ) -> None:
        super().__init__(code, details, method)


class NotCachedError(OccupancyError, ValueError):
    """``wait_synced`` was called on a client built without ``cached=True``.

    Its code is ``FAILED_PRECONDITION``, as in every client. It is also a
    ``ValueError``, which this call raised before it was an ``OccupancyError``.
    """

    def __init__(
        self,
        code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
        details: str = "wait_synced() needs a client built with cached=True",
        method: str = "WatchOccupancy",
    ) -> None:
        super().__init__(code, details, method)


ErrorHook = Callable[[OccupancyError], None]
"""Called with each error that a fail-open client swallowed.

The hook runs synchronously on the calling thread (or inside the event loop for
the asyncio client), so it should be quick: log, count a metric, and return.
An exception raised by the hook is logged and otherwise ignored, so a broken
hook never turns a fail-open answer into a crash.
"""
