"""Running queries: one small protocol (``all``, ``one``, ``maybe_one``, ``stream``, ``execute``)
over every blocking binding: ``neon_sync.Client``, ``Pool``, the DB-API ``Connection`` and
``neon()`` over HTTP (which adds ``batch``).

The executors only call the bindings' public methods: the query compiles to ``$n`` SQL plus
parameters, the binding runs it and decodes the columns, and the query turns the decoded rows
into its row type (tuples, Row dicts, scalars, mapped objects).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, TypeVar, overload

from neon_proto.errors import ProgrammingError
from neon_query.query import Query, Statement
from neon_query.typevars import T1, T2, T3, T4, T5, T6, T7, T8, T9, T10

if TYPE_CHECKING:
    from neon_sync.client import Client
    from neon_sync.dbapi import Connection
    from neon_sync.http import NeonHTTP
    from neon_sync.pool import Pool

__all__ = [
    "Executor",
    "Database",
    "HTTPDatabase",
    "database",
    "NotExactlyOneError",
    "NoRowsError",
    "TooManyRowsError",
]

R = TypeVar("R")

IsolationLevel = Literal["ReadUncommitted", "ReadCommitted", "RepeatableRead", "Serializable"]
"""The isolation levels an HTTP batch takes (the JS driver's names)."""


class NotExactlyOneError(ProgrammingError):
    """``one()`` found no row or several, or ``maybe_one()`` found several."""


class NoRowsError(NotExactlyOneError):
    """``one()`` found no row."""


class TooManyRowsError(NotExactlyOneError):
    """``one()`` or ``maybe_one()`` found more than one row."""


class Executor(Protocol):
    """What runs queries, whatever the transport."""

    def all(self, query: Query[R]) -> list[R]:
        """Every row."""
        ...

    def one(self, query: Query[R]) -> R:
        """Exactly one row (NoRowsError, TooManyRowsError otherwise)."""
        ...

    def maybe_one(self, query: Query[R]) -> R | None:
        """The row, or None when there is none (TooManyRowsError for several)."""
        ...

    def stream(self, query: Query[R]) -> Iterator[R]:
        """The rows, one at a time."""
        ...

    def execute(self, statement: Statement) -> int:
        """Run a statement; the number of rows it affected (or returned)."""
        ...


def _one(rows: list[R]) -> R:
    if len(rows) == 1:
        return rows[0]
    if not rows:
        raise NoRowsError("one() expected exactly one row and got none")
    raise TooManyRowsError(f"one() expected exactly one row and got {len(rows)}")


def _maybe_one(rows: list[R]) -> R | None:
    if len(rows) == 1:
        return rows[0]
    if not rows:
        return None
    raise TooManyRowsError(f"maybe_one() expected at most one row and got {len(rows)}")


class _Batch:
    """``batch()``: several queries in one round trip and one transaction, typed as a tuple of
    their rows (over HTTP one request; over TCP or WebSocket one pipelined flight)."""

    def _batch(self, queries: tuple[Query[Any], ...], transaction: TransactionOptions) -> tuple[list[Any], ...]:
        raise NotImplementedError

    # --- generated: batch ---
    @overload
    def batch(self, q1: Query[T1], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], q8: Query[T8], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], q8: Query[T8], q9: Query[T9], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8], list[T9]]: ...
    @overload
    def batch(self, q1: Query[T1], q2: Query[T2], q3: Query[T3], q4: Query[T4], q5: Query[T5], q6: Query[T6], q7: Query[T7], q8: Query[T8], q9: Query[T9], q10: Query[T10], /, *, isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[T1], list[T2], list[T3], list[T4], list[T5], list[T6], list[T7], list[T8], list[T9], list[T10]]: ...
    @overload
    def batch(self, *queries: Query[Any], isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None) -> tuple[list[Any], ...]: ...
    # --- end generated: batch ---
    def batch(
        self,
        *queries: Query[Any],
        isolation_level: IsolationLevel | None = None,
        read_only: bool | None = None,
        deferrable: bool | None = None,
    ) -> tuple[list[Any], ...]:
        """Run the queries in one round trip and one transaction: all of them or none. Returns
        each query's rows, in order. ``isolation_level`` (``"Serializable"``...), ``read_only``
        and ``deferrable`` are those of ``neon().transaction()``."""
        if not queries:
            return ()
        return self._batch(queries, TransactionOptions(isolation_level, read_only, deferrable))


