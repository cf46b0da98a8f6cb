"""COPY's text format: rows to bytes through the dumpers, bytes to rows through the loaders.

Columns are separated by a tab, rows end with a newline, NULL is ``\\N`` and a backslash
escapes the tab, newline, carriage return and itself (the server also reads ``\\b \\f \\v``,
octal ``\\nnn`` and ``\\xhh``). Shared by every binding's ``copy()``.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable, Sequence

from neon_proto.errors import DataError, ProgrammingError

__all__ = ["CopyRowWriter", "CopyRowReader", "escape_copy_text", "unescape_copy_text"]

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]")
_UNESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def escape_copy_text(text: str, _search: Any = _NEEDS_ESCAPE.search) -> str:
    """A value's text as it goes in a COPY text-format field."""
    if _search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], text)


def _unescape_one(m: re.Match[str]) -> str:
    octal, hexa, char = m.groups()
    if octal is not None:
        return chr(int(octal, 8) & 0xFF)
    if hexa is not None:
        return chr(int(hexa, 16))
    return _SIMPLE.get(char, char)


def unescape_copy_text(field: str) -> str:
    """A COPY text-format field's value (backslash escapes resolved)."""
    return _UNESCAPE.sub(_unescape_one, field) if "\\" in field else field


def _format_str(value: str) -> str:
    if "\x00" in value:
        raise DataError("a str with a NUL character cannot be sent to Postgres")
    return escape_copy_text(value)


def _format_bool(value: bool) -> str:
    return "t" if value else "f"


_FAST_FORMATTERS: dict[type, Callable[[Any], str]] = {str: _format_str, int: int.__repr__, bool: _format_bool}


class CopyRowWriter:
    """Formats rows for COPY ... FROM STDIN (text format), values through a type registry.

    A line is built as text and encoded with the others in one go (``format_rows``): one
    ``str.join`` per row and no per-value bytes.
    """

    def __init__(self, registry: Any) -> None:
        self._registry = registry
        self._cache: dict[type, Callable[[Any], str]] = dict(_FAST_FORMATTERS)

    def _formatter(self, cls: type) -> Callable[[Any], str]:
        from neon_proto.types import temporal

        registry = self._registry
        dumper = registry._resolve_dumper(cls)  # raises ProgrammingError for a type with no dumper
        if dumper is temporal.dump_datetime:
            return lambda value: value.isoformat(" ")  # what that dumper sends; never needs escaping

        def dumped(value: Any) -> str:
            _oid, fmt, data = dumper(value)
            if fmt or data is None:
                _oid, data = registry._dump_text(value)  # bytea: its \\x text form
            return escape_copy_text(bytes(data).decode())

        return dumped

    def format_line(self, row: Sequence[Any]) -> str:
        """One row's line as text, newline included. ``None`` is NULL."""
        cache = self._cache
        try:
            return "\t".join([r"\N" if v is None else cache[type(v)](v) for v in row]) + "\n"
        except KeyError:
            missing = {type(v) for v in row if v is not None and type(v) not in cache}
            if not missing:
                raise  # from inside a dumper: not ours to handle
            for cls in missing:
                cache[cls] = self._formatter(cls)
            return self.format_line(row)

    def format_row(self, row: Sequence[Any]) -> bytes:
        """One row's line, newline included. ``None`` is NULL."""
        return self.format_line(row).encode()

    def format_rows(self, rows: Iterable[Sequence[Any]]) -> bytes:
        """Several rows' lines."""
        line = self.format_line
        return "".join([line(row) for row in rows]).encode()


class CopyRowReader:
    """Parses COPY ... TO STDOUT text-format data into rows; chunks may split lines anywhere.

    Without types every value is a str (or None); ``set_types`` gives each column a loader.
    """

    def __init__(self, registry: Any, encoding: str = "utf-8") -> None:
        self._registry = registry
        self._encoding = encoding
        self._partial = b""
        self._loaders: list[Callable[[bytes], Any]] | None = None

    def set_types(self, types: Sequence[int | str]) -> None:
        """Load each column as a Postgres type (an OID or a name like ``"int8"``)."""
        registry = self._registry
        loaders = []
        for t in types:
            oid = registry.oid_of(t) if isinstance(t, str) else t
            if oid is None:
                raise ProgrammingError(f"unknown type {t!r}: register it first")
            loaders.append(registry.get_loader(oid, 0))
        self._loaders = loaders

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """The rows completed by ``data``."""
        if self._partial:
            data = self._partial + data
        end = data.rfind(b"\n")
        if end == -1:
            self._partial = bytes(data)
            return []
        self._partial = bytes(data[end + 1 :])
        text = data[:end].decode(self._encoding)
        loaders = self._loaders
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        if loaders is None:
            for line in text.split("\n"):
                if "\\" in line:
                    append(tuple([None if f == "\\N" else unescape_copy_text(f) for f in line.split("\t")]))
                else:
                    append(tuple(line.split("\t")))
            return rows
        funcs = loaders
        for line in text.split("\n"):
            fields = line.split("\t")
            if len(fields) != len(funcs):
                raise DataError(f"a COPY row has {len(fields)} columns, but {len(funcs)} types were set")
            if "\\" in line:
                append(
                    tuple(
                        [
                            None if f == "\\N" else load(unescape_copy_text(f).encode(self._encoding))
                            for load, f in zip(funcs, fields)
                        ]
                    )
                )
            else:
                append(tuple([load(f.encode(self._encoding)) for load, f in zip(funcs, fields)]))
        return rows

    def finish(self) -> None:
        """Check that the data ended with a whole row."""
        if self._partial:
            raise DataError("the COPY data ended in the middle of a row")
