"""neon_trio.Client against the real server: auth per role, TLS, queries, errors, cancellation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from neon_proto.errors import OperationalError, PipelineAborted, QueryCanceled
from neon_sync.embedded import EmbeddedPostgres
from neon_trio import Client, Result

ROLES = ["postgres", "trust_user", "cleartext_user", "md5_user", "scram_user"]


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run one async test body under trio."""
    return trio.run(fn)


async def backend_state(pg: EmbeddedPostgres, pid: int) -> tuple[str, str]:
    """(state, query) of a backend, seen from another connection."""
    async with Client(pg.dsn(sslmode="disable")) as admin:
        result = await admin.query("SELECT state, query FROM pg_stat_activity WHERE pid = $1", [pid])
        row = result.rows[0]
        return row["state"], row["query"]


@pytest.mark.parametrize("user", ROLES)
def test_connects_with_each_auth_method_over_plain_tcp(pg: EmbeddedPostgres, user: str) -> None:
    async def main() -> None:
        async with Client(pg.dsn(user, sslmode="disable")) as client:
            result = await client.query("SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert result.rows == [{"who": user, "ssl": False}]

    run(main)


@pytest.mark.parametrize("user", ROLES)
def test_connects_with_each_auth_method_over_tls_verify_full(pg: EmbeddedPostgres, user: str) -> None:
    async def main() -> None:
        dsn = pg.dsn(user, sslmode="verify-full", sslrootcert=pg.ca_cert_path or "")
        async with Client(dsn) as client:
            result = await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert result.rows == [{"ssl": True}]

    run(main)


def test_scram_channel_binding_is_used_when_required(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        dsn = pg.dsn("scram_user", sslmode="verify-full", sslrootcert=pg.ca_cert_path or "", channel_binding="require")
        async with Client(dsn) as client:
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    run(main)


def test_tls_verification_failure_is_an_operational_error(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        # The server's certificate is signed by the throwaway CA, which the system store does not know.
        client = Client(pg.dsn(sslmode="verify-full", sslrootcert="system"))
        with pytest.raises(OperationalError, match="certificate verif"):
            await client.connect()
        assert client.closed

    run(main)


def test_wrong_password_reports_the_server_sqlstate(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        with pytest.raises(OperationalError) as info:
            await Client(pg.dsn("scram_user", password="wrong", sslmode="disable")).connect(wait=True)
        assert info.value.sqlstate == "28P01"
        assert "wrong" not in repr(info.value) + str(info.value)

    run(main)


def test_query_with_params_and_row_shapes(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            result = await client.query("SELECT $1::int + 1 AS n, $2::text AS t", [41, "hé"])
            assert isinstance(result, Result)
            assert result.rows == [{"n": 42, "t": "hé"}]
            assert result.command == "SELECT" and result.row_count == 1
            listed = await client.query("SELECT $1::int AS a, NULL AS b", [7], array_mode=True)
            assert listed.rows == [[7, None]]
            assert [f.name for f in listed.fields] == ["a", "b"]

    run(main)


def test_simple_protocol_without_params_runs_several_statements(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            results = await client.simple_query("SELECT 1 AS a; SELECT 2 AS b")
            assert [r.rows for r in results] == [[{"a": 1}], [{"b": 2}]]
            assert (await client.query("SELECT 1 AS a; SELECT 2 AS b")).rows == [{"b": 2}]

    run(main)


def test_server_error_carries_sqlstate_and_fields_and_connection_survives(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            with pytest.raises(Exception) as info:
                await client.query("SELECT missing_column FROM pg_class", [])
            error = info.value
            assert getattr(error, "sqlstate", None) == "42703"
            assert error.diag.message == 'column "missing_column" does not exist'  # type: ignore[attr-defined]
            assert error.diag.position == "8"  # type: ignore[attr-defined]
            assert (await client.query("SELECT 1 AS ok")).rows == [{"ok": 1}]

    run(main)


def test_pipeline_and_execute_many(pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def main() -> None:
        async with Client(pg.dsn(database=fresh_db, sslmode="disable")) as client:
            await client.query("CREATE TABLE t (n int PRIMARY KEY)")
            assert await client.execute_many("INSERT INTO t VALUES ($1)", [[1], [2], [3]]) == 3
            async with client.pipeline() as pipe:
                count = pipe.add("SELECT count(*)::int AS c FROM t")
                bad = pipe.add("INSERT INTO t VALUES (1)")
                after = pipe.add("SELECT 1 AS still")
            assert count.outcome().rows == [{"c": 3}]
            assert bad.error is not None and bad.error.sqlstate == "23505"
            assert after.outcome().rows == [{"still": 1}]
            pipe2 = client.pipeline()
            pipe2.add("SELECT 1/0")
            pipe2.add("SELECT 2")
            outcomes = await pipe2.run(atomic=True)
            assert isinstance(outcomes[1], PipelineAborted)

    run(main)


def test_move_on_after_cancels_the_server_query_and_keeps_the_connection(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with await Client(pg.dsn(sslmode="disable")).connect(wait=True) as client:
            pid = client.backend_pid
            assert pid is not None
            started = time.monotonic()
            with trio.move_on_after(0.5) as scope:
                await client.query("SELECT pg_sleep(10)")
            elapsed = time.monotonic() - started
            assert scope.cancelled_caught
            assert elapsed < 3, elapsed
            # Drained to ReadyForQuery: the backend is idle again, not sleeping.
            state, query = await backend_state(pg, pid)
            assert state == "idle", (state, query)
            assert client.transaction_status == "I"
            assert (await client.query("SELECT 2 AS next")).rows == [{"next": 2}]
            assert client.backend_pid == pid

    run(main)


def test_fail_after_raises_too_slow_and_the_connection_stays_usable(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            with pytest.raises(trio.TooSlowError):
                with trio.fail_after(0.3):
                    await client.query("SELECT pg_sleep($1)", [10])
            assert (await client.query("SELECT 3 AS n")).rows == [{"n": 3}]

    run(main)


def test_cancelling_a_nursery_cancels_a_query_in_a_transaction(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            await client.query("BEGIN")

            async def sleeper() -> None:
                await client.query("SELECT pg_sleep(10)")

            started = time.monotonic()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sleeper)
                await trio.sleep(0.3)
                nursery.cancel_scope.cancel()
            assert time.monotonic() - started < 3
            assert client.transaction_status == "E"
            await client.query("ROLLBACK")
            assert (await client.query("SELECT 4 AS n")).rows == [{"n": 4}]

    run(main)


def test_query_timeout_raises_query_canceled(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            started = time.monotonic()
            with pytest.raises(QueryCanceled):
                await client.query("SELECT pg_sleep(10)", timeout=0.3)
            assert time.monotonic() - started < 3
            assert (await client.query("SELECT 5 AS n")).rows == [{"n": 5}]

    run(main)


def test_concurrent_tasks_take_turns_on_one_connection(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            seen: list[int] = []

            async def one(i: int) -> None:
                result = await client.query("SELECT $1::int AS i", [i])
                seen.append(result.rows[0]["i"])

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
            assert sorted(seen) == list(range(20))

    run(main)


def test_close_is_idempotent_and_closed_client_refuses_queries(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        client = await Client(pg.dsn(sslmode="disable")).connect()
        assert "password" not in repr(client) and pg.superuser_password not in repr(client)
        await client.close()
        await client.aclose()
        assert client.closed
        with pytest.raises(OperationalError):
            await client.query("SELECT 1")

    run(main)


def test_server_terminating_the_session_is_seen_by_an_idle_watcher(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        client = await Client(pg.dsn(sslmode="disable")).connect(wait=True)
        async with client, Client(pg.dsn(sslmode="disable")) as admin:
            pid = client.backend_pid

            async def terminate() -> None:
                await trio.sleep(0.1)
                await admin.query("SELECT pg_terminate_backend($1::int)", [pid])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(terminate)
                with pytest.raises(OperationalError), trio.fail_after(5):
                    await client.wait_notification()
            assert client.closed

    run(main)


def test_query_in_an_already_cancelled_scope_leaves_the_connection_usable(pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with Client(pg.dsn(sslmode="disable")) as client:
            with trio.CancelScope() as scope:
                scope.cancel()
                await client.query("SELECT pg_sleep(10)")
            assert scope.cancelled_caught
            assert not client.closed
            assert (await client.query("SELECT 6 AS n")).rows == [{"n": 6}]
            with trio.move_on_after(0):
                await client.query("SELECT pg_sleep(10)")
            assert (await client.query("SELECT 7 AS n")).rows == [{"n": 7}]

    run(main)
