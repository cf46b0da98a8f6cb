"""SQL expressions as typed values: ``Expr[T]`` is an expression whose value decodes to ``T``.

Columns (``Col[T]``), parameters, comparisons, boolean combinations, function calls and
subqueries are all expressions. Each knows how to write itself into a list of SQL pieces and
a list of parameters (``$n`` placeholders, values never inlined). Comparisons are methods
(``eq``, ``lt``, ``in_``...) rather than operators, so that the operand's type is checked.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from neon_proto.types import Json

from neon_query.codecs import Codec

if TYPE_CHECKING:
    from neon_query.query import Query

__all__ = [
    "Expr",
    "Col",
    "Selectable",
    "Ordering",
    "and_",
    "or_",
    "not_",
    "exists",
    "param",
    "cast",
    "fn",
    "sql_expr",
    "count",
    "sum_",
    "avg",
    "min_",
    "max_",
    "coalesce",
    "quote_ident",
]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
U = TypeVar("U")

Out = list[str]
Params = list[object]

# Postgres keywords that cannot stand as a bare column or table name (reserved, type/function
# names, and the column-name keywords that would read as the start of a typed literal).
_KEYWORDS = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization between bigint binary bit
    boolean both case cast char character check coalesce collate collation column concurrently
    constraint create cross current_catalog current_date current_role current_schema current_time
    current_timestamp current_user dec decimal default deferrable desc distinct do else end except
    exists extract false fetch float for foreign freeze from full grant greatest group grouping
    having ilike in initially inner inout int integer intersect interval into is isnull join lateral
    leading least left like limit localtime localtimestamp national natural nchar none normalize not
    notnull null nullif numeric offset on only or order out outer overlaps overlay placing position
    precision primary real references returning right row select session_user setof similar smallint
    some substring symmetric system_user table tablesample then time timestamp to trailing treat trim
    true union unique user using values varchar variadic verbose when where window with""".split()
)
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*\Z")


