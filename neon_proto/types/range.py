"""Ranges and multiranges: the ``Range`` value, loaders around a subtype loader, the literal writer.

A multirange loads as ``list[Range]``.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Callable, Generic, TypeVar

import attrs

from neon_proto.errors import DataError

__all__ = [
    "Range",
    "make_text_range_loader",
    "make_binary_range_loader",
    "make_text_multirange_loader",
    "make_binary_multirange_loader",
    "write_range_text",
    "RANGE_OID_BY_SUBTYPE_OID",
]

Loader = Callable[[bytes], Any]
T = TypeVar("T")

_BOUNDS = ("[)", "(]", "()", "[]")


def _check_bounds(instance: Any, attribute: Any, value: str) -> None:
    if value not in _BOUNDS:
        raise ValueError(f"bounds must be one of {', '.join(_BOUNDS)}, got {value!r}")


@attrs.frozen
class Range(Generic[T]):
    """A Postgres range: ``lower``/``upper`` (None = unbounded), ``bounds`` like "[)".

    An empty range has ``isempty`` set, both bounds None and bounds "()"; build it with
    ``Range.empty()``. Discrete ranges come back from the server normalized to "[)".
    """

    lower: T | None = None
    upper: T | None = None
    bounds: str = attrs.field(default="[)", validator=_check_bounds)
    isempty: bool = False

    def __attrs_post_init__(self) -> None:
        if self.isempty:
            object.__setattr__(self, "lower", None)
            object.__setattr__(self, "upper", None)
            object.__setattr__(self, "bounds", "()")

    @classmethod
    def empty(cls) -> "Range[Any]":
        """The empty range."""
        return _EMPTY

    @property
    def lower_inc(self) -> bool:
        """Whether the lower bound is included (never for an unbounded side)."""
        return self.lower is not None and self.bounds[0] == "["

    @property
    def upper_inc(self) -> bool:
        """Whether the upper bound is included (never for an unbounded side)."""
        return self.upper is not None and self.bounds[1] == "]"

    @property
    def lower_inf(self) -> bool:
        """Whether the range is unbounded below."""
        return not self.isempty and self.lower is None

    @property
    def upper_inf(self) -> bool:
        """Whether the range is unbounded above."""
        return not self.isempty and self.upper is None

    def __bool__(self) -> bool:
        return not self.isempty

    def __contains__(self, x: Any) -> bool:
        if self.isempty:
            return False
        lower: Any = self.lower
        upper: Any = self.upper
        if lower is not None:
            if self.bounds[0] == "[":
                if x < lower:
                    return False
            elif x <= lower:
                return False
        if upper is not None:
            if self.bounds[1] == "]":
                if x > upper:
                    return False
            elif x >= upper:
                return False
        return True


_EMPTY: Range[Any] = Range(isempty=True)

# The range type a parameter gets from its bounds' type; ints get 0 (unknown) like psycopg,
# because int4range and int8range do not cast to each other.
RANGE_OID_BY_SUBTYPE_OID: dict[int, int] = {
    1700: 3906,  # numeric -> numrange
    1082: 3912,  # date -> daterange
    1114: 3908,  # timestamp -> tsrange
    1184: 3910,  # timestamptz -> tstzrange
}

# --- text ---------------------------------------------------------------------------------

_RANGE = re.compile(
    rb"""
    ([\[(])
    (?: "((?:[^"\\]|\\.|"")*)" | ([^",]*) )
    ,
    (?: "((?:[^"\\]|\\.|"")*)" | ([^"\])]*) )
    ([\])])
    """,
    re.VERBOSE | re.DOTALL,
)
_UNESCAPE = re.compile(rb'[\\"](.)', re.DOTALL)


def _bound(quoted: bytes | None, raw: bytes | None, sub: Loader) -> Any:
    if quoted is not None:
        return sub(_UNESCAPE.sub(rb"\1", quoted) if (0x5C in quoted or 0x22 in quoted) else quoted)
    if raw:
        return sub(_UNESCAPE.sub(rb"\1", raw) if 0x5C in raw else raw)
    return None


def _parse_range(data: bytes, pos: int, sub: Loader) -> tuple[Range[Any], int]:
    m = _RANGE.match(data, pos)
    if m is None:
        raise DataError(f"can't parse range {data.decode(errors='replace')!r}")
    lo_flag, lo_q, lo_raw, up_q, up_raw, up_flag = m.groups()
    r: Range[Any] = Range(
        _bound(lo_q, lo_raw, sub),
        _bound(up_q, up_raw, sub),
        (lo_flag + up_flag).decode(),
    )
    return r, m.end()


def make_text_range_loader(sub: Loader) -> Loader:
    """A loader for the text form of a range whose bounds ``sub`` loads."""

    def load_range(data: bytes) -> Range[Any]:
        if data == b"empty":
            return _EMPTY
        return _parse_range(data, 0, sub)[0]

    return load_range


def make_text_multirange_loader(sub: Loader) -> Loader:
    """A loader for the text form of a multirange ("{[1,3),[5,7)}") as a list of Range."""

    def load_multirange(data: bytes) -> list[Range[Any]]:
        out: list[Range[Any]] = []
        pos = 1
        end = len(data) - 1
        while pos < end:
            r, pos = _parse_range(data, pos, sub)
            out.append(r)
            if data[pos : pos + 1] == b",":
                pos += 1
        return out

    return load_multirange


# --- binary -------------------------------------------------------------------------------

_EMPTY_FLAG = 0x01
_LB_INC = 0x02
_UB_INC = 0x04
_LB_INF = 0x08
_UB_INF = 0x10
_unpack_int4_from = struct.Struct("!i").unpack_from


def _load_range_binary(data: bytes, sub: Loader) -> Range[Any]:
    flags = data[0]
    if flags & _EMPTY_FLAG:
        return _EMPTY
    pos = 1
    lower = upper = None
    if not flags & _LB_INF:
        size = _unpack_int4_from(data, pos)[0]
        lower = sub(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    if not flags & _UB_INF:
        size = _unpack_int4_from(data, pos)[0]
        upper = sub(data[pos + 4 : pos + 4 + size])
    bounds = ("[" if flags & _LB_INC else "(") + ("]" if flags & _UB_INC else ")")
    return Range(lower, upper, bounds)


def make_binary_range_loader(sub: Loader) -> Loader:
    """A loader for the binary form of a range whose bounds ``sub`` loads (binary)."""

    def load_range_binary(data: bytes) -> Range[Any]:
        return _load_range_binary(data, sub)

    return load_range_binary


def make_binary_multirange_loader(sub: Loader) -> Loader:
    """A loader for the binary form of a multirange as a list of Range."""

    def load_multirange_binary(data: bytes) -> list[Range[Any]]:
        count = _unpack_int4_from(data, 0)[0]
        pos = 4
        out: list[Range[Any]] = []
        for _ in range(count):
            size = _unpack_int4_from(data, pos)[0]
            out.append(_load_range_binary(data[pos + 4 : pos + 4 + size], sub))
            pos += 4 + size
        return out

    return load_multirange_binary


# --- writer -------------------------------------------------------------------------------

_NEEDS_QUOTE = re.compile(rb'[\\"()\[\],\s]|^$').search


def _quote_bound(text: bytes) -> bytes:
    if _NEEDS_QUOTE(text):
        return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'""') + b'"'
    return text


def write_range_text(value: Range[Any], bound_text: Callable[[Any], bytes]) -> bytes:
    """The range literal ("[1,5)", "empty", "(,)") with each bound written by ``bound_text``."""
    if value.isempty:
        return b"empty"
    lower = b"" if value.lower is None else _quote_bound(bound_text(value.lower))
    upper = b"" if value.upper is None else _quote_bound(bound_text(value.upper))
    return b"%c%s,%s%c" % (ord(value.bounds[0]), lower, upper, ord(value.bounds[1]))
