"""The async DB-API connection of neon_trio and neon_asyncio (psycopg's AsyncConnection manner)
against a real PostgreSQL, on trio, asyncio and uvloop."""

from __future__ import annotations

import pytest

from aio import Loop, loop  # noqa: F401  (fixtures)
from neon_sync.embedded import EmbeddedPostgres


def url(pg: EmbeddedPostgres, db: str) -> str:
    return pg.dsn(database=db, sslmode="disable")


def test_execute_and_fetch_with_both_placeholder_styles(loop: Loop, pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def main() -> None:
        conn = await loop.mod.connect(url(pg, fresh_db), autocommit=True)
        cur = conn.cursor()
        await cur.execute("SELECT g, %s::text AS label FROM generate_series(1, 5) g", ["x"])
        assert [c.name for c in cur.description] == ["g", "label"] and cur.rowcount == 5
        assert await cur.fetchone() == (1, "x")
        assert await cur.fetchmany(2) == [(2, "x"), (3, "x")]
        assert [row async for row in cur] == [(4, "x"), (5, "x")]
        assert await cur.fetchone() is None
        await cur.execute("SELECT %(a)s::int + %(a)s::int AS twice, '100%%' AS pct", {"a": 21})
        assert await cur.fetchall() == [(42, "100%")]
        await cur.execute("SELECT 1; SELECT 2")
        assert await cur.fetchall() == [(1,)] and cur.nextset() and await cur.fetchall() == [(2,)]
        assert conn.info.backend_pid == conn.client.backend_pid and conn.info.transaction_status == "I"
        await conn.close()
        assert conn.closed

    loop.run(main)


def test_first_statement_opens_a_transaction_and_rollback_discards_it(
    loop: Loop, pg: EmbeddedPostgres, fresh_db: str
) -> None:
    async def main() -> None:
        conn = await loop.mod.connect(url(pg, fresh_db))
        await conn.execute("CREATE TABLE t (a int)")
        await conn.commit()
        await conn.execute("INSERT INTO t VALUES (1)")
        assert conn.client.transaction_status == "T"
        await conn.rollback()
        cur = await conn.execute("SELECT count(*) FROM t")
        assert await cur.fetchone() == (0,)
        cur = conn.cursor()
        await cur.executemany("INSERT INTO t VALUES (%s)", [[i] for i in range(10)])
        assert cur.rowcount == 10
        await conn.commit()
        with pytest.raises(loop.mod.ProgrammingError) as info:
            await conn.execute("SELECT 1 AS ok, FROM t")
        assert info.value.diag.position == "17"  # BEGIN travelled as its own message
        await conn.rollback()
        async with await loop.mod.connect(url(pg, fresh_db)) as other:
            cur = await other.execute("SELECT count(*) FROM t")
            assert await cur.fetchone() == (10,)
        await conn.close()

    loop.run(main)


def test_nested_transactions_are_savepoints(loop: Loop, pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def main() -> None:
        conn = await loop.mod.connect(url(pg, fresh_db), autocommit=True)
        await conn.execute("CREATE TABLE t (a int)")
        async with conn.transaction():
            await conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute("INSERT INTO t VALUES (2)")
                    raise ZeroDivisionError
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (3)")
        cur = await conn.execute("SELECT array_agg(a ORDER BY a) FROM t")
        assert await cur.fetchone() == ([1, 3],)
        assert conn.client.transaction_status == "I"
        await conn.close()

    loop.run(main)


def test_a_cancelled_transaction_block_rolls_back_and_the_connection_stays_usable(
    loop: Loop, pg: EmbeddedPostgres, fresh_db: str
) -> None:
    async def main() -> None:
        conn = await loop.mod.connect(url(pg, fresh_db), autocommit=True)
        await conn.execute("CREATE TABLE t (a int)")
        async with loop.timeout(0.2) as scope:
            async with conn.transaction():
                await conn.execute("INSERT INTO t VALUES (1)")
                await conn.execute("SELECT pg_sleep(30)")
        assert scope.expired and conn.client.transaction_status == "I"
        cur = await conn.execute("SELECT count(*) FROM t")
        assert await cur.fetchone() == (0,)
        await conn.close()

    loop.run(main)


def test_connection_context_commits_or_rolls_back(loop: Loop, pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def main() -> None:
        async with await loop.mod.connect(url(pg, fresh_db)) as conn:
            await conn.execute("CREATE TABLE t (a int)")
        with pytest.raises(KeyError):
            async with await loop.mod.connect(url(pg, fresh_db)) as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
                raise KeyError
        async with await loop.mod.connect(url(pg, fresh_db)) as conn:
            cur = await conn.execute("SELECT count(*) FROM t")
            assert await cur.fetchone() == (0,)
            with pytest.raises(loop.mod.ProgrammingError):
                conn.autocommit = True  # inside the transaction the SELECT opened

    loop.run(main)


def test_row_factories_shape_rows(loop: Loop, pg: EmbeddedPostgres, fresh_db: str) -> None:
    from neon_proto.rows import dict_row, namedtuple_row

    async def main() -> None:
        conn = await loop.mod.connect(url(pg, fresh_db), autocommit=True, row_factory=dict_row)
        cur = await conn.execute("SELECT 1 AS a, 'x' AS b")
        assert await cur.fetchall() == [{"a": 1, "b": "x"}]
        cur = conn.cursor(row_factory=namedtuple_row)
        await cur.execute("SELECT 2 AS a")
        row = await cur.fetchone()
        assert row.a == 2 and row == (2,)
        await conn.close()

    loop.run(main)
