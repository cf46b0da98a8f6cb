"""Queries: immutable builders that compile to a ``CompiledQuery(sql, params)``.

``Query[R]`` is a statement whose rows are ``R``: a tuple of column types for a column list,
a row TypedDict for a whole table, a scalar after ``.scalars()``, a class after ``.map()``.
``Statement`` (an INSERT, UPDATE or DELETE without RETURNING) has no rows, only a row count.
Every builder method returns a new object; nothing is sent until an executor runs it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, NamedTuple, TypeVar, TypeVarTuple, overload

from neon_proto.errors import ProgrammingError
from neon_query.codecs import Codec
from neon_query.expr import Col, Expr, Labeled, Ordering, Selectable, Subquery, and_, check_conditions, quote_ident
from neon_query.table import Outer, Table
from neon_query.typevars import T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12

__all__ = [
    "CompiledQuery",
    "Statement",
    "Query",
    "Select",
    "Insert",
    "InsertInto",
    "Update",
    "UpdateTable",
    "Delete",
    "Returning",
    "Raw",
    "select",
    "insert",
    "update",
    "delete",
    "raw",
]

R_co = TypeVar("R_co", covariant=True)
R = TypeVar("R")
R2 = TypeVar("R2")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")
RowT = TypeVar("RowT")
InsT = TypeVar("InsT")
UpdT = TypeVar("UpdT")

RowMode = Literal["tuple", "dict"]
Converter = Callable[[list[Any]], list[Any]]


class CompiledQuery(NamedTuple):
    """SQL text with ``$n`` placeholders and the values that go with them (immutable)."""

    sql: str
    params: tuple[object, ...]


class Statement:
    """Something an executor can run: compiles to SQL plus parameters."""

    __slots__ = ()

    def _emit(self, out: list[str], params: list[object]) -> None:
        raise NotImplementedError

    def compile(self) -> CompiledQuery:
        """The SQL text and parameters; values are never written into the text."""
        out: list[str] = []
        params: list[object] = []
        self._emit(out, params)
        return CompiledQuery("".join(out), tuple(params))

    # How rows come back from the driver and become R (set by queries that return rows).
    row_mode: RowMode = "tuple"

    def _convert(self, rows: list[Any]) -> list[Any]:
        return rows

    def _check_fields(self, fields: Sequence[Any]) -> None:
        """Raise if the result's columns (``Field`` objects) do not match what the query promises."""

    def __repr__(self) -> str:
        try:
            compiled = self.compile()
        except Exception as e:  # a repr must not raise: show why it does not compile
            return f"<{type(self).__name__} that does not compile: {e}>"
        return f"<{type(self).__name__} {compiled.sql!r} params={len(compiled.params)}>"


class Query(Statement, Generic[R_co]):
    """A statement that returns rows of type ``R``."""

    __slots__ = ()


# ---------------------------------------------------------------------- projections


class _Projection:
    """A select list: how it is written and how its result rows become values."""

    __slots__ = ("items", "mode", "convert", "post")

    def __init__(self, items: tuple[Selectable[Any], ...], post: Callable[[Any], Any] | None = None) -> None:
        self.items = items
        self.post = post
        self.mode: RowMode = "tuple"
        convert: Converter | None = None
        if len(items) == 1 and isinstance(items[0], Table):
            self.mode = "dict"  # the driver builds the dicts, keyed by the output aliases
        else:
            builders = [item._row_builder() for item in items]
            if any(b is not None for b in builders):
                plan = [(len(item._select_items()), b) for item, b in zip(items, builders)]
                convert = _regroup(plan)
        if post is not None:
            inner = convert
            if inner is None:
                convert = lambda rows: [post(r) for r in rows]  # noqa: E731
            else:
                convert = lambda rows: [post(r) for r in inner(rows)]  # noqa: E731
        self.convert = convert

    def with_post(self, post: Callable[[Any], Any]) -> _Projection:
        previous = self.post
        if previous is not None:
            return _Projection(self.items, lambda row: post(previous(row)))
        return _Projection(self.items, post)

    def emit(self, out: list[str], params: list[object]) -> None:
        first = True
        for item in self.items:
            if not first:
                out.append(", ")
            first = False
            if isinstance(item, (Table, Outer)):
                out.append(item._select_list_sql())  # no parameters: written once per table
                continue
            first_column = True
            for expr, alias in item._select_items():
                if not first_column:
                    out.append(", ")
                first_column = False
                expr._emit(out, params)
                if alias is not None:
                    out.append(" AS " + quote_ident(alias))


