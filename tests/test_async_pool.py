"""neon_trio.Pool and neon_asyncio.Pool against a real PostgreSQL: limits, FIFO waiters,
health checks, resets, lifetimes, cancellation of waiters and of lent connections."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aio import Loop, backend_activity, backends_of, wait_until, loop, admin  # noqa: F401  (fixtures)
from neon_proto.errors import InterfaceError, OperationalError
from neon_sync import Client as SyncClient
from neon_sync.embedded import EmbeddedPostgres


def make_pool(loop: Loop, pg: EmbeddedPostgres, **options: Any) -> Any:
    options.setdefault("sslmode", "disable")
    options.setdefault("max_size", 3)
    options.setdefault("timeout", 10)
    return loop.mod.Pool(pg.dsn(), **options)


def terminate(admin: SyncClient, pid: int) -> None:
    admin.query("SELECT pg_terminate_backend($1::int)", [pid])
    wait_until(lambda: backend_activity(admin, pid) is None)


def test_lends_and_takes_back_lazily(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg) as pool:
            assert pool.size == 0
            async with pool.connection() as c:
                assert pool.size == 1 and pool.idle_count == 0
                first = c.backend_pid
            assert pool.idle_count == 1
            async with pool.connection() as c:
                assert c.backend_pid == first
            assert (await pool.query("SELECT $1::int AS x", [7])).rows == [{"x": 7}]
            assert pool.size == 1

    loop.run(main)


def test_max_size_is_honoured_under_many_tasks(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=2) as pool:
            busy = 0
            peak = 0

            async def worker() -> None:
                nonlocal busy, peak
                async with pool.connection() as c:
                    busy += 1
                    peak = max(peak, busy)
                    await c.query("SELECT pg_sleep(0.01)")
                    busy -= 1

            await loop.concurrently(*([worker] * 8))
            assert peak == 2 and pool.size == 2
            stats = pool.stats()
            assert stats.requests == 8 and stats.requests_waited >= 5 and stats.wait_seconds > 0
            assert stats.connections_opened == 2 and stats.max_size == 2 and stats.waiting == 0

    loop.run(main)


def test_waiters_are_served_first_come_first_served(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=1, min_size=1) as pool:
            held = await pool.acquire()
            order: list[int] = []

            def worker(i: int) -> Any:
                async def run() -> None:
                    while pool.stats().waiting < i:  # queue up strictly in the order of i
                        await loop.sleep(0.002)
                    async with pool.connection() as c:
                        order.append(i)
                        await c.query("SELECT 1")

                return run

            async def release_when_all_wait() -> None:
                while pool.stats().waiting < 5:
                    await loop.sleep(0.002)
                await pool.release(held)

            await loop.concurrently(*(worker(i) for i in range(5)), release_when_all_wait)
            assert order == list(range(5))
            assert pool.stats().requests_waited == 5

    loop.run(main)


def test_pool_timeout_when_every_connection_is_lent(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=1) as pool:
            async with pool.connection():
                started = time.monotonic()
                with pytest.raises(loop.mod.PoolTimeout):
                    await pool.acquire(timeout=0.1)
                assert time.monotonic() - started < 2
            async with pool.connection(timeout=0.1) as c:  # the slot came back
                assert (await c.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_a_cancelled_waiter_loses_no_connection(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    app = f"pool_wait_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        async with make_pool(loop, pg, max_size=1, application_name=app) as pool:
            held = await pool.acquire()
            async with loop.timeout(0.1) as scope:
                await pool.acquire()
            assert scope.expired and pool.stats().waiting == 0
            await pool.release(held)
            async with pool.connection(timeout=1) as c:
                assert c is held
            assert pool.size == 1 and backends_of(admin, app) == 1

    loop.run(main)
    wait_until(lambda: backends_of(admin, app) == 0)


def test_options_are_checked_when_the_pool_is_made(loop: Loop, pg: EmbeddedPostgres) -> None:
    with pytest.raises(InterfaceError):
        make_pool(loop, pg, max_size=0)
    with pytest.raises(InterfaceError):
        make_pool(loop, pg, min_size=5, max_size=2)
    with pytest.raises(TypeError, match="did you mean 'max_idle'"):
        make_pool(loop, pg, max_idel=5)


def test_min_size_connections_are_opened_by_open(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, min_size=2) as pool:
            assert pool.size == 2 and pool.idle_count == 2

    loop.run(main)


def test_failed_connect_gives_the_slot_back(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        pool = loop.mod.Pool(pg.dsn("scram_user", password="wrong"), sslmode="disable", max_size=1)
        for _ in range(2):
            with pytest.raises(OperationalError):
                await pool.acquire()
        assert pool.size == 0 and pool.stats().connection_errors == 2

    loop.run(main)


def test_transaction_left_open_is_rolled_back_on_return(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=1) as pool:
            async with pool.connection() as c:
                await c.query("BEGIN")
                await c.query("CREATE TEMP TABLE left_open (a int)")
            async with pool.connection() as c:
                assert c.transaction_status == "I"
                with pytest.raises(loop.mod.ProgrammingError):
                    await c.query("SELECT * FROM left_open")

    loop.run(main)


def test_session_state_is_kept_without_reset_and_discarded_with_it(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        for reset, expected in ((None, "x"), (loop.mod.reset_session, "")):
            async with make_pool(loop, pg, max_size=1, reset=reset, prepared_statement_cache_size=4) as pool:
                async with pool.connection() as c:
                    await c.query("SET application_name = 'x'")
                    await c.query("SELECT $1::int AS n", [1])  # a cached prepared statement
                async with pool.connection() as c:
                    assert (await c.query("SHOW application_name")).rows == [{"application_name": expected}]
                    assert (await c.query("SELECT $1::int AS n", [2])).rows == [{"n": 2}]

    loop.run(main)


def test_backend_killed_while_idle_is_not_lent(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=1) as pool:
            async with pool.connection() as c:
                pid = c.backend_pid
            terminate(admin, pid)
            await loop.sleep(0.05)  # the blocking admin call held the loop: let it read the FATAL
            async with pool.connection() as c:
                assert c.backend_pid != pid
                assert (await c.query("SELECT 1 AS one")).rows == [{"one": 1}]
            assert pool.size == 1

    loop.run(main)


def test_idle_connections_are_checked_and_retired(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        checks: list[int] = []

        async def check(client: Any) -> None:
            checks.append(client.backend_pid)
            await client.query("SELECT 1")

        async with make_pool(loop, pg, check=check, check_after=0.05, max_idle=0.3) as pool:
            async with pool.connection() as c:
                first = c.backend_pid
            async with pool.connection():
                pass
            assert checks == []  # idle for less than check_after
            await loop.sleep(0.1)
            async with pool.connection() as c:
                assert c.backend_pid == first
            assert checks == [first]
            await loop.sleep(0.4)
            async with pool.connection() as c:
                assert c.backend_pid != first  # idle past max_idle: replaced
        async with make_pool(loop, pg, max_lifetime=0.05) as pool:
            async with pool.connection() as c:
                first = c.backend_pid
                await loop.sleep(0.1)
            async with pool.connection() as c:
                assert c.backend_pid != first

    loop.run(main)


def test_a_query_cancelled_inside_the_block_returns_a_clean_connection(
    loop: Loop, pg: EmbeddedPostgres, admin: SyncClient
) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=1) as pool:
            async with loop.timeout(0.2) as scope:
                async with pool.connection() as c:
                    pid = c.backend_pid
                    await c.query("BEGIN")
                    await c.query("SELECT pg_sleep(30)")
            assert scope.expired
            assert backend_activity(admin, pid)[0] == "idle"  # type: ignore[index]
            async with pool.connection() as c:
                assert c.backend_pid == pid and c.transaction_status == "I"

    loop.run(main)


def test_connection_given_back_mid_copy_is_discarded(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with make_pool(loop, pg, max_size=1) as pool:
            async with pool.connection() as c:
                pid = c.backend_pid
                chunks = c.copy_to("COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT")
                await chunks.__anext__()
            async with pool.connection() as c:
                assert c.backend_pid != pid
                assert (await c.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_close_refuses_new_loans_and_leaves_no_backend(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    app = f"pool_close_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        pool = make_pool(loop, pg, min_size=2, application_name=app)
        await pool.open()
        await pool.close()
        with pytest.raises(InterfaceError):
            await pool.acquire()

    loop.run(main)
    wait_until(lambda: backends_of(admin, app) == 0)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A server of this module's own, to restart."""
    with EmbeddedPostgres(tls=False) as server:
        yield server


@pytest.mark.parametrize("loop", [Loop("trio"), Loop("asyncio")], ids=["trio", "asyncio"])
def test_pool_recovers_after_a_server_restart(loop: Loop, own_pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Pool(own_pg.dsn(), max_size=2, sslmode="disable") as pool:
            async with pool.connection() as a, pool.connection() as b:
                old = {a.backend_pid, b.backend_pid}
            own_pg.restart()
            async with pool.connection() as c:
                assert c.backend_pid not in old
                assert (await c.query("SELECT 1 AS one")).rows == [{"one": 1}]
            assert pool.size == 1

    loop.run(main)


def test_a_server_that_is_away_is_tried_again_until_the_timeout(loop: Loop) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        pool = loop.mod.Pool(f"postgresql://u@127.0.0.1:{port}/db", sslmode="disable", timeout=0.3)
        started = time.monotonic()
        with pytest.raises(loop.mod.PoolTimeout, match="could not connect"):
            await pool.acquire()
        assert time.monotonic() - started < 2
        stats = pool.stats()
        assert stats.connection_errors >= 2 and stats.timeouts == 1 and pool.size == 0

    loop.run(main)
