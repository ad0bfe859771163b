"""The blocking client."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

import grpc

from . import _common
from ._common import ChannelOptions, PublishResult
from ._errors import ErrorHook, OccupancyError
from ._generated.occupancy.v1 import occupancy_pb2, occupancy_pb2_grpc

__all__ = ["Client"]


class Client:
    """Blocking client for the occupancy gate.

    Holds one gRPC channel for its whole life; create one client per process
    (it is thread-safe) and reuse it, rather than one per call. Close it with
    :meth:`close` or use it as a context manager.

    Args:
        target: ``host:port`` of the gate.
        timeout: Deadline in seconds for :meth:`is_occupied`. Kept short
            because the check sits on the encoder's hot path.
        publish_timeout: Deadline in seconds for :meth:`publish_if_occupied`.
            Longer than the gate's own Pusher HTTP timeout, so a slow Pusher is
            reported by the gate (with a precise status) rather than cut off
            by the client.
        fail_open: When True (the default), :meth:`is_occupied` answers True
            if the gate is unreachable or answers an error, so an encoder that
            publishes on its own never drops a live update because of the gate.
            When False it raises :class:`OccupancyError` instead.
            ``INVALID_ARGUMENT`` raises in both modes.
        on_error: Called with every error swallowed by fail-open. Without it,
            swallowed errors are logged as warnings on the ``occupancy_client``
            logger.
        credentials: Channel credentials for TLS (``grpc.ssl_channel_credentials()``);
            None for a plaintext channel.
        options: Extra gRPC channel arguments, applied over the library's
            defaults (which shorten the reconnect backoff to at most 5 s).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = _common.DEFAULT_TIMEOUT,
        publish_timeout: float = _common.DEFAULT_PUBLISH_TIMEOUT,
        fail_open: bool = True,
        on_error: ErrorHook | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions | None = None,
    ) -> None:
        self._timeout = _common.check_timeout("timeout", timeout)
        self._publish_timeout = _common.check_timeout("publish_timeout", publish_timeout)
        self._fail_open = bool(fail_open)
        self._on_error = on_error
        channel_args = _common.channel_options(options)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=channel_args)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=channel_args)
        # The generated stub is untyped; responses are annotated at each call.
        self._stub = occupancy_pb2_grpc.OccupancyStub(self._channel)  # type: ignore[no-untyped-call]
        self._closed = False

    def is_occupied(self, channel: str) -> bool:
        """Whether anyone is subscribed to ``channel`` right now.

        Returns True also when the gate could not answer and the client fails
        open (see the class docs).

        Raises:
            OccupancyError: With ``INVALID_ARGUMENT`` when the gate rejects the
                channel name (always); with any other status only when the
                client was built with ``fail_open=False``.
            ValueError: The client is closed.
        """
        request = _common.is_occupied_request(channel)
        self._ensure_open()
        try:
            response: occupancy_pb2.IsOccupiedResponse = self._stub.IsOccupied(
                request, timeout=self._timeout
            )
        except grpc.RpcError as error:
            return _common.occupied_or_raise(
                error, fail_open=self._fail_open, on_error=self._on_error
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
        none when every channel is vacant.

        Args:
            channels: 1 to 100 channel names (duplicates count once).
            event: The Pusher event name.
            data: The payload, sent verbatim (usually ``json.dumps(...)``).
            socket_id: A Pusher socket id to exclude from delivery, or None.

        Raises:
            OccupancyError: On any failure, whatever the failure policy: a
                failed publish is never silently dropped. With
                ``DEADLINE_EXCEEDED`` the event may still have been delivered.
            TypeError: ``channels`` is a single string, or an argument has the
                wrong type.
            ValueError: The client is closed.
        """
        request = _common.publish_request(channels, event, data, socket_id)
        self._ensure_open()
        try:
            response: occupancy_pb2.PublishIfOccupiedResponse = self._stub.PublishIfOccupied(
                request, timeout=self._publish_timeout
            )
        except grpc.RpcError as error:
            raise OccupancyError._from_rpc_error("PublishIfOccupied", error) from error
        return _common.publish_result(response)

    def close(self) -> None:
        """Closes the gRPC channel, cancelling calls in flight. Idempotent."""
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise ValueError("occupancy client is closed")
