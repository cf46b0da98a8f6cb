"""Postgres text cells as JSON text, by Neon's rules, and the registry that applies them.

Raw mode (the JS driver's choice) makes every non-NULL cell a JSON string. Otherwise bool,
int2/int4 and finite floats become JSON values, json/jsonb are embedded as they are,
arrays become nested JSON arrays, and everything else is a string.

``TextCellRegistry`` is what a ``neon_proto`` session needs of a type registry: its
loaders turn each cell straight into its JSON text (so a row is serialised by joining)
and charge a ``ResponseBudget``, which notices an oversized response while rows stream in.
"""

from __future__ import annotations

from json.encoder import encode_basestring
from typing import Any, Callable

__all__ = [
    "ResponseBudget",
    "TextCellRegistry",
    "array_to_json",
    "json_string",
    "converter_for",
    "ARRAY_ELEMENT_TYPES",
]

json_string: Callable[[str], str] = encode_basestring
"""A str as a JSON string literal (non-ASCII kept, as serde_json writes it)."""

Converter = Callable[[str], str]

BOOL, INT2, INT4, FLOAT4, FLOAT8, JSON, JSONB = 16, 21, 23, 700, 701, 114, 3802
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})

# Built-in array type OID -> element type OID (from pg_type.typarray); others are looked up.
ARRAY_ELEMENT_TYPES: dict[int, int] = {
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1007: 23, 1008: 24, 1009: 25,
    1028: 26, 1010: 27, 1011: 28, 1012: 29, 199: 114, 143: 142, 1017: 600, 1018: 601, 1019: 602,
    1020: 603, 1027: 604, 629: 628, 651: 650, 1021: 700, 1022: 701, 719: 718, 791: 790,
    1040: 829, 1041: 869, 1014: 1042, 1015: 1043, 1182: 1082, 1183: 1083, 1115: 1114,
    1185: 1184, 1187: 1186, 1270: 1266, 1561: 1560, 1563: 1562, 1231: 1700, 2201: 1790,
    2951: 2950, 3807: 3802, 4073: 4072, 3643: 3614, 3645: 3615, 3905: 3904, 3907: 3906,
    3909: 3908, 3911: 3910, 3913: 3912, 3927: 3926, 1034: 1033, 775: 774, 2949: 2970,
    5039: 5038, 2211: 2206, 2207: 2202, 2208: 2203, 2209: 2204, 2210: 2205, 4097: 4096,
    4090: 4089, 3735: 3734, 3770: 3769, 4192: 4191, 1263: 2275, 2287: 2249, 271: 5069,
    6150: 4451, 6151: 4532, 6152: 4533, 6153: 4534, 6155: 4535, 6157: 4536,
}  # fmt: skip
_ARRAY_DELIMITERS = {1020: ";"}  # box[]: the only built-in type whose typdelim is not ","

# Built-in scalar OIDs whose non-raw JSON form is a string: anything below 16384 (the first
# user OID) that is neither special-cased above nor an array.
_FIRST_USER_OID = 16384


def _bool(text: str) -> str:
    return "true" if text == "t" else "false"


def _number(text: str) -> str:
    return text


def _float(text: str) -> str:
    return json_string(text) if text in _NON_FINITE else text


def _raw_json(text: str) -> str:
    return text


_SCALARS: dict[int, Converter] = {
    BOOL: _bool,
    INT2: _number,
    INT4: _number,
    FLOAT4: _float,
    FLOAT8: _float,
    JSON: _raw_json,
    JSONB: _raw_json,
}


def converter_for(oid: int, *, raw: bool, is_array: Callable[[int], bool] | None = None) -> Converter | None:
    """The text -> JSON text function for a column type, or None if the type is unknown.

    ``is_array`` answers for types that are not built in (e.g. arrays of enums); without
    it such types are unknown.
    """
    if raw:
        return json_string
    scalar = _SCALARS.get(oid)
    if scalar is not None:
        return scalar
    element = ARRAY_ELEMENT_TYPES.get(oid)
    if element is not None:
        convert = _SCALARS.get(element, json_string)
        delimiter = _ARRAY_DELIMITERS.get(oid, ",")
        return lambda text: array_to_json(text, convert, delimiter)
    if oid < _FIRST_USER_OID:
        return json_string
    if is_array is None:
        return None
    if is_array(oid):
        return lambda text: array_to_json(text, json_string, ",")
    return json_string


# ---------------------------------------------------------------------- arrays


def array_to_json(text: str, convert: Converter, delimiter: str = ",") -> str:
    """A Postgres array literal as a JSON array, elements converted by ``convert``.

    Bounds decoration (``[1:2]={...}``) is dropped, as JSON cannot carry it. Raises
    ValueError for unbalanced input.
    """
    if text.startswith("["):
        equals = text.find("=")
        if equals < 0:
            raise ValueError("unbalanced array")
        text = text[equals + 1 :]
    text = text.lstrip()
    out: list[str] = []
    end = _array(text, 0, convert, delimiter, out)
    if text[end:].strip():
        raise ValueError("unbalanced array")
    return "".join(out)


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def _array(text: str, i: int, convert: Converter, delimiter: str, out: list[str]) -> int:
    if i >= len(text) or text[i] != "{":
        raise ValueError("unbalanced array")
    i += 1
    out.append("[")
    j = _skip_space(text, i)
    if j < len(text) and text[j] == "}":
        out.append("]")
        return _skip_space(text, j + 1)
    first = True
    while True:
        if not first:
            out.append(",")
        first = False
        i = _item(text, i, convert, delimiter, out)
        if i < len(text) and text[i] == delimiter:
            i += 1
            continue
        break
    if i >= len(text) or text[i] != "}":
        raise ValueError("unbalanced array")
    out.append("]")
    return _skip_space(text, i + 1)