def _regroup(plan: list[tuple[int, Callable[[Sequence[Any]], Any] | None]]) -> Converter:
    def convert(rows: list[Any]) -> list[Any]:
        result = []
        for row in rows:
            values: list[Any] = []
            i = 0
            for width, build in plan:
                if build is None:
                    values.append(row[i])
                else:
                    values.append(build(row[i : i + width]))
                i += width
            result.append(tuple(values))
        return result

    return convert


def _scalar(row: Any) -> Any:
    return row[0]


def _tables_in(expr: Any, found: dict[str, Table[Any, Any, Any, Any]]) -> None:
    """The tables an expression's columns belong to (not looking inside subqueries)."""
    if isinstance(expr, Col):
        table = expr.table
        found.setdefault(table._from_sql, table)
        return
    if isinstance(expr, Subquery):
        return
    for name in ("expr", "operand", "left", "right"):
        inner = getattr(expr, name, None)
        if isinstance(inner, Expr):
            _tables_in(inner, found)
    args = getattr(expr, "args", None)
    if args:
        for arg in args:
            _tables_in(arg, found)


def _as_table(item: Selectable[Any]) -> Table[Any, Any, Any, Any] | None:
    if isinstance(item, Table):
        return item
    if isinstance(item, Outer):
        return item._table
    return None


# ---------------------------------------------------------------------- SELECT

_new_select = object.__new__

_LOCKS = {"update": " FOR UPDATE", "no key update": " FOR NO KEY UPDATE", "share": " FOR SHARE", "key share": " FOR KEY SHARE"}


class _Projected(Query[R_co]):
    """A query whose rows come from a select list (SELECT, or RETURNING)."""

    __slots__ = ()
    _projection: _Projection

    @property
    def row_mode(self) -> RowMode:  # type: ignore[override]
        return self._projection.mode

    def _convert(self, rows: list[Any]) -> list[Any]:
        convert = self._projection.convert
        return rows if convert is None else convert(rows)


