"""DB-API 2.0 (PEP 249) over ``Client``: ``connect()``, ``Connection``, ``Cursor``."""

from __future__ import annotations

import datetime as _dt
import time as _time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Unpack

from neon_proto import errors as _errors
from neon_proto.options import ConnectKeywords
from neon_proto.errors import (
    DBAPIExceptions,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)
from neon_proto.pyformat import convert_pyformat
from neon_proto.results import Result
from neon_proto.session import Query
from neon_sync.client import Client

__all__ = [
    "apilevel",
    "threadsafety",
    "paramstyle",
    "connect",
    "Connection",
    "Cursor",
    "Column",
    "Date",
    "Time",
    "Timestamp",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
    "Binary",
    "STRING",
    "BINARY",
    "NUMBER",
    "DATETIME",
    "ROWID",
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
]

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "pyformat"


class Column(NamedTuple):
    """One item of ``Cursor.description``: the seven PEP 249 fields."""

    name: str
    type_code: int
    display_size: int | None
    internal_size: int | None
    precision: int | None
    scale: int | None
    null_ok: bool | None


class DBAPITypeObject:
    """Compares equal to every type OID of one PEP 249 category."""

    def __init__(self, name: str, oids: frozenset[int]) -> None:
        self.name = name
        self.oids = oids

    def __eq__(self, other: object) -> bool:
        if isinstance(other, int):
            return other in self.oids
        return other is self

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<DBAPITypeObject {self.name}>"


STRING = DBAPITypeObject("STRING", frozenset({25, 1043, 1042, 19, 18, 114, 3802, 142}))
BINARY = DBAPITypeObject("BINARY", frozenset({17}))
NUMBER = DBAPITypeObject("NUMBER", frozenset({20, 21, 23, 26, 700, 701, 1700, 790}))
DATETIME = DBAPITypeObject("DATETIME", frozenset({1082, 1083, 1114, 1184, 1186, 1266}))
ROWID = DBAPITypeObject("ROWID", frozenset({26}))

Date = _dt.date
Time = _dt.time
Timestamp = _dt.datetime


