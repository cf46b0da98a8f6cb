"""neon_asyncio: the driver for asyncio (default loop and uvloop). Cancelling a call
(``asyncio.timeout``, ``wait_for``, ``task.cancel()``, a failing TaskGroup) cancels the
query on the server and keeps the connection usable.

The classes bind ``neon_async``'s one implementation to asyncio (``neon_asyncio._backend``).
"""

from neon_async import client as _client
from neon_async import dbapi as _dbapi
from neon_async import pool as _pool
from neon_async.pool import PoolTimeout
from neon_async.client import CopyOut, Notification, Notifications, Pipeline
from neon_asyncio._backend import ASYNCIO
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


class Client(_client.Client):
    """One Postgres connection for asyncio: ``async with Client(dsn) as client: await client.query(...)``."""

    backend = ASYNCIO


class Pool(_pool.Pool[Client]):
    """A pool of asyncio ``Client`` connections: ``async with Pool(dsn, max_size=10) as pool:``."""

    client_class = Client


class Connection(_dbapi.Connection[Client]):
    """An async DB-API connection (psycopg's AsyncConnection manner) on asyncio: ``conn = await connect(dsn)``."""

    client_class = Client


Cursor = _dbapi.Cursor
connect = Connection.connect
