"""DB-API 2.0 (PEP 249) over ``Client``: ``connect()``, ``Connection``, ``Cursor``."""

from __future__ import annotations

import base64
import datetime as _dt
import enum
import re
import time as _time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic, NamedTuple, Self, TypeVar, Unpack, cast, overload

from neon_proto import errors as _errors
from neon_proto.dbapi import (
    Column,
    DBAPIConnectionState,
    DBAPICursorState,
    callproc_sql,
    column_description,
    describe_result,
    many_statements,
    statement_queries,
    statement_results,
)
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
from neon_proto.pyformat import convert_pyformat, format_query
from neon_proto.results import Result
from neon_proto.rows import RowFactory, RowMaker, tuple_row
from neon_proto.session import NoticeHandler, PortalStream, Query
from neon_sync.client import Client
from neon_sync.copy import Copy

__all__ = [
    "apilevel",
    "threadsafety",
    "paramstyle",
    "connect",
    "Connection",
    "Cursor",
    "ServerCursor",
    "IsolationLevel",
    "Xid",
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

R = TypeVar("R")  # the row type a cursor's row factory makes

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "pyformat"


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
    row_factory: RowFactory[Any] | None = None,
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
    return Connection(client, autocommit=autocommit, row_factory=row_factory)


class IsolationLevel(enum.IntEnum):
    """Transaction isolation levels (psycopg's values)."""

    READ_UNCOMMITTED = 1
    READ_COMMITTED = 2
    REPEATABLE_READ = 3
    SERIALIZABLE = 4


class Xid(NamedTuple):
    """A two-phase commit transaction id: ``(format_id, gtrid, bqual)`` as in XA.

    ``format_id`` None means a plain Postgres transaction name in ``gtrid`` (one prepared by
    something else); otherwise the three parts are encoded into the name as psycopg does, so
    that either driver recovers the other's transactions.
    """

    format_id: int | None
    gtrid: str
    bqual: str | None

    def as_gid(self) -> str:
        """The name given to PREPARE TRANSACTION."""
        if self.format_id is None:
            return self.gtrid
        gtrid = base64.b64encode(self.gtrid.encode()).decode()
        bqual = base64.b64encode((self.bqual or "").encode()).decode()
        return f"{self.format_id}_{gtrid}_{bqual}"

    @classmethod
    def from_gid(cls, gid: str) -> "Xid":
        """The Xid a prepared transaction's name stands for."""
        m = _GID.match(gid)
        if m is not None:
            try:
                gtrid = base64.b64decode(m.group(2), validate=True).decode()
                bqual = base64.b64decode(m.group(3), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                pass
            else:
                return cls(int(m.group(1)), gtrid, bqual)
        return cls(None, gid, None)


_GID = re.compile(r"^(\d+)_([A-Za-z0-9+/=]*)_([A-Za-z0-9+/=]*)$")
_ISOLATION_SQL = {
    IsolationLevel.READ_UNCOMMITTED: "READ UNCOMMITTED",
    IsolationLevel.READ_COMMITTED: "READ COMMITTED",
    IsolationLevel.REPEATABLE_READ: "REPEATABLE READ",
    IsolationLevel.SERIALIZABLE: "SERIALIZABLE",
}


def _isolation_level(value: Any) -> IsolationLevel | None:
    if value is None or isinstance(value, IsolationLevel):
        return value
    if isinstance(value, str):
        key = value.strip().upper().replace(" ", "_").replace("-", "_")
        try:
            return IsolationLevel[key]
        except KeyError:
            pass
    elif isinstance(value, int):
        try:
            return IsolationLevel(value)
        except ValueError:
            pass
    raise ProgrammingError(
        f"unknown isolation level {value!r}: use one of {', '.join(level.name for level in IsolationLevel)} or None"
    )


class Connection(DBAPIConnectionState, DBAPIExceptions):
    """A PEP 249 connection. Outside autocommit, the first statement opens a transaction."""

    client: Client

    def __init__(self, client: Client, *, autocommit: bool = False, row_factory: RowFactory[Any] | None = None) -> None:
        self.client = client
        self._autocommit = autocommit
        self._savepoints = 0
        self._closed = False
        #: The row factory of cursors created from now on (``neon_proto.rows``); tuples by default.
        self.row_factory: RowFactory[Any] = row_factory if row_factory is not None else tuple_row
        self._isolation_level: IsolationLevel | None = None
        self._read_only: bool | None = None
        self._deferrable: bool | None = None
        self._tpc: Xid | None = None
        self._tpc_prepared = False
        self._cursor_names = 0

    # ------------------------------------------------------------------ transaction settings

    def _check_settable(self, what: str) -> None:
        self._check_open()
        if self.client.transaction_status != "I":
            raise ProgrammingError(f"cannot change {what} inside a transaction: commit or roll back first")

    @property
    def isolation_level(self) -> IsolationLevel | None:
        """The isolation level of the transactions this connection opens (None: the server's default)."""
        return self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: IsolationLevel | str | int | None) -> None:
        level = _isolation_level(value)
        self._check_settable("isolation_level")
        self._isolation_level = level

    @property
    def read_only(self) -> bool | None:
        """Whether the transactions this connection opens are READ ONLY (None: the server's default)."""
        return self._read_only

    @read_only.setter
    def read_only(self, value: bool | None) -> None:
        self._check_settable("read_only")
        self._read_only = None if value is None else bool(value)

    @property
    def deferrable(self) -> bool | None:
        """Whether the transactions this connection opens are DEFERRABLE (None: the server's default)."""
        return self._deferrable

    @deferrable.setter
    def deferrable(self, value: bool | None) -> None:
        self._check_settable("deferrable")
        self._deferrable = None if value is None else bool(value)

    def _begin_sql(self) -> str:
        parts = ["BEGIN"]
        if self._isolation_level is not None:
            parts.append("ISOLATION LEVEL " + _ISOLATION_SQL[self._isolation_level])
        if self._read_only is not None:
            parts.append("READ ONLY" if self._read_only else "READ WRITE")
        if self._deferrable is not None:
            parts.append("DEFERRABLE" if self._deferrable else "NOT DEFERRABLE")
        return " ".join(parts)

    # ------------------------------------------------------------------ facts and notices

    def add_notice_handler(self, handler: NoticeHandler) -> None:
        """Call ``handler(diagnostic)`` for each notice or warning the server sends."""
        self.client.add_notice_handler(handler)

    def remove_notice_handler(self, handler: NoticeHandler) -> None:
        """Stop calling a notice handler."""
        self.client.remove_notice_handler(handler)

    # ------------------------------------------------------------------ cursors

    @overload
    def cursor(
        self,
        name: str | None = None,
        *,
        row_factory: RowFactory[R],
        scrollable: bool | None = None,
        withhold: bool = False,
    ) -> "Cursor[R]": ...

    @overload
    def cursor(
        self,
        name: str | None = None,
        *,
        row_factory: None = None,
        scrollable: bool | None = None,
        withhold: bool = False,
    ) -> "Cursor[Any]": ...

    def cursor(
        self,
        name: str | None = None,
        *,
        row_factory: RowFactory[Any] | None = None,
        scrollable: bool | None = None,
        withhold: bool = False,
    ) -> "Cursor[Any]":
        """A new cursor; with a ``name``, a server-side cursor (DECLARE/FETCH, see ServerCursor).

        Rows take the shape of ``row_factory`` (the connection's by default, tuples unless set);
        the cursor's type follows it: ``cursor(row_factory=dict_row)`` is a ``Cursor[dict[str, Any]]``.
        """
        self._check_open()
        factory = row_factory if row_factory is not None else self.row_factory
        if name is not None:
            return ServerCursor(self, name, row_factory=factory, scrollable=scrollable, withhold=withhold)
        if scrollable is not None or withhold:
            raise ProgrammingError("scrollable and withhold are options of named (server-side) cursors")
        return Cursor(self, row_factory=factory)

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> "Cursor[Any]":
        """Create a cursor, execute, and return it (a psycopg-style shortcut)."""
        cur = self.cursor()
        cur.execute(operation, parameters)
        return cur

    def commit(self) -> None:
        """Commit the current transaction (nothing to do outside one)."""
        self._check_open()
        if self._tpc is not None:
            raise ProgrammingError("commit() inside a two-phase transaction: use tpc_commit()")
        if self.client.transaction_status != "I":
            self.client.query("COMMIT")

    def rollback(self) -> None:
        """Roll back the current transaction (nothing to do outside one)."""
        self._check_open()
        if self._tpc is not None:
            raise ProgrammingError("rollback() inside a two-phase transaction: use tpc_rollback()")
        if self.client.transaction_status != "I":
            self.client.query("ROLLBACK")

    def close(self) -> None:
        """Close the connection; an open transaction is discarded by the server.

        Closing a connection already closed raises InterfaceError, as PEP 249 asks.
        """
        if self._closed:
            raise InterfaceError("the connection is already closed")
        self._closed = True
        self.client.close()

    # ------------------------------------------------------------------ two-phase commit

    def xid(self, format_id: int | None, gtrid: str, bqual: str | None) -> Xid:
        """A transaction id for the tpc_* methods (PEP 249): a 3-tuple, format_id 0..2**31-1."""
        if format_id is not None and not (0 <= format_id < 2**31):
            raise ProgrammingError("format_id must be a non-negative 32-bit integer")
        for part, value in (("gtrid", gtrid), ("bqual", bqual)):
            if value is not None and len(value.encode()) > 64:
                raise ProgrammingError(f"{part} must be at most 64 bytes")
        if format_id is not None and bqual is None:
            raise ProgrammingError("bqual is needed when format_id is given")
        return Xid(format_id, gtrid, bqual)

    def tpc_begin(self, xid: Xid | str) -> None:
        """Begin a two-phase transaction; only outside a transaction."""
        self._check_open()
        if self._tpc is not None:
            raise ProgrammingError("tpc_begin() inside a two-phase transaction")
        if self.client.transaction_status != "I":
            raise ProgrammingError("tpc_begin() inside a transaction: commit or roll back first")
        if isinstance(xid, str):
            xid = Xid.from_gid(xid)
        self.client.query(self._begin_sql())
        self._tpc = xid
        self._tpc_prepared = False

    def tpc_prepare(self) -> None:
        """First phase: PREPARE TRANSACTION; after it only tpc_commit() or tpc_rollback()."""
        self._check_open()
        if self._tpc is None:
            raise ProgrammingError("tpc_prepare() outside a two-phase transaction")
        if self._tpc_prepared:
            raise ProgrammingError("the two-phase transaction is already prepared")
        self.client.query("PREPARE TRANSACTION " + _quote_literal(self._tpc.as_gid()))
        self._tpc_prepared = True

    def tpc_commit(self, xid: Xid | str | None = None) -> None:
        """Commit the two-phase transaction (one phase when not prepared), or a recovered ``xid``."""
        self._tpc_finish("COMMIT", xid)

    def tpc_rollback(self, xid: Xid | str | None = None) -> None:
        """Roll back the two-phase transaction, or a recovered ``xid``."""
        self._tpc_finish("ROLLBACK", xid)

    def _tpc_finish(self, verb: str, xid: Xid | str | None) -> None:
        self._check_open()
        name = f"tpc_{verb.lower()}()"
        if xid is None:
            if self._tpc is None:
                raise ProgrammingError(f"{name} without an xid outside a two-phase transaction")
            if self._tpc_prepared:
                self.client.query(f"{verb} PREPARED " + _quote_literal(self._tpc.as_gid()))
            else:
                self.client.query(verb)
            self._tpc = None
            self._tpc_prepared = False
            return
        if self._tpc is not None or self.client.transaction_status != "I":
            raise ProgrammingError(f"{name} with an xid must be called outside a transaction")
        if isinstance(xid, str):
            xid = Xid.from_gid(xid)
        self.client.query(f"{verb} PREPARED " + _quote_literal(xid.as_gid()))

    def tpc_recover(self) -> list[Xid]:
        """The transactions prepared in this database and not yet committed or rolled back."""
        self._check_open()
        result = self.client.query(
            "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database()"
            " ORDER BY prepared",
            array_mode=True,
        )
        return [Xid.from_gid(row[0]) for row in result.rows]

    def cancel(self) -> None:
        """Cancel the query running on this connection (callable from another thread)."""
        self.client.cancel()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if not self.closed and self._tpc is None:
                if exc_type is None:
                    self.commit()
                else:
                    self.rollback()
        finally:
            if not self._closed:
                self.close()

    @contextmanager
    def transaction(self) -> Iterator["Connection"]:
        """A transaction block; nested blocks become savepoints. Commits or rolls back on exit."""
        self._check_open()
        client = self.client
        block = self._open_block()
        try:
            client.query(block.begin_sql(self._begin_sql()))
            try:
                yield self
            except BaseException:
                if not client.closed:
                    client.query(block.rollback_sql())
                raise
            client.query(block.commit_sql())
        finally:
            self._close_block(block)

    def _begin_needed(self) -> str | None:
        """The BEGIN to send before the next statement, if one is due."""
        if self._tpc_prepared:
            raise ProgrammingError("the two-phase transaction is prepared: call tpc_commit() or tpc_rollback()")
        return self._begin_sql() if self._implicit_begin_due() else None


_NO_ROW = object()


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Cursor(DBAPICursorState, Generic[R]):
    """A PEP 249 cursor: rows are tuples unless a row factory says otherwise (``Cursor[R]``:
    the row type the factory makes)."""

    def __init__(self, connection: Connection, *, row_factory: RowFactory[R] | None = None) -> None:
        self.connection = connection
        self._init_state()
        self._description: list[Column] | None = None
        self._row_factory: RowFactory[Any] = row_factory if row_factory is not None else connection.row_factory
        self._make_row: RowMaker[Any] | None = None  # None: rows as they are (tuples)

    def __repr__(self) -> str:
        return f"<neon_sync.Cursor rowcount={self.rowcount} closed={self._closed}>"

    @property
    def row_factory(self) -> RowFactory[R]:
        """How rows are shaped (``neon_proto.rows``: tuple_row, dict_row, namedtuple_row, class_row...)."""
        return cast("RowFactory[R]", self._row_factory)

    @row_factory.setter
    def row_factory(self, factory: RowFactory[R]) -> None:
        self._row_factory = factory
        self._update_row_maker()

    def _update_row_maker(self) -> None:
        factory = self._row_factory
        if factory is tuple_row or self._description is None:
            self._make_row = None
        else:
            self._make_row = factory(self)

    @property
    def description(self) -> list[Column] | None:
        """The result's columns (seven items each), or None for a statement without rows."""
        return self._description

    @property
    def lastrowid(self) -> None:
        """Not supported by Postgres (use RETURNING)."""
        return None

    @property
    def rownumber(self) -> int | None:
        """The index of the next row to fetch in the current result, or None without one."""
        return self._pos if self._description is not None else None

    def close(self) -> None:
        """Close the cursor and drop its rows."""
        self._drop_results()

    def _check(self) -> Client:
        self._check_cursor_open()
        self.connection._check_open()
        return self.connection.client

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> Self:
        """Run a statement; ``%s`` / ``%(name)s`` placeholders take ``parameters``."""
        client = self._check()
        session = client.session
        sql, args = convert_pyformat(operation, parameters)
        begin = self.connection._begin_needed()
        if parameters is None:
            results: list[Result] = client._run(session.simple_query(sql, mode="tuple", begin=begin or False))
        else:
            done = client._run(session.pipeline(statement_queries(sql, args, begin), sync_each=False))
            results = statement_results(done)
        self._set_results(results)
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]) -> None:
        """Run a statement for each parameter set, pipelined in one round trip."""
        client = self._check()
        sql, rows = many_statements(operation, seq_of_parameters)
        total = 0 if sql is None else client.execute_many(sql, rows, begin=self.connection._begin_needed() or False)
        self._set_results([])
        self.rowcount = total

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        """Call a function with positional arguments; its rows become the cursor's result."""
        self.execute(callproc_sql(procname, len(parameters)), list(parameters))
        return parameters

    def mogrify(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> str:
        """The statement with its parameters as literals, for logging (never executed so)."""
        client = self._check()
        sql, args = convert_pyformat(operation, parameters)
        return format_query(sql, args, client.registry)

    def copy(self, statement: str) -> Copy:
        """A COPY as a context manager (``write``/``write_row``, or ``read``/``rows``/iteration).

        Outside autocommit, the COPY runs in the connection's transaction, opened first if needed.
        """
        client = self._check()
        begin = self.connection._begin_needed()
        if begin:
            client.query(begin)
        return client.copy(statement)

    def stream(
        self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None, *, size: int = 2000
    ) -> Iterator[R]:
        """Iterate over a statement's rows, read ``size`` at a time from the server: memory stays
        at one batch. The connection runs nothing else until the iteration ends or is closed."""
        client = self._check()
        sql, args = convert_pyformat(operation, parameters)
        begin = self.connection._begin_needed()

        def started(portal: PortalStream) -> None:
            self._rows = []
            self._pos = 0
            self._description = [column_description(f) for f in portal.fields] if portal.fields else None
            self._update_row_maker()

        rows = client._stream(
            sql, args if parameters is not None else None, batch_rows=size, mode="tuple", begin=begin, on_start=started
        )
        if self._row_factory is tuple_row:
            return rows  # tuples as they come: no generator in between
        return self._shaped(rows)

    def _shaped(self, rows: Iterator[Any]) -> Iterator[R]:
        first: Any = next(rows, _NO_ROW)  # opens the stream: the row maker is known after it
        if first is _NO_ROW:
            return
        make = self._make_row
        if make is None:  # a factory that chose to keep the tuples
            yield first
            yield from rows  # closing this generator closes the stream too
            return
        try:
            yield make(first)
            for row in rows:
                yield make(row)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    def _load_current(self) -> None:
        result = self._current_result()
        self._rows = [] if result is None else result.rows
        self._pos = 0
        self._description, self.statusmessage, self.rowcount = describe_result(result)
        self._update_row_maker()

    def nextset(self) -> bool | None:
        """Move to the next result of a multi-statement execute; None when there is none."""
        self._check_cursor_open()
        if self._index + 1 < len(self._results):
            self._index += 1
            self._load_current()
            return True
        return None

    def _check_rows(self) -> None:
        self._check_cursor_open()
        if self._description is None:
            raise ProgrammingError("the last operation produced no result rows")

    def fetchone(self) -> R | None:
        """The next row, or None."""
        self._check_rows()
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        make = self._make_row
        return cast(R, row if make is None else make(row))

    def fetchmany(self, size: int | None = None) -> list[R]:
        """Up to ``size`` rows (default ``arraysize``)."""
        self._check_rows()
        n = self.arraysize if size is None else size
        rows = self._rows[self._pos : self._pos + n]
        self._pos += len(rows)
        make = self._make_row
        return rows if make is None else [make(r) for r in rows]

    def fetchall(self) -> list[R]:
        """Every remaining row."""
        self._check_rows()
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        make = self._make_row
        return rows if make is None else [make(r) for r in rows]

    def scroll(self, value: int, mode: str = "relative") -> None:
        """Move in the current result: ``relative`` to the current row or ``absolute``."""
        self._check_rows()
        if mode not in ("relative", "absolute"):
            raise ProgrammingError(f"scroll mode must be 'relative' or 'absolute', not {mode!r}")
        target = self._pos + value if mode == "relative" else value
        if not 0 <= target <= len(self._rows):
            raise IndexError(f"scroll target {target} is out of the result (0..{len(self._rows)})")
        self._pos = target

    def __iter__(self) -> Iterator[R]:
        while True:
            row = self.fetchone()
            if row is None:
                return
            yield row

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ServerCursor(Cursor[R]):
    """A named, server-side cursor: ``execute`` DECLAREs it, fetches read it ``itersize`` rows
    at a time (FETCH), so a large result never sits whole in memory.

    Without ``withhold`` it lives in a transaction (opened by execute outside autocommit);
    ``scrollable`` True/False declares SCROLL / NO SCROLL. ``close()`` CLOSEs it on the server.
    """

    def __init__(
        self,
        connection: Connection,
        name: str,
        *,
        row_factory: RowFactory[R] | None = None,
        scrollable: bool | None = None,
        withhold: bool = False,
    ) -> None:
        super().__init__(connection, row_factory=row_factory)
        if not name:
            raise ProgrammingError("a server-side cursor needs a non-empty name")
        self.name = name
        self.scrollable = scrollable
        self.withhold = withhold
        #: Rows each FETCH asks for while iterating.
        self.itersize = 2000
        self._declared = False
        self._at_end = False
        self._server_pos = 0  # rows the server cursor has moved past
        self._buffer_start = 0  # row number of self._rows[0]

    def __repr__(self) -> str:
        return f"<neon_sync.ServerCursor {self.name!r} declared={self._declared} closed={self._closed}>"

    def _quoted_name(self) -> str:
        return '"' + self.name.replace('"', '""') + '"'

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> Self:
        """DECLARE the cursor for a query and read its first ``itersize`` rows in the same round trip."""
        client = self._check()
        if self._declared:
            self._close_on_server(client)
        if not self.withhold and self.connection.autocommit and client.transaction_status == "I":
            raise ProgrammingError(
                f"server-side cursor {self.name!r} needs a transaction: turn autocommit off, open one with"
                " transaction(), or declare it with withhold=True"
            )
        sql, args = convert_pyformat(operation, parameters)
        scroll = "" if self.scrollable is None else ("SCROLL " if self.scrollable else "NO SCROLL ")
        hold = "WITH HOLD " if self.withhold else ""
        declare = f"DECLARE {self._quoted_name()} {scroll}CURSOR {hold}FOR {sql}"
        queries = [Query(declare, args, "tuple"), Query(f"FETCH FORWARD {int(self.itersize)} FROM {self._quoted_name()}", None, "tuple")]
        begin = self.connection._begin_needed()
        if begin:
            queries.insert(0, Query(begin, None, "tuple"))
        done = client._run(client.session.pipeline(queries, sync_each=False))
        results = [q.outcome() for q in done]
        self._declared = True
        self._server_pos = 0
        fetched = results[-1]
        self._take(fetched, start=0)
        self.statusmessage = results[-2].tag
        self.rowcount = -1
        return self

    def _take(self, result: Result, *, start: int) -> None:
        self._rows = result.rows
        self._pos = 0
        self._buffer_start = start
        self._server_pos = start + len(result.rows)
        self._at_end = len(result.rows) < self.itersize
        if result.fields or self._description is None:
            self._description = [column_description(f) for f in result.fields] if result.fields else None
        self._update_row_maker()

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]) -> None:
        """Not for server-side cursors."""
        raise NotSupportedError("executemany() is not available on a server-side cursor")

    def _fetch(self, count: int | None) -> list[R]:
        """Up to ``count`` rows (None: all the rest), from the buffer, then from the server."""
        self._check_rows()
        client = self._check()
        out: list[Any] = []
        while count is None or len(out) < count:
            if self._pos < len(self._rows):
                want = len(self._rows) - self._pos if count is None else count - len(out)
                chunk = self._rows[self._pos : self._pos + want]
                self._pos += len(chunk)
                out.extend(chunk)
                continue
            if self._at_end:
                break
            size = "ALL" if count is None else str(max(self.itersize, count - len(out)))
            result: Result = client.execute(f"FETCH FORWARD {size} FROM {self._quoted_name()}", mode="tuple")
            self._take(result, start=self._server_pos)
            if size == "ALL":
                self._at_end = True
            if not result.rows:
                self._at_end = True
                break
        self.rowcount = self._buffer_start + self._pos
        make = self._make_row
        return out if make is None else [make(r) for r in out]

    def fetchone(self) -> R | None:
        """The next row, or None."""
        rows = self._fetch(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[R]:
        """Up to ``size`` rows (default ``arraysize``)."""
        return self._fetch(self.arraysize if size is None else size)

    def fetchall(self) -> list[R]:
        """Every remaining row."""
        return self._fetch(None)

    def __iter__(self) -> Iterator[R]:
        while True:
            rows = self._fetch(self.itersize)
            if not rows:
                return
            yield from rows

    @property
    def rownumber(self) -> int | None:
        """The index of the next row to fetch, or None before execute."""
        return self._buffer_start + self._pos if self._declared else None

    def scroll(self, value: int, mode: str = "relative") -> None:
        """Move the cursor (MOVE on the server); backwards needs ``scrollable=True``."""
        self._check_rows()
        client = self._check()
        if mode not in ("relative", "absolute"):
            raise ProgrammingError(f"scroll mode must be 'relative' or 'absolute', not {mode!r}")
        here = self._buffer_start + self._pos
        target = here + value if mode == "relative" else value
        if target < 0:
            raise IndexError("cannot scroll before the first row")
        if self._buffer_start <= target <= self._buffer_start + len(self._rows):
            self._pos = target - self._buffer_start  # inside the rows at hand
            return
        client.execute(f"MOVE ABSOLUTE {int(target)} FROM {self._quoted_name()}")
        self._rows = []
        self._pos = 0
        self._buffer_start = target
        self._server_pos = target
        self._at_end = False

    def _close_on_server(self, client: Client) -> None:
        status = client.transaction_status
        if status == "E" or (status == "I" and not self.withhold):
            return  # gone with its transaction, or unreachable until the rollback
        found = client.execute("SELECT 1 FROM pg_catalog.pg_cursors WHERE name = $1", [self.name])
        if found.rows:
            client.query(f"CLOSE {self._quoted_name()}")
        self._declared = False

    def close(self) -> None:
        """CLOSE the cursor on the server (when it still exists) and drop its rows."""
        if self._closed:
            return
        try:
            if self._declared and not self.connection.closed:
                self._close_on_server(self.connection.client)
        finally:
            super().close()


# PEP 249 asks for the exceptions at module level too.
_ = _errors