class TransactionOptions(NamedTuple):
    """How a batch's transaction starts (None: the server's default)."""

    isolation_level: IsolationLevel | None
    read_only: bool | None
    deferrable: bool | None

    def begin(self) -> str | None:
        """The BEGIN that sets these options, or None when there are none to set."""
        if self.isolation_level is None and self.read_only is None and self.deferrable is None:
            return None
        parts = ["BEGIN"]
        if self.isolation_level is not None:
            parts.append("ISOLATION LEVEL " + _ISOLATION_SQL[self.isolation_level])
        if self.read_only is not None:
            parts.append("READ ONLY" if self.read_only else "READ WRITE")
        if self.deferrable is not None:
            parts.append("DEFERRABLE" if self.deferrable else "NOT DEFERRABLE")
        return " ".join(parts)


_ISOLATION_SQL = {
    "ReadUncommitted": "READ UNCOMMITTED",
    "ReadCommitted": "READ COMMITTED",
    "RepeatableRead": "REPEATABLE READ",
    "Serializable": "SERIALIZABLE",
}


class _Rows:
    """``all``, ``one`` and ``maybe_one``, for an executor that can fetch a query's rows."""

    def _rows(self, query: Statement) -> list[Any]:
        raise NotImplementedError

    def all(self, query: Query[R]) -> list[R]:
        """Every row of the query."""
        return self._rows(query)

    def one(self, query: Query[R]) -> R:
        """Exactly one row (NoRowsError or TooManyRowsError otherwise)."""
        rows: list[R] = self._rows(query)
        return _one(rows)

    def maybe_one(self, query: Query[R]) -> R | None:
        """The only row, or None (TooManyRowsError for several)."""
        rows: list[R] = self._rows(query)
        return _maybe_one(rows)


