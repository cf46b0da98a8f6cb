"""neon_query from async code: AsyncDatabase over neon_trio and neon_asyncio (Client, Pool, DB-API
connection), streaming from a portal, and run_in_transaction_async on a real serialization failure."""

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
        async with loop.mod.Client(pg.dsn(database=query_db)) as c:
            cdb = AsyncDatabase(c)
            rows = cdb.stream(select(counters.hits).order_by(counters.hits).scalars(), chunk_size=10)
            assert await rows.__anext__() == 1
            await rows.aclose()  # leaving early closes the portal: the connection is usable at once
            assert await cdb.one(counters.count()) == 120
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


async def workload(db: Any) -> None:
    """The same builder queries, whatever the executor: rows, NULLs, enum arrays, JSON, joins, upserts."""
    (ann,) = await db.all(users.insert({"email": "ann@x.io", "moods": ["sad", "so-so"], "settings": {"k": [1, 2]}}))
    assert ann["moods"] == ["sad", "so-so"] and ann["settings"] == {"k": [1, 2]} and ann["name"] is None
    await db.execute(insert(posts).values([{"author_id": ann["id"], "title": "one", "meta": {"a": None}}, {"title": "two"}]))
    rows = await db.all(
        select(posts.title, users.outer.email, posts.meta).left_join(users, users.id.eq(posts.author_id)).order_by(posts.title)
    )
    assert rows == [("one", "ann@x.io", {"a": None}), ("two", None, None)]
    n = await db.one(
        insert(counters).values({"name": "k", "hits": 1}).on_conflict_do_update(counters.name, {"hits": 9}).returning(counters.hits).scalars()
    )
    assert n == 1
    assert [h async for h in db.stream(select(posts.title).order_by(posts.title).scalars())] == ["one", "two"]
    ids, everyone, total = await db.batch(select(users.id), users.find(), posts.count(), isolation_level="RepeatableRead")
    assert len(ids) == 1 and everyone[0]["email"] == "ann@x.io" and total == [2]
    with pytest.raises(IntegrityError):
        await db.batch(counters.insert({"name": "z"}), counters.insert({"name": "z"}))
    assert await db.maybe_one(counters.find_one({"name": "z"})) is None


@pytest.mark.parametrize("transport", ["tcp", "websocket", "http"])
def test_the_builder_over_every_async_transport(
    loop: Loop, transport: str, proxy: Any, pg: EmbeddedPostgres, query_db: str, client: Client
) -> None:
    from neon_query import AsyncHTTPDatabase

    async def main() -> None:
        if transport == "http":
            async with loop.mod.neon(proxy.database_url(database=query_db), fetch_endpoint=proxy.url) as sql:
                await workload(AsyncHTTPDatabase(sql))
            return
        options: dict[str, Any] = {}
        if transport == "websocket":
            options = {"ws_proxy": f"127.0.0.1:{proxy.port}/v2", "use_secure_websocket": False}
            dsn = proxy.database_url(database=query_db)
        else:
            dsn = pg.dsn(database=query_db)
        async with loop.mod.Client(dsn, **options) as c:
            assert c.transport_name == transport
            await workload(AsyncDatabase(c))

    loop.run(main)