class Select(_Projected[R_co]):
    """``SELECT``; build with ``select(...)``, then ``where``, ``join``, ``order_by``..."""

    # Clauses not given keep these class-level defaults: a builder step copies one dict.
    _from: tuple[Table[Any, Any, Any, Any], ...] = ()
    _joins: tuple[tuple[str, Table[Any, Any, Any, Any], Expr[bool] | None], ...] = ()
    _where: Expr[bool] | None = None
    _group_by: tuple[Expr[Any], ...] = ()
    _having: Expr[bool] | None = None
    _order_by: tuple[Expr[Any] | Ordering, ...] = ()
    _limit: int | None = None
    _offset: int | None = None
    _distinct: bool | tuple[Expr[Any], ...] = False
    _lock: str | None = None

    def __init__(self, projection: _Projection) -> None:
        self._projection = projection

    def _copy(self) -> Any:
        new = _new_select(Select)
        new.__dict__.update(self.__dict__)
        return new

    # -- clauses

    def from_(self, *tables: Table[Any, Any, Any, Any]) -> Select[R_co]:
        """The FROM list, when it cannot be read off the selected columns (``select(count())``)."""
        new = self._copy()
        new._from = self._from + tables
        return new  # type: ignore[no-any-return]

    def join(self, table: Table[Any, Any, Any, Any], on: Expr[bool]) -> Select[R_co]:
        """``JOIN table ON on`` (inner)."""
        check_conditions("join()", (on,))
        new = self._copy()
        new._joins = self._joins + (("JOIN", table, on),)
        return new  # type: ignore[no-any-return]

    def left_join(self, table: Table[Any, Any, Any, Any], on: Expr[bool]) -> Select[R_co]:
        """``LEFT JOIN table ON on``: select its columns through ``table.outer`` (typed nullable)."""
        check_conditions("left_join()", (on,))
        new = self._copy()
        new._joins = self._joins + (("LEFT JOIN", table, on),)
        return new  # type: ignore[no-any-return]

    def cross_join(self, table: Table[Any, Any, Any, Any]) -> Select[R_co]:
        """``CROSS JOIN table``."""
        new = self._copy()
        new._joins = self._joins + (("CROSS JOIN", table, None),)
        return new  # type: ignore[no-any-return]

    def where(self, *conditions: Expr[bool]) -> Select[R_co]:
        """Rows for which every condition holds (repeated calls add conditions)."""
        new = self._copy()
        new._where = _and(self._where, conditions)
        return new  # type: ignore[no-any-return]

    def group_by(self, *exprs: Expr[Any]) -> Select[R_co]:
        """``GROUP BY``."""
        new = self._copy()
        new._group_by = self._group_by + exprs
        return new  # type: ignore[no-any-return]

    def having(self, *conditions: Expr[bool]) -> Select[R_co]:
        """``HAVING``: conditions on groups."""
        new = self._copy()
        new._having = _and(self._having, conditions, "having()")
        return new  # type: ignore[no-any-return]

    def order_by(self, *items: Expr[Any] | Ordering) -> Select[R_co]:
        """``ORDER BY``: expressions (ascending) or ``expr.desc()``/``expr.asc(nulls=...)``."""
        new = self._copy()
        new._order_by = self._order_by + items
        return new  # type: ignore[no-any-return]

    def limit(self, count: int | None) -> Select[R_co]:
        """At most ``count`` rows (sent as a parameter)."""
        new = self._copy()
        new._limit = _non_negative("limit", count)
        return new  # type: ignore[no-any-return]

    def offset(self, count: int | None) -> Select[R_co]:
        """Skip ``count`` rows."""
        new = self._copy()
        new._offset = _non_negative("offset", count)
        return new  # type: ignore[no-any-return]

    def distinct(self, *on: Expr[Any]) -> Select[R_co]:
        """``SELECT DISTINCT``, or ``DISTINCT ON (exprs)`` when expressions are given."""
        new = self._copy()
        new._distinct = on if on else True
        return new  # type: ignore[no-any-return]

    def for_update(
        self, *, mode: Literal["update", "no key update", "share", "key share"] = "update",
        nowait: bool = False, skip_locked: bool = False,
    ) -> Select[R_co]:
        """Lock the selected rows (``FOR UPDATE``; ``mode`` for the weaker locks)."""
        if nowait and skip_locked:
            raise ValueError("choose nowait or skip_locked, not both")
        new = self._copy()
        new._lock = _LOCKS[mode] + (" NOWAIT" if nowait else " SKIP LOCKED" if skip_locked else "")
        return new  # type: ignore[no-any-return]

    # -- result shapes

    def scalars(self: Select[tuple[T]]) -> Select[T]:
        """The one selected column's values themselves instead of one-element tuples."""
        if len(self._projection.items) != 1 or _as_table(self._projection.items[0]) is not None:
            raise ProgrammingError("scalars() needs a select of exactly one column")
        new = self._copy()
        new._projection = self._projection.with_post(_scalar)
        return new  # type: ignore[no-any-return]

    def map(self: Select[tuple[*Ts]], cls: Callable[[*Ts], R2]) -> Select[R2]:
        """Each row passed positionally to ``cls`` (a NamedTuple, dataclass or function)."""
        new = self._copy()
        new._projection = self._projection.with_post(lambda row: cls(*row))
        return new  # type: ignore[no-any-return]

    def as_scalar(self: Select[tuple[T]]) -> Expr[T | None]:
        """This one-column query as a value in another query: ``(SELECT ...)``."""
        return Subquery(self)

    # -- SQL

    def _emit(self, out: list[str], params: list[object]) -> None:
        out.append("SELECT ")
        distinct = self._distinct
        if distinct is True:
            out.append("DISTINCT ")
        elif distinct:
            out.append("DISTINCT ON (")
            _emit_list(distinct, out, params)
            out.append(") ")
        projection = self._projection
        projection.emit(out, params)
        tables = self._from
        if not tables:
            items = projection.items
            if len(items) == 1 and isinstance(items[0], Table) and not self._joins:
                tables = (items[0],)
            else:
                tables = self._inferred_from()
        if self._joins:
            self._check_left_joins()
        if tables:
            out.append(" FROM ")
            out.append(", ".join(t._from_sql for t in tables))
        for kind, table, on in self._joins:
            out.append(f" {kind} {table._from_sql}")
            if on is not None:
                out.append(" ON ")
                on._emit(out, params)
        if self._where is not None:
            out.append(" WHERE ")
            self._where._emit(out, params)
        if self._group_by:
            out.append(" GROUP BY ")
            _emit_list(self._group_by, out, params)
        if self._having is not None:
            out.append(" HAVING ")
            self._having._emit(out, params)
        if self._order_by:
            out.append(" ORDER BY ")
            _emit_list(self._order_by, out, params)
        if self._limit is not None:
            params.append(self._limit)
            out.append(f" LIMIT ${len(params)}")
        if self._offset is not None:
            params.append(self._offset)
            out.append(f" OFFSET ${len(params)}")
        if self._lock is not None:
            out.append(self._lock)

    def _inferred_from(self) -> tuple[Table[Any, Any, Any, Any], ...]:
        """The tables of the selected columns, less the joined ones."""
        joined = {t._from_sql for _, t, _ in self._joins}
        found: dict[str, Table[Any, Any, Any, Any]] = {}
        for item in self._projection.items:
            table = _as_table(item)
            if table is not None:
                found.setdefault(table._from_sql, table)
            else:
                _tables_in(item, found)
        return tuple(t for key, t in found.items() if key not in joined)

    def _check_left_joins(self) -> None:
        nullable = {t._from_sql for kind, t, _ in self._joins if kind == "LEFT JOIN"}
        if not nullable:
            return
        for item in self._projection.items:
            if isinstance(item, Table) and item._from_sql in nullable:
                raise ProgrammingError(
                    f"{item._from_sql} is LEFT JOINed and may be missing: select {item.__tablename__}.outer"
                )
            col = item.expr if isinstance(item, Labeled) else item
            if isinstance(col, Col) and not col.outer and col.table._from_sql in nullable:
                raise ProgrammingError(
                    f"{col.table._from_sql} is LEFT JOINed and may be missing: select"
                    f" {col.table.__tablename__}.outer.{col.attr} (typed nullable)"
                )


