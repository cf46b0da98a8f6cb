"""The async clients over WebSocket through neon_proxy (Neon's protocol), on trio, asyncio and
uvloop: pipelined connect, queries, COPY, LISTEN, pools, cancellation via the proxy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from aio import Loop, wait_until, loop, admin  # noqa: F401  (fixtures)
from neon_proto.errors import OperationalError, QueryCanceled
from neon_sync import Client as SyncClient
from neon_sync.embedded import EmbeddedPostgres


def ws(proxy: Any, **extra: Any) -> dict[str, Any]:
    return {"ws_proxy": f"127.0.0.1:{proxy.port}/v2", "use_secure_websocket": False, **extra}


@pytest.mark.parametrize("user", ["scram_user", "md5_user", "cleartext_user"])
def test_queries_over_websocket_with_a_pipelined_connect(loop: Loop, proxy: Any, pg: EmbeddedPostgres, user: str) -> None:
    role = pg.role(user)

    async def main() -> None:
        url = proxy.database_url(user=user, password=role.password)
        async with loop.mod.Client(url, **ws(proxy)) as client:
            assert client.transport_name == "websocket"
            result = await client.query("SELECT current_user AS who, $1::int AS n", [7])
            assert result.rows == [{"who": user, "n": 7}]
            rows = (await client.query("SELECT g FROM generate_series(1, 20000) g", array_mode=True)).rows
            assert len(rows) == 20000 and rows[-1] == [20000]

    loop.run(main)


def test_a_wrong_password_over_websocket_is_an_operational_error(loop: Loop, proxy: Any) -> None:
    async def main() -> None:
        client = loop.mod.Client(proxy.database_url(password="wrong"), **ws(proxy))
        with pytest.raises(OperationalError):
            await client.connect()
            await client.query("SELECT 1")  # a pipelined connect reports the login here

    loop.run(main)


def test_copy_listen_and_pool_over_websocket(loop: Loop, proxy: Any, fresh_db: str) -> None:
    async def main() -> None:
        url = proxy.database_url(database=fresh_db)
        async with loop.mod.Client(url, **ws(proxy)) as client, loop.mod.Client(url, **ws(proxy)) as other:
            await client.query("CREATE TABLE items (n int)")
            assert await client.copy_from("COPY items FROM STDIN", [f"{i}\n" for i in range(500)]) == 500
            async with client.copy_to("COPY items TO STDOUT") as chunks:
                assert sum([len(c) async for c in chunks]) > 0
            await client.listen("ch")
            await other.notify("ch", "hi")
            note = await client.wait_notification(2.0)
            assert note is not None and note.payload == "hi"
        async with loop.mod.Pool(url, max_size=2, **ws(proxy)) as pool:
            assert (await pool.query("SELECT count(*)::int AS n FROM items")).rows == [{"n": 500}]

    loop.run(main)


def test_a_cancelled_query_over_websocket_is_cancelled_through_the_proxy(
    loop: Loop, proxy: Any, admin: SyncClient
) -> None:
    marker = "ws_cancel_marker"

    def running() -> int:
        rows = admin.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' "
            "AND pid <> pg_backend_pid()",
            [f"%{marker}%"],
        ).rows
        return int(rows[0]["n"])

    async def main() -> None:
        async with loop.mod.Client(proxy.database_url(), **ws(proxy)) as client:
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
            started = time.monotonic()
            with pytest.raises(QueryCanceled):
                await client.query(f"SELECT pg_sleep(30) AS {marker}", [], timeout=0.3)
            assert time.monotonic() - started < 5
            assert running() == 0
            assert (await client.query("SELECT 2 AS two")).rows == [{"two": 2}]

    loop.run(main)
    wait_until(lambda: running() == 0)
