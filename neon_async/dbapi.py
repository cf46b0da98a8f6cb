"""An async DB-API connection in the manner of psycopg's ``AsyncConnection``, on any loop.

``conn = await connect(dsn)``; ``cur = conn.cursor()``; ``await cur.execute("... %s", [x])``;
``await cur.fetchone()``; ``async for row in cur``; ``async with conn.transaction():`` (nested
blocks are savepoints). Outside autocommit the first statement opens a transaction, as PEP 249
asks; ``commit()`` / ``rollback()`` end it. Placeholders are ``%s`` and ``%(name)s``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Generic, Mapping, Self, Sequence, TypeVar, Unpack

from neon_async.client import Client
from neon_proto.dbapi import (
    Column,
    DBAPIConnectionState,
    DBAPICursorState,
    callproc_sql,
    describe_result,
    many_statements,
    statement_queries,
    statement_results,
)
from neon_proto.errors import DBAPIExceptions, InterfaceError, ProgrammingError
from neon_proto.options import ConnectKeywords
from neon_proto.pyformat import convert_pyformat
from neon_proto.results import Result
from neon_proto.rows import RowFactory, tuple_row

__all__ = ["Connection", "Cursor", "Row"]

C = TypeVar("C", bound=Client)

Row = Any
"""A row as the cursor's row factory makes it (a tuple by default)."""
Parameters = Sequence[Any] | Mapping[str, Any]


class Connection(DBAPIConnectionState, DBAPIExceptions, Generic[C]):
    """An async PEP 249 connection over one ``Client``."""

    client_class: type[C]
    client: C

    def __init__(self, client: C, *, autocommit: bool = False, row_factory: RowFactory[Any] = tuple_row) -> None:
        self.client = client
        self.row_factory = row_factory
        """How cursors shape rows (``neon_proto.rows``: tuple_row, dict_row, namedtuple_row, class_row...)."""
        self._autocommit = autocommit
        self._savepoints = 0
        self._closed = False

    @classmethod
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        autocommit: bool = False,
        row_factory: RowFactory[Any] = tuple_row,
        array_mode: bool = False,
        prepared_statement_cache_size: int = 0,
        registry: Any = None,
        binary: bool = False,
        max_message_size: int | None = None,
        cancel_timeout: float = 5.0,
        **options: Unpack[ConnectKeywords],
    ) -> Self:
        """Open a connection (a ``postgresql://`` URI, a ``key=value`` string, or keywords)."""
        client = cls.client_class(
            dsn,
            array_mode=array_mode,
            prepared_statement_cache_size=prepared_statement_cache_size,
            registry=registry,
            binary=binary,
            max_message_size=max_message_size,
            cancel_timeout=cancel_timeout,
            **options,
        )
        await client.connect(wait=True)
        return cls(client, autocommit=autocommit, row_factory=row_factory)

    async def set_autocommit(self, value: bool) -> None:
        """psycopg's spelling of ``conn.autocommit = value``."""
        self.autocommit = value

    def cursor(self, *, row_factory: RowFactory[Any] | None = None) -> Cursor[C]:
        """A new cursor (rows shaped by ``row_factory``, by default the connection's)."""
        self._check_open()
        return Cursor(self, row_factory=row_factory)

    async def execute(self, operation: str, parameters: Parameters | None = None) -> Cursor[C]:
        """Create a cursor, execute, and return it."""
        cur = self.cursor()
        await cur.execute(operation, parameters)
        return cur

    async def commit(self) -> None:
        """Commit the current transaction (nothing to do outside one)."""
        self._check_open()
        if self.client.transaction_status != "I":
            await self.client.query("COMMIT")

    async def rollback(self) -> None:
        """Roll back the current transaction (nothing to do outside one)."""
        self._check_open()
        if self.client.transaction_status != "I":
            await self.client.query("ROLLBACK")

    async def close(self) -> None:
        """Close the connection; an open transaction is discarded by the server."""
        self._closed = True
        await self.client.close()

    async def cancel(self) -> None:
        """Cancel the query running on this connection (from another task)."""
        await self.client.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        try:
            if not self.closed:
                if exc_type is None:
                    await self.commit()
                else:
                    await self.rollback()
        finally:
            await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """A transaction block; nested blocks become savepoints. Commits, or rolls back when
        the block raises (a cancellation included)."""
        self._check_open()
        client = self.client
        block = self._open_block()
        try:
            await client.query(block.begin_sql())
            try:
                yield self
            except BaseException:
                if not client.closed:
                    async with client.backend.shielded(client.cancel_timeout):
                        await client.query(block.rollback_sql())
                raise
            await client.query(block.commit_sql())
        finally:
            self._close_block(block)


