"""The row type follows the row factory: mypy (strict) reads it off a user's script."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import dataclasses
    from typing import Any
    from neon_proto.rows import args_row, class_row, dict_row, tuple_row
    from neon_sync.dbapi import connect

    @dataclasses.dataclass
    class Item:
        id: int

    conn = connect("postgresql://localhost/db")
    reveal_type(conn.cursor(row_factory=dict_row).fetchone())
    reveal_type(conn.cursor(row_factory=tuple_row).fetchall())
    reveal_type(conn.cursor(row_factory=class_row(Item)).fetchmany(2))
    reveal_type(conn.cursor("named", row_factory=args_row(lambda a: str(a))).execute("SELECT 1"))
    for item in conn.cursor(row_factory=class_row(Item)).stream("SELECT 1 AS id"):
        reveal_type(item)
    wrong: int = conn.cursor(row_factory=dict_row).fetchall()
    """
)


def test_row_types_follow_the_row_factory(tmp_path: Path) -> None:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    out = run.stdout.replace("builtins.", "")  # older mypy spells builtins out
    assert ('"dict[str, Any] | None"' in out) or ('"Union[dict[str, Any], None]"' in out), out
    assert 'Revealed type is "list[tuple[Any, ...]]"' in out, out
    assert 'Revealed type is "list[user_script.Item]"' in out, out
    assert 'Revealed type is "neon_sync.dbapi.Cursor[str]"' in out, out
    assert 'Revealed type is "user_script.Item"' in out, out
    assert 'expression has type "list[dict[str, Any]]", variable has type "int"' in out, out
    assert "Found 1 error" in out, out  # the deliberate one: everything else type-checks
