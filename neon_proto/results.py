"""Query results shared by every transport: TCP, WebSocket and SQL over HTTP.

A ``Result`` is what one statement produced: its fields, its decoded rows, the command tag.
Rows are decoded with one loader per column, chosen once per result from the type registry.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, Callable, Iterable, Literal, Sequence

from neon_proto.events import FieldDescription
from neon_proto.types.registry import FIXED_WIDTH_BINARY

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
    Binary columns of fixed width (ints, floats, bool, dates and times, uuid) are read
    together with the field lengths around them in one struct call per run of such
    columns; a row where one of them is NULL (or has an unexpected length) takes the
    column-by-column path instead. A malformed row raises ValueError (the frontend then
    falls back to raw cells).
    """
    chosen = [registry.get_loader(f.type_oid, f.format) for f in fields]
    if loaders is not None:
        for i, override in enumerate(loaders):
            if override is not None and i < len(chosen):
                chosen[i] = override
    namespace: dict[str, Any] = {"unpack_i": _unpack_i_from, "unpack_H": _unpack_H_from}
    for i, loader in enumerate(chosen):
        namespace[f"f{i}"] = loader
    fixed = [_fixed_width(f, loader) for f, loader in zip(fields, chosen)]
    shape = _row_expression(fields, mode)
    if any(spec is not None for spec in fixed):
        lines = [*_column_by_column("parse_slow", len(chosen)), shape, *_runs_of_fixed_width(fixed, namespace, shape)]
    else:
        lines = [*_column_by_column("parse_row", len(chosen)), shape]
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from column counts, struct codes and repr'd names
    parser: RowParser = namespace["parse_row"]
    return parser


def _fixed_width(field: Field, loader: Callable[[bytes], Any]) -> tuple[str, Callable[[Any], Any] | None] | None:
    if field.format != 1:
        return None
    return FIXED_WIDTH_BINARY.get(loader)


def _column_by_column(name: str, n: int) -> list[str]:
    """A row parser's lines up to its return, reading each field's length then its value."""
    lines = [
        f"def {name}(buf, start, end):",
        f"    if unpack_H(buf, start)[0] != {n}:",
        "        raise ValueError('DataRow has the wrong number of columns')",
        "    p = start + 2",
    ]
    for i in range(n):
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
    return lines


def _runs_of_fixed_width(
    fixed: Sequence[tuple[str, Callable[[Any], Any] | None] | None], namespace: dict[str, Any], shape: str
) -> list[str]:
    """The lines of ``parse_row`` for a shape with fixed-width binary columns.

    Each struct call reads from one variable-width value to the next: the field lengths and
    fixed-width values between, and the length of the variable-width value that ends the run.
    The first run starts with the column count. Any unexpected count or length hands the
    row to ``parse_slow``.
    """
    n = len(fixed)
    # Lines at one indent, then nested in a try: a run that reaches past the end of the
    # buffer (a NULL made the row shorter than the run) hands the row to parse_slow too.
    lines: list[str] = ["    p = start"]
    runs = 0
    codes = ["H"]
    names = ["n"]
    checks = [f"n != {n}"]
    converts: list[str] = []

    def flush(variable: int | None) -> None:
        nonlocal runs, codes, names, checks, converts
        layout = struct.Struct("!" + "".join(codes))
        namespace[f"S{runs}"] = layout.unpack_from
        lines.append(f"    {', '.join(names)}, = S{runs}(buf, p)")
        if checks:
            lines.extend([f"    if {' or '.join(checks)}:", "        return parse_slow(buf, start, end)"])
        lines.append(f"    p += {layout.size}")
        lines.extend(converts)
        if variable is not None:
            i = variable
            lines.extend([
                f"    if l{i} < 0:",
                f"        if l{i} != -1:",
                "            raise ValueError('negative field length')",
                f"        v{i} = None",
                "    else:",
                f"        q = p + l{i}",
                f"        v{i} = f{i}(buf[p:q])",
                "        p = q",
            ])
        runs += 1
        codes, names, checks, converts = [], [], [], []

    for i, spec in enumerate(fixed):
        if spec is None:
            codes.append("i")
            names.append(f"l{i}")
            flush(i)
            continue
        code, convert = spec
        codes += ["i", code]
        names += [f"l{i}", f"v{i}"]
        checks.append(f"l{i} != {struct.calcsize('!' + code)}")
        if convert is not None:
            namespace[f"c{i}"] = convert
            converts.append(f"    v{i} = c{i}(v{i})")
    if codes:
        flush(None)
    lines += ["    if p != end:", "        raise ValueError('DataRow lengths do not add up')", shape]
    namespace["struct_error"] = struct.error
    return [
        "def parse_row(buf, start, end):",
        "  try:",
        *lines,
        "  except struct_error:",
        "    return parse_slow(buf, start, end)",
    ]


def _row_expression(fields: Sequence[Field], mode: RowMode) -> str:
    """The return statement of a row parser: the row in the chosen mode."""
    n = len(fields)
    values = ", ".join(f"v{i}" for i in range(n))
    if mode == "dict":
        items = ", ".join(f"{f.name!r}: v{i}" for i, f in enumerate(fields))
        body = f"{{{items}}}"
    elif mode == "tuple":
        body = f"({values}{',' if n == 1 else ''})" if n else "()"
    else:
        body = f"[{values}]"
    return f"    return {body}"
