"""Query results shared by every transport: TCP, WebSocket and SQL over HTTP.

A ``Result`` is what one statement produced: its fields, its decoded rows, the command tag.
Rows are decoded with one loader per column, chosen once per result from the type registry.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Callable, Iterable, Literal, Sequence

from neon_proto.events import FieldDescription

__all__ = ["Field", "Result", "RowMode", "make_row_converter", "make_row_parser", "parse_command_tag", "row_mode", "RowConverter", "RowParser"]

Field = FieldDescription
"""A result column: name, type OID, table OID, column number, size, modifier, format."""

RowMode = Literal["dict", "list", "tuple"]


def row_mode(array_mode: bool) -> RowMode:
    """How a client's rows come back: lists in array mode, else dicts keyed by column name."""
    return "list" if array_mode else "dict"
RowConverter = Callable[[Sequence[Sequence[bytes | None]]], list[Any]]


class _LoaderSource:
    """What ``make_row_converter`` needs of a type registry."""

    def get_loader(self, oid: int, format: int = 0) -> Callable[[bytes], Any]:  # pragma: no cover - protocol
        raise NotImplementedError


@functools.lru_cache(maxsize=512)
def parse_command_tag(tag: str) -> tuple[str, int | None]:
    """The command word and row count of a CommandComplete tag (``INSERT 0 5`` -> INSERT, 5)."""
    parts = tag.split(" ")
    command = parts[0]
    count: int | None = None
    if command == "INSERT" and len(parts) == 3:
        word = parts[2]
    elif len(parts) >= 2:
        word = parts[-1]
    else:
        return command, None
    if word.isdigit():
        count = int(word)
    return command, count


class Result:
    """One statement's outcome: ``rows``, ``fields``, ``command`` (first word of the tag), ``row_count``."""

    __slots__ = ("fields", "rows", "command", "row_count", "tag", "row_as_array")

    def __init__(
        self,
        fields: Sequence[Field] = (),
        rows: list[Any] | None = None,
        tag: str | None = None,
        *,
        row_as_array: bool = False,
        command: str | None = None,
        row_count: int | None = None,
    ) -> None:
        self.fields: list[Field] = list(fields)
        self.rows: list[Any] = rows if rows is not None else []
        self.tag = tag
        self.row_as_array = row_as_array
        if tag is not None and command is None:
            command, row_count = parse_command_tag(tag)
        self.command = command
        self.row_count = row_count

    def set_tag(self, tag: str) -> None:
        """Record the CommandComplete tag."""
        self.tag = tag
        self.command, self.row_count = parse_command_tag(tag)

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return [f.name for f in self.fields]

    def __repr__(self) -> str:
        return f"<Result {self.command} row_count={self.row_count} rows={len(self.rows)}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return (
            self.fields == other.fields
            and self.rows == other.rows
            and self.command == other.command
            and self.row_count == other.row_count
        )

    __hash__ = None  # type: ignore[assignment]


def make_row_converter(
    fields: Sequence[Field],
    registry: Any,
    mode: RowMode,
    loaders: Iterable[Callable[[bytes], Any] | None] | None = None,
) -> RowConverter:
    """A function turning raw rows (cells as bytes or None) into rows of Python values.

    The loaders are looked up once here; the returned function is the per-row hot path.
    ``loaders`` may override some columns (None keeps the registry's choice).
    """
    chosen = [registry.get_loader(f.type_oid, f.format) for f in fields]
    if loaders is not None:
        for i, override in enumerate(loaders):
            if override is not None and i < len(chosen):
                chosen[i] = override
    funcs = tuple(chosen)
    names = [f.name for f in fields]
    ncols = len(funcs)

    if ncols == 1:
        (f0,) = funcs
        if mode == "dict":
            n0 = names[0]
            return lambda raw: [{n0: None if r[0] is None else f0(r[0])} for r in raw]
        if mode == "tuple":
            return lambda raw: [(None if r[0] is None else f0(r[0]),) for r in raw]
        return lambda raw: [[None if r[0] is None else f0(r[0])] for r in raw]

    if mode == "dict":
        # A later duplicate name wins, as in the JS driver: dict(zip()) does that.
        return lambda raw: [dict(zip(names, [None if v is None else f(v) for f, v in zip(funcs, r)])) for r in raw]
    if mode == "tuple":
        return lambda raw: [tuple([None if v is None else f(v) for f, v in zip(funcs, r)]) for r in raw]
    return lambda raw: [[None if v is None else f(v) for f, v in zip(funcs, r)] for r in raw]


_unpack_i_from = struct.Struct("!i").unpack_from
_unpack_H_from = struct.Struct("!H").unpack_from

RowParser = Callable[[bytes, int, int], Any]


def make_row_parser(
    fields: Sequence[Field],
    registry: Any,
    mode: RowMode,
    loaders: Iterable[Callable[[bytes], Any] | None] | None = None,
) -> RowParser:
    """A function decoding one DataRow payload ``(buf, start, end)`` straight into a row.

    The code is generated once per result shape with one unrolled block per column, so a
    row costs no inner loop and no intermediate list: the hot path of every large fetch.
    A malformed row raises ValueError (the frontend then falls back to raw cells).
    """
    chosen = [registry.get_loader(f.type_oid, f.format) for f in fields]
    if loaders is not None:
        for i, override in enumerate(loaders):
            if override is not None and i < len(chosen):
                chosen[i] = override
    n = len(chosen)
    namespace: dict[str, Any] = {"unpack_i": _unpack_i_from, "unpack_H": _unpack_H_from}
    lines = [
        "def parse_row(buf, start, end):",
        f"    if unpack_H(buf, start)[0] != {n}:",
        "        raise ValueError('DataRow has the wrong number of columns')",
        "    p = start + 2",
    ]
    for i, loader in enumerate(chosen):
        namespace[f"f{i}"] = loader
        lines += [
            "    s = unpack_i(buf, p)[0]",
            "    p += 4",
            "    if s < 0:",
            "        if s != -1:",
            "            raise ValueError('negative field length')",
            f"        v{i} = None",
            "    else:",
            "        q = p + s",
            f"        v{i} = f{i}(buf[p:q])",
            "        p = q",
        ]
    lines += ["    if p != end:", "        raise ValueError('DataRow lengths do not add up')"]
    values = ", ".join(f"v{i}" for i in range(n))
    if mode == "dict":
        items = ", ".join(f"{f.name!r}: v{i}" for i, f in enumerate(fields))
        lines.append(f"    return {{{items}}}")
    elif mode == "tuple":
        lines.append(f"    return ({values}{',' if n == 1 else ''})" if n else "    return ()")
    else:
        lines.append(f"    return [{values}]")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from column counts and repr'd names only
    parser: RowParser = namespace["parse_row"]
    return parser
