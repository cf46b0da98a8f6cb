"""The Postgres type system, both directions, text and binary format, for every transport.

Results: ``TypeRegistry.get_loader(oid, format)`` gives a function from one cell's bytes to
a Python value (see TYPES.md for the mapping). Parameters: ``TypeRegistry.dump(value)``
gives ``(oid, format, data)``; ``literal_text(value)`` the text form for string-only
transports.
"""

from neon_proto.types.catalog import (
    BUILTIN_TYPES,
    TEXT_OID_NAMES,
    BuiltinType,
    builtin_oid,
)
from neon_proto.types.geometry import Box, Circle, Line, LineSegment, Path, Point, Polygon
from neon_proto.types.hstore import write_hstore_text
from neon_proto.types.jsontypes import Json
from neon_proto.types.range import Range
from neon_proto.types.registry import (
    TEXT_PREFERRED_OIDS,
    Dumper,
    Loader,
    ParamDumper,
    TypeInfo,
    TypeRegistry,
    default_registry,
    make_row_decoder,
)

from neon_proto.types.introspect import TYPE_INFO_QUERY, type_info_from_row

__all__ = [
    "TYPE_INFO_QUERY",
    "type_info_from_row",
    "Loader",
    "Dumper",
    "ParamDumper",
    "TypeRegistry",
    "TypeInfo",
    "default_registry",
    "make_row_decoder",
    "Json",
    "Range",
    "Point",
    "Line",
    "LineSegment",
    "Box",
    "Path",
    "Polygon",
    "Circle",
    "builtin_oid",
    "BuiltinType",
    "BUILTIN_TYPES",
    "TEXT_OID_NAMES",
    "TEXT_PREFERRED_OIDS",
    "write_hstore_text",
]
