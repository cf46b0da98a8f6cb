"""Writing one typed Python module from an introspected schema.

Per relation: ``<Name>Row`` (a whole row), ``<Name>Insert`` (defaulted, identity and nullable
columns ``NotRequired``; GENERATED ALWAYS columns absent), ``<Name>Update`` and
``<Name>Where`` (``total=False``), a nullable twin ``<Name>Outer`` for LEFT JOINs, and the
table object (``users = UsersTable()``) with ``Col[T]`` attributes. Python names are valid
identifiers, each mapped explicitly to its SQL name. The output depends only on the schema
and the options, so a rerun on an unchanged schema is byte-identical.
"""

from __future__ import annotations

import fnmatch
import keyword
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from neon_query.introspect import ColumnInfo, PgType, Relation, Schema

__all__ = ["Overrides", "CodegenError", "generate"]


class CodegenError(Exception):
    """The schema or the options cannot be turned into a module (a clear one-line reason)."""


@attrs.frozen
class Overrides:
    """Per-type and per-column Python types, and nullability fixes (views).

    ``types`` maps a Postgres type name (``jsonb``, ``mood`` or ``public.mood``) to a Python
    type expression; ``columns`` maps ``table.column`` or ``schema.table.column`` to a type
    expression or to ``{"type": ..., "nullable": bool}``; ``imports`` are lines added to the
    module's imports (``from myapp.types import Settings``).
    """

    types: Mapping[str, str] = attrs.field(factory=dict)
    columns: Mapping[str, Any] = attrs.field(factory=dict)
    imports: Sequence[str] = ()

    @classmethod
    def from_toml(cls, data: Mapping[str, Any]) -> Overrides:
        """From a parsed overrides.toml (``[types]``, ``[columns]``, ``imports = [...]``)."""
        unknown = set(data) - {"types", "columns", "imports"}
        if unknown:
            raise CodegenError(f"overrides: unknown section {sorted(unknown)[0]!r} (expected types, columns, imports)")
        types = data.get("types", {})
        columns = data.get("columns", {})
        imports = data.get("imports", [])
        if not isinstance(types, dict) or not all(isinstance(v, str) for v in types.values()):
            raise CodegenError("overrides: [types] maps type names to Python type strings")
        if not isinstance(columns, dict):
            raise CodegenError("overrides: [columns] maps table.column to a type string or {type, nullable}")
        for key, value in columns.items():
            if isinstance(value, dict):
                extra = set(value) - {"type", "nullable"}
                if extra:
                    raise CodegenError(f"overrides: column {key!r} has unknown key {sorted(extra)[0]!r}")
            elif not isinstance(value, str):
                raise CodegenError(f"overrides: column {key!r} must be a type string or a table")
        if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
            raise CodegenError("overrides: imports is a list of import lines")
        return cls(types, columns, tuple(imports))


# Python type of each built-in type, and the import it needs.
_BUILTIN: dict[str, tuple[str, str | None]] = {
    "bool": ("bool", None),
    "int2": ("int", None), "int4": ("int", None), "int8": ("int", None), "oid": ("int", None),
    "float4": ("float", None), "float8": ("float", None),
    "numeric": ("decimal.Decimal", "import decimal"), "money": ("decimal.Decimal", "import decimal"),
    "bytea": ("bytes", None),
    "uuid": ("uuid.UUID", "import uuid"),
    "json": ("JSONValue", None), "jsonb": ("JSONValue", None),
    "date": ("datetime.date", "import datetime"),
    "time": ("datetime.time", "import datetime"), "timetz": ("datetime.time", "import datetime"),
    "timestamp": ("datetime.datetime", "import datetime"), "timestamptz": ("datetime.datetime", "import datetime"),
    "interval": ("datetime.timedelta", "import datetime"),
    "inet": (
        "ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Interface | ipaddress.IPv6Interface",
        "import ipaddress",
    ),
    "cidr": ("ipaddress.IPv4Network | ipaddress.IPv6Network", "import ipaddress"),
    "point": ("Point", "from neon_proto.types import Point"),
    "line": ("Line", "from neon_proto.types import Line"),
    "lseg": ("LineSegment", "from neon_proto.types import LineSegment"),
    "box": ("Box", "from neon_proto.types import Box"),
    "path": ("Path", "from neon_proto.types import Path"),
    "polygon": ("Polygon", "from neon_proto.types import Polygon"),
    "circle": ("Circle", "from neon_proto.types import Circle"),
}
_RANGE_BOUNDS = {
    "int4range": "int", "int8range": "int", "numrange": "decimal.Decimal", "daterange": "datetime.date",
    "tsrange": "datetime.datetime", "tstzrange": "datetime.datetime",
}
_JSON_TYPES = frozenset({"json", "jsonb"})

