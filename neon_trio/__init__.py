"""neon_trio: the driver for trio. ``Client`` over TCP, with trio cancellation that cancels the
query on the server and keeps the connection usable.

The classes bind ``neon_async``'s one implementation to trio (``neon_trio._backend``).
"""

from neon_async import client as _client
from neon_async.client import CopyOut, Notification, Notifications, Pipeline
from neon_proto.errors import (
    ConnectionClosed,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PipelineAborted,
    ProgrammingError,
    QueryCanceled,
    Warning,
)
from neon_proto.results import Field, Result
from neon_trio._backend import TRIO


class Client(_client.Client):
    """One Postgres connection for trio: ``async with Client(dsn) as client: await client.query(...)``."""

    backend = TRIO


__all__ = [
    "Client",
    "Pipeline",
    "CopyOut",
    "Notification",
    "Notifications",
    "Result",
    "Field",
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "ConnectionClosed",
    "QueryCanceled",
    "PipelineAborted",
]
