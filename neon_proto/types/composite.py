"""Composite types and anonymous records: text and binary loaders, and the row literal writer.

A registered composite loads as a namedtuple made for it (or the class the user gave);
an anonymous ``record`` loads as a plain tuple: of str in text format (the text form does
not say the field types), of loaded values in binary format (it does).
"""

from __future__ import annotations

import re
import struct
from typing import Any, Callable, Sequence

from neon_proto.errors import DataError

__all__ = [
    "parse_composite_text",
    "make_text_composite_loader",
    "make_binary_composite_loader",
    "make_binary_record_loader",
    "load_record",
    "write_composite_text",
]

Loader = Callable[[bytes], Any]

_QUOTED = re.compile(rb'"((?:[^"\\]|\\.|"")*)"', re.DOTALL)
_UNESCAPE = re.compile(rb'[\\"](.)', re.DOTALL)


def parse_composite_text(data: bytes) -> list[bytes | None]:
    """The fields of a row literal "(1,,"a b")" as raw bytes, None for NULL; "()" has none."""
    if data[:1] != b"(" or data[-1:] != b")":
        raise DataError(f"can't parse composite {data.decode(errors='replace')!r}")
    fields: list[bytes | None] = []
    pos = 1
    end = len(data) - 1
    if end == 1:
        return fields  # "()": no fields (or one NULL one; loaders pad with None)
    while True:
        if data[pos : pos + 1] == b'"':
            m = _QUOTED.match(data, pos)
            if m is None:
                raise DataError(f"can't parse composite {data.decode(errors='replace')!r}")
            body = m.group(1)
            fields.append(_UNESCAPE.sub(rb"\1", body) if (0x5C in body or 0x22 in body) else body)
            pos = m.end()
            # A quoted part may be followed by more unquoted text; Postgres never sends it.
        else:
            comma = data.find(b",", pos, end)
            stop = end if comma == -1 else comma
            raw = data[pos:stop]
            fields.append(raw if raw else None)
            pos = stop
        if pos >= end:
            return fields
        pos += 1  # the comma


def load_record(data: bytes) -> tuple[str | None, ...]:
    """record text as a tuple of str (None for NULL)."""
    return tuple([None if f is None else f.decode() for f in parse_composite_text(data)])


def make_text_composite_loader(
    loaders: Sequence[Loader], factory: Callable[..., Any]
) -> Loader:
    """A loader for a composite's text form: each field by its loader, then ``factory(*fields)``."""
    loaders = tuple(loaders)
    nfields = len(loaders)

    def load_composite(data: bytes) -> Any:
        fields = parse_composite_text(data)
        if len(fields) < nfields:
            fields += [None] * (nfields - len(fields))
        return factory(
            *[None if f is None else load(f) for load, f in zip(loaders, fields)]
        )

    return load_composite


_unpack_int4_from = struct.Struct("!i").unpack_from
_unpack_field_head = struct.Struct("!Ii").unpack_from


def _binary_fields(data: bytes) -> list[tuple[int, bytes | None]]:
    count = _unpack_int4_from(data, 0)[0]
    pos = 4
    out: list[tuple[int, bytes | None]] = []
    for _ in range(count):
        oid, size = _unpack_field_head(data, pos)
        pos += 8
        if size < 0:
            out.append((oid, None))
        else:
            out.append((oid, data[pos : pos + size]))
            pos += size
    return out


def make_binary_composite_loader(
    loaders: Sequence[Loader], factory: Callable[..., Any]
) -> Loader:
    """A loader for a composite's binary form: int4 count, then (oid, int4 size, data) each."""
    loaders = tuple(loaders)

    def load_composite_binary(data: bytes) -> Any:
        fields = _binary_fields(data)
        return factory(
            *[None if f is None else load(f) for load, (_, f) in zip(loaders, fields)]
        )

    return load_composite_binary


def make_binary_record_loader(get_loader: Callable[[int, int], Loader]) -> Loader:
    """A loader for an anonymous record's binary form, each field loaded by the OID it carries."""

    def load_record_binary(data: bytes) -> tuple[Any, ...]:
        return tuple(
            [None if f is None else get_loader(oid, 1)(f) for oid, f in _binary_fields(data)]
        )

    return load_record_binary


_NEEDS_QUOTE = re.compile(rb'[\\"(),\s]|^$').search


def write_composite_text(values: Sequence[Any], field_text: Callable[[Any], bytes]) -> bytes:
    """The row literal of some values: NULL as nothing, "" for the empty string."""
    parts: list[bytes] = []
    for v in values:
        if v is None:
            parts.append(b"")
            continue
        t = field_text(v)
        if _NEEDS_QUOTE(t):
            t = b'"' + t.replace(b"\\", b"\\\\").replace(b'"', b'""') + b'"'
        parts.append(t)
    return b"(" + b",".join(parts) + b")"
