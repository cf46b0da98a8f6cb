"""Reading a live schema from the Postgres catalog: relations, columns, types, constraints.

Runs through any executor (TCP ``Database``, ``HTTPDatabase``, WebSocket), with typed raw
queries of our own builder. Partitions are skipped (their parent stands for them); domains
are resolved to their base type; arrays know their element type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from neon_query.codecs import BOOL, INT2, INT8, TEXT
from neon_query.execute import Executor
from neon_query.query import raw

if TYPE_CHECKING:
    from neon_query.execute_async import AsyncDatabase

__all__ = ["PgType", "ColumnInfo", "ForeignKey", "Relation", "Schema", "introspect", "introspect_async"]

RELATION_KINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}


@attrs.frozen
class PgType:
    """One ``pg_type`` row, with what resolving it needs."""

    oid: int
    schema: str
    name: str
    kind: str  # typtype: b base, e enum, d domain, c composite, r range, m multirange, p pseudo
    category: str  # typcategory: A for arrays
    element: int  # typelem
    base: int  # typbasetype (domains)
    not_null: bool  # typnotnull (domains)
    labels: tuple[str, ...] = ()  # enum labels in sort order


@attrs.frozen
class ColumnInfo:
    """One column of a relation."""

    name: str
    position: int
    type_oid: int
    type_sql: str  # format_type(): how SQL writes it
    not_null: bool
    has_default: bool
    default: str | None
    identity: str  # '' none, 'a' ALWAYS, 'd' BY DEFAULT
    generated: str  # '' none, 's' stored
    comment: str | None


@attrs.frozen
class ForeignKey:
    """A foreign key: these columns reference those of another relation."""

    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]


@attrs.frozen
class Relation:
    """A table, view, materialized view, partitioned table or foreign table."""

    schema: str
    name: str
    kind: str
    comment: str | None
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()


@attrs.frozen
class Schema:
    """What codegen works from: the relations in order and every type their columns use."""

    relations: tuple[Relation, ...]
    types: dict[int, PgType]


_COLUMNS = """
SELECT n.nspname::text, c.relname::text, c.relkind::text, obj_description(c.oid, 'pg_class'),
       a.attnum, a.attname::text, a.attnotnull, a.atthasdef, pg_get_expr(d.adbin, d.adrelid),
       a.attidentity::text, a.attgenerated::text, col_description(c.oid, a.attnum),
       a.atttypid::int8, format_type(a.atttypid, a.atttypmod)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition AND n.nspname = ANY($1::text[])
ORDER BY n.nspname, c.relname, a.attnum
"""

_TYPES = """
WITH RECURSIVE wanted(oid) AS (
    SELECT unnest($1::int8[])::oid
  UNION
    SELECT x FROM wanted w JOIN pg_type t ON t.oid = w.oid
    CROSS JOIN LATERAL (VALUES (t.typelem), (t.typbasetype)) AS v(x) WHERE x <> 0
)
SELECT t.oid::int8, n.nspname::text, t.typname::text, t.typtype::text, t.typcategory::text,
       t.typelem::int8, t.typbasetype::int8, t.typnotnull,
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
FROM pg_type t JOIN wanted w ON w.oid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
ORDER BY t.oid
"""

_CONSTRAINTS = """
SELECT n.nspname::text, c.relname::text, con.contype::text, con.conname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
       fn.nspname::text, fc.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
WHERE con.contype IN ('p', 'u', 'f') AND n.nspname = ANY($1::text[]) AND con.conparentid = 0
ORDER BY n.nspname, c.relname, con.conname
"""


_COLUMN_CODECS = (TEXT, TEXT, TEXT, TEXT.null, INT2, TEXT, BOOL, BOOL, TEXT.null, TEXT, TEXT, TEXT.null, INT8, TEXT)
_CONSTRAINT_CODECS = (TEXT, TEXT, TEXT, TEXT, TEXT.array, TEXT.null, TEXT.null, TEXT.array)
_TYPE_CODECS = (INT8, TEXT, TEXT, TEXT, TEXT, INT8, INT8, BOOL, TEXT.array)


def introspect(db: Executor, schemas: Sequence[str] = ("public",)) -> Schema:
    """Read the relations of ``schemas`` (partitions skipped) and the types of their columns."""
    names = list(schemas)
    column_rows = db.all(raw(_COLUMNS, (names,), returns=_COLUMN_CODECS))
    constraint_rows = db.all(raw(_CONSTRAINTS, (names,), returns=_CONSTRAINT_CODECS))
    type_oids = sorted({row[12] for row in column_rows})
    type_rows = db.all(raw(_TYPES, (type_oids,), returns=_TYPE_CODECS)) if type_oids else []
    return _assemble(column_rows, constraint_rows, type_rows)


async def introspect_async(db: AsyncDatabase, schemas: Sequence[str] = ("public",)) -> Schema:
    """``introspect`` through an async executor (trio or asyncio; TCP or WebSocket)."""
    names = list(schemas)
    column_rows = await db.all(raw(_COLUMNS, (names,), returns=_COLUMN_CODECS))
    constraint_rows = await db.all(raw(_CONSTRAINTS, (names,), returns=_CONSTRAINT_CODECS))
    type_oids = sorted({row[12] for row in column_rows})
    type_rows = await db.all(raw(_TYPES, (type_oids,), returns=_TYPE_CODECS)) if type_oids else []
    return _assemble(column_rows, constraint_rows, type_rows)


def _assemble(column_rows: Sequence[Any], constraint_rows: Sequence[Any], type_rows: Sequence[Any]) -> Schema:
    types: dict[int, PgType] = {}
    for oid, schema, name, kind, category, element, base, not_null, labels in type_rows:
        types[oid] = PgType(oid, schema, name, kind, category, element, base, not_null, tuple(labels))

    keys: dict[tuple[str, str], dict[str, list[object]]] = {}
    for schema, table, contype, conname, key_columns, ref_schema, ref_table, ref_columns in constraint_rows:
        entry = keys.setdefault((schema, table), {"p": [], "u": [], "f": []})
        if contype == "p":
            entry["p"] = list(key_columns)
        elif contype == "u":
            entry["u"].append(tuple(key_columns))
        elif ref_schema is not None and ref_table is not None:
            entry["f"].append(ForeignKey(conname, tuple(key_columns), ref_schema, ref_table, tuple(ref_columns)))

    relations: list[Relation] = []
    current: tuple[str, str] | None = None
    columns: list[ColumnInfo] = []
    meta: tuple[str, str | None] = ("", None)

    def flush() -> None:
        if current is None:
            return
        entry = keys.get(current, {"p": [], "u": [], "f": []})
        relations.append(
            Relation(
                current[0],
                current[1],
                meta[0],
                meta[1],
                tuple(columns),
                tuple(str(c) for c in entry["p"]),
                tuple(entry["u"]),  # type: ignore[arg-type]
                tuple(entry["f"]),  # type: ignore[arg-type]
            )
        )

    for (schema, table, relkind, rel_comment, attnum, attname, not_null, has_default, default, identity,
         generated, comment, type_oid, type_sql) in column_rows:
        if (schema, table) != current:
            flush()
            current = (schema, table)
            columns = []
            meta = (RELATION_KINDS[relkind], rel_comment)
        columns.append(
            ColumnInfo(attname, attnum, type_oid, type_sql, not_null, has_default, default, identity, generated, comment)
        )
    flush()
    return Schema(tuple(relations), types)