def _emit_list(items: Iterable[Expr[Any] | Ordering], out: list[str], params: list[object]) -> None:
    first = True
    for item in items:
        if not first:
            out.append(", ")
        first = False
        item._emit(out, params)


def _and(current: Expr[bool] | None, conditions: tuple[Expr[bool], ...], what: str = "where()") -> Expr[bool] | None:
    check_conditions(what, conditions)
    if current is None and len(conditions) == 1:
        return conditions[0]
    if current is not None:
        conditions = (current,) + conditions
    if not conditions:
        return None
    return and_(*conditions)


def _non_negative(what: str, count: int | None) -> int | None:
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise ValueError(f"{what} must be a non-negative int or None, not {count!r}")
    return count


# ---------------------------------------------------------------------- RETURNING


class Returning(_Projected[R_co]):
    """An INSERT, UPDATE or DELETE with ``RETURNING``: its rows are the returned values."""

    __slots__ = ("_statement", "_projection")

    def __init__(self, statement: Statement, projection: _Projection) -> None:
        self._statement = statement
        self._projection = projection

    def scalars(self: Returning[tuple[T]]) -> Returning[T]:
        """The one returned column's values themselves."""
        return Returning(self._statement, self._projection.with_post(_scalar))

    def map(self: Returning[tuple[*Ts]], cls: Callable[[*Ts], R2]) -> Returning[R2]:
        """Each returned row passed positionally to ``cls``."""
        return Returning(self._statement, self._projection.with_post(lambda row: cls(*row)))

    def _emit(self, out: list[str], params: list[object]) -> None:
        self._statement._emit(out, params)
        out.append(" RETURNING ")
        self._projection.emit(out, params)


