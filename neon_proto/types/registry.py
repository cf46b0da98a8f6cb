"""The type registry: loaders by type OID, dumpers by Python type, cascading to a parent.

A root registry (no parent) holds the built-in types; ``default_registry`` is the global
root, and a per-connection registry is ``TypeRegistry(parent=default_registry)``, which
sees every later change of its parent. Loaders for arrays, ranges, multiranges, domains
and composites are derived on demand from their element, subtype, base or field loaders,
so overriding the loader of ``int4`` also changes how ``int4[]`` loads.
"""

from __future__ import annotations

import re
from collections import namedtuple
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, Callable, Iterable, Literal, Sequence, overload
from uuid import UUID

import attrs

from neon_proto.errors import DataError, ProgrammingError
from neon_proto.types import geometry, numeric, strings, temporal
from neon_proto.types.array import (
    make_binary_array_loader,
    make_text_array_loader,
    write_array_text,
)
from neon_proto.types.catalog import ARRAY_ELEMENT_OID, BUILTIN_BY_OID, builtin_oid
from neon_proto.types.composite import (
    load_record,
    make_binary_composite_loader,
    make_binary_record_loader,
    make_text_composite_loader,
    write_composite_text,
)
from neon_proto.types.hstore import load_hstore, load_hstore_binary
from neon_proto.types.jsontypes import Json, dump_json, load_json, load_jsonb_binary
from neon_proto.types.network import (
    dump_cidr,
    dump_inet,
    load_cidr,
    load_cidr_binary,
    load_inet,
    load_inet_binary,
)
from neon_proto.types.range import (
    RANGE_OID_BY_SUBTYPE_OID,
    Range,
    make_binary_multirange_loader,
    make_binary_range_loader,
    make_text_multirange_loader,
    make_text_range_loader,
    write_range_text,
)

__all__ = [
    "Loader",
    "Dumper",
    "ParamDumper",
    "TypeInfo",
    "TypeRegistry",
    "default_registry",
    "make_row_decoder",
    "TEXT_PREFERRED_OIDS",
    "FIXED_WIDTH_BINARY",
]

Loader = Callable[[bytes], Any]
"""Decodes one non-NULL cell; NULL never reaches a loader."""

Dumper = Callable[[Any], bytes]
"""Encodes one non-None value to its data, for a fixed OID and format."""

ParamDumper = Callable[[Any], tuple[int, int, bytes]]
"""Encodes one non-None value to ``(type oid or 0, format, data)``."""

TypeKind = Literal["base", "enum", "composite", "domain", "range"]

_NULL_PARAM: tuple[int, int, None] = (0, 0, None)
_RECORD_OID = 2249
_INTEGER_OIDS = (23, 20, 1700)  # what ints dump as, narrowest first

# Types with a binary loader whose result differs from the text one (reg* are names in text
# but OIDs in binary; money's binary scale depends on the locale; record fields are str in
# text but typed in binary): ``has_binary_loader`` answers False for them so transports ask
# for text and every transport (SQL over HTTP is text only) gives the same values.
TEXT_PREFERRED_OIDS: frozenset[int] = frozenset(
    {24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191, 790, 2249}
)

# Binary element loaders of fixed width, by the struct code that decodes the same value:
# arrays of them without NULLs unpack in one pass.
_FIXED_WIDTH: dict[Loader, str] = {
    numeric.load_bool_binary: "?",
    numeric.load_int2_binary: "h",
    numeric.load_int4_binary: "i",
    numeric.load_int8_binary: "q",
    numeric.load_oid_binary: "I",
    numeric.load_float4_binary: "f",
    numeric.load_float8_binary: "d",
}

# Binary loaders of fixed width for whole rows: the struct code of the value and, where the
# unpacked number is not yet the value, the function making it one. A DataRow's run of such
# columns unpacks in one struct call (neon_proto.results.make_row_parser).
FIXED_WIDTH_BINARY: dict[Loader, tuple[str, Callable[[Any], Any] | None]] = {
    **{loader: (code, None) for loader, code in _FIXED_WIDTH.items()},
    temporal.load_date_binary: ("i", temporal.date_from_days),
    temporal.load_time_binary: ("q", temporal.time_from_micros),
    temporal.load_timestamp_binary: ("q", temporal.timestamp_from_micros),
    temporal.load_timestamptz_binary: ("q", temporal.timestamptz_from_micros),
    strings.load_uuid_binary: ("16s", strings.uuid_from_bytes),
}

