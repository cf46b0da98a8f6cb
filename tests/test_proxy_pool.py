"""neon_proxy's upstream pool against real Postgres: limits, waiting, reset, expiry, eviction, watching."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from neon_proxy.config import ProxyConfig
from neon_proxy.pool import PoolKey, PoolTimeout, UpstreamPool
from neon_proxy.testing import upstream_url
from neon_proxy.upstream import PlainTextRegistry, UpstreamClient, reset_session
from neon_sync.embedded import EmbeddedPostgres
from neon_trio import Client

Connect = Callable[[], Awaitable[Client]]


def connector(pg: EmbeddedPostgres, user: str = "postgres") -> tuple[PoolKey, Connect]:
    upstream = ProxyConfig(upstream=upstream_url(pg)).upstream_for("any")
    assert upstream is not None
    password = pg.role(user).password or ""
    params = upstream.with_(user=user, password=password, database="postgres")

    async def connect() -> Client:
        client = UpstreamClient.from_params(params, registry=PlainTextRegistry())
        await client.connect()
        return client

    return PoolKey.build("ep", "postgres", user, password, None), connect


def run_with_pool(body: Callable[[UpstreamPool], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        pool = UpstreamPool(reset=reset_session, **options)
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            await body(pool)
            nursery.cancel_scope.cancel()
        assert pool.idle_count == 0

    trio.run(main)


async def pid_of(client: Client) -> str:
    result = await client.query("SELECT pg_backend_pid()::text AS pid")
    return str(result.rows[0]["pid"])


def test_per_key_limit_makes_a_request_wait_for_a_released_connection(pg: EmbeddedPostgres) -> None:
    key, connect = connector(pg)

    async def body(pool: UpstreamPool) -> None:
        first = await pool.acquire(key, connect)
        second = await pool.acquire(key, connect)
        assert pool.size == 2
        got: list[Any] = []

        async def third() -> None:
            got.append(await pool.acquire(key, connect))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(third)
            await trio.sleep(0.1)
            assert not got, "the third request must wait: the per-key limit is 2"
            first_pid = await pid_of(first.client)
            await pool.release(first, reusable=True)
        assert await pid_of(got[0].client) == first_pid
        assert pool.size == 2
        await pool.release(second, reusable=False)
        await pool.release(got[0], reusable=True)
        assert pool.size == 1 and pool.idle_count == 1

    run_with_pool(body, max_per_key=2)


def test_waiting_too_long_is_a_pool_timeout(pg: EmbeddedPostgres) -> None:
    key, connect = connector(pg)

    async def body(pool: UpstreamPool) -> None:
        held = await pool.acquire(key, connect)
        with pytest.raises(PoolTimeout):
            await pool.acquire(key, connect)
        await pool.release(held, reusable=False)
        assert pool.size == 0

    run_with_pool(body, max_per_key=1, acquire_timeout=0.2)


def test_total_limit_evicts_the_oldest_idle_connection_of_another_key(pg: EmbeddedPostgres) -> None:
    key_a, connect_a = connector(pg, "md5_user")
    key_b, connect_b = connector(pg, "scram_user")

    async def body(pool: UpstreamPool) -> None:
        a = await pool.acquire(key_a, connect_a)
        await pool.release(a, reusable=True)
        b = await pool.acquire(key_b, connect_b)
        assert (await b.client.query("SELECT current_user AS u")).rows == [{"u": "scram_user"}]
        assert pool.size == 1
        with trio.fail_after(2):
            while not a.client.closed:
                await trio.sleep(0.01)
        await pool.release(b, reusable=True)

    run_with_pool(body, max_total=1)


def test_reset_before_reuse_and_failed_connections_are_not_kept(pg: EmbeddedPostgres) -> None:
    key, connect = connector(pg)

    async def body(pool: UpstreamPool) -> None:
        conn = await pool.acquire(key, connect)
        await conn.client.query("SET application_name = 'leaky'")
        await conn.client.query("BEGIN")
        pid = await pid_of(conn.client)
        await pool.release(conn, reusable=True)
        again = await pool.acquire(key, connect)
        assert await pid_of(again.client) == pid
        result = await again.client.query("SELECT current_setting('application_name') AS a")
        assert result.rows == [{"a": ""}] and again.client.transaction_status == "I"
        await pool.release(again, reusable=False)
        assert again.client.closed and pool.size == 0

    run_with_pool(body)


def test_idle_connections_expire(pg: EmbeddedPostgres) -> None:
    key, connect = connector(pg)

    async def body(pool: UpstreamPool) -> None:
        conn = await pool.acquire(key, connect)
        await pool.release(conn, reusable=True)
        assert pool.idle_count == 1
        with trio.fail_after(3):
            while pool.idle_count:
                await trio.sleep(0.05)
        assert conn.client.closed and pool.size == 0

    run_with_pool(body, idle_timeout=0.3)


def test_a_pooled_connection_the_server_ends_is_dropped_while_idle(pg: EmbeddedPostgres) -> None:
    key, connect = connector(pg)

    async def body(pool: UpstreamPool) -> None:
        conn = await pool.acquire(key, connect)
        pid = await pid_of(conn.client)
        await pool.release(conn, reusable=True)
        async with Client(pg.dsn(sslmode="disable")) as admin:
            await admin.query(f"SELECT pg_terminate_backend({int(pid)})")
        with trio.fail_after(3):
            # Out of the idle list at once; counted until its close completes (its slot is busy until then).
            while pool.idle_count or pool.size:
                await trio.sleep(0.02)
        assert pool.size == 0
        fresh = await pool.acquire(key, connect)
        assert await pid_of(fresh.client) != pid
        await pool.release(fresh, reusable=True)

    run_with_pool(body)