def DateFromTicks(ticks: float) -> _dt.date:
    """A date from seconds since the epoch (local time)."""
    return Date(*_time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> _dt.time:
    """A time from seconds since the epoch (local time)."""
    return Time(*_time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> _dt.datetime:
    """A timestamp from seconds since the epoch (local time)."""
    return Timestamp(*_time.localtime(ticks)[:6])


def Binary(data: bytes | bytearray | memoryview) -> bytes:
    """A value to be sent as bytea."""
    return bytes(data)


def connect(
    dsn: str | None = None,
    *,
    autocommit: bool = False,
    array_mode: bool = False,
    prepared_statement_cache_size: int = 0,
    registry: Any = None,
    binary: bool = False,
    max_message_size: int | None = None,
    **options: Unpack[ConnectKeywords],
) -> "Connection":
    """Open a DB-API connection (a ``postgresql://`` URI, a ``key=value`` string, or keywords).

    ``transport="websocket"`` (or a ``ws_proxy``) goes through a WebSocket proxy; see ``Client``.
    """
    client = Client(
        dsn,
        array_mode=array_mode,
        prepared_statement_cache_size=prepared_statement_cache_size,
        registry=registry,
        binary=binary,
        max_message_size=max_message_size,
        **options,
    ).connect(wait=True)
    return Connection(client, autocommit=autocommit)


class Connection(DBAPIExceptions):
    """A PEP 249 connection. Outside autocommit, the first statement opens a transaction."""

    def __init__(self, client: Client, *, autocommit: bool = False) -> None:
        self.client = client
        self._autocommit = autocommit
        self._savepoints = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<neon_sync.Connection {self.client!r} autocommit={self._autocommit}>"

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._closed or self.client.closed

    @property
    def autocommit(self) -> bool:
        """Whether each statement commits on its own."""
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if self.client.transaction_status != "I":
            raise ProgrammingError("cannot change autocommit inside a transaction")
        self._autocommit = bool(value)

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError("the connection is closed")

    def cursor(self) -> "Cursor":
        """A new cursor."""
        self._check_open()
        return Cursor(self)

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> "Cursor":
        """Create a cursor, execute, and return it (a psycopg-style shortcut)."""
        cur = self.cursor()
        cur.execute(operation, parameters)
        return cur

    def commit(self) -> None:
        """Commit the current transaction (nothing to do outside one)."""
        self._check_open()
        if self.client.transaction_status != "I":
            self.client.query("COMMIT")

    def rollback(self) -> None:
        """Roll back the current transaction (nothing to do outside one)."""
        self._check_open()
        if self.client.transaction_status != "I":
            self.client.query("ROLLBACK")

    def close(self) -> None:
        """Close the connection; an open transaction is discarded by the server."""
        self._closed = True
        self.client.close()

    def cancel(self) -> None:
        """Cancel the query running on this connection (callable from another thread)."""
        self.client.cancel()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if not self.closed:
                if exc_type is None:
                    self.commit()
                else:
                    self.rollback()
        finally:
            self.close()

    @contextmanager
    def transaction(self) -> Iterator["Connection"]:
        """A transaction block; nested blocks become savepoints. Commits or rolls back on exit."""
        self._check_open()
        client = self.client
        if client.transaction_status == "I":
            client.query("BEGIN")
            savepoint = None
        else:
            self._savepoints += 1
            savepoint = f"neon_sp_{self._savepoints}"
            client.query(f"SAVEPOINT {savepoint}")
        try:
            yield self
        except BaseException:
            if not client.closed:
                if savepoint is None:
                    client.query("ROLLBACK")
                else:
                    client.query(f"ROLLBACK TO SAVEPOINT {savepoint}")
                    client.query(f"RELEASE SAVEPOINT {savepoint}")
            raise
        else:
            if savepoint is None:
                client.query("COMMIT")
            else:
                client.query(f"RELEASE SAVEPOINT {savepoint}")
        finally:
            if savepoint is not None:
                self._savepoints -= 1

    def _needs_begin(self) -> bool:
        return not self._autocommit and self.client.transaction_status == "I"


def _column(field: Any) -> Column:
    precision = scale = None
    display = None
    mod = field.type_modifier
    if field.type_oid == 1700 and mod >= 4:
        precision = ((mod - 4) >> 16) & 0xFFFF
        scale = (mod - 4) & 0xFFFF
    elif field.type_oid in (1043, 1042) and mod >= 4:
        display = mod - 4
    size = field.type_size if field.type_size >= 0 else None
    return Column(field.name, field.type_oid, display, size, precision, scale, None)


class Cursor:
    """A PEP 249 cursor: rows are tuples."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.arraysize = 1
        self._results: list[Result] = []
        self._index = 0
        self._rows: list[Any] = []
        self._pos = 0
        self._closed = False
        self.rowcount = -1
        self.statusmessage: str | None = None
        self._description: list[Column] | None = None

    def __repr__(self) -> str:
        return f"<neon_sync.Cursor rowcount={self.rowcount} closed={self._closed}>"

    @property
    def description(self) -> list[Column] | None:
        """The result's columns (seven items each), or None for a statement without rows."""
        return self._description

    @property
    def lastrowid(self) -> None:
        """Not supported by Postgres (use RETURNING)."""
        return None

    @property
    def closed(self) -> bool:
        """Whether the cursor is closed."""
        return self._closed

    def close(self) -> None:
        """Close the cursor and drop its rows."""
        self._closed = True
        self._results = []
        self._rows = []

    def _check(self) -> Client:
        if self._closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check_open()
        return self.connection.client

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> "Cursor":
        """Run a statement; ``%s`` / ``%(name)s`` placeholders take ``parameters``."""
        client = self._check()
        session = client.session
        sql, args = convert_pyformat(operation, parameters)
        begin = self.connection._needs_begin()
        if parameters is None:
            results: list[Result] = client._run(session.simple_query(sql, mode="tuple", begin=begin))
        else:
            queries = [Query(sql, args, "tuple")]
            if begin:
                queries.insert(0, Query("BEGIN", None, "tuple"))
            done = client._run(session.pipeline(queries, sync_each=False))
            results = [q.outcome() for q in done]
            if begin:
                results = results[1:]
        self._set_results(results)
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]) -> None:
        """Run a statement for each parameter set, pipelined in one round trip."""
        client = self._check()
        sql: str | None = None
        rows: list[list[Any]] = []
        for parameters in seq_of_parameters:
            converted, args = convert_pyformat(operation, parameters)
            sql = converted
            rows.append(args)
        if sql is None:
            self._set_results([])
            self.rowcount = 0
            return
        total = client.execute_many(sql, rows, begin=self.connection._needs_begin())
        self._set_results([])
        self.rowcount = total

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        """Call a function with positional arguments; its rows become the cursor's result."""
        name = ".".join('"' + part.replace('"', '""') + '"' for part in procname.split("."))
        placeholders = ", ".join(["%s"] * len(parameters))
        self.execute(f"SELECT * FROM {name}({placeholders})", list(parameters))
        return parameters

    def _set_results(self, results: list[Result]) -> None:
        self._results = results
        self._index = 0
        self._load_current()

    def _load_current(self) -> None:
        if self._index < len(self._results):
            result = self._results[self._index]
            self._rows = result.rows
            self._pos = 0
            self._description = [_column(f) for f in result.fields] if result.fields else None
            self.statusmessage = result.tag
            if result.row_count is not None:
                self.rowcount = result.row_count
            else:
                self.rowcount = len(result.rows) if result.fields else -1
        else:
            self._rows = []
            self._pos = 0
            self._description = None
            self.rowcount = -1
            self.statusmessage = None

    def nextset(self) -> bool | None:
        """Move to the next result of a multi-statement execute; None when there is none."""
        if self._index + 1 < len(self._results):
            self._index += 1
            self._load_current()
            return True
        return None

    def _check_rows(self) -> None:
        if self._closed:
            raise InterfaceError("the cursor is closed")
        if self._description is None:
            raise ProgrammingError("the last operation produced no result rows")

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row, or None."""
        self._check_rows()
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row  # type: ignore[no-any-return]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        """Up to ``size`` rows (default ``arraysize``)."""
        self._check_rows()
        n = self.arraysize if size is None else size
        rows = self._rows[self._pos : self._pos + n]
        self._pos += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every remaining row."""
        self._check_rows()
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows that)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows that)."""

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# PEP 249 asks for the exceptions at module level too.
_ = _errors