class _Returnable(Statement):
    """Statements that can return rows; ``returning()`` is typed by arity like ``select()``."""

    __slots__ = ()

    # --- generated: returning ---
    @overload
    def returning(self, table: Table[RowT, Any, Any, Any], /) -> Returning[RowT]: ...  # type: ignore[overload-overlap]  # pyright: ignore[reportOverlappingOverload]
    @overload
    def returning(self, c1: Selectable[T1], /) -> Returning[tuple[T1]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], /) -> Returning[tuple[T1, T2]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], /) -> Returning[tuple[T1, T2, T3]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], /) -> Returning[tuple[T1, T2, T3, T4]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], /) -> Returning[tuple[T1, T2, T3, T4, T5]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6, T7]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6, T7, T8]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], c10: Selectable[T10], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], c10: Selectable[T10], c11: Selectable[T11], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11]]: ...
    @overload
    def returning(self, c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], c10: Selectable[T10], c11: Selectable[T11], c12: Selectable[T12], /) -> Returning[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12]]: ...
    @overload
    def returning(self, *items: Selectable[Any]) -> Returning[tuple[Any, ...]]: ...
    # --- end generated: returning ---

    def returning(self, *items: Selectable[Any]) -> Returning[Any]:
        """Return these columns (or whole tables) of the affected rows."""
        if not items:
            raise ProgrammingError("returning() needs at least one column or table")
        return Returning(self, _Projection(items))


# ---------------------------------------------------------------------- INSERT


class InsertInto(Generic[RowT, InsT, UpdT]):
    """``insert(table)``: give it ``values(...)``."""

    __slots__ = ("_table",)

    def __init__(self, table: Table[RowT, InsT, UpdT, Any]) -> None:
        self._table = table

    def values(self, rows: InsT | Sequence[InsT]) -> Insert[RowT, UpdT]:
        """One row (a dict of the table's Insert shape) or a list of them."""
        if isinstance(rows, Mapping):
            rows = [rows]
        rows = list(rows)  # type: ignore[arg-type]
        if not rows:
            raise ProgrammingError("insert needs at least one row")
        return Insert(self._table, rows)