# Types whose built-in binary loader gives the same value as the built-in text loader, and
# reads it faster (one struct call per run of such columns): when a statement's column types
# are known, its results come in binary for these (``TypeRegistry.fast_result_formats``).
# Not float4 (its text is the shortest decimal that reads back to the float4, which as a
# Python float differs from the exact binary value), nor timestamptz unless the session's
# TimeZone is UTC (text keeps the session's offset, binary gives UTC).
_FAST_BINARY_PAIRS: dict[int, tuple[Loader, Loader]] = {
    16: (numeric.load_bool, numeric.load_bool_binary),
    20: (numeric.load_int, numeric.load_int8_binary),
    21: (numeric.load_int, numeric.load_int2_binary),
    23: (numeric.load_int, numeric.load_int4_binary),
    26: (numeric.load_int, numeric.load_oid_binary),
    701: (numeric.load_float, numeric.load_float8_binary),
    1082: (temporal.load_date, temporal.load_date_binary),
    1083: (temporal.load_time, temporal.load_time_binary),
    1114: (temporal.load_timestamp, temporal.load_timestamp_binary),
    1184: (temporal.load_timestamptz, temporal.load_timestamptz_binary),
    2950: (strings.load_uuid, strings.load_uuid_binary),
}
_TIMESTAMPTZ_OID = 1184

# The built-in binary loaders of TEXT_PREFERRED_OIDS types.
_TEXT_PREFERRED_BUILTINS = (numeric.load_oid_binary, numeric.load_money_binary)

# Bumped by every registration anywhere, so child registries drop caches built from a
# parent that has changed since.
_generation = [0]


