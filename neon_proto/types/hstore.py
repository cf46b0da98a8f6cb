"""hstore (an extension type, known by the name in its TypeInfo) as ``dict[str, str | None]``."""

from __future__ import annotations

import re
import struct
from typing import Mapping

from neon_proto.errors import DataError

__all__ = ["load_hstore", "load_hstore_binary", "write_hstore_text"]

_PAIR = re.compile(
    rb'"((?:[^"\\]|\\.)*)"\s*=>\s*(?:"((?:[^"\\]|\\.)*)"|(NULL))\s*(?:,\s*)?',
    re.DOTALL,
)
_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def _text(raw: bytes) -> str:
    return (_UNESCAPE.sub(rb"\1", raw) if 0x5C in raw else raw).decode()


def load_hstore(data: bytes) -> dict[str, str | None]:
    """hstore text: '"a"=>"1", "b"=>NULL'."""
    out: dict[str, str | None] = {}
    pos = 0
    end = len(data)
    while pos < end:
        m = _PAIR.match(data, pos)
        if m is None:
            raise DataError(f"can't parse hstore {data.decode(errors='replace')!r}")
        key, value, _ = m.groups()
        out[_text(key)] = None if value is None else _text(value)
        pos = m.end()
    return out


_unpack_int4_from = struct.Struct("!i").unpack_from


def load_hstore_binary(data: bytes) -> dict[str, str | None]:
    """hstore binary: int4 count, then int4-length-prefixed key and value (-1 for NULL)."""
    count = _unpack_int4_from(data, 0)[0]
    pos = 4
    out: dict[str, str | None] = {}
    for _ in range(count):
        size = _unpack_int4_from(data, pos)[0]
        key = data[pos + 4 : pos + 4 + size].decode()
        pos += 4 + size
        size = _unpack_int4_from(data, pos)[0]
        pos += 4
        if size < 0:
            out[key] = None
        else:
            out[key] = data[pos : pos + size].decode()
            pos += size
    return out


def _quote(s: str) -> bytes:
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def write_hstore_text(value: Mapping[str, str | None]) -> bytes:
    """The hstore literal of a mapping; register it as a dumper to send dicts as hstore."""
    return b", ".join(
        [_quote(k) + b"=>" + (b"NULL" if v is None else _quote(v)) for k, v in value.items()]
    )