class Insert(_Returnable, Generic[RowT, UpdT]):
    """``INSERT INTO table (...) VALUES ...``, optionally ``ON CONFLICT``."""

    __slots__ = ("_table", "_rows", "_conflict")

    def __init__(self, table: Table[Any, Any, Any, Any], rows: list[Any], conflict: tuple[Any, ...] | None = None) -> None:
        self._table = table
        self._rows = rows
        self._conflict = conflict

    def on_conflict_do_nothing(self, *target: Col[Any], constraint: str | None = None) -> Insert[RowT, UpdT]:
        """``ON CONFLICT [(target)] DO NOTHING``: rows that would conflict are skipped."""
        return Insert(self._table, self._rows, ("nothing", target, constraint, None, None))

    def on_conflict_do_update(
        self,
        target: Col[Any] | Sequence[Col[Any]],
        set: UpdT | None = None,
        *,
        where: Expr[bool] | None = None,
    ) -> Insert[RowT, UpdT]:
        """``ON CONFLICT (target) DO UPDATE``: by default every inserted column not in the
        target takes the new row's value (``EXCLUDED``); ``set`` gives values instead."""
        targets = (target,) if isinstance(target, Col) else tuple(target)
        if not targets:
            raise ProgrammingError("on_conflict_do_update needs the conflict target columns")
        return Insert(self._table, self._rows, ("update", targets, None, set, where))

    def _emit(self, out: list[str], params: list[object]) -> None:
        table = self._table
        columns = table._columns
        present: set[str] = set()
        for row in self._rows:
            present.update(row)
        unknown = present.difference(table._by_attr)
        if unknown:
            raise ProgrammingError(f"{table.__tablename__} has no column {sorted(unknown)[0]!r}")
        used = [c for c in columns if c.attr in present]
        generated = {s.attr for s in table.__columns__ if s.generated}
        for col in used:
            if col.attr in generated:
                raise ProgrammingError(f"{table.__tablename__}.{col.attr} is GENERATED ALWAYS and cannot be written")
        out.append(f"INSERT INTO {table._from_sql}")
        if not used:
            if len(self._rows) != 1:
                raise ProgrammingError("several rows with no values: insert them one by one")
            out.append(" DEFAULT VALUES")
        else:
            out.append(" (" + ", ".join(c.quoted for c in used) + ") VALUES ")
            first_row = True
            for row in self._rows:
                out.append("(" if first_row else ", (")
                first_row = False
                first = True
                for col in used:
                    if not first:
                        out.append(", ")
                    first = False
                    if col.attr in row:
                        col._operand(row[col.attr])._emit(out, params)
                    else:
                        out.append("DEFAULT")
                out.append(")")
        if self._conflict is not None:
            self._emit_conflict(used, out, params)

    def _emit_conflict(self, used: list[Col[Any]], out: list[str], params: list[object]) -> None:
        action, targets, constraint, values, where = self._conflict  # type: ignore[misc]
        out.append(" ON CONFLICT")
        if constraint is not None:
            out.append(" ON CONSTRAINT " + quote_ident(constraint))
        elif targets:
            out.append(" (" + ", ".join(c.quoted for c in targets) + ")")
        if action == "nothing":
            out.append(" DO NOTHING")
            return
        out.append(" DO UPDATE SET ")
        if values is None:
            target_names = {c.name for c in targets}
            assignments = [c for c in used if c.name not in target_names]
            if not assignments:
                raise ProgrammingError("on_conflict_do_update has nothing to set: pass set={...}")
            out.append(", ".join(f"{c.quoted} = EXCLUDED.{c.quoted}" for c in assignments))
        else:
            _emit_assignments(self._table, values, out, params)
        if where is not None:
            out.append(" WHERE ")
            where._emit(out, params)


def _emit_assignments(table: Table[Any, Any, Any, Any], values: Mapping[str, Any], out: list[str], params: list[object]) -> None:
    if not values:
        raise ProgrammingError("nothing to set: the values are empty")
    generated = {s.attr for s in table.__columns__ if s.generated}
    first = True
    for attr, value in values.items():
        col = table._by_attr.get(attr)
        if col is None:
            raise ProgrammingError(f"{table.__tablename__} has no column {attr!r}")
        if attr in generated:
            raise ProgrammingError(f"{table.__tablename__}.{attr} is GENERATED ALWAYS and cannot be written")
        if not first:
            out.append(", ")
        first = False
        out.append(col.quoted + " = ")
        col._operand(value)._emit(out, params)


# ---------------------------------------------------------------------- UPDATE, DELETE


class UpdateTable(Generic[RowT, UpdT]):
    """``update(table)``: give it ``set({...})``."""

    __slots__ = ("_table",)

    def __init__(self, table: Table[RowT, Any, UpdT, Any]) -> None:
        self._table = table

    def set(self, values: UpdT) -> Update[RowT]:
        """The new values (a dict of the table's Update shape)."""
        return Update(self._table, values, None)


class Update(_Returnable, Generic[RowT]):
    """``UPDATE table SET ... WHERE ...``."""

    __slots__ = ("_table", "_values", "_where")

    def __init__(self, table: Table[Any, Any, Any, Any], values: Any, where: Expr[bool] | None) -> None:
        self._table = table
        self._values = values
        self._where = where

    def where(self, *conditions: Expr[bool]) -> Update[RowT]:
        """The rows to change (repeated calls add conditions)."""
        return Update(self._table, self._values, _and(self._where, conditions))

    def _emit(self, out: list[str], params: list[object]) -> None:
        out.append(f"UPDATE {self._table._from_sql} SET ")
        _emit_assignments(self._table, self._values, out, params)
        if self._where is not None:
            out.append(" WHERE ")
            self._where._emit(out, params)