class Cursor(DBAPICursorState, Generic[C]):
    """An async PEP 249 cursor: rows are tuples; ``fetch*`` are coroutines, as in psycopg."""

    def __init__(self, connection: Connection[C], *, row_factory: RowFactory[Any] | None = None) -> None:
        self.connection = connection
        self.row_factory: RowFactory[Any] = row_factory or connection.row_factory
        self._init_state()
        self.description: list[Column] | None = None
        """The result's columns (seven items each), or None for a statement without rows."""

    def __repr__(self) -> str:
        return f"<{type(self).__module__.split('.')[0]}.Cursor rowcount={self.rowcount} closed={self._closed}>"

    async def close(self) -> None:
        """Close the cursor and drop its rows."""
        self._drop_results()

    def _client(self) -> C:
        self._check_cursor_open()
        self.connection._check_open()
        return self.connection.client

    async def execute(self, operation: str, parameters: Parameters | None = None) -> Self:
        """Run a statement; ``%s`` / ``%(name)s`` placeholders take ``parameters``."""
        client = self._client()
        session = client.session
        sql, args = convert_pyformat(operation, parameters)
        begin = self.connection._implicit_begin_due()
        if parameters is None:
            results = await client.run(session.simple_query(sql, mode="tuple", begin=begin))
        else:
            done = await client.run(session.pipeline(statement_queries(sql, args, "BEGIN" if begin else None), sync_each=False))
            results = statement_results(done)
        self._set_results(results)
        return self

    async def executemany(self, operation: str, seq_of_parameters: Sequence[Parameters]) -> None:
        """Run a statement for each parameter set, pipelined in one round trip."""
        client = self._client()
        sql, rows = many_statements(operation, seq_of_parameters)
        total = 0 if sql is None else await client.execute_many(sql, rows, begin=self.connection._implicit_begin_due())
        self._set_results([])
        self.rowcount = total

    async def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        """Call a function with positional arguments; its rows become the cursor's result."""
        await self.execute(callproc_sql(procname, len(parameters)), list(parameters))
        return parameters

    def _load_current(self) -> None:
        result = self._current_result()
        self._pos = 0
        self.description, self.statusmessage, self.rowcount = describe_result(result)
        if result is None:
            self._rows = []
            return
        factory = self.row_factory
        if factory is tuple_row or self.description is None:
            self._rows = result.rows
        else:
            make = factory(self)
            self._rows = [make(values) for values in result.rows]

    def nextset(self) -> bool | None:
        """Move to the next result of a multi-statement execute; None when there is none."""
        if self._index + 1 >= len(self._results):
            return None
        self._index += 1
        self._load_current()
        return True

    def _take(self, n: int) -> list[Row]:
        self._check_cursor_open()
        if self.description is None:
            raise ProgrammingError("the last operation produced no result rows")
        rows = self._rows[self._pos : self._pos + n]
        self._pos += len(rows)
        return rows

    async def fetchone(self) -> Row | None:
        """The next row, or None."""
        await self.connection.client.backend.checkpoint()
        rows = self._take(1)
        return rows[0] if rows else None

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Up to ``size`` rows (default ``arraysize``)."""
        await self.connection.client.backend.checkpoint()
        return self._take(self.arraysize if size is None else size)

    async def fetchall(self) -> list[Row]:
        """Every remaining row."""
        await self.connection.client.backend.checkpoint()
        return self._take(len(self._rows))

    def __aiter__(self) -> AsyncIterator[Row]:
        return self

    async def __anext__(self) -> Row:
        await self.connection.client.backend.checkpoint()
        rows = self._take(1)
        if not rows:
            raise StopAsyncIteration
        return rows[0]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