# Names a column attribute must not take: the table object's own members.
_TABLE_MEMBERS = frozenset(
    {"find", "find_one", "insert", "update", "delete", "count", "alias", "outer", "mro"}
)
_HEADER_NAMES = frozenset(
    {"annotations", "datetime", "decimal", "uuid", "ipaddress", "ClassVar", "Literal", "Never", "NotRequired",
     "TypedDict", "Col", "ColumnSpec", "JSONValue", "Outer", "Table", "Range", "Point", "Line", "LineSegment",
     "Box", "Path", "Polygon", "Circle"}
)


def identifier(name: str) -> str:
    """A valid Python identifier for a SQL name (invalid characters become ``_``)."""
    text = re.sub(r"\W", "_", name)
    if not text or text[0].isdigit():
        text = "_" + text
    if text.startswith("__"):
        text = "c" + text  # a class body would mangle __names
    if keyword.iskeyword(text) or keyword.issoftkeyword(text):
        text += "_"
    return text


def class_name(name: str) -> str:
    """``user_accounts`` -> ``UserAccounts`` (a valid identifier)."""
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    text = "".join(p[0].upper() + p[1:] for p in parts) or "Relation"
    if text[0].isdigit():
        text = "T" + text
    return text


def _docstring(text: str, indent: str) -> list[str]:
    body = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = body.splitlines() or [""]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}'] + [f"{indent}{line}" if line else "" for line in lines[1:]] + [f'{indent}"""']


class _Resolved(NamedTuple):
    py_type: str
    pg_name: str  # the base type's name (domains resolved), with [] for arrays
    domain_not_null: bool = False
    json: bool = False  # values are sent wrapped in Json
    enum_array: bool = False  # selected as text[], parameters cast back


@attrs.define
class _Column:
    info: ColumnInfo
    attr: str
    py_type: str  # without None
    nullable: bool
    pgtype: str
    json: bool
    param_cast: str | None
    select_cast: str | None

    @property
    def insertable(self) -> bool:
        return self.info.identity != "a" and not self.info.generated

    @property
    def optional_on_insert(self) -> bool:
        return self.nullable or self.info.has_default or self.info.identity == "d"

    @property
    def row_type(self) -> str:
        return f"{self.py_type} | None" if self.nullable else self.py_type


class _Writer:
    def __init__(self, schema: Schema, schemas: Sequence[str], overrides: Overrides) -> None:
        self.schema = schema
        self.schemas = list(schemas)
        self.overrides = overrides
        self.imports: set[str] = set()
        self.enum_aliases: dict[int, str] = {}
        self.enum_lines: list[str] = []
        self.used_names: set[str] = set(_HEADER_NAMES)
        self.used_overrides: set[str] = set()

    def qualified_prefix(self, schema: str) -> str:
        return "" if schema in ("public", self.schemas[0]) else class_name(schema)

    def unique(self, name: str) -> str:
        candidate = name
        n = 2
        while candidate in self.used_names:
            candidate = f"{name}{n}"
            n += 1
        self.used_names.add(candidate)
        return candidate

    def type_override(self, t: PgType) -> str | None:
        for key in (f"{t.schema}.{t.name}", t.name):
            if key in self.overrides.types:
                self.used_overrides.add(f"types:{key}")
                return self.overrides.types[key]
        return None

    def enum_alias(self, t: PgType) -> str:
        alias = self.enum_aliases.get(t.oid)
        if alias is None:
            alias = self.unique(self.qualified_prefix(t.schema) + class_name(t.name))
            self.enum_aliases[t.oid] = alias
            labels = ", ".join(_string(label) for label in t.labels)
            self.enum_lines += [f"{alias} = Literal[{labels}]", f'"""Enum {t.schema}.{t.name}."""', "", ""]
        return alias

    def resolve(self, oid: int) -> _Resolved:
        """The Python type of a Postgres type, and what the column's spec needs to know of it."""
        types = self.schema.types
        t = types.get(oid)
        if t is None:
            return _Resolved("str", "unknown")
        override = self.type_override(t)
        not_null = False
        while t.kind == "d" and override is None:
            not_null = not_null or t.not_null
            base = types.get(t.base)
            if base is None:
                return _Resolved("str", "unknown", not_null)
            t = base
            override = self.type_override(t)
        if t.category == "A" and t.element:
            element = self.resolve(t.element)
            element_type = types.get(t.element)
            enum_array = element_type is not None and self._base(element_type).kind == "e"
            return _Resolved(
                override or f"list[{element.py_type}]", element.pg_name + "[]", not_null, element.json, enum_array
            )
        if override is not None:
            return _Resolved(override, t.name, not_null, t.name in _JSON_TYPES)
        if t.kind == "e":
            return _Resolved(self.enum_alias(t), t.name, not_null)
        builtin = _BUILTIN.get(t.name)
        if builtin is not None:
            py, imp = builtin
            if imp:
                self.imports.add(imp)
            return _Resolved(py, t.name, not_null, t.name in _JSON_TYPES)
        if t.name in _RANGE_BOUNDS:
            bound = _RANGE_BOUNDS[t.name]
            self.imports.add("from neon_proto.types import Range")
            if "." in bound:
                self.imports.add("import " + bound.split(".")[0])
            return _Resolved(f"Range[{bound}]", t.name, not_null)
        return _Resolved("str", t.name, not_null)  # unknown types arrive as text

    def _base(self, t: PgType) -> PgType:
        while t.kind == "d" and t.base in self.schema.types:
            t = self.schema.types[t.base]
        return t

    def column(self, relation: Relation, info: ColumnInfo, attr: str) -> _Column:
        resolved = self.resolve(info.type_oid)
        py = resolved.py_type
        if relation.kind in ("view", "materialized view"):
            nullable = True  # the catalog does not know; fix with overrides
        else:
            nullable = not (info.not_null or resolved.domain_not_null)
        for key in (f"{relation.schema}.{relation.name}.{info.name}", f"{relation.name}.{info.name}"):
            if key in self.overrides.columns:
                self.used_overrides.add(f"columns:{key}")
                value = self.overrides.columns[key]
                if isinstance(value, str):
                    py = value
                else:
                    py = value.get("type", py)
                    if "nullable" in value:
                        nullable = bool(value["nullable"])
                break
        return _Column(
            info, attr, py, nullable, resolved.pg_name, resolved.json,
            info.type_sql if resolved.enum_array else None,
            "text[]" if resolved.enum_array else None,
        )

    def relation(self, relation: Relation) -> list[str]:
        base = self.qualified_prefix(relation.schema) + class_name(relation.name)
        names = {suffix: self.unique(base + suffix) for suffix in ("Row", "Insert", "Update", "Where", "Outer", "Table")}
        object_name = self.unique(identifier(
            (relation.schema + "_" if self.qualified_prefix(relation.schema) else "") + relation.name
        ))
        attrs_used: set[str] = set()
        columns: list[_Column] = []
        for info in relation.columns:
            attr = identifier(info.name)
            if attr in _TABLE_MEMBERS or attr.startswith("_"):
                attr = attr + "_" if not attr.startswith("_") else "c" + attr
            while attr in attrs_used:
                attr += "_"
            attrs_used.add(attr)
            columns.append(self.column(relation, info, attr))
        writable = relation.kind in ("table", "partitioned table", "foreign table")
        title = f"{relation.kind.capitalize()} {relation.schema}.{relation.name}"
        doc = title + (f": {relation.comment}" if relation.comment else ".")
        lines: list[str] = []

        def typed_dict(name: str, total: bool, fields: list[tuple[_Column, str]], what: str) -> None:
            lines.append(f"class {name}(TypedDict{'' if total else ', total=False'}):")
            lines.extend(_docstring(f"{what} {relation.schema}.{relation.name}.", "    "))
            lines.append("")
            for col, annotation in fields:
                lines.append(f"    {col.attr}: {annotation}")
                if col.info.comment:
                    lines.extend(_docstring(col.info.comment, "    "))
            lines.extend(["", ""])

        typed_dict(names["Row"], True, [(c, c.row_type) for c in columns], "A whole row of")
        if writable:
            insert_fields = []
            for c in columns:
                if c.insertable:
                    insert_fields.append((c, f"NotRequired[{c.row_type}]" if c.optional_on_insert else c.row_type))
            typed_dict(names["Insert"], True, insert_fields, "A row to insert into")
            typed_dict(names["Update"], False, [(c, c.row_type) for c in columns if c.insertable], "New values for")
        typed_dict(names["Where"], False, [(c, c.row_type) for c in columns], "Equality conditions on")

        lines.append(f"class {names['Outer']}(Outer[{names['Row']}]):")
        lines.extend(_docstring(f"The columns of {relation.schema}.{relation.name} typed nullable, for LEFT JOINs.", "    "))
        lines.append("")
        for c in columns:
            lines.append(f"    {c.attr}: Col[{c.py_type} | None]")
        lines += ["", ""]

        insert_name = names["Insert"] if writable else "Never"
        update_name = names["Update"] if writable else "Never"
        lines.append(
            f"class {names['Table']}(Table[{names['Row']}, {insert_name}, {update_name}, {names['Where']}]):"
        )
        lines.extend(_docstring(doc, "    "))
        lines.append("")
        lines.append(f"    __tablename__ = {_string(relation.name)}")
        lines.append(f"    __schema__ = {_string(relation.schema)}")
        lines.append("    __columns__ = (")
        for c in columns:
            args = [_string(c.attr), _string(c.info.name), _string(c.pgtype)]
            if c.json:
                args.append("json=True")
            if c.param_cast:
                args.append(f"param_cast={_string(c.param_cast)}")
            if c.select_cast:
                args.append(f"select_cast={_string(c.select_cast)}")
            if not c.insertable:
                args.append("generated=True")
            lines.append(f"        ColumnSpec({', '.join(args)}),")
        lines.append("    )")
        by_sql = {c.info.name: c.attr for c in columns}
        if relation.primary_key:
            lines.append(f"    __primary_key__ = {_tuple([by_sql.get(n, n) for n in relation.primary_key])}")
        if relation.unique:
            uniques = ", ".join(_tuple([by_sql.get(n, n) for n in u]) for u in sorted(relation.unique))
            lines.append(f"    __unique__ = ({uniques},)")
        if relation.foreign_keys:
            lines.append("    __foreign_keys__ = (")
            for fk in sorted(relation.foreign_keys, key=lambda f: f.name):
                lines.append(
                    f"        ({_tuple([by_sql.get(n, n) for n in fk.columns])},"
                    f" {_string(fk.ref_schema + '.' + fk.ref_table)}, {_tuple(list(fk.ref_columns))}),"
                )
            lines.append("    )")
        lines.append(f"    __outer_class__ = {names['Outer']}")
        lines.append("")
        for c in columns:
            lines.append(f"    {c.attr}: Col[{c.row_type}]")
            column_doc = f"{c.info.name} {c.info.type_sql}"
            details = []
            if c.info.identity:
                details.append("identity" + (" always" if c.info.identity == "a" else " by default"))
            if c.info.generated:
                details.append(f"generated always as {c.info.default}")
            elif c.info.default is not None and not c.info.identity:
                details.append(f"default {c.info.default}")
            if details:
                column_doc += " (" + "; ".join(details) + ")"
            if c.info.comment:
                column_doc += ": " + c.info.comment
            lines.extend(_docstring(column_doc, "    "))
        lines.append(f"    outer: {names['Outer']}")
        lines += ["", ""]
        lines.append(f"{object_name} = {names['Table']}()")
        lines.extend(_docstring(doc, ""))
        lines += ["", ""]
        return lines