class Database(_Rows, _Batch):
    """The executor over a ``neon_sync`` ``Client``, ``Pool`` or DB-API ``Connection``.

    With a DB-API connection outside autocommit, the first statement opens the transaction
    (as its cursors do) and ``commit()`` stays the caller's. ``stream()`` reads through a
    server-side cursor, ``chunk_size`` rows per round trip.
    """

    def __init__(self, source: Client | Pool | Connection) -> None:
        from neon_sync.client import Client
        from neon_sync.dbapi import Connection
        from neon_sync.pool import Pool

        self.source = source
        self._client: Client | None = source if isinstance(source, Client) else None
        self._pool: Pool | None = source if isinstance(source, Pool) else None
        self._dbapi: Connection | None = source if isinstance(source, Connection) else None
        if self._client is None and self._pool is None and self._dbapi is None:
            raise TypeError(
                f"Database() takes a neon_sync Client, Pool or DB-API Connection, not {type(source).__name__}"
                " (use HTTPDatabase for neon())"
            )

    def __repr__(self) -> str:
        return f"<neon_query.Database over {self.source!r}>"

    @contextmanager
    def _lease(self) -> Iterator[Client]:
        if self._client is not None:
            yield self._client
        elif self._pool is not None:
            with self._pool.connection() as client:
                yield client
        else:
            connection = self._dbapi
            assert connection is not None
            client = connection.client
            if not connection.autocommit and client.transaction_status == "I":
                client.query("BEGIN")
            yield client

    def _rows(self, query: Statement) -> list[Any]:
        sql, params = query.compile()
        client = self._client
        if client is not None:  # the hot path: no context manager
            result = client.execute(sql, list(params), mode=query.row_mode)
        else:
            with self._lease() as leased:
                result = leased.execute(sql, list(params), mode=query.row_mode)
        query._check_fields(result.fields)
        return query._convert(result.rows)

    def execute(self, statement: Statement) -> int:
        """Run a statement (INSERT/UPDATE/DELETE with or without RETURNING, or any query);
        the number of rows it affected."""
        compiled = statement.compile()
        with self._lease() as client:
            result = client.execute(compiled.sql, list(compiled.params), mode=statement.row_mode)
        return result.row_count if result.row_count is not None else len(result.rows)

    def stream(self, query: Query[R], *, chunk_size: int = 500) -> Generator[R, None, None]:
        """The rows as they arrive, read ``chunk_size`` at a time from a suspended portal:
        memory holds one chunk whatever the result's size. Until the iteration ends (or the
        generator is closed) the connection runs nothing else."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        compiled = query.compile()
        with self._lease() as client:
            pending: list[Any] = []
            for row in client.stream(compiled.sql, list(compiled.params), batch_rows=chunk_size, mode=query.row_mode):
                pending.append(row)
                if len(pending) >= chunk_size:
                    converted: list[R] = query._convert(pending)
                    pending = []
                    yield from converted
            if pending:
                rest: list[R] = query._convert(pending)
                yield from rest


    def _batch(self, queries: tuple[Query[Any], ...], transaction: TransactionOptions) -> tuple[list[Any], ...]:
        statements = pipelined_statements(queries, transaction)
        with self._lease() as client:
            if statements[0][0].startswith("BEGIN") and client.transaction_status != "I":
                raise ProgrammingError("batch() cannot set transaction options inside a transaction")
            pipeline = client.pipeline()
            for text, params, array_mode in statements:
                pipeline.add(text, params, array_mode=array_mode)
            outcomes = pipeline.run(atomic=True)  # one Sync: one implicit transaction, all or nothing
            wrapped = len(statements) != len(queries)
            if wrapped and client.transaction_status == "E":  # our BEGIN's block failed: end it
                client.query("ROLLBACK")
        return finish_pipelined(queries, outcomes, wrapped)


def pipelined_statements(
    queries: tuple[Query[Any], ...], transaction: TransactionOptions
) -> list[tuple[str, list[object] | None, bool]]:
    """(SQL, parameters, array mode) per pipelined statement, inside BEGIN ... COMMIT when
    the transaction has options to set."""
    statements: list[tuple[str, list[object] | None, bool]] = []
    for q in queries:
        text, params = q.compile()
        statements.append((text, list(params), q.row_mode == "tuple"))
    begin = transaction.begin()
    if begin is not None:
        statements = [(begin, None, True), *statements, ("COMMIT", None, True)]
    return statements


def finish_pipelined(queries: tuple[Query[Any], ...], outcomes: list[Any], wrapped: bool) -> tuple[list[Any], ...]:
    """The rows of each pipelined query (the first error raised), shaped as each query says;
    ``wrapped``: the outcomes include a BEGIN and a COMMIT around the queries."""
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome
    if wrapped:
        outcomes = outcomes[1:-1]
    results: list[list[Any]] = []
    for q, outcome in zip(queries, outcomes):
        if isinstance(outcome, Exception):
            raise outcome
        q._check_fields(outcome.fields)
        rows = outcome.rows if q.row_mode == "dict" else [tuple(r) for r in outcome.rows]
        results.append(q._convert(rows))
    return tuple(results)


class HTTPDatabase(_Rows, _Batch):
    """The executor over ``neon()`` (SQL over HTTP): one request per query, and ``batch()``
    to run several queries in one request and one transaction."""

    def __init__(self, sql: NeonHTTP) -> None:
        from neon_sync.http import NeonHTTP

        if not isinstance(sql, NeonHTTP):
            raise TypeError(f"HTTPDatabase() takes a neon() object, not {type(sql).__name__}")
        self.sql = sql

    def __repr__(self) -> str:
        return f"<neon_query.HTTPDatabase over {self.sql!r}>"

    @staticmethod
    def _finish(query: Statement, result: Any) -> list[Any]:
        query._check_fields(result.fields)
        rows = result.rows
        if query.row_mode == "tuple":
            rows = [tuple(r) for r in rows]
        return query._convert(rows)

    def _rows(self, query: Statement) -> list[Any]:
        compiled = query.compile()
        result = self.sql(
            compiled.sql, list(compiled.params), array_mode=query.row_mode == "tuple", full_results=True
        )
        return self._finish(query, result)

    def stream(self, query: Query[R]) -> Iterator[R]:
        """The rows one at a time (over HTTP the response arrives whole)."""
        rows: list[R] = self._rows(query)
        return iter(rows)

    def execute(self, statement: Statement) -> int:
        """Run a statement; the number of rows it affected."""
        compiled = statement.compile()
        result = self.sql(compiled.sql, list(compiled.params), array_mode=True, full_results=True)
        return result.row_count if result.row_count is not None else len(result.rows)

    def _batch(self, queries: tuple[Query[Any], ...], transaction: TransactionOptions) -> tuple[list[Any], ...]:
        sql = self.sql
        requests = []
        for q in queries:
            text, params = q.compile()
            requests.append(sql.query(text, list(params), array_mode=q.row_mode == "tuple", full_results=True))
        results = sql.transaction(requests, full_results=True, **transaction._asdict())
        return tuple(self._finish(q, r) for q, r in zip(queries, results))


@overload
def database(source: NeonHTTP) -> HTTPDatabase: ...
@overload
def database(source: Client | Pool | Connection) -> Database: ...
def database(source: Any) -> Database | HTTPDatabase:
    """The executor for a binding: ``HTTPDatabase`` for ``neon()``, ``Database`` for the rest."""
    from neon_sync.http import NeonHTTP

    if isinstance(source, NeonHTTP):
        return HTTPDatabase(source)
    return Database(source)
