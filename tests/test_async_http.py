"""neon() of neon_trio and neon_asyncio end to end: our client, neon_proxy, the real Postgres,
on trio, asyncio and uvloop; cancelling a request cancels its query on the server."""

from __future__ import annotations

import datetime
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aio import Loop, wait_until, loop, admin  # noqa: F401  (fixtures)
from neon_proto import errors
from neon_proto.http import HTTPStatusError
from neon_proto.results import Result
from neon_sync import Client as SyncClient
from neon_sync.embedded import EmbeddedPostgres
from test_http_client import Forwarder, small_proxy, tls_proxy  # noqa: F401  (fixtures)


@pytest.fixture
def forwarder(proxy: Any) -> Iterator[Forwarder]:
    fwd = Forwarder(proxy.port)
    yield fwd
    fwd.close()


def test_rows_params_and_result_shapes(loop: Loop, proxy: Any) -> None:
    async def main() -> None:
        async with loop.mod.neon(proxy.database_url(), fetch_endpoint=proxy.url) as sql:
            when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
            rows = await sql("SELECT $1::int AS a, $2::text AS b, $3::timestamptz AS c", [1, "x", when])
            assert rows == [{"a": 1, "b": "x", "c": when}]
            assert await sql("SELECT 1 AS a, 2 AS b", array_mode=True) == [[1, 2]]
            result = await sql("SELECT g FROM generate_series(1, 3) g", full_results=True)
            assert isinstance(result, Result) and result.command == "SELECT" and result.row_count == 3
            query = sql.query("SELECT $1::int AS n", [5])
            assert await query == [{"n": 5}] and await query.execute() == [{"n": 5}]

    loop.run(main)


def test_transactions_run_all_or_nothing(loop: Loop, proxy: Any, fresh_db: str) -> None:
    async def main() -> None:
        async with loop.mod.neon(proxy.database_url(database=fresh_db), fetch_endpoint=proxy.url) as sql:
            await sql("CREATE TABLE items (id int PRIMARY KEY)")
            results = await sql.transaction([sql.query("INSERT INTO items VALUES (1)"), sql.query("SELECT count(*)::int AS n FROM items")])
            assert results[1] == [{"n": 1}]
            with pytest.raises(errors.IntegrityError):
                await sql.transaction(lambda s: [s.query("INSERT INTO items VALUES (2)"), s.query("INSERT INTO items VALUES (1)")])
            assert await sql("SELECT count(*)::int AS n FROM items") == [{"n": 1}]
            shown = await sql.transaction(
                [sql.query("SHOW transaction_isolation")], isolation_level="Serializable", read_only=True
            )
            assert shown == [[{"transaction_isolation": "serializable"}]]
            assert await sql.transaction([]) == []
            with pytest.raises(TypeError):
                await sql.transaction("SELECT 1")  # type: ignore[arg-type]

    loop.run(main)


def test_errors_carry_the_server_fields(loop: Loop, proxy: Any) -> None:
    async def main() -> None:
        async with loop.mod.neon(proxy.database_url(), fetch_endpoint=proxy.url) as sql:
            with pytest.raises(errors.ProgrammingError) as info:
                await sql("SELECT 1 AS ok, FROM nowhere")
            assert info.value.sqlstate == "42601" and info.value.diag.position == "17"
        async with loop.mod.neon(proxy.database_url(password="wrong"), fetch_endpoint=proxy.url) as sql:
            with pytest.raises(errors.OperationalError):
                await sql("SELECT 1")
        async with loop.mod.neon(proxy.database_url(), fetch_endpoint=proxy.url.replace("/sql", "/nope")) as sql:
            with pytest.raises(HTTPStatusError):
                await sql("SELECT 1")

    loop.run(main)


def test_nothing_listening_is_an_error_connecting(loop: Loop) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        sql = loop.mod.neon("postgresql://u:p@db.example/x", fetch_endpoint=f"http://127.0.0.1:{port}/sql")
        with pytest.raises(errors.OperationalError, match="Error connecting to database"):
            await sql("SELECT 1")

    loop.run(main)