def _string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tuple(items: list[str]) -> str:
    inner = ", ".join(_string(i) for i in items)
    return f"({inner},)" if len(items) == 1 else f"({inner})"


def select_relations(schema: Schema, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Relation]:
    """The relations whose ``schema.name`` (or bare name) matches an include glob and no exclude glob."""

    def matches(relation: Relation, patterns: Sequence[str]) -> bool:
        full = f"{relation.schema}.{relation.name}"
        return any(fnmatch.fnmatchcase(full, p) or fnmatch.fnmatchcase(relation.name, p) for p in patterns)

    chosen = []
    for relation in schema.relations:
        if include and not matches(relation, include):
            continue
        if exclude and matches(relation, exclude):
            continue
        chosen.append(relation)
    return sorted(chosen, key=lambda r: (r.schema, r.name))


def generate(
    schema: Schema,
    *,
    schemas: Sequence[str] = ("public",),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    overrides: Overrides | None = None,
) -> str:
    """The module's text for the relations of ``schema`` chosen by the globs."""
    writer = _Writer(schema, schemas, overrides or Overrides())
    body: list[str] = []
    for relation in select_relations(schema, include, exclude):
        body += writer.relation(relation)
    unused = [k for k in (
        [f"types:{k}" for k in writer.overrides.types] + [f"columns:{k}" for k in writer.overrides.columns]
    ) if k not in writer.used_overrides]
    if unused:
        raise CodegenError(f"overrides: {unused[0].split(':', 1)[1]!r} matches no {unused[0].split(':')[0][:-1]} in the schema")
    header = [
        '"""Typed models of the Postgres schema ' + ", ".join(schemas) + ", written by neon_query codegen.",
        "",
        "Do not edit: rerun ``python -m neon_query codegen`` (``--check`` tells CI when this file is stale).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    text_body = "\n".join(writer.enum_lines + body)
    plain = sorted(i for i in writer.imports if i.startswith("import "))
    header += plain
    typing_names = [n for n in ("Literal", "Never", "NotRequired", "TypedDict") if re.search(rf"\b{n}\b", text_body)]
    if typing_names:
        header.append("from typing import " + ", ".join(typing_names))
        header.append("")
    header += sorted(i for i in writer.imports if i.startswith("from "))
    ours = [n for n in ("Col", "ColumnSpec", "JSONValue", "Outer", "Table") if re.search(rf"\b{n}\b", text_body)]
    header.append("from neon_query import " + ", ".join(ours))
    header += list(writer.overrides.imports)
    header += ["", ""]
    text = "\n".join(header) + "\n" + text_body
    return text.rstrip("\n") + "\n"
