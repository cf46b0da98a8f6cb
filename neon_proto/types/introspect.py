"""Reading a user or extension type's description from the server's catalog.

``TYPE_INFO_QUERY`` takes the type's name (``to_regtype`` syntax: ``"mood"``,
``"myschema.point3d"``) and returns one row, which ``type_info_from_row`` turns into the
``TypeInfo`` that ``TypeRegistry.register_type_info`` takes. The bindings run it
(``Client.register_type``); nothing here does I/O.
"""

from __future__ import annotations

from typing import Any, Sequence

from neon_proto.types.registry import TypeInfo, TypeKind

__all__ = ["TYPE_INFO_QUERY", "type_info_from_row"]

TYPE_INFO_QUERY = """\
SELECT t.oid::int8, t.typname::text, t.typtype::text, t.typarray::int8, t.typdelim::text,
       t.typbasetype::int8, coalesce(r.rngsubtype, 0)::int8, coalesce(r.rngmultitypid, 0)::int8,
       coalesce(m.typarray, 0)::int8,
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
       coalesce((SELECT array_agg(a.atttypid::int8 ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
       coalesce((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_catalog.pg_enum e
                 WHERE e.enumtypid = t.oid), '{}')
FROM pg_catalog.pg_type t
LEFT JOIN pg_catalog.pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_catalog.pg_type m ON m.oid = r.rngmultitypid
WHERE t.oid = pg_catalog.to_regtype($1::text)"""
"""One row describing the type named by ``$1``, or no row when there is no such type."""

_KINDS: dict[str, TypeKind] = {"b": "base", "c": "composite", "d": "domain", "e": "enum", "r": "range"}


def type_info_from_row(row: Sequence[Any]) -> TypeInfo:
    """The ``TypeInfo`` for one row of ``TYPE_INFO_QUERY`` (a tuple in column order)."""
    oid, name, typtype, array_oid, delimiter, base_oid, subtype, multirange, multirange_array = row[:9]
    field_names, field_oids, labels = row[9:12]
    kind = _KINDS.get(typtype)
    if kind is None:
        raise ValueError(f"type {name!r} has kind {typtype!r}, which cannot be registered")
    return TypeInfo(
        name,
        int(oid),
        int(array_oid),
        kind,
        delimiter=delimiter or ",",
        field_names=list(field_names) if kind == "composite" else [],
        field_oids=[int(o) for o in field_oids] if kind == "composite" else [],
        base_oid=int(base_oid) if kind == "domain" else 0,
        subtype_oid=int(subtype) if kind == "range" else 0,
        multirange_oid=int(multirange) if kind == "range" else 0,
        multirange_array_oid=int(multirange_array) if kind == "range" else 0,
        labels=list(labels) if kind == "enum" else [],
    )