def test_queries_share_kept_alive_connections(loop: Loop, proxy: Any, forwarder: Forwarder) -> None:
    async def main() -> None:
        async with loop.mod.neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as sql:
            for i in range(20):
                assert await sql("SELECT $1::int AS i", [i]) == [{"i": i}]
            assert sql.connections_opened == 1 and forwarder.connections == 1

            async def one(i: int) -> None:
                assert await sql("SELECT $1::int AS i, pg_sleep(0.02)::text", [i]) == [{"i": i, "pg_sleep": ""}]

            await loop.concurrently(*(lambda i=i: one(i) for i in range(5)))
            assert sql.connections_opened <= 5
            forwarder.close_idle_connections()
            await loop.sleep(0.05)
            assert await sql("SELECT 1 AS one") == [{"one": 1}]  # a closed idle connection is replaced

    loop.run(main)


def test_a_request_that_may_have_arrived_is_never_sent_again(loop: Loop, proxy: Any, forwarder: Forwarder) -> None:
    async def main() -> None:
        async with loop.mod.neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as sql:
            assert await sql("SELECT 1 AS one") == [{"one": 1}]
            forwarder.swallow_next = True
            with pytest.raises(errors.OperationalError):
                await sql("SELECT 2 AS two")
            assert forwarder.swallowed == 1 and forwarder.connections == 1

    loop.run(main)


def test_https_with_a_custom_ca_and_a_refused_unknown_ca(loop: Loop, tls_proxy: Any, pg: EmbeddedPostgres) -> None:  # noqa: F811
    async def main() -> None:
        url = tls_proxy.url.replace("http://", "https://")
        async with loop.mod.neon(tls_proxy.database_url(), fetch_endpoint=url, sslrootcert=pg.ca_cert_path) as sql:
            assert await sql("SELECT 1 AS one") == [{"one": 1}]
        with pytest.raises(errors.OperationalError, match="certificate verif"):
            await loop.mod.neon(tls_proxy.database_url(), fetch_endpoint=url)("SELECT 1")

    loop.run(main)


def test_a_timeout_or_cancelled_request_cancels_the_query_on_the_server(
    loop: Loop, proxy: Any, admin: SyncClient
) -> None:
    marker = f"http_cancel_{uuid.uuid4().hex[:8]}"

    def running() -> int:
        sql = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE $1 AND state = 'active' AND pid <> pg_backend_pid()"
        return int(admin.query(sql, [f"%{marker}%"]).rows[0]["n"])

    async def main() -> None:
        async with loop.mod.neon(proxy.database_url(), fetch_endpoint=proxy.url) as sql:
            started = time.monotonic()
            with pytest.raises(errors.OperationalError, match="timed out"):
                await sql(f"SELECT pg_sleep(30) AS {marker}", timeout=0.3)
            assert time.monotonic() - started < 5
            async with loop.timeout(0.3) as scope:
                await sql(f"SELECT pg_sleep(30) AS {marker}_2")
            assert scope.expired
            assert await sql("SELECT 1 AS one") == [{"one": 1}]

    loop.run(main)
    wait_until(lambda: running() == 0)


def test_oversized_requests_and_responses_get_the_proxy_answer(loop: Loop, small_proxy: Any) -> None:  # noqa: F811
    async def main() -> None:
        async with loop.mod.neon(small_proxy.database_url(), fetch_endpoint=small_proxy.url, timeout=20) as sql:
            for size in (200_000, 8_000_000):  # the second is refused while we are still sending
                with pytest.raises(HTTPStatusError) as info:
                    await sql("SELECT length($1) AS n", ["x" * size])
                assert info.value.status == 413
            with pytest.raises(HTTPStatusError) as info:
                await sql("SELECT repeat('x', 1000) FROM generate_series(1, 200)")
            assert info.value.status == 507
            assert await sql("SELECT 1 AS n") == [{"n": 1}]

    loop.run(main)