class Delete(_Returnable, Generic[RowT]):
    """``DELETE FROM table WHERE ...``."""

    __slots__ = ("_table", "_where")

    def __init__(self, table: Table[Any, Any, Any, Any], where: Expr[bool] | None = None) -> None:
        self._table = table
        self._where = where

    def where(self, *conditions: Expr[bool]) -> Delete[RowT]:
        """The rows to delete (repeated calls add conditions)."""
        return Delete(self._table, _and(self._where, conditions))

    def _emit(self, out: list[str], params: list[object]) -> None:
        out.append(f"DELETE FROM {self._table._from_sql}")
        if self._where is not None:
            out.append(" WHERE ")
            self._where._emit(out, params)


def insert(table: Table[RowT, InsT, UpdT, Any]) -> InsertInto[RowT, InsT, UpdT]:
    """``INSERT INTO table``: continue with ``.values(row_or_rows)``."""
    return InsertInto(table)


def update(table: Table[RowT, Any, UpdT, Any]) -> UpdateTable[RowT, UpdT]:
    """``UPDATE table``: continue with ``.set({...}).where(...)``."""
    return UpdateTable(table)


def delete(table: Table[RowT, Any, Any, Any]) -> Delete[RowT]:
    """``DELETE FROM table``: continue with ``.where(...)``."""
    return Delete(table)


# ---------------------------------------------------------------------- raw SQL

_PLACEHOLDER = re.compile(r"\$(\d+)")


class Raw(Query[R_co]):
    """Hand-written SQL with ``$n`` placeholders, its rows typed by ``returns``."""

    __slots__ = ("_text", "_params", "_codecs", "_cls", "row_mode")

    def __init__(self, text: str, params: Sequence[object], codecs: tuple[Codec[Any], ...] | None, cls: Any) -> None:
        self._text = text
        self._params = tuple(params)
        self._codecs = codecs
        self._cls = cls
        self.row_mode = "dict" if cls is not None else "tuple"

    def _emit(self, out: list[str], params: list[object]) -> None:
        if params:  # inside another statement: shift the numbers (only where it is embedded)
            base = len(params)
            out.append(_PLACEHOLDER.sub(lambda m: f"${base + int(m.group(1))}", self._text))
        else:
            out.append(self._text)
        params.extend(self._params)

    def _convert(self, rows: list[Any]) -> list[Any]:
        cls = self._cls
        if cls is not None:
            return [cls(**row) for row in rows]
        codecs = self._codecs
        if codecs is not None:
            required = [i for i, c in enumerate(codecs) if not c.nullable]
            if required:
                for row in rows:
                    for i in required:
                        if row[i] is None:
                            raise ProgrammingError(
                                f"raw(): column {i + 1} is NULL but returns= declares {codecs[i].name} without .null"
                            )
        return rows

    def _check_fields(self, fields: Sequence[Any]) -> None:
        codecs = self._codecs
        if codecs is None:
            return
        type_oids = [f.type_oid for f in fields]
        if len(type_oids) != len(codecs):
            raise ProgrammingError(f"raw(): the query returns {len(type_oids)} columns but returns= declares {len(codecs)}")
        for i, (oid, codec) in enumerate(zip(type_oids, codecs)):
            if not codec.accepts(oid):
                raise ProgrammingError(
                    f"raw(): column {i + 1} has type OID {oid}, which does not decode as returns= declares ({codec.name})"
                )


