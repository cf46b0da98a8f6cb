"""neon_trio: the driver for trio. ``Client`` over TCP, with trio cancellation that cancels the
query on the server and keeps the connection usable.

The classes bind ``neon_async``'s one implementation to trio (``neon_trio._backend``).
"""

from neon_async import client as _client
from neon_async import dbapi as _dbapi
from neon_async import pool as _pool
from neon_async.pool import PoolTimeout
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


class Pool(_pool.Pool[Client]):
    """A pool of trio ``Client`` connections: ``async with Pool(dsn, max_size=10) as pool:``."""

    client_class = Client


__all__ = [
    "Client",
    "Pool",
    "connect",
    "Connection",
    "Cursor",
    "PoolTimeout",
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


class Connection(_dbapi.Connection[Client]):
    """An async DB-API connection (psycopg's AsyncConnection manner) on trio: ``conn = await connect(dsn)``."""

    client_class = Client


Cursor = _dbapi.Cursor
connect = Connection.connect
