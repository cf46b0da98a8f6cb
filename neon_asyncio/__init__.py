"""neon_asyncio: the driver for asyncio, under the default event loop and uvloop: ``neon()``
over HTTP, ``Client``, ``Pool`` and an async DB-API ``connect()`` over TCP.

Cancelling a call (``asyncio.timeout``, ``wait_for``, ``task.cancel()``, a TaskGroup whose
sibling failed) sends a CancelRequest, drains the query and leaves the connection usable (or
closes it past ``cancel_timeout``); the CancelledError then goes on its way.
"""

from neon_async import client as _client
from neon_async import dbapi as _dbapi
from neon_async import http as _http
from neon_async import pool as _pool
from neon_async.exports import *  # noqa: F403
from neon_async.exports import BOUND as _BOUND
from neon_async.exports import __all__ as _SHARED
from neon_asyncio._backend import ASYNCIO

__all__ = _SHARED + _BOUND


class NeonHTTP(_http.NeonHTTP):
    """SQL over HTTP on asyncio: ``rows = await neon(dsn)("SELECT 1 AS x")``."""

    backend = ASYNCIO


class Client(_client.Client):
    """One Postgres connection for asyncio: ``async with Client(dsn) as client:``."""

    backend = ASYNCIO


class Connection(_dbapi.Connection[Client]):
    """An async DB-API connection on asyncio: ``conn = await connect(dsn)``; ``await conn.execute(...)``."""

    client_class = Client


class Pool(_pool.Pool[Client]):
    """asyncio ``Client`` connections lent to tasks: ``async with Pool(dsn, max_size=10) as pool:``.

    Waiters are served first come, first served.
    """

    client_class = Client


neon = NeonHTTP
connect = Connection.connect
Cursor = _dbapi.Cursor
