"""Writes the arity overloads of neon_query (select, returning, raw, batch) into their files.

Run after changing MAX_ARITY: ``python tools/gen_query_overloads.py``. Each block sits
between ``# --- generated: NAME ---`` and ``# --- end generated: NAME ---``.
"""

from __future__ import annotations

import pathlib
import re

MAX_ARITY = 12
ROOT = pathlib.Path(__file__).resolve().parent.parent
IGNORE_OVERLAP = "  # type: ignore[overload-overlap]  # pyright: ignore[reportOverlappingOverload]"


def _types(n: int) -> str:
    return ", ".join(f"T{i}" for i in range(1, n + 1))


def select_block() -> str:
    lines = ["@overload", f"def select(table: Table[RowT, Any, Any, Any], /) -> Select[RowT]: ...{IGNORE_OVERLAP}"]
    for n in range(1, MAX_ARITY + 1):
        args = ", ".join(f"c{i}: Selectable[T{i}]" for i in range(1, n + 1))
        lines += ["@overload", f"def select({args}, /) -> Select[tuple[{_types(n)}]]: ..."]
    lines += ["@overload", "def select(*items: Selectable[Any]) -> Select[tuple[Any, ...]]: ..."]
    return "\n".join(lines)


def returning_block() -> str:
    lines = [
        "    @overload",
        f"    def returning(self, table: Table[RowT, Any, Any, Any], /) -> Returning[RowT]: ...{IGNORE_OVERLAP}",
    ]
    for n in range(1, MAX_ARITY + 1):
        args = ", ".join(f"c{i}: Selectable[T{i}]" for i in range(1, n + 1))
        lines += ["    @overload", f"    def returning(self, {args}, /) -> Returning[tuple[{_types(n)}]]: ..."]
    lines += ["    @overload", "    def returning(self, *items: Selectable[Any]) -> Returning[tuple[Any, ...]]: ..."]
    return "\n".join(lines)


def raw_block() -> str:
    head = "def raw(text: str, params: Sequence[object] = (), *, returns: "
    lines = ["@overload", head + "None = None) -> Raw[tuple[object, ...]]: ..."]
    for n in range(1, MAX_ARITY + 1):
        codecs = ", ".join(f"Codec[T{i}]" for i in range(1, n + 1))
        lines += ["@overload", head + f"tuple[{codecs}]) -> Raw[tuple[{_types(n)}]]: ..."]
    lines += ["@overload", head + "tuple[Codec[Any], ...]) -> Raw[tuple[Any, ...]]: ..."]
    lines += ["@overload", head + "Callable[..., R]) -> Raw[R]: ..."]
    return "\n".join(lines)


BATCH_OPTIONS = "isolation_level: IsolationLevel | None = None, read_only: bool | None = None, deferrable: bool | None = None"


def batch_block(max_arity: int = 10, asynchronous: bool = False) -> str:
    define = "async def" if asynchronous else "def"
    lines: list[str] = []
    for n in range(1, max_arity + 1):
        args = ", ".join(f"q{i}: Query[T{i}]" for i in range(1, n + 1))
        results = ", ".join(f"list[T{i}]" for i in range(1, n + 1))
        lines += ["    @overload", f"    {define} batch(self, {args}, /, *, {BATCH_OPTIONS}) -> tuple[{results}]: ..."]
    lines += ["    @overload", f"    {define} batch(self, *queries: Query[Any], {BATCH_OPTIONS}) -> tuple[list[Any], ...]: ..."]
    return "\n".join(lines)


def write(path: str, name: str, block: str) -> None:
    file = ROOT / path
    text = file.read_text()
    pattern = re.compile(
        rf"^(?P<indent>[ \t]*)# --- generated: {name} ---\n.*?^[ \t]*# --- end generated: {name} ---\n",
        re.S | re.M,
    )
    match = pattern.search(text)
    if match is None:
        raise SystemExit(f"{path}: no generated block {name!r}")
    indent = match.group("indent")
    replacement = f"{indent}# --- generated: {name} ---\n{block}\n{indent}# --- end generated: {name} ---\n"
    file.write_text(text[: match.start()] + replacement + text[match.end() :])


def main() -> None:
    write("neon_query/query.py", "select", select_block())
    write("neon_query/query.py", "returning", returning_block())
    write("neon_query/query.py", "raw", raw_block())
    write("neon_query/execute.py", "batch", batch_block())
    write("neon_query/execute_async.py", "batch", batch_block(asynchronous=True))


if __name__ == "__main__":
    main()