def quote_ident(name: str) -> str:
    """``name`` as a SQL identifier, double-quoted only where it must be."""
    if _PLAIN_IDENT.match(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


class Selectable(Generic[T_co]):
    """Something ``select()`` can take: an expression (one column) or a table (a whole row)."""

    __slots__ = ()

    def _select_items(self) -> Sequence[tuple[Expr[Any], str | None]]:
        """The (expression, output alias) pairs this item puts in the select list."""
        raise NotImplementedError

    def _row_builder(self) -> Callable[[Sequence[Any]], Any] | None:
        """How its columns become one value (None: it is one column, taken as is)."""
        return None


class Expr(Selectable[T_co]):
    """A typed SQL expression."""

    __slots__ = ()
    pgtype: str | None = None

    def _emit(self, out: Out, params: Params) -> None:
        raise NotImplementedError

    def _select_items(self) -> Sequence[tuple[Expr[Any], str | None]]:
        return ((self, None),)

    def _operand(self, value: object) -> Expr[Any]:
        if isinstance(value, Expr):
            return value
        return Param(value)

    # -- comparisons (covariance lets a Col[int | None] compare with a Col[int])

    def eq(self, other: T_co | Expr[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``=``; ``eq(None)`` is ``IS NULL``."""
        if other is None:
            return Postfix(self, " IS NULL")
        return Binary(self, " = ", self._operand(other))

    def ne(self, other: T_co | Expr[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``<>``; ``ne(None)`` is ``IS NOT NULL``."""
        if other is None:
            return Postfix(self, " IS NOT NULL")
        return Binary(self, " <> ", self._operand(other))

    def lt(self, other: T_co | Expr[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``<``."""
        return Binary(self, " < ", self._operand(other))

    def le(self, other: T_co | Expr[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``<=``."""
        return Binary(self, " <= ", self._operand(other))

    def gt(self, other: T_co | Expr[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``>``."""
        return Binary(self, " > ", self._operand(other))

    def ge(self, other: T_co | Expr[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``>=``."""
        return Binary(self, " >= ", self._operand(other))

    def between(self, low: T_co | Expr[T_co], high: T_co | Expr[T_co]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``BETWEEN low AND high`` (both ends included)."""
        return Between(self, self._operand(low), self._operand(high))

    def in_(self, values: Sequence[T_co] | Query[tuple[T_co | None]] | Query[T_co | None]) -> Expr[bool]:  # pyright: ignore[reportGeneralTypeIssues]
        """``IN (...)`` over values (one parameter each; empty is false) or a one-column subquery."""
        from neon_query.query import Query

        if isinstance(values, Query):
            return InSubquery(self, values)
        items = [self._operand(v) for v in values]
        if not items:
            return SQLText("false")
        return InList(self, items)

    def is_null(self) -> Expr[bool]:
        """``IS NULL``."""
        return Postfix(self, " IS NULL")

    def is_not_null(self) -> Expr[bool]:
        """``IS NOT NULL``."""
        return Postfix(self, " IS NOT NULL")

    def like(self, pattern: str | Expr[str]) -> Expr[bool]:
        """``LIKE pattern`` (case-sensitive; ``%`` and ``_`` are wildcards)."""
        return Binary(self, " LIKE ", self._operand(pattern))

    def ilike(self, pattern: str | Expr[str]) -> Expr[bool]:
        """``ILIKE pattern`` (case-insensitive)."""
        return Binary(self, " ILIKE ", self._operand(pattern))

    # -- arithmetic keeps the operand type

    def __add__(self, other: T_co | Expr[T_co]) -> Expr[T_co]:  # pyright: ignore[reportGeneralTypeIssues]
        return Arithmetic(self, " + ", self._operand(other))

    def __sub__(self, other: T_co | Expr[T_co]) -> Expr[T_co]:  # pyright: ignore[reportGeneralTypeIssues]
        return Arithmetic(self, " - ", self._operand(other))

    def __mul__(self, other: T_co | Expr[T_co]) -> Expr[T_co]:  # pyright: ignore[reportGeneralTypeIssues]
        return Arithmetic(self, " * ", self._operand(other))

    def __truediv__(self, other: T_co | Expr[T_co]) -> Expr[T_co]:  # pyright: ignore[reportGeneralTypeIssues]
        return Arithmetic(self, " / ", self._operand(other))

    # -- boolean combination for Expr[bool]

    def __and__(self: Expr[bool], other: Expr[bool]) -> Expr[bool]:
        return BoolOp(" AND ", (self, other))

    def __or__(self: Expr[bool], other: Expr[bool]) -> Expr[bool]:
        return BoolOp(" OR ", (self, other))

    def __invert__(self: Expr[bool]) -> Expr[bool]:
        return Not(self)

    # -- naming and ordering

    def label(self, name: str) -> Expr[T_co]:
        """This expression under an output name (``expr AS name``)."""
        return Labeled(self, name)

    def asc(self, *, nulls: str | None = None) -> Ordering:
        """Ascending order (``nulls="first"``/``"last"`` optional)."""
        return Ordering(self, "", nulls)

    def desc(self, *, nulls: str | None = None) -> Ordering:
        """Descending order."""
        return Ordering(self, " DESC", nulls)

    def sql(self) -> tuple[str, tuple[object, ...]]:
        """This expression alone as SQL text and parameters (for debugging and tests)."""
        out: Out = []
        params: Params = []
        self._emit(out, params)
        return "".join(out), tuple(params)


class Ordering:
    """An ``ORDER BY`` item: an expression, a direction, and where NULLs go."""

    __slots__ = ("expr", "direction", "nulls")

    def __init__(self, expr: Expr[Any], direction: str, nulls: str | None) -> None:
        if nulls not in (None, "first", "last"):
            raise ValueError(f"nulls must be 'first' or 'last', not {nulls!r}")
        self.expr = expr
        self.direction = direction
        self.nulls = nulls

    def _emit(self, out: Out, params: Params) -> None:
        self.expr._emit(out, params)
        out.append(self.direction)
        if self.nulls:
            out.append(" NULLS FIRST" if self.nulls == "first" else " NULLS LAST")


class Col(Expr[T_co]):
    """A column of a table: ``users.id`` is a ``Col[int]``.

    ``attr`` is its Python name (the key in row dicts), ``name`` its SQL name. Columns of a
    table's ``outer`` twin (for LEFT JOINs) are typed nullable and marked ``outer``.
    """

    __slots__ = ("table", "attr", "name", "qualified", "quoted", "pgtype", "adapt", "param_cast", "select_cast", "outer")

    def __init__(
        self,
        table: Any,
        attr: str,
        name: str,
        pgtype: str | None = None,
        *,
        qualifier: str | None = None,
        adapt: Callable[[Any], Any] | None = None,
        param_cast: str | None = None,
        select_cast: str | None = None,
        outer: bool = False,
    ) -> None:
        self.table = table
        self.attr = attr
        self.name = name
        self.quoted = quote_ident(name)
        self.qualified = f"{qualifier}.{self.quoted}" if qualifier else self.quoted
        self.pgtype = pgtype
        self.adapt = adapt
        self.param_cast = param_cast
        self.select_cast = select_cast
        self.outer = outer

    def _emit(self, out: Out, params: Params) -> None:
        out.append(self.qualified)

    def _select_items(self) -> Sequence[tuple[Expr[Any], str | None]]:
        if self.select_cast is not None:
            return ((SQLCast(self, self.select_cast), self.attr),)
        return ((self, None if self.attr == self.name else self.attr),)

    def _operand(self, value: object) -> Expr[Any]:
        if isinstance(value, Expr):
            return value
        return Param(value, self.adapt, self.param_cast)

    def __repr__(self) -> str:
        return f"<Col {self.qualified}>"


class Param(Expr[T_co]):
    """A bound value: written as ``$n``, sent separately."""

    __slots__ = ("value", "adapt", "cast_to")

    def __init__(self, value: object, adapt: Callable[[Any], Any] | None = None, cast_to: str | None = None) -> None:
        self.value = value
        self.adapt = adapt
        self.cast_to = cast_to

    def _emit(self, out: Out, params: Params) -> None:
        value = self.value
        if self.adapt is not None and value is not None:
            value = self.adapt(value)
        params.append(value)
        if self.cast_to is None:
            out.append(f"${len(params)}")
        else:
            out.append(f"${len(params)}::{self.cast_to}")


def adapt_json(value: object) -> object:
    """How a JSON column's value is sent (wrapped once)."""
    return value if isinstance(value, Json) else Json(value)


def adapt_json_array(value: object) -> object:
    """How a JSON array column's value is sent: a list of wrapped elements."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"a json[] column takes a list, not {type(value).__name__}")
    return [None if v is None else adapt_json(v) for v in value]


class SQLText(Expr[T_co]):
    """A fixed piece of SQL (never user data)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def _emit(self, out: Out, params: Params) -> None:
        out.append(self.text)


class Binary(Expr[T_co]):
    """``left op right``: comparisons and LIKE."""

    __slots__ = ("left", "op", "right")

    def __init__(self, left: Expr[Any], op: str, right: Expr[Any]) -> None:
        self.left = left
        self.op = op
        self.right = right

    def _emit(self, out: Out, params: Params) -> None:
        self.left._emit(out, params)
        out.append(self.op)
        self.right._emit(out, params)


class Arithmetic(Binary[T_co]):
    """``(left op right)``: arithmetic, parenthesised so that it nests."""

    __slots__ = ()

    def _emit(self, out: Out, params: Params) -> None:
        out.append("(")
        Binary._emit(self, out, params)
        out.append(")")


class Postfix(Expr[T_co]):
    """``operand IS NULL`` and the like."""

    __slots__ = ("operand", "op")

    def __init__(self, operand: Expr[Any], op: str) -> None:
        self.operand = operand
        self.op = op

    def _emit(self, out: Out, params: Params) -> None:
        self.operand._emit(out, params)
        out.append(self.op)


class Between(Expr[bool]):
    """``operand BETWEEN low AND high``."""

    __slots__ = ("operand", "low", "high")

    def __init__(self, operand: Expr[Any], low: Expr[Any], high: Expr[Any]) -> None:
        self.operand = operand
        self.low = low
        self.high = high

    def _emit(self, out: Out, params: Params) -> None:
        self.operand._emit(out, params)
        out.append(" BETWEEN ")
        self.low._emit(out, params)
        out.append(" AND ")
        self.high._emit(out, params)


class InList(Expr[bool]):
    """``operand IN (v1, v2, ...)``, one parameter per value."""

    __slots__ = ("operand", "items")

    def __init__(self, operand: Expr[Any], items: list[Expr[Any]]) -> None:
        self.operand = operand
        self.items = items

    def _emit(self, out: Out, params: Params) -> None:
        self.operand._emit(out, params)
        out.append(" IN (")
        first = True
        for item in self.items:
            if not first:
                out.append(", ")
            first = False
            item._emit(out, params)
        out.append(")")


class InSubquery(Expr[bool]):
    """``operand IN (SELECT ...)``."""

    __slots__ = ("operand", "query")

    def __init__(self, operand: Expr[Any], query: Query[Any]) -> None:
        self.operand = operand
        self.query = query

    def _emit(self, out: Out, params: Params) -> None:
        self.operand._emit(out, params)
        out.append(" IN (")
        self.query._emit(out, params)
        out.append(")")


class Subquery(Expr[T_co]):
    """A query used as a value: ``(SELECT ...)``; ``EXISTS (SELECT ...)`` with a prefix."""

    __slots__ = ("query", "prefix")

    def __init__(self, query: Query[Any], prefix: str = "") -> None:
        self.query = query
        self.prefix = prefix

    def _emit(self, out: Out, params: Params) -> None:
        out.append(self.prefix + "(")
        self.query._emit(out, params)
        out.append(")")


class BoolOp(Expr[bool]):
    """Conditions joined by AND or OR (a nested group of the other kind is parenthesised)."""

    __slots__ = ("op", "items")

    def __init__(self, op: str, items: Sequence[Expr[bool]]) -> None:
        self.op = op
        self.items = items

    def _emit(self, out: Out, params: Params) -> None:
        first = True
        for item in self.items:
            if not first:
                out.append(self.op)
            first = False
            if isinstance(item, BoolOp) and item.op != self.op and len(item.items) > 1:
                out.append("(")
                item._emit(out, params)
                out.append(")")
            else:
                item._emit(out, params)


class Not(Expr[bool]):
    """``NOT (condition)``."""

    __slots__ = ("operand",)

    def __init__(self, operand: Expr[bool]) -> None:
        self.operand = operand

    def _emit(self, out: Out, params: Params) -> None:
        out.append("NOT (")
        self.operand._emit(out, params)
        out.append(")")


class Labeled(Expr[T_co]):
    """An expression with an output name (``expr AS name`` in a select list)."""

    __slots__ = ("expr", "name")

    def __init__(self, expr: Expr[Any], name: str) -> None:
        self.expr = expr
        self.name = name

    def _emit(self, out: Out, params: Params) -> None:
        self.expr._emit(out, params)

    def _select_items(self) -> Sequence[tuple[Expr[Any], str | None]]:
        return tuple((e, self.name) for e, _ in self.expr._select_items())


class Call(Expr[T_co]):
    """A function call: ``name(arg, ...)``."""

    __slots__ = ("name", "args", "suffix")

    def __init__(self, name: str, args: Sequence[Expr[Any]], suffix: str = "") -> None:
        self.name = name
        self.args = args
        self.suffix = suffix

    def _emit(self, out: Out, params: Params) -> None:
        out.append(self.name + "(")
        first = True
        for arg in self.args:
            if not first:
                out.append(", ")
            first = False
            arg._emit(out, params)
        out.append(")" + self.suffix)


class SQLCast(Expr[T_co]):
    """``CAST(expr AS type)``."""

    __slots__ = ("expr", "type_name")

    def __init__(self, expr: Expr[Any], type_name: str) -> None:
        self.expr = expr
        self.type_name = type_name

    def _emit(self, out: Out, params: Params) -> None:
        out.append("CAST(")
        self.expr._emit(out, params)
        out.append(f" AS {self.type_name})")


class Fragment(Expr[T_co]):
    """Hand-written SQL with its own ``$1..$n`` placeholders, renumbered into the query's."""

    __slots__ = ("text", "values")

    _PLACEHOLDER = re.compile(r"\$(\d+)")

    def __init__(self, text: str, values: Sequence[object]) -> None:
        self.text = text
        self.values = tuple(values)

    def _emit(self, out: Out, params: Params) -> None:
        base = len(params)
        params.extend(self.values)
        count = len(self.values)

        def renumber(m: re.Match[str]) -> str:
            """``$n`` of the fragment as its place among the query's parameters."""
            n = int(m.group(1))
            if not 1 <= n <= count:
                raise ValueError(f"sql_expr {self.text!r} uses ${n} but has {count} value(s)")
            return f"${base + n}"

        out.append("(" + self._PLACEHOLDER.sub(renumber, self.text) + ")")


# ---------------------------------------------------------------------- constructors


def check_conditions(where: str, conditions: Sequence[object]) -> None:
    """A clear error for what is not a condition (``users.id == 1`` is a Python bool: use ``.eq``)."""
    for condition in conditions:
        if not isinstance(condition, Expr):
            hint = " (== and != compare Python objects: write users.id.eq(1))" if isinstance(condition, bool) else ""
            raise TypeError(f"{where} takes conditions such as users.id.eq(1), not {type(condition).__name__}{hint}")


def and_(*conditions: Expr[bool]) -> Expr[bool]:
    """All conditions hold (``true`` when none are given)."""
    check_conditions("and_()", conditions)
    if not conditions:
        return SQLText("true")
    if len(conditions) == 1:
        return conditions[0]
    return BoolOp(" AND ", conditions)


def or_(*conditions: Expr[bool]) -> Expr[bool]:
    """At least one condition holds (``false`` when none are given)."""
    check_conditions("or_()", conditions)
    if not conditions:
        return SQLText("false")
    if len(conditions) == 1:
        return conditions[0]
    return BoolOp(" OR ", conditions)


def not_(condition: Expr[bool]) -> Expr[bool]:
    """The condition does not hold."""
    return Not(condition)


def exists(query: Query[Any]) -> Expr[bool]:
    """``EXISTS (subquery)``."""
    return Subquery(query, "EXISTS ")


def param(value: T) -> Expr[T]:
    """A value as an expression (for ``select(param(1))`` or the left side of a comparison)."""
    return Param(value)


def cast(expr: Expr[Any] | object, to: Codec[T]) -> Expr[T]:
    """``CAST(expr AS type)``, typed by the codec of the target type."""
    operand = expr if isinstance(expr, Expr) else Param(expr)
    return SQLCast(operand, to.name)


def fn(name: str, *args: Expr[Any] | object, returns: Codec[T]) -> Expr[T]:
    """A call of the SQL function ``name`` whose result decodes as ``returns``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        raise ValueError(f"not a function name: {name!r}")
    return Call(name, [a if isinstance(a, Expr) else Param(a) for a in args])


def sql_expr(text: str, *values: object, returns: Codec[T]) -> Expr[T]:
    """Hand-written SQL as an expression: ``sql_expr("lower($1)", name, returns=TEXT)``.

    ``$1..$n`` refer to ``values``; they are renumbered inside the query and never inlined.
    """
    return Fragment(text, values)


def count(expr: Expr[Any] | None = None, *, distinct: bool = False) -> Expr[int]:
    """``count(*)`` or ``count(expr)`` (``count(DISTINCT expr)`` with ``distinct``)."""
    if expr is None:
        return SQLText("count(*)")
    if distinct:
        return Call("count", [Prefix("DISTINCT ", expr)])
    return Call("count", [expr])


class Prefix(Expr[T_co]):
    """A keyword written before an expression (``DISTINCT x`` inside an aggregate)."""

    __slots__ = ("prefix", "expr")

    def __init__(self, prefix: str, expr: Expr[Any]) -> None:
        self.prefix = prefix
        self.expr = expr

    def _emit(self, out: Out, params: Params) -> None:
        out.append(self.prefix)
        self.expr._emit(out, params)


_INTEGER_TYPES = frozenset({"int2", "int4", "int8", "smallint", "integer", "bigint"})


@overload
def sum_(expr: Expr[int]) -> Expr[int | None]: ...
@overload
def sum_(expr: Expr[int | None]) -> Expr[int | None]: ...
@overload
def sum_(expr: Expr[U]) -> Expr[U | None]: ...
def sum_(expr: Expr[Any]) -> Expr[Any]:
    """``sum(expr)``; over integers the result is cast to int8, so it decodes as ``int``
    (Postgres would widen int8 to numeric), NULL over no rows."""
    call: Expr[Any] = Call("sum", [expr])
    if getattr(expr, "pgtype", None) in _INTEGER_TYPES:
        return SQLCast(call, "int8")
    return call


@overload
def avg(expr: Expr[int] | Expr[int | None] | Expr[decimal.Decimal] | Expr[decimal.Decimal | None]) -> Expr[decimal.Decimal | None]: ...  # type: ignore[overload-overlap]  # noqa: E501
@overload
def avg(expr: Expr[float] | Expr[float | None]) -> Expr[float | None]: ...
def avg(expr: Expr[Any]) -> Expr[Any]:
    """``avg(expr)``: a ``Decimal`` over integers and numerics, a ``float`` over floats; NULL over no rows."""
    return Call("avg", [expr])


def min_(expr: Expr[T]) -> Expr[T | None]:
    """``min(expr)``, NULL over no rows."""
    return Call("min", [expr])


def max_(expr: Expr[T]) -> Expr[T | None]:
    """``max(expr)``, NULL over no rows."""
    return Call("max", [expr])


def coalesce(expr: Expr[T | None], default: T | Expr[T]) -> Expr[T]:
    """``coalesce(expr, default)``: the default where the expression is NULL."""
    return Call("coalesce", [expr, expr._operand(default)])
