"""Running queries from async code: the same protocol as ``Database``, awaitable, over the
``neon_trio`` and ``neon_asyncio`` clients, pools and DB-API connections (one implementation,
``neon_async``, so one executor serves both loops), and ``run_in_transaction_async``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from neon_proto.errors import ProgrammingError
from neon_query.execute import (
    HTTPDatabase,
    IsolationLevel,
    TransactionOptions,
    _maybe_one,
    _one,
    finish_pipelined,
    pipelined_statements,
)
from neon_query.query import Query, Statement
from neon_query.typevars import T1, T2, T3, T4, T5, T6, T7, T8, T9, T10
from neon_query.transaction import ReadCommitted, Serializable, begin_statement, delay_before_retry

if TYPE_CHECKING:
    from neon_async.client import Client as AsyncClient
    from neon_async.dbapi import Connection as AsyncConnection
    from neon_async.http import NeonHTTP as AsyncNeonHTTP
    from neon_async.pool import Pool as AsyncPool

__all__ = ["AsyncExecutor", "AsyncDatabase", "AsyncHTTPDatabase", "AsyncTx", "run_in_transaction_async"]

R = TypeVar("R")
I = TypeVar("I", bound=ReadCommitted)  # noqa: E741
I_co = TypeVar("I_co", bound=ReadCommitted, covariant=True)

class AsyncExecutor(Protocol):
    """What runs queries from async code, whatever the transport and the loop."""

    async def all(self, query: Query[R]) -> list[R]:
        """Every row."""
        ...

    async def one(self, query: Query[R]) -> R:
        """Exactly one row (NoRowsError, TooManyRowsError otherwise)."""
        ...

    async def maybe_one(self, query: Query[R]) -> R | None:
        """The row, or None when there is none (TooManyRowsError for several)."""
        ...

    def stream(self, query: Query[R]) -> AsyncIterator[R]:
        """The rows, one at a time."""
        ...

    async def execute(self, statement: Statement) -> int:
        """Run a statement; the number of rows it affected."""
        ...


class _AsyncBatch:
    """``batch()``, awaitable: several queries in one round trip and one transaction."""

    async def _batch(self, queries: tuple[Query[Any], ...], transaction: TransactionOptions) -> tuple[list[Any], ...]:
        raise NotImplementedError

    # --- generated: batch ---
    @overload
    async def batch(self, q1: Query[T1], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], q8: Query[T8], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], q8: Query[T8], q9: Query[T9], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8], list[T9]]: ...
    @overload
    async def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], q8: Query[T8], q9: Query[T9], q10: Query[T10], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8], list[T9], list[T10]]: ...
    @overload
    async def batch(self, *queries: Query[Any], isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[Any], ...]: ...
    # --- end generated: batch ---
    async def batch(
        self,
        *queries: Query[Any],
        isolation_level: IsolationLevel | None = None,
        read_only: bool | None = None,
        deferrable: bool | None = None,
    ) -> tuple[list[Any], ...]:
        """Run the queries in one round trip and one transaction: all of them or none (an HTTP
        request, or one pipelined flight over TCP and WebSocket); each query's rows, in order."""
        if not queries:
            return ()
        return await self._batch(queries, TransactionOptions(isolation_level, read_only, deferrable))


class _AsyncRows:
    """``all``, ``one`` and ``maybe_one``, awaitable, for an executor that can fetch a query's rows."""

    async def _rows(self, query: Statement) -> list[Any]:
        raise NotImplementedError

    async def all(self, query: Query[R]) -> list[R]:
        """Every row of the query."""
        rows: list[R] = await self._rows(query)
        return rows

    async def one(self, query: Query[R]) -> R:
        """Exactly one row (NoRowsError or TooManyRowsError otherwise)."""
        rows: list[R] = await self._rows(query)
        return _one(rows)

    async def maybe_one(self, query: Query[R]) -> R | None:
        """The only row, or None (TooManyRowsError for several)."""
        rows: list[R] = await self._rows(query)
        return _maybe_one(rows)