def _item(text: str, i: int, convert: Converter, delimiter: str, out: list[str]) -> int:
    i = _skip_space(text, i)
    if i < len(text) and text[i] == "{":
        return _array(text, i, convert, delimiter, out)
    if i < len(text) and text[i] == '"':
        chars: list[str] = []
        i += 1
        n = len(text)
        while True:
            if i >= n:
                raise ValueError("unbalanced quoted string")
            c = text[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                if i + 1 >= n:
                    raise ValueError("unbalanced quoted string")
                chars.append(text[i + 1])
                i += 2
                continue
            chars.append(c)
            i += 1
        out.append(convert("".join(chars)))
        return _skip_space(text, i)
    start = i
    n = len(text)
    while i < n and text[i] != delimiter and text[i] != "}":
        i += 1
    if i >= n:
        raise ValueError("unbalanced array")
    item = text[start:i].rstrip()
    out.append("null" if item == "NULL" else convert(item))
    return i


# ---------------------------------------------------------------------- the registry


class ResponseBudget:
    """Counts the bytes of a response as its cells arrive; calls back once past the limit."""

    __slots__ = ("limit", "used", "exceeded", "_on_exceeded")

    def __init__(self, limit: int, on_exceeded: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.used = 0
        self.exceeded = False
        self._on_exceeded = on_exceeded

    def charge(self, size: int) -> None:
        """Add ``size`` bytes; past the limit, mark the response as too large."""
        self.used += size
        if self.used > self.limit and not self.exceeded:
            self.exceeded = True
            if self._on_exceeded is not None:
                self._on_exceeded()


class TextCellRegistry:
    """A registry whose loaders turn text cells into JSON text and charge a budget.

    One registry serves every response on a connection (``start`` begins each one): the
    session caches its row parsers per registry, so a fresh registry per request would
    rebuild them every time. The loaders read the current budget when called.

    Types it cannot place yet (not built in, in non-raw mode, not in ``known_arrays``) load
    as plain text and are listed in ``pending``: the caller looks them up and finishes
    those cells with ``converter_for(oid, raw=False, is_array=...)``. Parameters are sent by
    the session as untyped text, so ``dump`` only serves callers that ask it.
    """

    def __init__(
        self, *, raw: bool, budget: ResponseBudget | None = None, known_arrays: dict[int, bool] | None = None
    ) -> None:
        self.raw = raw
        self.budget = budget if budget is not None else ResponseBudget(1 << 62)
        self.known_arrays = known_arrays if known_arrays is not None else {}
        self.pending: set[int] = set()
        self.conversion_failed = False

    def start(self, budget: ResponseBudget) -> None:
        """Begin a response: charge ``budget``, with nothing pending and nothing failed yet."""
        self.budget = budget
        self.pending = set()
        self.conversion_failed = False

    def dump(self, value: Any) -> tuple[int, int, bytes | None]:
        """An untyped text parameter (oid 0, text format)."""
        if value is None:
            return 0, 0, None
        return 0, 0, str(value).encode("utf-8")

    def get_loader(self, oid: int, format: int = 0) -> Callable[[bytes], Any]:
        """A loader giving the cell's JSON text (or its plain text, for a pending type)."""
        convert = converter_for(oid, raw=self.raw)
        if convert is None:
            return self._user_type_loader(oid)
        registry = self

        def load(data: bytes) -> str:
            budget = registry.budget
            if budget.exceeded:
                return "null"  # the response is refused anyway: keep nothing while the rest drains
            text = data.decode("utf-8", "replace")
            try:
                fragment = convert(text)
            except ValueError:
                # Raising here would break the protocol stream: note it, answer 500 later.
                registry.conversion_failed = True
                fragment = json_string(text)
            budget.charge(len(fragment) + 1)
            return fragment

        return load

    def _user_type_loader(self, oid: int) -> Callable[[bytes], Any]:
        """A type that is not built in: converted once ``known_arrays`` knows it, else pending.

        The answer is taken per cell, as the loader outlives the request that made it; the
        lookups happen between responses, so one response treats a type one way throughout.
        """
        registry = self
        known = self.known_arrays
        converters: list[Converter] = []

        def load_user_type(data: bytes) -> str:
            budget = registry.budget
            if budget.exceeded:
                return ""
            text = data.decode("utf-8", "replace")
            if oid not in known:
                registry.pending.add(oid)
                budget.charge(len(text) + 3)
                return text
            if not converters:
                converters.append(converter_for(oid, raw=False, is_array=known.__getitem__) or json_string)
            try:
                fragment = converters[0](text)
            except ValueError:
                registry.conversion_failed = True
                fragment = json_string(text)
            budget.charge(len(fragment) + 1)
            return fragment

        return load_user_type
