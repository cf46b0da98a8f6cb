"""DB-API 2.0 decisions without I/O, shared by the blocking and the async ``connect()``.

Column descriptions, the SQL of transaction blocks and savepoints, which statement opens an
implicit transaction, how ``execute``/``executemany``/``callproc`` turn into queries, and the
connection state every binding checks the same way. The bindings (``neon_sync.dbapi``,
``neon_async.dbapi``) only send what these give and wait.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from neon_proto.errors import InterfaceError, ProgrammingError
from neon_proto.pyformat import convert_pyformat
from neon_proto.results import Result
from neon_proto.session import ConnectionInfo, Query

__all__ = [
    "Column",
    "column_description",
    "describe_result",
    "TransactionBlock",
    "statement_queries",
    "statement_results",
    "many_statements",
    "callproc_sql",
    "DBAPIConnectionState",
    "DBAPICursorState",
]


class Column(NamedTuple):
    """One item of ``Cursor.description``: the seven PEP 249 fields."""

    name: str
    type_code: int
    display_size: int | None
    internal_size: int | None
    precision: int | None
    scale: int | None
    null_ok: bool | None


def column_description(field: Any) -> Column:
    """The PEP 249 description of a result field (precision and scale of numeric, length of varchar)."""
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


def describe_result(result: Result | None) -> tuple[list[Column] | None, str | None, int]:
    """A cursor's ``description``, ``statusmessage`` and ``rowcount`` for a result (None: no result)."""
    if result is None:
        return None, None, -1
    description = [column_description(f) for f in result.fields] if result.fields else None
    if result.row_count is not None:
        rowcount = result.row_count
    else:
        rowcount = len(result.rows) if result.fields else -1
    return description, result.tag, rowcount


class TransactionBlock:
    """The SQL of one ``with conn.transaction():`` block: a transaction at the outermost level,
    a savepoint (``neon_sp_<depth>``) inside one."""

    __slots__ = ("savepoint",)

    def __init__(self, depth: int | None) -> None:
        """``depth`` is the nesting level of a savepoint, None for the outermost block."""
        self.savepoint = None if depth is None else f"neon_sp_{depth}"

    def begin_sql(self, begin: str = "BEGIN") -> str:
        """What opens the block (``begin`` is the connection's BEGIN with its settings)."""
        return begin if self.savepoint is None else f"SAVEPOINT {self.savepoint}"

    def commit_sql(self) -> str:
        """What ends the block when it succeeds."""
        return "COMMIT" if self.savepoint is None else f"RELEASE SAVEPOINT {self.savepoint}"

    def rollback_sql(self) -> str:
        """What ends the block when it raises: the savepoint is undone and released in one go."""
        if self.savepoint is None:
            return "ROLLBACK"
        return f"ROLLBACK TO SAVEPOINT {self.savepoint}; RELEASE SAVEPOINT {self.savepoint}"


def statement_queries(sql: str, args: list[Any], begin: str | None) -> list[Query]:
    """The pipeline of a parameterised ``execute``: the implicit BEGIN when due, then the statement."""
    queries = [Query(begin, None, "tuple")] if begin else []
    queries.append(Query(sql, args, "tuple"))
    return queries


def statement_results(done: Sequence[Any]) -> list[Result]:
    """The statement's results from the finished pipeline of ``statement_queries`` (BEGIN's dropped)."""
    return [q.outcome() for q in done[len(done) - 1 :]]


def many_statements(
    operation: str, seq_of_parameters: Iterable[Sequence[Any] | Mapping[str, Any]]
) -> tuple[str | None, list[list[Any]]]:
    """``executemany``'s statement in ``$n`` form and one argument list per parameter set (None: no sets)."""
    sql: str | None = None
    rows: list[list[Any]] = []
    for parameters in seq_of_parameters:
        sql, args = convert_pyformat(operation, parameters)
        rows.append(args)
    return sql, rows


def callproc_sql(procname: str, count: int) -> str:
    """The ``SELECT * FROM "schema"."name"(%s, ...)`` that ``callproc`` runs."""
    name = ".".join('"' + part.replace('"', '""') + '"' for part in procname.split("."))
    return f"SELECT * FROM {name}({', '.join(['%s'] * count)})"


class DBAPIConnectionState:
    """What a DB-API connection knows without a round trip: open or closed, autocommit,
    whether a statement must open a transaction first. ``client`` is the binding's Client."""

    client: Any
    _autocommit: bool
    _closed: bool
    _savepoints: int

    def __repr__(self) -> str:
        return f"<{type(self).__module__.split('.')[0]}.Connection {self.client!r} autocommit={self._autocommit}>"

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self._closed or bool(self.client.closed)

    @property
    def info(self) -> ConnectionInfo:
        """Server version, backend pid, transaction status, parameters, encoding."""
        info: ConnectionInfo = self.client.info
        return info

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

    def _implicit_begin_due(self) -> bool:
        """Whether the next statement must open a transaction first (PEP 249, outside autocommit)."""
        return not self._autocommit and self.client.transaction_status == "I"

    def _open_block(self) -> TransactionBlock:
        """The next ``transaction()`` block: a transaction when idle, else one savepoint deeper."""
        if self.client.transaction_status == "I":
            return TransactionBlock(None)
        self._savepoints += 1
        return TransactionBlock(self._savepoints)

    def _close_block(self, block: TransactionBlock) -> None:
        if block.savepoint is not None:
            self._savepoints -= 1


class DBAPICursorState:
    """What a DB-API cursor holds between calls, the same in every binding: the results of the
    last execute, which one is current, the position in its rows, open or closed."""

    def _init_state(self) -> None:
        self.arraysize = 1
        """How many rows ``fetchmany()`` returns by default."""
        self._results: list[Result] = []
        self._index = 0
        self._rows: list[Any] = []
        self._pos = 0
        self._closed = False
        self.rowcount = -1
        """Rows the last statement returned or changed; -1 when not known."""
        self.statusmessage: str | None = None
        """The last statement's command tag (``"INSERT 0 1"``)."""

    @property
    def closed(self) -> bool:
        """Whether the cursor is closed."""
        return self._closed

    def _set_results(self, results: list[Result]) -> None:
        """The results of an execute; the first becomes current."""
        self._results = results
        self._index = 0
        self._load_current()

    def _current_result(self) -> Result | None:
        return self._results[self._index] if self._index < len(self._results) else None

    def _load_current(self) -> None:
        """Make the current result's rows and description the cursor's (the binding shapes rows)."""
        raise NotImplementedError

    def _drop_results(self) -> None:
        """Close the cursor on our side: its rows are gone."""
        self._closed = True
        self._results = []
        self._rows = []

    def _check_cursor_open(self) -> None:
        if self._closed:
            raise InterfaceError("the cursor is closed")

    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows that)."""

    def setoutputsize(self, size: Any, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows that)."""
