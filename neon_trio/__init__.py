"""neon_trio: the driver for trio: ``neon()`` over HTTP, ``Client``, ``Pool`` and an async DB-API
``connect()`` over TCP.

Cancellation follows trio's rules: a call in a cancelled scope (``move_on_after``,
``fail_after``, a nursery being cancelled) sends a CancelRequest, drains the query to its
ReadyForQuery in a shielded scope and leaves the connection usable (or closes it past
``cancel_timeout``); every call is a checkpoint; no task is started behind your back.
The classes bind ``neon_async``'s one implementation to trio (``neon_trio._backend``).
"""

from neon_async import client as _client
from neon_async import dbapi as _dbapi
from neon_async import http as _http
from neon_async import pool as _pool
from neon_async.exports import *  # noqa: F403
from neon_async.exports import BOUND as _BOUND
from neon_async.exports import __all__ as _SHARED
from neon_trio._backend import TRIO

__all__ = _SHARED + _BOUND


class Client(_client.Client):
    """One Postgres connection for trio: ``async with Client(dsn) as client: await client.query(...)``.

    Tasks of one nursery may share it; their operations take turns.
    """

    backend = TRIO


class Pool(_pool.Pool[Client]):
    """Trio ``Client`` connections lent to tasks: ``async with Pool(dsn) as pool:``."""

    client_class = Client


class Connection(_dbapi.Connection[Client]):
    """An async DB-API connection on trio (psycopg's AsyncConnection manner)."""

    client_class = Client


class NeonHTTP(_http.NeonHTTP):
    """SQL over HTTP on trio: ``sql = neon(dsn); rows = await sql("SELECT $1::int AS x", [1])``.

    Cancelling a request closes its connection; the proxy then cancels the query.
    """

    backend = TRIO


Cursor = _dbapi.Cursor
connect = Connection.connect
neon = NeonHTTP