# --- generated: raw ---
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: None = None) -> Raw[tuple[object, ...]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1]]) -> Raw[tuple[T1]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2]]) -> Raw[tuple[T1, T2]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3]]) -> Raw[tuple[T1, T2, T3]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4]]) -> Raw[tuple[T1, T2, T3, T4]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5]]) -> Raw[tuple[T1, T2, T3, T4, T5]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6], Codec[T7]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6, T7]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6], Codec[T7], Codec[T8]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6, T7, T8]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6], Codec[T7], Codec[T8], Codec[T9]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6], Codec[T7], Codec[T8], Codec[T9], Codec[T10]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6], Codec[T7], Codec[T8], Codec[T9], Codec[T10], Codec[T11]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[T1], Codec[T2], Codec[T3], Codec[T4], Codec[T5], Codec[T6], Codec[T7], Codec[T8], Codec[T9], Codec[T10], Codec[T11], Codec[T12]]) -> Raw[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: tuple[Codec[Any], ...]) -> Raw[tuple[Any, ...]]: ...
@overload
def raw(text: str, params: Sequence[object] = (), *, returns: Callable[..., R]) -> Raw[R]: ...
# --- end generated: raw ---
def raw(text: str, params: Sequence[object] = (), *, returns: Any = None) -> Raw[Any]:
    """SQL as written, ``$1..$n`` bound to ``params`` (never inlined). ``returns`` types the
    rows: a tuple of codecs (``(INT4, TEXT.null)``) for tuples, checked against the result's
    column types, or a class called with each row's columns as keywords (a TypedDict,
    dataclass or NamedTuple)."""
    if returns is None:
        return Raw(text, params, None, None)
    if isinstance(returns, tuple):
        for codec in returns:
            if not isinstance(codec, Codec):
                raise TypeError(f"returns= must hold codecs such as INT4 or TEXT.null, not {codec!r}")
        return Raw(text, params, returns, None)
    if callable(returns):
        return Raw(text, params, None, returns)
    raise TypeError("returns= must be a tuple of codecs or a class")


# ---------------------------------------------------------------------- select()

# --- generated: select ---
@overload
def select(table: Table[RowT, Any, Any, Any], /) -> Select[RowT]: ...  # type: ignore[overload-overlap]  # pyright: ignore[reportOverlappingOverload]
@overload
def select(c1: Selectable[T1], /) -> Select[tuple[T1]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], /) -> Select[tuple[T1, T2]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], /) -> Select[tuple[T1, T2, T3]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], /) -> Select[tuple[T1, T2, T3, T4]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], /) -> Select[tuple[T1, T2, T3, T4, T5]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], /) -> Select[tuple[T1, T2, T3, T4, T5, T6]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], /) -> Select[tuple[T1, T2, T3, T4, T5, T6, T7]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], /) -> Select[tuple[T1, T2, T3, T4, T5, T6, T7, T8]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], /) -> Select[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], c10: Selectable[T10], /) -> Select[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], c10: Selectable[T10], c11: Selectable[T11], /) -> Select[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11]]: ...
@overload
def select(c1: Selectable[T1], c2: Selectable[T2], c3: Selectable[T3], c4: Selectable[T4], c5: Selectable[T5], c6: Selectable[T6], c7: Selectable[T7], c8: Selectable[T8], c9: Selectable[T9], c10: Selectable[T10], c11: Selectable[T11], c12: Selectable[T12], /) -> Select[tuple[T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12]]: ...
@overload
def select(*items: Selectable[Any]) -> Select[tuple[Any, ...]]: ...
# --- end generated: select ---
def select(*items: Selectable[Any]) -> Select[Any]:
    """``SELECT items``: columns, expressions, aggregates, whole tables.

    A lone table gives its Row dicts; otherwise rows are tuples (a table's place holding
    its Row dict, or None for ``table.outer`` where a LEFT JOIN found nothing).
    """
    if not items:
        raise ProgrammingError("select() needs at least one column, expression or table")
    if len(items) == 1 and isinstance(items[0], Table):
        return Select(items[0]._lone_projection())
    for item in items:
        if not isinstance(item, Selectable):
            raise TypeError(f"select() takes columns, expressions and tables, not {type(item).__name__}")
    return Select(_Projection(items))
