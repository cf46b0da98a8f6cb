"""Codec objects: one per Postgres type, naming what a result column decodes to.

``raw(sql, params, returns=(INT4, TEXT.null))`` types its rows from these objects, and the
executor checks each result column's type OID against them, so the static type and the
decoder cannot drift apart silently. ``cast(expr, INT8)`` and ``fn(..., returns=...)`` use
them too.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, Generic, TypeVar, Union

__all__ = [
    "Codec",
    "JSONValue",
    "BOOL",
    "INT2",
    "INT4",
    "INT8",
    "OID",
    "FLOAT4",
    "FLOAT8",
    "NUMERIC",
    "TEXT",
    "VARCHAR",
    "BPCHAR",
    "NAME",
    "BYTEA",
    "UUID",
    "DATE",
    "TIME",
    "TIMETZ",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "INTERVAL",
    "JSON",
    "JSONB",
]

T = TypeVar("T")

JSONValue = Union[dict[str, "JSONValue"], list["JSONValue"], str, int, float, bool, None]
"""What a json or jsonb column decodes to (``json.loads``); values are wrapped in ``Json`` when sent."""

# Types whose values decode to the same Python type: a column of one may be declared as another.
_FAMILIES: dict[str, frozenset[int]] = {
    "int": frozenset({20, 21, 23, 26}),
    "text": frozenset({25, 1043, 1042, 19, 18, 705}),
    "float": frozenset({700, 701}),
    "json": frozenset({114, 3802}),
}


class Codec(Generic[T]):
    """A Postgres type as a typed value: ``INT4`` is a ``Codec[int]``; ``INT4.null`` a ``Codec[int | None]``."""

    __slots__ = ("name", "oid", "nullable", "accepted_oids")

    def __init__(self, name: str, oid: int, family: str | None = None, *, nullable: bool = False) -> None:
        self.name = name
        """The SQL type name (used by ``cast``)."""
        self.oid = oid
        self.nullable = nullable
        self.accepted_oids: frozenset[int] = _FAMILIES.get(family or "", frozenset()) | {oid}
        """Result column type OIDs this codec describes (same Python type)."""

    @property
    def null(self) -> Codec[T | None]:
        """The same type, NULL allowed."""
        made: Codec[T | None] = _with(self, self.name, self.oid, self.accepted_oids, nullable=True)
        return made

    @property
    def array(self) -> Codec[list[T]]:
        """A one-dimensional array of this type."""
        oid = _ARRAY_OIDS.get(self.oid, 0)
        made: Codec[list[T]] = _with(self, self.name + "[]", oid, frozenset({oid}), nullable=False)
        return made

    def accepts(self, oid: int) -> bool:
        """Whether a result column of type ``oid`` decodes to this codec's Python type.

        User-defined types (enums, domains over arrays...) have OIDs only known at run time:
        they are accepted.
        """
        return oid in self.accepted_oids or oid >= 16384 or self.oid == 0

    def __repr__(self) -> str:
        return f"<Codec {self.name}{' NULL' if self.nullable else ''}>"


def _with(codec: Codec[Any], name: str, oid: int, accepted: frozenset[int], *, nullable: bool) -> Any:
    made: Codec[Any] = Codec(name, oid, nullable=nullable)
    made.accepted_oids = accepted
    return made


BOOL: Codec[bool] = Codec("bool", 16)
INT2: Codec[int] = Codec("int2", 21, "int")
INT4: Codec[int] = Codec("int4", 23, "int")
INT8: Codec[int] = Codec("int8", 20, "int")
OID: Codec[int] = Codec("oid", 26, "int")
FLOAT4: Codec[float] = Codec("float4", 700, "float")
FLOAT8: Codec[float] = Codec("float8", 701, "float")
NUMERIC: Codec[decimal.Decimal] = Codec("numeric", 1700)
TEXT: Codec[str] = Codec("text", 25, "text")
VARCHAR: Codec[str] = Codec("varchar", 1043, "text")
BPCHAR: Codec[str] = Codec("bpchar", 1042, "text")
NAME: Codec[str] = Codec("name", 19, "text")
BYTEA: Codec[bytes] = Codec("bytea", 17)
UUID: Codec[uuid.UUID] = Codec("uuid", 2950)
DATE: Codec[datetime.date] = Codec("date", 1082)
TIME: Codec[datetime.time] = Codec("time", 1083)
TIMETZ: Codec[datetime.time] = Codec("timetz", 1266)
TIMESTAMP: Codec[datetime.datetime] = Codec("timestamp", 1114)
TIMESTAMPTZ: Codec[datetime.datetime] = Codec("timestamptz", 1184)
INTERVAL: Codec[datetime.timedelta] = Codec("interval", 1186)
JSON: Codec[JSONValue] = Codec("json", 114, "json")
JSONB: Codec[JSONValue] = Codec("jsonb", 3802, "json")

_ARRAY_OIDS = {
    16: 1000, 21: 1005, 23: 1007, 20: 1016, 26: 1028, 700: 1021, 701: 1022, 1700: 1231,
    25: 1009, 1043: 1015, 1042: 1014, 19: 1003, 17: 1001, 2950: 2951, 1082: 1182, 1083: 1183,
    1266: 1270, 1114: 1115, 1184: 1185, 1186: 1187, 114: 199, 3802: 3807,
}
