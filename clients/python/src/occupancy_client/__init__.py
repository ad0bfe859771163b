"""Python client for the occupancy gate in front of Pusher Channels.

Encoders ask the gate whether anyone watches a channel before doing work for
it, and publish through the gate so vacant channels cost nothing::

    from occupancy_client import Client

    with Client("occupancy:50051") as gate:
        if gate.is_occupied("private-job-42"):
            gate.publish_if_occupied(["private-job-42"], "progress", '{"pct": 40}')

:class:`Client` blocks; :class:`occupancy_client.aio.Client` is the asyncio
twin; :mod:`occupancy_client.testing` has in-memory fakes of both. They raise
:class:`OccupancyError` and return :class:`PublishResult`.
"""

from ._client import Client
from ._common import ADDRESS_ENV, PublishResult
from ._errors import ClientClosedError, ErrorHook, NotCachedError, OccupancyError

__all__ = [
    "ADDRESS_ENV",
    "Client",
    "ClientClosedError",
    "ErrorHook",
    "NotCachedError",
    "OccupancyError",
    "PublishResult",
]

__version__ = "0.2.0"