class AsyncDatabase(_AsyncRows, _AsyncBatch):
    """The executor over an async ``Client``, ``Pool`` or DB-API ``Connection`` (trio or asyncio).

    With a DB-API connection outside autocommit, the first statement opens the transaction;
    ``commit()`` stays the caller's.
    """

    def __init__(self, source: AsyncClient | AsyncPool[Any] | AsyncConnection[Any]) -> None:
        from neon_async.client import Client
        from neon_async.dbapi import Connection
        from neon_async.pool import Pool

        if not isinstance(source, (Client, Pool, Connection)):
            raise TypeError(
                f"AsyncDatabase() takes a neon_trio/neon_asyncio Client, Pool or Connection, not {type(source).__name__}"
            )
        self.source = source

    def __repr__(self) -> str:
        return f"<neon_query.AsyncDatabase over {self.source!r}>"

    @asynccontextmanager
    async def _lease(self) -> AsyncIterator[AsyncClient]:
        from neon_async.client import Client
        from neon_async.pool import Pool

        source = self.source
        if isinstance(source, Client):
            yield source
        elif isinstance(source, Pool):
            async with source.connection() as client:
                yield client
        else:
            client = source.client
            if not source.autocommit and client.transaction_status == "I":
                await client.query("BEGIN")
            yield client

    async def _rows(self, query: Statement) -> list[Any]:
        compiled = query.compile()
        async with self._lease() as client:
            result = await client.execute(compiled.sql, list(compiled.params), mode=query.row_mode)
        query._check_fields(result.fields)
        return query._convert(result.rows)

    async def execute(self, statement: Statement) -> int:
        """Run a statement; the number of rows it affected."""
        compiled = statement.compile()
        async with self._lease() as client:
            result = await client.execute(compiled.sql, list(compiled.params), mode=statement.row_mode)
        return result.row_count if result.row_count is not None else len(result.rows)

    async def stream(self, query: Query[R], *, chunk_size: int = 500) -> AsyncGenerator[R, None]:
        """The rows as they arrive, read ``chunk_size`` at a time from a suspended portal: memory
        holds one chunk whatever the result's size. Close it early with ``aclose()``."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        sql, params = query.compile()
        async with self._lease() as client:
            async with client.stream(sql, list(params), max_rows=chunk_size, mode=query.row_mode) as rows:
                pending: list[Any] = []
                async for row in rows:
                    pending.append(row)
                    if len(pending) >= chunk_size:
                        converted: list[R] = query._convert(pending)
                        pending = []
                        for item in converted:
                            yield item
                if pending:
                    rest: list[R] = query._convert(pending)
                    for item in rest:
                        yield item

    async def _batch(self, queries: tuple[Query[Any], ...], transaction: TransactionOptions) -> tuple[list[Any], ...]:
        statements = pipelined_statements(queries, transaction)
        async with self._lease() as client:
            if statements[0][0].startswith("BEGIN") and client.transaction_status != "I":
                raise ProgrammingError("batch() cannot set transaction options inside a transaction")
            pipeline = client.pipeline()
            for text, params, array_mode in statements:
                pipeline.add(text, params, array_mode=array_mode)
            outcomes = await pipeline.run(atomic=True)
            wrapped = len(statements) != len(queries)
            if wrapped and client.transaction_status == "E":  # our BEGIN's block failed: end it
                await client.query("ROLLBACK")
        return finish_pipelined(queries, outcomes, wrapped)


class AsyncHTTPDatabase(_AsyncRows, _AsyncBatch):
    """The executor over the async ``neon()`` (``neon_trio.neon`` or ``neon_asyncio.neon``): one
    request per query, and ``batch()`` for several queries in one request and one transaction."""

    def __init__(self, sql: AsyncNeonHTTP) -> None:
        from neon_async.http import NeonHTTP

        if not isinstance(sql, NeonHTTP):
            raise TypeError(f"AsyncHTTPDatabase() takes an async neon() object, not {type(sql).__name__}")
        self.sql = sql

    def __repr__(self) -> str:
        return f"<neon_query.AsyncHTTPDatabase over {self.sql!r}>"

    async def _rows(self, query: Statement) -> list[Any]:
        sql, params = query.compile()
        result = await self.sql(sql, list(params), array_mode=query.row_mode == "tuple", full_results=True)
        return HTTPDatabase._finish(query, result)

    async def stream(self, query: Query[R]) -> AsyncGenerator[R, None]:
        """The rows one at a time (over HTTP the response arrives whole)."""
        rows: list[R] = await self._rows(query)
        for row in rows:
            yield row

    async def execute(self, statement: Statement) -> int:
        """Run a statement; the number of rows it affected."""
        sql, params = statement.compile()
        result = await self.sql(sql, list(params), array_mode=True, full_results=True)
        return result.row_count if result.row_count is not None else len(result.rows)

    async def _batch(self, queries: tuple[Query[Any], ...], transaction: TransactionOptions) -> tuple[list[Any], ...]:
        sql = self.sql
        requests = []
        for q in queries:
            text, params = q.compile()
            requests.append(sql.query(text, list(params), array_mode=q.row_mode == "tuple", full_results=True))
        results = await sql.transaction(requests, full_results=True, **transaction._asdict())
        return tuple(HTTPDatabase._finish(q, r) for q, r in zip(queries, results))

class AsyncTx(AsyncDatabase, Generic[I_co]):
    """An async executor inside a transaction at isolation level ``I`` (or stronger)."""

    def __init__(self, client: AsyncClient, isolation: type[I_co], attempt: int) -> None:
        super().__init__(client)
        self.isolation = isolation
        self.attempt = attempt
        """1 on the first run, 2 on the first retry..."""


@asynccontextmanager
async def _lease(source: AsyncClient | AsyncPool[Any] | AsyncConnection[Any]) -> AsyncIterator[AsyncClient]:
    from neon_async.client import Client
    from neon_async.dbapi import Connection
    from neon_async.pool import Pool

    if isinstance(source, Client):
        yield source
    elif isinstance(source, Pool):
        async with source.connection() as client:
            yield client
    elif isinstance(source, Connection):
        yield source.client
    else:
        raise TypeError(f"run_in_transaction_async() takes an async Client, Pool or Connection, not {type(source).__name__}")


@overload
async def run_in_transaction_async(
    source: AsyncClient | AsyncPool[Any] | AsyncConnection[Any],
    fn: Callable[[AsyncTx[Serializable]], Awaitable[R]],
    *,
    max_attempts: int = 5,
    read_only: bool = False,
    backoff_base: float = 0.025,
    backoff_cap: float = 0.25,
) -> R: ...
@overload
async def run_in_transaction_async(
    source: AsyncClient | AsyncPool[Any] | AsyncConnection[Any],
    fn: Callable[[AsyncTx[I]], Awaitable[R]],
    *,
    isolation: type[I],
    max_attempts: int = 5,
    read_only: bool = False,
    backoff_base: float = 0.025,
    backoff_cap: float = 0.25,
) -> R: ...
async def run_in_transaction_async(
    source: AsyncClient | AsyncPool[Any] | AsyncConnection[Any],
    fn: Callable[[AsyncTx[Any]], Awaitable[R]],
    *,
    isolation: type[ReadCommitted] = Serializable,
    max_attempts: int = 5,
    read_only: bool = False,
    backoff_base: float = 0.025,
    backoff_cap: float = 0.25,
) -> R:
    """``run_in_transaction`` for async code: ``await fn(tx)`` in a transaction, re-run on
    40001/40P01 with jittered backoff (the loop's own sleep), then commit."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    begin = begin_statement(isolation, read_only)
    attempt = 1
    while True:
        async with _lease(source) as client:
            if client.transaction_status != "I":
                raise ProgrammingError("run_in_transaction_async() needs a connection that is not in a transaction")
            await client.query(begin)
            try:
                result = await fn(AsyncTx(client, isolation, attempt))
                await client.query("COMMIT")
                return result
            except BaseException as e:
                if not client.closed and client.transaction_status != "I":
                    await client.query("ROLLBACK")
                delay = delay_before_retry(e, attempt, max_attempts, backoff_base, backoff_cap)
                if delay is None:
                    raise
            backend = client.backend
        await backend.sleep(delay)
        attempt += 1