def _tuple_of_str(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _tuple_of_int(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen
class TypeInfo:
    """What the caller read from ``pg_type`` (and ``pg_attribute``/``pg_range``/``pg_enum``).

    - ``kind="enum"``: loads as str (or a member of the Enum given as factory); ``labels``
      is informative.
    - ``kind="composite"``: ``field_names`` and ``field_oids`` in attribute order.
    - ``kind="domain"``: ``base_oid`` is the type the domain is over.
    - ``kind="range"``: ``subtype_oid``; ``multirange_oid``/``multirange_array_oid`` if any.
    - ``kind="base"``: extension types recognized by name: "hstore", "citext".
    """

    name: str
    oid: int
    array_oid: int = 0
    kind: TypeKind = attrs.field(default="base")
    delimiter: str = ","
    field_names: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)
    field_oids: tuple[int, ...] = attrs.field(default=(), converter=_tuple_of_int)
    base_oid: int = 0
    subtype_oid: int = 0
    multirange_oid: int = 0
    multirange_array_oid: int = 0
    labels: tuple[str, ...] = attrs.field(default=(), converter=_tuple_of_str)

    @kind.validator
    def _check_kind(self, attribute: Any, value: str) -> None:
        if value not in ("base", "enum", "composite", "domain", "range"):
            raise ValueError(f"unknown type kind {value!r}")

    def __attrs_post_init__(self) -> None:
        if len(self.field_names) != len(self.field_oids):
            raise ValueError("field_names and field_oids must have the same length")


@attrs.frozen
class _Contextual:
    """A dumper that needs the registry it is resolved in (arrays, ranges, composites, dicts)."""

    make: Callable[["TypeRegistry"], ParamDumper]


_BUILTIN_RANGES = (
    TypeInfo("int4range", 3904, 3905, "range", subtype_oid=23,
             multirange_oid=4451, multirange_array_oid=6150),
    TypeInfo("int8range", 3926, 3927, "range", subtype_oid=20,
             multirange_oid=4536, multirange_array_oid=6157),
    TypeInfo("numrange", 3906, 3907, "range", subtype_oid=1700,
             multirange_oid=4532, multirange_array_oid=6151),
    TypeInfo("daterange", 3912, 3913, "range", subtype_oid=1082,
             multirange_oid=4535, multirange_array_oid=6155),
    TypeInfo("tsrange", 3908, 3909, "range", subtype_oid=1114,
             multirange_oid=4533, multirange_array_oid=6152),
    TypeInfo("tstzrange", 3910, 3911, "range", subtype_oid=1184,
             multirange_oid=4534, multirange_array_oid=6153),
)  # fmt: skip


class TypeRegistry:
    """Loaders by OID and format, dumpers by Python type; misses cascade to ``parent``.

    ``TypeRegistry()`` is a root holding the built-in types; ``TypeRegistry(parent=r)``
    starts empty and defers to ``r`` for everything it does not register itself.
    Options, inherited from the parent at creation:

    - ``dict_as_jsonb``: send dicts as jsonb (else a dict raises ProgrammingError).
    - ``int4_params`` (default True): send ints that fit in 32 bits as int4 rather than
      int8, so that functions taking integer resolve (``substr(s, $1)`` has no bigint
      version); larger ints go as int8, then numeric. False sends every int as int8.
    """

    def __init__(self, parent: TypeRegistry | None = None) -> None:
        self.parent = parent
        self.dict_as_jsonb: bool = parent.dict_as_jsonb if parent is not None else False
        self._int4_params: bool = parent._int4_params if parent is not None else True
        self._text_loaders: dict[int, Loader] = {}
        self._binary_loaders: dict[int, Loader] = {}
        self._dumpers: dict[type, ParamDumper | _Contextual] = {}
        self._infos_by_oid: dict[int, tuple[TypeInfo, str]] = {}
        self._infos_by_name: dict[str, TypeInfo] = {}
        self._factories: dict[int, Callable[..., Any]] = {}
        self._chain: tuple[TypeRegistry, ...] = (self,) + (parent._chain if parent else ())
        self._gen = -1
        self._loader_cache: dict[tuple[int, int, bool], Loader | None] = {}
        self._format_cache: dict[tuple[tuple[int, ...], bool], tuple[int, ...]] = {}
        self._dump_cache: dict[type, ParamDumper] = {}
        if parent is None:
            _install_builtins(self)

    @property
    def int4_params(self) -> bool:
        """Whether ints that fit in 32 bits are sent as int4 (default: int8)."""
        return self._int4_params

    @int4_params.setter
    def int4_params(self, value: bool) -> None:
        self._int4_params = value
        self._changed()

    # --- loading --------------------------------------------------------------------------

    def get_loader(self, oid: int, format: int = 0) -> Loader:
        """The loader for a column of this type in this format (0 text, 1 binary).

        Never fails: an unknown type loads as str in text format, and in binary format as
        str when the bytes are UTF-8, else as bytes.
        """
        if self._gen != _generation[0]:
            self._clear_caches()
        key = (oid, format, False)
        try:
            loader = self._loader_cache[key]
        except KeyError:
            loader = self._resolve_loader(oid, format, False)
            if loader is None:
                loader = strings.load_unknown_binary if format else strings.load_text
            self._loader_cache[key] = loader
        return loader  # type: ignore[return-value]

    def has_binary_loader(self, oid: int) -> bool:
        """Whether this type has a binary loader giving the same values as the text one.

        Transports use it to choose each result column's format.
        """
        if self._gen != _generation[0]:
            self._clear_caches()
        key = (oid, 1, True)
        try:
            loader = self._loader_cache[key]
        except KeyError:
            loader = self._loader_cache[key] = self._resolve_loader(oid, 1, True)
        return loader is not None

    def fast_result_formats(self, oids: Sequence[int], utc: bool) -> tuple[int, ...]:
        """Result formats for a statement whose column types are known (a prepared one).

        Binary (1) for the columns whose binary form loads to the same value faster, text (0)
        for the others; ``()`` (all text) when no column gains. A type whose text or binary
        loader was replaced stays text. ``utc``: the session's TimeZone is UTC (see above).
        """
        if self._gen != _generation[0]:
            self._clear_caches()
        key = (tuple(oids), utc)
        formats = self._format_cache.get(key)
        if formats is None:
            chosen = []
            for oid in key[0]:
                pair = _FAST_BINARY_PAIRS.get(oid)
                fast = (
                    pair is not None
                    and (utc or oid != _TIMESTAMPTZ_OID)
                    and self.get_loader(oid, 0) is pair[0]
                    and self.get_loader(oid, 1) is pair[1]
                )
                chosen.append(1 if fast else 0)
            formats = tuple(chosen) if any(chosen) else ()
            if len(self._format_cache) >= 512:
                self._format_cache.clear()
            self._format_cache[key] = formats
        return formats

    def register_loader(self, oid_or_name: int | str, loader: Loader, *, format: int = 0) -> None:
        """Use ``loader`` for this type in this format (0 text, 1 binary).

        Names are built-in type names ("int4", "_int4", "int4[]") or the names of types
        registered with ``register_type_info``.
        """
        oid = self.oid_of(oid_or_name) if isinstance(oid_or_name, str) else oid_or_name
        (self._binary_loaders if format else self._text_loaders)[oid] = loader
        self._changed()

    def _sub(self, oid: int, fmt: int, strict: bool) -> Loader | None:
        if strict:
            key = (oid, fmt, True)
            if key not in self._loader_cache:
                self._loader_cache[key] = self._resolve_loader(oid, fmt, True)
            return self._loader_cache[key]
        return self.get_loader(oid, fmt)

    def _resolve_loader(self, oid: int, fmt: int, strict: bool) -> Loader | None:
        if strict and oid in TEXT_PREFERRED_OIDS:
            # Only the built-in binary loaders of these types are passed over.
            for reg in self._chain:
                loader = reg._binary_loaders.get(oid)
                if loader is not None:
                    return None if loader in _TEXT_PREFERRED_BUILTINS else loader
            return None
        for reg in self._chain:
            loader = (reg._binary_loaders if fmt else reg._text_loaders).get(oid)
            if loader is not None:
                return loader
            entry = reg._infos_by_oid.get(oid)
            if entry is not None:
                return self._derive_loader(entry[0], entry[1], fmt, strict)
        elem = ARRAY_ELEMENT_OID.get(oid)
        if elem is not None:
            return self._array_loader(elem, BUILTIN_BY_OID[elem].delimiter, fmt, strict)
        if oid == _RECORD_OID and fmt:
            return make_binary_record_loader(self.get_loader)
        return None

    def _array_loader(self, elem_oid: int, delimiter: str, fmt: int, strict: bool) -> Loader | None:
        elem = self._sub(elem_oid, fmt, strict)
        if elem is None:
            return None
        if fmt:
            return make_binary_array_loader(elem, _FIXED_WIDTH.get(elem))
        return make_text_array_loader(elem, delimiter)

    def _derive_loader(self, info: TypeInfo, role: str, fmt: int, strict: bool) -> Loader | None:
        if role == "array":
            return self._array_loader(info.oid, info.delimiter, fmt, strict)
        if role == "multirange_array":
            return self._array_loader(info.multirange_oid, ",", fmt, strict)
        if role == "multirange":
            sub = self._sub(info.subtype_oid, fmt, strict)
            if sub is None:
                return None
            return make_binary_multirange_loader(sub) if fmt else make_text_multirange_loader(sub)
        kind = info.kind
        if kind == "range":
            sub = self._sub(info.subtype_oid, fmt, strict)
            if sub is None:
                return None
            return make_binary_range_loader(sub) if fmt else make_text_range_loader(sub)
        if kind == "domain":
            return self._sub(info.base_oid, fmt, strict)
        if kind == "enum":
            enum_factory = self._factory(info.oid)
            if enum_factory is None:
                return strings.load_text
            return _enum_loader(info.name, enum_factory)
        if kind == "composite":
            subs = [self._sub(o, fmt, strict) for o in info.field_oids]
            if any(s is None for s in subs):
                return None
            loaders: list[Loader] = [s for s in subs if s is not None]
            row_factory: Callable[..., Any] = self._factory(info.oid) or tuple
            if fmt:
                return make_binary_composite_loader(loaders, row_factory)
            return make_text_composite_loader(loaders, row_factory)
        if info.name == "hstore":
            return load_hstore_binary if fmt else load_hstore
        if info.name == "citext":
            return strings.load_text
        return None

    def _factory(self, oid: int) -> Callable[..., Any] | None:
        for reg in self._chain:
            factory = reg._factories.get(oid)
            if factory is not None:
                return factory
        return None

    # --- type information -----------------------------------------------------------------

    def register_type_info(self, info: TypeInfo, *, factory: Callable[..., Any] | None = None) -> None:
        """Make a user or extension type known: its loaders (and its array's) follow from it.

        For a composite, ``factory`` builds the Python value from the fields (positional
        arguments); by default a namedtuple class is made for the type. Instances of a
        factory that is a class are then dumped as this composite. For an enum, a factory
        that is an Enum class loads labels as its members (by name) and dumps them with the
        enum's OID.
        """
        self._infos_by_oid[info.oid] = (info, "type")
        if info.array_oid:
            self._infos_by_oid[info.array_oid] = (info, "array")
        if info.multirange_oid:
            self._infos_by_oid[info.multirange_oid] = (info, "multirange")
        if info.multirange_array_oid:
            self._infos_by_oid[info.multirange_array_oid] = (info, "multirange_array")
        self._infos_by_name[info.name] = info
        if info.kind == "composite":
            row_factory: Callable[..., Any] = factory or namedtuple(
                _identifier(info.name), [_identifier(n) for n in info.field_names], rename=True
            )
            self._factories[info.oid] = row_factory
            if isinstance(row_factory, type) and row_factory is not tuple:
                self._dumpers[row_factory] = _Contextual(lambda reg: reg._composite_dumper(info))
        elif info.kind == "enum" and factory is not None:
            self._factories[info.oid] = factory
            if isinstance(factory, type) and issubclass(factory, Enum):
                oid = info.oid

                def dump_enum_member(value: Enum) -> tuple[int, int, bytes]:
                    return (oid, 0, value.name.encode())

                self._dumpers[factory] = dump_enum_member
        self._changed()

    def get_type_info(self, oid_or_name: int | str) -> TypeInfo | None:
        """The TypeInfo registered (here or in a parent) for a type OID or name."""
        for reg in self._chain:
            if isinstance(oid_or_name, str):
                info = reg._infos_by_name.get(oid_or_name)
            else:
                entry = reg._infos_by_oid.get(oid_or_name)
                info = entry[0] if entry is not None and entry[1] == "type" else None
            if info is not None:
                return info
        return None

    def get_factory(self, oid_or_name: int | str) -> Callable[..., Any] | None:
        """The Python class (or factory) values of a composite or enum type load as."""
        oid = self.oid_of(oid_or_name) if isinstance(oid_or_name, str) else oid_or_name
        return self._factory(oid)

    def oid_of(self, name: str) -> int:
        """The OID of a type name: built in, or registered with ``register_type_info``.

        Array types can be named "_name" or "name[]". Raises ProgrammingError if unknown.
        """
        try:
            return builtin_oid(name)
        except KeyError:
            pass
        info = self.get_type_info(name)
        if info is not None:
            return info.oid
        for prefix, suffix in (("_", ""), ("", "[]")):
            if name.startswith(prefix) and name.endswith(suffix) and name != prefix + suffix:
                info = self.get_type_info(name[len(prefix) : len(name) - len(suffix)])
                if info is not None and info.array_oid:
                    return info.array_oid
        raise ProgrammingError(
            f"unknown type name {name!r}: register its TypeInfo (from pg_type) first"
        )

    def _array_oid(self, elem_oid: int) -> int:
        builtin = BUILTIN_BY_OID.get(elem_oid)
        if builtin is not None:
            return builtin.array_oid
        for reg in self._chain:
            entry = reg._infos_by_oid.get(elem_oid)
            if entry is not None:
                info, role = entry
                if role == "type":
                    return info.array_oid
                if role == "multirange":
                    return info.multirange_array_oid
                return 0
        return 0

    def _delimiter(self, elem_oid: int) -> bytes:
        builtin = BUILTIN_BY_OID.get(elem_oid)
        if builtin is not None:
            return builtin.delimiter.encode()
        info = self.get_type_info(elem_oid)
        return info.delimiter.encode() if info is not None else b","

    # --- dumping --------------------------------------------------------------------------

    def dump(self, value: Any) -> tuple[int, int, bytes | None]:
        """A query parameter: ``(type oid or 0 to let the server infer, format, data)``.

        None gives ``(0, 0, None)``. Raises ProgrammingError for a type with no dumper,
        DataError for a value Postgres cannot hold (a str with NUL).
        """
        if value is None:
            return _NULL_PARAM
        if self._gen != _generation[0]:
            self._clear_caches()
        dumper = self._dump_cache.get(type(value))
        if dumper is None:
            dumper = self._resolve_dumper(type(value))
        return dumper(value)

    def literal_text(self, value: Any) -> str | None:
        """A parameter as the Postgres text form, for transports whose parameters are strings.

        Same values as ``dump``: bytes as ``\\x<hex>``, lists as array literals, datetimes
        ISO with offset, bool as "true"/"false". None gives None.
        """
        if value is None:
            return None
        if value is True or value is False:
            return "true" if value else "false"
        return self._dump_text(value)[1].decode()

    @overload
    def register_dumper(self, python_type: type, dumper: ParamDumper) -> None: ...

    @overload
    def register_dumper(
        self, python_type: type, dumper: Dumper, *, oid: int | str, format: int = 0
    ) -> None: ...

    def register_dumper(
        self,
        python_type: type,
        dumper: Callable[[Any], Any],
        *,
        oid: int | str | None = None,
        format: int = 0,
    ) -> None:
        """Dump values of ``python_type`` (and subclasses without their own) with ``dumper``.

        Without ``oid``, ``dumper(value)`` returns ``(oid, format, data)`` and can choose
        the type per value. With ``oid`` (an OID or type name), ``dumper(value)`` returns
        just the data, sent with that OID and ``format``. Text-format dumpers also serve
        ``literal_text`` and values inside arrays, ranges and composites.
        """
        if oid is None:
            self._dumpers[python_type] = dumper
        else:
            fixed = (self.oid_of(oid) if isinstance(oid, str) else oid, format)

            def dump_with_oid(value: Any) -> tuple[int, int, bytes]:
                return (fixed[0], fixed[1], dumper(value))

            self._dumpers[python_type] = dump_with_oid
        self._changed()

    def _resolve_dumper(self, cls: type) -> ParamDumper:
        for klass in cls.__mro__:
            for reg in self._chain:
                found = reg._dumpers.get(klass)
                if found is not None:
                    dumper = found.make(self) if isinstance(found, _Contextual) else found
                    self._dump_cache[cls] = dumper
                    return dumper
        raise ProgrammingError(
            f"cannot adapt type {cls.__name__!r} to a Postgres parameter; "
            "register a dumper for it with TypeRegistry.register_dumper()"
        )

    def _dump_text(self, value: Any) -> tuple[int, bytes]:
        """A non-None value's type OID and text form, for literals and nested values."""
        oid, fmt, data = self.dump(value)
        assert data is not None
        if not fmt:
            return oid, data
        if isinstance(value, (bytes, bytearray, memoryview)):
            return oid, strings.bytes_text(value)
        raise ProgrammingError(
            f"the dumper for {type(value).__name__!r} gives binary data, which cannot go "
            "in a text literal (arrays, ranges, composites, literal_text)"
        )

    def _dump_list(self, value: list[Any]) -> tuple[int, int, bytes]:
        oids: set[int] = set()

        def elem_text(item: Any) -> bytes:
            oid, data = self._dump_text(item)
            oids.add(oid)
            return data

        data = write_array_text(value, elem_text)
        if len(oids) == 1:
            elem_oid = oids.pop()
        elif oids and oids.issubset(_INTEGER_OIDS):
            elem_oid = max(oids, key=_INTEGER_OIDS.index)  # the widest
        else:
            return (0, 0, data)
        if not elem_oid:
            return (0, 0, data)
        delim = self._delimiter(elem_oid)
        if delim != b",":
            data = write_array_text(value, lambda item: self._dump_text(item)[1], delim)
        return (self._array_oid(elem_oid), 0, data)

    def _dump_range(self, value: Range[Any]) -> tuple[int, int, bytes]:
        oids: set[int] = set()

        def bound_text(bound: Any) -> bytes:
            oid, data = self._dump_text(bound)
            oids.add(oid)
            return data

        data = write_range_text(value, bound_text)
        oid = RANGE_OID_BY_SUBTYPE_OID.get(oids.pop(), 0) if len(oids) == 1 else 0
        return (oid, 0, data)

    def _dump_dict(self, value: dict[Any, Any]) -> tuple[int, int, bytes]:
        if not self.dict_as_jsonb:
            raise ProgrammingError(
                "cannot adapt a dict: wrap it as Json(value) to send jsonb, "
                "or set dict_as_jsonb = True on the type registry"
            )
        return dump_json(Json(value))

    def _composite_dumper(self, info: TypeInfo) -> ParamDumper:
        names = info.field_names
        oid = info.oid

        def field_text(item: Any) -> bytes:
            return self._dump_text(item)[1]

        def dump_composite(value: Any) -> tuple[int, int, bytes]:
            fields = value if isinstance(value, tuple) else [getattr(value, n) for n in names]
            return (oid, 0, write_composite_text(fields, field_text))

        return dump_composite

    # --- housekeeping ---------------------------------------------------------------------

    def copy(self) -> TypeRegistry:
        """An independent registry with the same registrations, options and parent."""
        new = TypeRegistry(self.parent)
        new.dict_as_jsonb = self.dict_as_jsonb
        new._int4_params = self._int4_params
        new._text_loaders = dict(self._text_loaders)
        new._binary_loaders = dict(self._binary_loaders)
        new._dumpers = dict(self._dumpers)
        new._infos_by_oid = dict(self._infos_by_oid)
        new._infos_by_name = dict(self._infos_by_name)
        new._factories = dict(self._factories)
        return new

    def _changed(self) -> None:
        _generation[0] += 1

    @property
    def generation(self) -> int:
        """Changes whenever any registry gains a loader, dumper or type: for caches built on one."""
        return _generation[0]

    def _clear_caches(self) -> None:
        self._loader_cache.clear()
        self._format_cache.clear()
        self._dump_cache.clear()
        self._gen = _generation[0]


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name.strip('"'))
    return ident if ident and not ident[0].isdigit() else "_" + ident


