"""Table objects: the typed columns of one relation and its Zapatos-style shortcuts.

Generated modules subclass ``Table[Row, Insert, Update, Where]`` once per relation, list its
columns in ``__columns__`` (Python name, SQL name, Postgres type) and annotate each column
attribute (``id: Col[int]``). Columns are made per instance, so ``users.alias("u")`` gives
the same columns qualified by the alias (self-joins).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Self, TypeVar

from neon_query.expr import Col, Expr, Selectable, adapt_json, adapt_json_array, and_, count, quote_ident

if TYPE_CHECKING:
    from neon_query.query import Returning, Select

__all__ = ["Table", "Outer", "ColumnSpec"]

R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - the Insert shape
U = TypeVar("U")
W = TypeVar("W")


class ColumnSpec(NamedTuple):
    """One column as codegen saw it: its Python name, SQL name and Postgres type."""

    attr: str
    name: str
    pgtype: str
    json: bool = False
    """Values are sent wrapped in ``Json``."""
    param_cast: str | None = None
    """A cast written after each parameter compared with or stored in it (arrays of enums)."""
    select_cast: str | None = None
    """A cast applied when the column is selected (arrays of enums arrive as ``text[]``)."""
    generated: bool = False
    """GENERATED ALWAYS (identity or stored): never written."""


class _ColumnSet:
    """The columns of one table instance (or of its outer twin)."""

    __slots__ = ()
    _columns: tuple[Col[Any], ...]
    _by_attr: dict[str, Col[Any]]

    def _select_items(self) -> Sequence[tuple[Expr[Any], str | None]]:
        return [item for c in self._columns for item in c._select_items()]

    def _select_list_sql(self) -> str:
        """The select list of all the columns: it has no parameters, so it is written once."""
        cached: str | None = self.__dict__.get("_select_sql")
        if cached is None:
            cached = _select_list(self._columns)
            self.__dict__["_select_sql"] = cached  # subclasses have a __dict__; this base has no slots
        return cached

    def _make_columns(self, owner: Table[Any, Any, Any, Any], qualifier: str, outer: bool) -> None:
        cols: list[Col[Any]] = []
        for spec in owner.__columns__:
            col: Col[Any] = Col(
                owner,
                spec.attr,
                spec.name,
                spec.pgtype,
                qualifier=qualifier,
                adapt=(adapt_json_array if spec.pgtype.endswith("[]") else adapt_json) if spec.json else None,
                param_cast=spec.param_cast,
                select_cast=spec.select_cast,
                outer=outer,
            )
            object.__setattr__(self, spec.attr, col)
            cols.append(col)
        object.__setattr__(self, "_columns", tuple(cols))
        object.__setattr__(self, "_by_attr", {c.attr: c for c in cols})


def _select_list(columns: Sequence[Col[Any]]) -> str:
    parts: list[str] = []
    for col in columns:
        for expr, alias in col._select_items():
            out: list[str] = []
            expr._emit(out, [])
            parts.append("".join(out) + ("" if alias is None else " AS " + quote_ident(alias)))
    return ", ".join(parts)


class Table(_ColumnSet, Selectable[R], Generic[R, I, U, W]):
    """A relation with typed columns. ``R`` is its row, ``I``/``U``/``W`` its insert, update and where shapes."""

    __tablename__: ClassVar[str]
    __schema__: ClassVar[str | None] = None
    __columns__: ClassVar[tuple[ColumnSpec, ...]] = ()
    __primary_key__: ClassVar[tuple[str, ...]] = ()
    """Python names of the primary key columns."""
    __unique__: ClassVar[tuple[tuple[str, ...], ...]] = ()
    """Python names of the columns of each unique constraint."""
    __foreign_keys__: ClassVar[tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...]] = ()
    """(Python names of the columns, "schema.table" referenced, its SQL column names) per foreign key."""
    __outer_class__: ClassVar[type[Outer[Any]] | None] = None

    def __init__(self, alias: str | None = None) -> None:
        name = quote_ident(self.__tablename__)
        if self.__schema__ not in (None, "public"):
            name = f"{quote_ident(self.__schema__)}.{name}"
        self._alias = alias
        self._from_sql = name if alias is None else f"{name} AS {quote_ident(alias)}"
        qualifier = name if alias is None else quote_ident(alias)
        self._make_columns(self, qualifier, outer=False)
        outer_class = type(self).__outer_class__ or Outer
        outer_view: Outer[Any] = outer_class.__new__(outer_class)
        outer_view._table = self
        outer_view._make_columns(self, qualifier, outer=True)
        self.outer = outer_view
        """The same columns typed nullable, for the right side of a LEFT JOIN."""

    def _lone_projection(self) -> Any:
        """The select list of ``select(table)`` (immutable, so made once)."""
        cached = self.__dict__.get("_projection")
        if cached is None:
            cached = _query._Projection((self,))
            self._projection = cached
        return cached

    def alias(self, name: str) -> Self:
        """This table under another name (``FROM users AS u``), for self-joins."""
        return type(self)(alias=name)

    def __repr__(self) -> str:
        return f"<Table {self._from_sql}>"

    # -- Selectable: a whole row as a dict keyed by Python names

    def _row_builder(self) -> Callable[[Sequence[Any]], Any]:
        names = tuple(c.attr for c in self._columns)
        return lambda values: dict(zip(names, values))

    def _where(self, where: W | Expr[bool] | None) -> Expr[bool] | None:
        if where is None or isinstance(where, Expr):
            return where
        if type(where) is not dict and not isinstance(where, Mapping):
            raise TypeError(f"where must be a dict of column values or a condition, not {type(where).__name__}")
        mapping: Mapping[str, Any] = where  # type: ignore[assignment]
        conditions: list[Expr[bool]] = []
        for key, value in mapping.items():
            col = self._column(key)
            conditions.append(col.eq(value))
        return and_(*conditions)

    def _column(self, attr: str) -> Col[Any]:
        try:
            return self._by_attr[attr]
        except KeyError:
            raise KeyError(f"{self.__tablename__} has no column {attr!r}") from None

    # -- Zapatos-style shortcuts; each returns a query for an executor to run

    def find(self, where: W | Expr[bool] | None = None) -> Select[R]:
        """Rows matching ``where`` (a dict of equalities or a condition), whole."""
        query = _query.select(self)
        condition = self._where(where)
        return query if condition is None else query.where(condition)

    def find_one(self, where: W | Expr[bool] | None = None) -> Select[R]:
        """The first row matching ``where`` (``LIMIT 1``): run it with ``maybe_one``. A dict
        that pins the primary key or a unique constraint needs no LIMIT and gets none."""
        query = self.find(where)
        if type(where) is dict and self._pins_a_key(where):
            return query
        return query.limit(1)

    def _pins_a_key(self, where: dict[str, Any]) -> bool:
        for key in (self.__primary_key__, *self.__unique__):
            if key and all(where.get(attr) is not None for attr in key):
                return True
        return False

    def insert(self, *rows: I) -> Returning[R]:
        """Insert rows, returning them whole as stored (defaults filled in)."""
        return _query.insert(self).values(list(rows)).returning(self)

    def update(self, where: W | Expr[bool], values: U) -> Returning[R]:
        """Set ``values`` on the rows matching ``where``, returning them whole."""
        return _query.update(self).set(values).where(self._where_required(where)).returning(self)

    def delete(self, where: W | Expr[bool]) -> Returning[R]:
        """Delete the rows matching ``where``, returning them."""
        return _query.delete(self).where(self._where_required(where)).returning(self)

    def count(self, where: W | Expr[bool] | None = None) -> Select[int]:
        """How many rows match ``where``."""
        query = _query.select(count()).from_(self)
        condition = self._where(where)
        return (query if condition is None else query.where(condition)).scalars()

    def _where_required(self, where: W | Expr[bool]) -> Expr[bool]:
        condition = self._where(where)
        if condition is None:
            raise ValueError("where is required: pass a condition, or {} to match every row")
        return condition


class Outer(_ColumnSet, Selectable[R | None], Generic[R]):
    """A table's columns typed nullable (``users.outer.id: Col[int | None]``).

    Use it for the table on the right of a LEFT JOIN; a whole-row select of it gives None
    where the join found no row.
    """

    _table: Table[Any, Any, Any, Any]

    def _row_builder(self) -> Callable[[Sequence[Any]], Any]:
        columns = self._columns
        names = tuple(c.attr for c in columns)
        key = self._table.__primary_key__
        probe = tuple(i for i, c in enumerate(columns) if c.attr in key) or tuple(range(len(columns)))

        def build(values: Sequence[Any]) -> Any:
            if all(values[i] is None for i in probe):
                return None
            return dict(zip(names, values))

        return build

    def __repr__(self) -> str:
        return f"<Outer {self._table._from_sql}>"


# Imported last: neon_query.query builds on this module (the shortcuts call into it at run time).
from neon_query import query as _query  # noqa: E402
