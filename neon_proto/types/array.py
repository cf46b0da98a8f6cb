"""Arrays: text and binary loaders built around an element loader, and the text literal writer.

Multi-dimensional arrays load as nested lists; lower bounds other than 1 (``[0:2]={1,2,3}``)
are dropped, as psycopg does. NULL elements load as None.
"""

from __future__ import annotations

import re
import struct
from typing import Any, Callable, Iterable

__all__ = [
    "make_text_array_loader",
    "make_binary_array_loader",
    "quote_array_element",
    "write_array_text",
]

Loader = Callable[[bytes], Any]

_UNESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_tokenizers: dict[bytes, Callable[[bytes], Iterable["re.Match[bytes]"]]] = {}


def _tokenizer(delim: bytes) -> Callable[[bytes], Iterable["re.Match[bytes]"]]:
    """Tokens of an array literal: braces, quoted strings, unquoted strings, delimiters."""
    tok = _tokenizers.get(delim)
    if tok is None:
        d = re.escape(delim)
        tok = _tokenizers[delim] = re.compile(
            rb'[{}]|"((?:[^"\\]|\\.)*)"|([^"{}' + d + rb"]+)|" + d, re.DOTALL
        ).finditer
    return tok


def _parse_text_array(data: bytes, elem: Loader, delim: bytes) -> list[Any]:
    """The general parser: nesting, quotes and escapes."""
    stack: list[list[Any]] = []
    cur: list[Any] = []
    result = cur
    started = False
    unescape = _UNESCAPE.sub
    for m in _tokenizer(delim)(data):
        tok = m.group(0)
        if tok == b"{":
            if not started:
                started = True
                continue
            new: list[Any] = []
            cur.append(new)
            stack.append(cur)
            cur = new
        elif tok == b"}":
            if stack:
                cur = stack.pop()
        elif tok == delim:
            continue
        else:
            quoted = m.group(1)
            if quoted is not None:
                cur.append(elem(unescape(rb"\1", quoted) if 0x5C in quoted else quoted))
            else:
                raw = tok.strip()
                if not raw:
                    continue
                if raw == b"NULL":
                    cur.append(None)
                else:
                    cur.append(elem(unescape(rb"\1", raw) if 0x5C in raw else raw))
    return result


_flat_tokenizers: dict[bytes, Callable[[bytes], list[tuple[bytes, bytes]]]] = {}


def _flat_tokenizer(delim: bytes) -> Callable[[bytes], list[tuple[bytes, bytes]]]:
    """(quoted, unquoted) pairs of a one-dimensional array body; one of the two is empty.

    Unquoted elements are never empty (the server quotes empty strings), so an empty
    ``unquoted`` means the element was quoted, possibly as "".
    """
    tok = _flat_tokenizers.get(delim)
    if tok is None:
        d = re.escape(delim)
        tok = _flat_tokenizers[delim] = re.compile(
            rb'"((?:[^"\\]|\\.)*)"|([^"' + d + rb"]+)", re.DOTALL
        ).findall
    return tok


def make_text_array_loader(elem: Loader, delimiter: str = ",") -> Loader:
    """A loader for the text form of an array whose elements ``elem`` loads."""
    delim = delimiter.encode()
    flat = _flat_tokenizer(delim)
    unescape = _UNESCAPE.sub

    def load_array(data: bytes) -> list[Any]:
        if data[:1] != b"{":
            # Dimension decoration, "[0:2]={...}", present when a lower bound is not 1.
            data = data[data.index(b"=") + 1 :]
        if data[1:2] == b"{":
            return _parse_text_array(data, elem, delim)  # more than one dimension
        body = data[1:-1]
        if not body:
            return []
        # Byte tests use int needles: `0x22 in body` is many times faster than `b'"' in body`.
        if 0x22 not in body:
            if body.find(b"NULL") < 0:
                return list(map(elem, body.split(delim)))
            return [None if x == b"NULL" else elem(x) for x in body.split(delim)]
        return [
            (None if raw == b"NULL" else elem(raw))
            if raw
            else elem(unescape(rb"\1", quoted) if 0x5C in quoted else quoted)
            for quoted, raw in flat(body)
        ]

    return load_array


_unpack_head = struct.Struct("!iiI").unpack_from
_unpack_int4_from = struct.Struct("!i").unpack_from


def _reshape(flat: list[Any], dims: tuple[int, ...]) -> list[Any]:
    """Nest a flat list of elements into lists of the given dimensions."""
    for size in reversed(dims[1:]):
        flat = [flat[i : i + size] for i in range(0, len(flat), size)]
    return flat


def make_binary_array_loader(elem: Loader, fixed: str | None = None) -> Loader:
    """A loader for the binary form of an array whose elements ``elem`` loads (binary).

    ``fixed`` is the struct code of an element type of fixed width ("i" for int4) whose
    value ``elem`` would give: arrays without NULLs then unpack in one pass.
    """
    pairs = struct.Struct("!i" + fixed).iter_unpack if fixed else None

    def load_array_binary(data: bytes) -> list[Any]:
        ndim, has_null, _ = _unpack_head(data)
        if not ndim:
            return []
        dims = struct.unpack_from(f"!{2 * ndim}i", data, 12)[::2]
        pos = 12 + 8 * ndim
        if pairs is not None and not has_null:
            out = [value for _, value in pairs(data[pos:])]
        else:
            total = 1
            for size in dims:
                total *= size
            out = []
            append = out.append
            for _ in range(total):
                size = _unpack_int4_from(data, pos)[0]
                pos += 4
                if size < 0:
                    append(None)
                else:
                    append(elem(data[pos : pos + size]))
                    pos += size
        if ndim > 1:
            return _reshape(out, dims)
        return out

    return load_array_binary


_needs_quote: dict[bytes, Callable[[bytes], Any]] = {}


def quote_array_element(text: bytes, delim: bytes = b",") -> bytes:
    """An element's text as it must appear in an array literal: quoted when needed."""
    search = _needs_quote.get(delim)
    if search is None:
        search = _needs_quote[delim] = re.compile(
            rb'[{}"\\\s' + re.escape(delim) + rb"]|^$|^null$", re.IGNORECASE
        ).search
    if search(text):
        return b'"' + text.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return text


def write_array_text(
    items: list[Any], elem_text: Callable[[Any], bytes], delim: bytes = b","
) -> bytes:
    """The array literal (``{1,NULL,"a b"}``) of a possibly nested list."""
    parts: list[bytes] = []
    for item in items:
        if item is None:
            parts.append(b"NULL")
        elif isinstance(item, list):
            parts.append(write_array_text(item, elem_text, delim))
        else:
            parts.append(quote_array_element(elem_text(item), delim))
    return b"{" + delim.join(parts) + b"}"