def _enum_loader(type_name: str, factory: Callable[..., Any]) -> Loader:
    make: Callable[..., Any] = factory
    if isinstance(factory, type) and issubclass(factory, Enum):
        members = dict(factory.__members__)

        def load_enum_member(data: bytes) -> Any:
            label = data.decode()
            try:
                return members[label]
            except KeyError:
                raise DataError(f"bad label for enum {type_name}: {label!r}") from None

        return load_enum_member

    def load_enum_with_factory(data: bytes) -> Any:
        return make(data.decode())

    return load_enum_with_factory


def _dump_enum(value: Enum) -> tuple[int, int, bytes]:
    """Enum members by name with OID 0, as psycopg does: the server casts to the column's enum."""
    return (0, 0, value.name.encode())


def _tid_binary(data: bytes) -> str:
    return f"({int.from_bytes(data[:4], 'big')},{int.from_bytes(data[4:6], 'big')})"


def _uint_as_str_binary(data: bytes) -> str:
    return str(int.from_bytes(data, "big"))


def _install_builtins(reg: TypeRegistry) -> None:
    """Fill a root registry with the built-in loaders and dumpers."""
    text = strings.load_text
    t = reg._text_loaders
    b = reg._binary_loaders

    t[16] = numeric.load_bool
    b[16] = numeric.load_bool_binary
    for oid in (20, 21, 23, 26):
        t[oid] = numeric.load_int
    b[20] = numeric.load_int8_binary
    b[21] = numeric.load_int2_binary
    b[23] = numeric.load_int4_binary
    b[26] = numeric.load_oid_binary
    t[700] = t[701] = numeric.load_float
    b[700] = numeric.load_float4_binary
    b[701] = numeric.load_float8_binary
    t[1700] = numeric.load_numeric
    b[1700] = numeric.load_numeric_binary
    t[790] = numeric.load_money
    b[790] = numeric.load_money_binary

    # Text-like: the binary form is the text itself.
    for oid in (25, 1043, 1042, 19, 705, 142, 2275, 1790):
        t[oid] = b[oid] = text
    t[18] = text
    b[18] = strings.load_char_binary
    # Shown as text by psycopg too; binary loaders rebuild the same text.
    for oid in (22, 27, 28, 29, 30, 774, 829, 1560, 1562, 3220, 3614, 3615, 4072, 5069, 1033):
        t[oid] = text
    b[4072] = strings.load_versioned_text_binary
    b[774] = b[829] = strings.load_macaddr_binary
    b[1560] = b[1562] = strings.load_bit_binary
    b[3220] = strings.load_pg_lsn_binary
    b[27] = _tid_binary
    b[28] = b[29] = b[5069] = _uint_as_str_binary
    # reg* types: the name in text format, the OID in binary (see TEXT_PREFERRED_OIDS).
    for oid in (24, 2202, 2203, 2204, 2205, 2206, 3734, 3769, 4089, 4096, 4191):
        t[oid] = text
        b[oid] = numeric.load_oid_binary

    t[17] = strings.load_bytea
    b[17] = strings.load_bytea_binary
    t[2950] = strings.load_uuid
    b[2950] = strings.load_uuid_binary
    t[114] = b[114] = t[3802] = load_json
    b[3802] = load_jsonb_binary

    t[1082] = temporal.load_date
    b[1082] = temporal.load_date_binary
    t[1083] = temporal.load_time
    b[1083] = temporal.load_time_binary
    t[1266] = temporal.load_timetz
    b[1266] = temporal.load_timetz_binary
    t[1114] = temporal.load_timestamp
    b[1114] = temporal.load_timestamp_binary
    t[1184] = temporal.load_timestamptz
    b[1184] = temporal.load_timestamptz_binary
    t[1186] = temporal.load_interval
    b[1186] = temporal.load_interval_binary

    t[869] = load_inet
    b[869] = load_inet_binary
    t[650] = load_cidr
    b[650] = load_cidr_binary

    t.update(geometry.GEOMETRY_TEXT_LOADERS)
    b.update(geometry.GEOMETRY_BINARY_LOADERS)

    t[_RECORD_OID] = load_record
    for info in _BUILTIN_RANGES:
        reg._infos_by_oid[info.oid] = (info, "type")
        reg._infos_by_oid[info.array_oid] = (info, "array")
        reg._infos_by_oid[info.multirange_oid] = (info, "multirange")
        reg._infos_by_oid[info.multirange_array_oid] = (info, "multirange_array")

    d = reg._dumpers
    d[bool] = numeric.dump_bool
    d[int] = _Contextual(lambda r: numeric.dump_int_narrow if r.int4_params else numeric.dump_int)
    d[float] = numeric.dump_float
    d[Decimal] = numeric.dump_decimal
    d[str] = strings.dump_str
    d[bytes] = d[bytearray] = d[memoryview] = strings.dump_bytes
    d[UUID] = strings.dump_uuid
    d[date] = temporal.dump_date
    d[time] = temporal.dump_time
    d[datetime] = temporal.dump_datetime
    d[timedelta] = temporal.dump_timedelta
    d[IPv4Address] = d[IPv6Address] = d[IPv4Interface] = d[IPv6Interface] = dump_inet
    d[IPv4Network] = d[IPv6Network] = dump_cidr
    d[Enum] = _dump_enum
    d[Json] = dump_json
    d.update(geometry.GEOMETRY_DUMPERS)
    d[list] = _Contextual(lambda r: r._dump_list)
    d[Range] = _Contextual(lambda r: r._dump_range)
    d[dict] = _Contextual(lambda r: r._dump_dict)


def make_row_decoder(
    registry: TypeRegistry, oids: Sequence[int], formats: Sequence[int]
) -> list[Loader]:
    """One loader per column, computed once per result.

    ``formats`` follows the protocol: empty means all text, one entry applies to all.
    """
    if len(formats) <= 1:
        fmt = formats[0] if formats else 0
        return [registry.get_loader(oid, fmt) for oid in oids]
    return [registry.get_loader(oid, fmt) for oid, fmt in zip(oids, formats)]


default_registry = TypeRegistry()
"""The global registry: built-in types plus whatever is registered on it."""
