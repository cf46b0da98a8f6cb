"""Row factories: the shape of a result row as a parameter (psycopg's ``row_factory`` protocol).

A row factory is called once per result with an object that has a ``description`` (a sequence
of columns with a ``name``; a DB-API cursor is one) and returns a *row maker*: a function from
the row's values (a tuple) to the row. ``tuple_row`` is the default and costs nothing.
"""

from __future__ import annotations

import functools
import keyword
import re
from collections import namedtuple
from typing import Any, Callable, Protocol, Sequence, TypeVar

__all__ = [
    "RowFactory",
    "RowMaker",
    "TupleRow",
    "DictRow",
    "tuple_row",
    "dict_row",
    "namedtuple_row",
    "class_row",
    "args_row",
    "kwargs_row",
    "column_names",
]

Row = TypeVar("Row", covariant=True)
T = TypeVar("T")
TupleRow = tuple[Any, ...]
DictRow = dict[str, Any]


class RowMaker(Protocol[Row]):
    """Turns one row's values (a tuple) into the row."""

    def __call__(self, values: tuple[Any, ...], /) -> Row: ...


class RowFactory(Protocol[Row]):
    """Called with something that has ``description``; returns the RowMaker for that result."""

    def __call__(self, source: Any, /) -> RowMaker[Row]: ...


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class _Described(Protocol):
    @property
    def description(self) -> Sequence[_Named] | None: ...


def column_names(source: _Described) -> list[str]:
    """The column names of ``source.description`` (empty without a result)."""
    description = source.description
    return [column.name for column in description] if description else []


def _identity(values: tuple[Any, ...], /) -> tuple[Any, ...]:
    return values


def tuple_row(source: Any, /) -> RowMaker[TupleRow]:
    """Rows as tuples (the default)."""
    return _identity


def dict_row(source: Any, /) -> RowMaker[DictRow]:
    """Rows as ``{column name: value}`` dicts (a later duplicate name wins)."""
    names = column_names(source)

    def make(values: tuple[Any, ...], /) -> DictRow:
        return dict(zip(names, values))

    return make


_NOT_IDENT = re.compile(r"\W|^(?=\d)")


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    fields = []
    for i, name in enumerate(names):
        field = _NOT_IDENT.sub("_", name) or f"f{i}"
        if keyword.iskeyword(field) or field.startswith("_") or field in fields:
            field = f"f{i}_{field.lstrip('_')}" if field.lstrip("_") else f"f{i}"
        fields.append(field)
    return namedtuple("Row", fields)


def namedtuple_row(source: Any, /) -> RowMaker[Any]:
    """Rows as named tuples; names that are not identifiers are made into ones (``?column?`` -> ``_column_``)."""
    row_type = _row_type(tuple(column_names(source)))
    make: RowMaker[Any] = row_type._make
    return make


def class_row(cls: Callable[..., T]) -> RowFactory[T]:
    """Rows as ``cls(**{column: value})``: a dataclass, an attrs class, a pydantic model..."""

    def factory(source: Any, /) -> RowMaker[T]:
        names = column_names(source)

        def make(values: tuple[Any, ...], /) -> T:
            return cls(**dict(zip(names, values)))

        return make

    return factory


def args_row(func: Callable[..., T]) -> RowFactory[T]:
    """Rows as ``func(*values)``."""

    def factory(source: Any, /) -> RowMaker[T]:
        def make(values: tuple[Any, ...], /) -> T:
            return func(*values)

        return make

    return factory


def kwargs_row(func: Callable[..., T]) -> RowFactory[T]:
    """Rows as ``func(**{column: value})``."""
    return class_row(func)
