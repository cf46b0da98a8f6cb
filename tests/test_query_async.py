"""neon_query from async code: AsyncDatabase over neon_trio and neon_asyncio (Client, Pool, DB-API
connection), streaming through a cursor, and run_in_transaction_async on a real serialization failure."""

from __future__ import annotations

import decimal
from typing import Any

import pytest

from aio import Loop
from neon_proto.errors import IntegrityError
from neon_query import (
    AsyncDatabase,
    AsyncTx,
    NoRowsError,
    RepeatableRead,
    count,
    insert,
    run_in_transaction_async,
    select,
    update,
)
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres
from tests.query.fixtures import client, query_db  # noqa: F401 - fixtures
from tests.query.models import counters, posts, users

pytestmark = pytest.mark.slow


@pytest.fixture(params=["trio", "asyncio"])
def loop(request: pytest.FixtureRequest) -> Loop:
    return Loop(request.param)


def test_every_executor_method(loop: Loop, pg: EmbeddedPostgres, query_db: str, client: Client) -> None:
    async def main() -> None:
        async with loop.mod.Client(pg.dsn(database=query_db)) as c:
            db = AsyncDatabase(c)
            ids = await db.all(insert(users).values([{"email": "a@x.io", "balance": decimal.Decimal("2.5")}, {"email": "b@x.io"}]).returning(users.id).scalars())
            assert len(ids) == 2
            assert await db.execute(insert(posts).values([{"author_id": ids[0], "title": "t"}, {"title": "orphan"}])) == 2
            row = await db.one(users.find({"email": "a@x.io"}))
            assert row["balance"] == decimal.Decimal("2.50") and row["moods"] == []
            assert await db.maybe_one(users.find_one({"email": "nobody"})) is None
            with pytest.raises(NoRowsError):
                await db.one(users.find({"email": "nobody"}))
            joined = await db.all(
                select(posts.title, users.outer.email).left_join(users, users.id.eq(posts.author_id)).order_by(posts.title)
            )
            assert joined == [("orphan", None), ("t", "a@x.io")]
            assert await db.one(select(count()).from_(users).scalars()) == 2
            with pytest.raises(IntegrityError):
                await db.execute(insert(users).values({"email": "a@x.io"}))

    loop.run(main)


def test_stream_pool_and_dbapi(loop: Loop, pg: EmbeddedPostgres, query_db: str, client: Client) -> None:
    client.query("INSERT INTO counters (name, hits) SELECT 'c' || g, g FROM generate_series(1, 120) g")

    async def main() -> None:
        async with loop.mod.Pool(pg.dsn(database=query_db), max_size=2) as pool:
            db = AsyncDatabase(pool)
            got = [h async for h in db.stream(select(counters.hits).order_by(counters.hits).scalars(), chunk_size=50)]
            assert got == list(range(1, 121))
            assert await db.one(counters.count()) == 120
        conn = await loop.mod.connect(pg.dsn(database=query_db))
        try:
            ddb = AsyncDatabase(conn)
            await ddb.execute(update(counters).set({"hits": 0}).where(counters.name.eq("c1")))
            assert conn.client.transaction_status == "T"
            await conn.rollback()
            assert await ddb.one(select(counters.hits).where(counters.name.eq("c1")).scalars()) == 1
            await conn.rollback()
        finally:
            await conn.close()

    loop.run(main)


def test_run_in_transaction_async_retries_a_serialization_failure(
    loop: Loop, pg: EmbeddedPostgres, query_db: str, client: Client
) -> None:
    client.query("INSERT INTO counters (name, hits) VALUES ('a', 0)")
    attempts: list[int] = []

    async def bump(tx: AsyncTx[RepeatableRead]) -> int:
        attempts.append(tx.attempt)
        hits = await tx.one(select(counters.hits).where(counters.name.eq("a")).scalars())
        if tx.attempt == 1:
            client.query("UPDATE counters SET hits = hits + 10 WHERE name = 'a'")  # another connection commits
        await tx.execute(update(counters).set({"hits": hits + 1}).where(counters.name.eq("a")))
        return hits + 1

    async def main() -> Any:
        async with loop.mod.Client(pg.dsn(database=query_db)) as c:
            return await run_in_transaction_async(c, bump, backoff_base=0.001)

    assert loop.run(main) == 11
    assert attempts == [1, 2]
