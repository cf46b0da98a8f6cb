"""Types flow through the async API: mypy --strict on user code that uses neon_trio and
neon_asyncio sees Result, the binding's own Client, rows and cursors, and catches a misspelt
keyword."""

from __future__ import annotations

import os
import textwrap

import pytest

mypy_api = pytest.importorskip("mypy.api")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

USER_CODE = '''
from typing import Any
import neon_asyncio
import neon_trio
from neon_proto.results import Result

async def uses(dsn: str) -> None:
    async with neon_trio.Client(dsn) as client:
        reveal_type(client)
        reveal_type(await client.query("SELECT 1"))
    async with neon_asyncio.Pool(dsn, max_size=2) as pool:
        lent = await pool.acquire()
        reveal_type(lent)
        await pool.release(lent)
        reveal_type(await pool.query("SELECT 1"))
    conn = await neon_asyncio.connect(dsn, autocommit=True)
    reveal_type(conn)
    cur = await conn.execute("SELECT %s", [1])
    reveal_type(await cur.fetchone())
    sql = neon_trio.neon(dsn)
    reveal_type(await sql("SELECT 1", full_results=True))
    neon_asyncio.Client(dsn, pasword="x")
'''


def test_mypy_sees_result_types_and_rejects_a_misspelt_keyword(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "user_code.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(USER_CODE))
    out, err, _status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", os.devnull, "--python-version", "3.11", path]
    )
    notes = [line for line in out.splitlines() if "Revealed type" in line]
    revealed = [line.split("Revealed type is ", 1)[1].strip('"') for line in notes]
    assert revealed == [
        "neon_trio.Client",
        "neon_proto.results.Result",
        "neon_asyncio.Client",
        "neon_proto.results.Result",
        "neon_asyncio.Connection",
        "Any | None",
        "neon_proto.results.Result",
    ], out + err
    assert 'Unexpected keyword argument "pasword"' in out, out
