"""neon_trio.Client and neon_asyncio.Client (default loop and uvloop) against the real server:
auth, TLS, queries, errors, pipelines, COPY through async iterables, LISTEN/NOTIFY, and
cancellation checked on the server side."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from aio import Loop, backend_activity, backends_of, wait_until, loop, admin  # noqa: F401  (fixtures)
from neon_proto.errors import (
    ConnectionClosed,
    DataError,
    InterfaceError,
    OperationalError,
    PipelineAborted,
    ProgrammingError,
    QueryCanceled,
)
from neon_sync import Client as SyncClient
from neon_sync.embedded import EmbeddedPostgres

ROLES = ["trust_user", "cleartext_user", "md5_user", "scram_user"]


def dsn(pg: EmbeddedPostgres, **params: str) -> str:
    return pg.dsn(**{"sslmode": "disable", **params})


# ---------------------------------------------------------------- connecting


@pytest.mark.parametrize("user", ROLES)
def test_connects_with_each_auth_method_over_tls_and_plain(loop: Loop, pg: EmbeddedPostgres, user: str) -> None:
    async def main() -> None:
        tls = pg.dsn(user, sslmode="verify-full", sslrootcert=pg.ca_cert_path or "")
        for url, ssl in ((dsn(pg, user=user), False), (tls, True)):
            async with loop.mod.Client(url) as client:
                sql = "SELECT current_user AS who, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                assert (await client.query(sql)).rows == [{"who": user, "ssl": ssl}]

    loop.run(main)


def test_scram_channel_binding_when_required(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        url = pg.dsn("scram_user", sslmode="verify-full", sslrootcert=pg.ca_cert_path or "", channel_binding="require")
        async with loop.mod.Client(url) as client:
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_tls_verification_failure_is_an_operational_error(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        client = loop.mod.Client(pg.dsn(sslmode="verify-full", sslrootcert="system"))
        with pytest.raises(OperationalError, match="certificate verif"):
            await client.connect()
        assert client.closed

    loop.run(main)


def test_wrong_password_reports_the_sqlstate_and_hides_the_password(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        with pytest.raises(OperationalError) as info:
            await loop.mod.Client(pg.dsn("scram_user", password="wrong-secret", sslmode="disable")).connect(wait=True)
        assert info.value.sqlstate == "28P01"
        assert "wrong-secret" not in repr(info.value) + str(info.value)

    loop.run(main)


def test_nothing_listening_is_an_operational_error(loop: Loop) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main() -> None:
        with pytest.raises(OperationalError, match="could not connect"):
            await loop.mod.Client(f"postgresql://u@127.0.0.1:{port}/db", sslmode="disable").connect()

    loop.run(main)


def test_query_before_connect_is_an_interface_error(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        with pytest.raises(InterfaceError):
            await loop.mod.Client(dsn(pg)).query("SELECT 1")

    loop.run(main)


@pytest.mark.parametrize("loop", [Loop("trio"), Loop("asyncio")], ids=["trio", "asyncio"])
def test_connect_timeout_against_a_silent_server(loop: Loop) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts in the kernel, never answers

    async def main() -> None:
        client = loop.mod.Client(f"postgresql://u@127.0.0.1:{silent.getsockname()[1]}/db", sslmode="disable", connect_timeout="1")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="timed out"):
            await client.connect(wait=True)
        assert time.monotonic() - started < 3
        assert client.closed

    try:
        loop.run(main)
    finally:
        silent.close()


def test_cancelled_connects_leave_no_backend_behind(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    app = f"cancelled_connect_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        interrupted = 0
        for step in range(40):
            client = loop.mod.Client(pg.dsn("scram_user"), sslmode="require", application_name=app)
            async with loop.timeout(step * 0.0005) as scope:
                await client.connect()
            if scope.expired:
                interrupted += 1
                with pytest.raises((InterfaceError, ConnectionClosed)):
                    await client.query("SELECT 1")  # never half connected
            else:
                assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
                await client.close()
        assert interrupted > 0

    loop.run(main)
    wait_until(lambda: backends_of(admin, app) == 0)


# ---------------------------------------------------------------- queries


def test_query_with_params_and_row_shapes(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            result = await client.query("SELECT $1::int AS a, $2::text AS b", [1, "x"])
            assert result.rows == [{"a": 1, "b": "x"}] and result.row_count == 1
            assert (await client.query("SELECT $1::int AS a", [2], array_mode=True)).rows == [[2]]
            assert (await client.execute("SELECT $1::int AS a, 'y' AS b", [3])).rows == [(3, "y")]
            assert [f.name for f in result.fields] == ["a", "b"]

    loop.run(main)


def test_binary_results_and_prepared_statement_cache(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg), binary=True, prepared_statement_cache_size=8) as client:
            for i in range(3):
                assert (await client.query("SELECT $1::int8 + 1 AS n", [i])).rows == [{"n": i + 1}]

    loop.run(main)


def test_simple_protocol_runs_several_statements(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            assert (await client.query("SELECT 1 AS a; SELECT 2 AS b")).rows == [{"b": 2}]
            results = await client.simple_query("SELECT 1 AS a; SELECT 2 AS b")
            assert [r.rows for r in results] == [[{"a": 1}], [{"b": 2}]]

    loop.run(main)


def test_server_error_carries_sqlstate_and_the_connection_survives(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            with pytest.raises(loop.mod.ProgrammingError) as info:
                await client.query("SELECT * FROM no_such_table")
            assert info.value.sqlstate == "42P01" and info.value.diag.message
            with pytest.raises(DataError):
                await client.query("SELECT 1/0")
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_pipeline_and_execute_many(loop: Loop, pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def main() -> None:
        async with loop.mod.Client(pg.dsn(database=fresh_db), sslmode="disable") as client:
            await client.query("CREATE TABLE t (a int PRIMARY KEY)")
            assert await client.execute_many("INSERT INTO t VALUES ($1)", [[i] for i in range(100)]) == 100
            async with client.pipeline() as p:
                first = p.add("SELECT count(*)::int AS n FROM t")
                p.add("INSERT INTO t VALUES (1)")
                third = p.add("SELECT 3 AS x")
            assert first.outcome().rows == [{"n": 100}] and third.outcome().rows == [{"x": 3}]
            p2 = client.pipeline()
            p2.add("SELECT 1/0")
            p2.add("SELECT 2 AS two")
            out = await p2.run(atomic=True)
            assert isinstance(out[0], DataError) and isinstance(out[1], PipelineAborted)

    loop.run(main)


def test_concurrent_tasks_take_turns_on_one_connection(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        seen: list[int] = []
        async with loop.mod.Client(dsn(pg)) as client:

            def worker(i: int) -> Any:
                async def run() -> None:
                    result = await client.query("SELECT $1::int AS i, pg_sleep(0.01)::text", [i])
                    seen.append(result.rows[0]["i"])

                return run

            await loop.concurrently(*(worker(i) for i in range(10)))
        assert sorted(seen) == list(range(10))

    loop.run(main)


def test_close_is_idempotent_and_a_closed_client_refuses_queries(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        client = await loop.mod.Client(dsn(pg)).connect()
        await client.close()
        await client.close()
        assert client.closed
        with pytest.raises(ConnectionClosed):
            await client.query("SELECT 1")

    loop.run(main)


def test_register_type_loads_an_enum(loop: Loop, pg: EmbeddedPostgres, fresh_db: str) -> None:
    async def main() -> None:
        async with loop.mod.Client(pg.dsn(database=fresh_db), sslmode="disable") as client:
            await client.query("CREATE TYPE mood AS ENUM ('sad', 'happy')")
            await client.register_type("mood")
            assert (await client.query("SELECT ARRAY['happy'::mood] AS m")).rows == [{"m": ["happy"]}]

    loop.run(main)


def test_backend_terminated_mid_query_is_a_clear_error(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    async def main() -> None:
        async with await loop.mod.Client(dsn(pg)).connect(wait=True) as client:
            pid = client.backend_pid

            async def kill() -> None:
                await loop.sleep(0.2)
                admin.query("SELECT pg_terminate_backend($1::int)", [pid])

            async def query() -> None:
                with pytest.raises(OperationalError):
                    await client.query("SELECT pg_sleep(5)")

            await loop.concurrently(query, kill)
            assert client.closed

    loop.run(main)


# ---------------------------------------------------------------- COPY


async def _numbers(n: int) -> AsyncIterator[str]:
    for i in range(n):
        yield f"{i}\n"


def test_copy_from_bytes_str_iterables_and_async_iterables(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            await client.query("CREATE TEMP TABLE items (n int)")
            assert await client.copy_from("COPY items FROM STDIN", b"1\n2\n") == 2
            assert await client.copy_from("COPY items FROM STDIN", "3\n") == 1
            assert await client.copy_from("COPY items FROM STDIN", [b"4\n", "5\n"]) == 2
            assert await client.copy_from("COPY items FROM STDIN", _numbers(1000)) == 1000
            assert (await client.query("SELECT count(*)::int AS n FROM items")).rows == [{"n": 1005}]

    loop.run(main)


def test_copy_from_bad_data_is_an_error_and_the_connection_stays_usable(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            await client.query("CREATE TEMP TABLE items (n int)")
            with pytest.raises(DataError):
                await client.copy_from("COPY items FROM STDIN", "1\nnot a number\n")
            with pytest.raises(ProgrammingError):
                await client.copy_from("SELECT 1", b"")

            async def failing() -> AsyncIterator[bytes]:
                yield b"1\n"
                raise ValueError("source broke")

            with pytest.raises(ValueError):
                await client.copy_from("COPY items FROM STDIN", failing())
            assert (await client.query("SELECT count(*)::int AS n FROM items")).rows == [{"n": 0}]

    loop.run(main)


def test_copy_to_streams_chunks_and_leaving_early_keeps_the_connection(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            async with client.copy_to("COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT") as chunks:
                data = b"".join([chunk async for chunk in chunks])
            assert data == b"1\n2\n3\n"
            async with client.copy_to("COPY (SELECT g FROM generate_series(1, 50000) g) TO STDOUT") as chunks:
                async for _chunk in chunks:
                    break
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
            with pytest.raises(ProgrammingError):
                async for _chunk in client.copy_to("SELECT 1"):
                    pass

    loop.run(main)


# ---------------------------------------------------------------- LISTEN / NOTIFY


def test_notifications_arrive_as_an_async_iterator(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as listener, loop.mod.Client(dsn(pg)) as sender:
            await listener.listen("news")
            assert await listener.wait_notification(0.05) is None

            async def send() -> None:
                await loop.sleep(0.05)
                for i in range(3):
                    await sender.notify("news", f"m{i}")

            got: list[str] = []

            async def receive() -> None:
                async for note in listener.notifications(timeout=1.0):
                    got.append(note.payload)
                    if len(got) == 3:
                        break

            await loop.concurrently(send, receive)
            assert got == ["m0", "m1", "m2"]
            started = time.monotonic()
            assert [n async for n in listener.notifications(timeout=0.1)] == []
            assert time.monotonic() - started < 1

    loop.run(main)


def test_poll_notices_a_terminated_backend(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    async def main() -> None:
        async with await loop.mod.Client(dsn(pg)).connect(wait=True) as client:
            assert client.poll()
            admin.query("SELECT pg_terminate_backend($1::int)", [client.backend_pid])
            for _ in range(100):
                await loop.sleep(0.02)
                if not client.poll():
                    break
            assert client.closed

    loop.run(main)


# ---------------------------------------------------------------- cancellation


def test_a_deadline_cancels_the_query_on_the_server_and_keeps_the_connection(
    loop: Loop, pg: EmbeddedPostgres, admin: SyncClient
) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            started = time.monotonic()
            async with loop.timeout(0.2) as scope:
                await client.query("SELECT pg_sleep(30)")
            assert scope.expired and time.monotonic() - started < 5
            assert client.transaction_status == "I" and not client.closed
            state = backend_activity(admin, client.backend_pid)
            assert state is not None and state[0] == "idle"
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_query_timeout_bounds_the_call_and_raises_query_canceled(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            started = time.monotonic()
            with pytest.raises(QueryCanceled):
                await client.query("SELECT pg_sleep($1)", [30], timeout=0.2)
            assert time.monotonic() - started < 5
            assert (await client.query("SELECT 2 AS two", timeout=5)).rows == [{"two": 2}]

    loop.run(main)


def test_cancel_in_a_transaction_fails_only_the_transaction(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            await client.query("BEGIN")
            async with loop.timeout(0.1):
                await client.query("SELECT pg_sleep(30)")
            assert client.transaction_status == "E"
            await client.query("ROLLBACK")
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_a_cancelled_copy_from_is_rolled_back_and_the_connection_stays_usable(
    loop: Loop, pg: EmbeddedPostgres, admin: SyncClient
) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            await client.query("CREATE TEMP TABLE items (n int)")

            async def slow() -> AsyncIterator[bytes]:
                yield b"1\n2\n"
                await loop.sleep(30)
                yield b"3\n"

            async with loop.timeout(0.2) as scope:
                await client.copy_from("COPY items FROM STDIN", slow())
            assert scope.expired
            assert backend_activity(admin, client.backend_pid) is not None
            assert (await client.query("SELECT count(*)::int AS n FROM items")).rows == [{"n": 0}]
            assert backend_activity(admin, client.backend_pid)[0] == "idle"  # type: ignore[index]

    loop.run(main)


def test_a_cancelled_copy_to_is_drained_and_the_connection_stays_usable(
    loop: Loop, pg: EmbeddedPostgres, admin: SyncClient
) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            async with loop.timeout(0.2) as scope:
                async with client.copy_to("COPY (SELECT g, pg_sleep(0.001) FROM generate_series(1, 100000) g) TO STDOUT") as chunks:
                    async for _chunk in chunks:
                        await loop.sleep(0.05)
            assert scope.expired
            assert backend_activity(admin, client.backend_pid)[0] == "idle"  # type: ignore[index]
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_sibling_failure_cancels_the_query_on_the_server(loop: Loop, pg: EmbeddedPostgres, admin: SyncClient) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:

            async def fail() -> None:
                await loop.sleep(0.2)
                raise KeyError("sibling failed")

            async def query() -> None:
                await client.query("SELECT pg_sleep(30)")

            with pytest.raises((KeyError, ExceptionGroup)):
                await loop.concurrently(query, fail)
            assert backend_activity(admin, client.backend_pid)[0] == "idle"  # type: ignore[index]
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_trio_fail_after_and_a_cancelled_nursery(pg: EmbeddedPostgres, admin: SyncClient) -> None:
    import neon_trio

    async def main() -> None:
        async with neon_trio.Client(dsn(pg)) as client:
            with pytest.raises(trio.TooSlowError):
                with trio.fail_after(0.1):
                    await client.query("SELECT pg_sleep(30)")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.query, "SELECT pg_sleep(30)")
                await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
            assert backend_activity(admin, client.backend_pid)[0] == "idle"  # type: ignore[index]
            with trio.CancelScope() as scope:
                scope.cancel()
                await client.query("SELECT 1")  # cancelled before anything is sent
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    trio.run(main)


@pytest.mark.parametrize("how", ["wait_for", "task.cancel"])
def test_asyncio_wait_for_and_task_cancel(pg: EmbeddedPostgres, admin: SyncClient, how: str) -> None:
    import neon_asyncio

    async def main() -> None:
        async with neon_asyncio.Client(dsn(pg)) as client:
            if how == "wait_for":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.query("SELECT pg_sleep(30)"), 0.1)
            else:
                task = asyncio.create_task(client.query("SELECT pg_sleep(30)"))
                await asyncio.sleep(0.1)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert backend_activity(admin, client.backend_pid)[0] == "idle"  # type: ignore[index]
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    asyncio.run(main())


def test_a_misspelt_keyword_is_a_type_error_naming_the_right_one(loop: Loop, pg: EmbeddedPostgres) -> None:
    with pytest.raises(TypeError, match="did you mean 'password'"):
        loop.mod.Client(dsn(pg), pasword="x")
    with pytest.raises(TypeError, match="Pool\\(\\) got an unexpected keyword argument 'max_sise'"):
        loop.mod.Pool(dsn(pg), max_sise=3)


class StallingServer:
    """A hostile server for the client: logs anyone in (trust), then answers a query with a
    RowDescription and half a DataRow and goes silent; CancelRequests are taken and ignored."""

    def __init__(self) -> None:
        import struct
        import threading

        self._struct = struct
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cancels = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        pack = self._struct.pack
        try:
            head = conn.recv(8)
            length, code = self._struct.unpack("!ii", head)
            conn.recv(length - 8)
            if code == 80877102:  # CancelRequest
                self.cancels += 1
                conn.close()
                return
            conn.sendall(b"R" + pack("!ii", 8, 0) + b"K" + pack("!iii", 12, 4242, 99) + b"Z" + pack("!ic", 5, b"I"))
            conn.recv(65536)  # the query
            field = b"x\0" + pack("!ihihih", 0, 0, 23, 4, -1, 0)
            conn.sendall(b"T" + pack("!ih", 4 + 2 + len(field), 1) + field + b"D" + pack("!ih", 100, 1) + b"\0\0")
            conn.recv(65536)  # silence until the client goes away
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for conn in self._conns:
            conn.close()


def test_query_timeout_bounds_the_call_against_a_server_that_stops_mid_row(loop: Loop) -> None:
    server = StallingServer()

    async def main() -> None:
        url = f"postgresql://u@127.0.0.1:{server.port}/db"
        async with loop.mod.Client(url, sslmode="disable", cancel_timeout=0.5) as client:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="timed out"):
                await client.query("SELECT 1", timeout=0.3)
            assert time.monotonic() - started < 2.0  # timeout + grace, not forever
            assert client.closed

    try:
        loop.run(main)
        assert server.cancels == 1
    finally:
        server.close()


def test_stream_reads_a_large_result_in_batches_and_can_stop_early(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        async with loop.mod.Client(dsn(pg)) as client:
            total = 0
            async with client.stream("SELECT g, 'x' AS t FROM generate_series(1, $1::int) g", [25000], max_rows=1000) as rows:
                async for row in rows:
                    total += row[0]
                assert [f.name for f in rows.fields] == ["g", "t"]
            assert total == 25000 * 25001 // 2
            async with client.stream("SELECT g FROM generate_series(1, 100000) g", max_rows=100) as rows:
                async for row in rows:
                    if row[0] == 150:
                        break
            assert client.transaction_status == "I"
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
            left_open = client.stream("SELECT g FROM generate_series(1, 1000) g", max_rows=10)
            assert await left_open.__anext__() == (1,)
            assert (await client.query("SELECT 2 AS two")).rows == [{"two": 2}]  # closes the portal first

    loop.run(main)


def test_trio_every_call_is_a_checkpoint(pg: EmbeddedPostgres) -> None:
    import neon_trio
    from trio.testing import assert_checkpoints

    async def main() -> None:
        async with neon_trio.Pool(dsn(pg), max_size=1) as pool:
            with assert_checkpoints():
                client = await pool.acquire()
            with assert_checkpoints():
                await client.connect()  # already connected
            with assert_checkpoints():
                await client.query("SELECT 1")
            await client.listen("self_note")
            await client.notify("self_note", "x")
            with assert_checkpoints():
                await client.wait_notification(1)  # already queued
            with assert_checkpoints():
                await pool.release(client)
        conn = await neon_trio.connect(dsn(pg))
        cur = await conn.execute("SELECT 1")
        with assert_checkpoints():
            await cur.fetchone()
        await conn.close()
        with assert_checkpoints():
            await conn.close()  # twice

    trio.run(main)


def test_connects_over_a_unix_socket(loop: Loop, pg: EmbeddedPostgres) -> None:
    if pg.socket_dir is None:
        pytest.skip("the server has no Unix socket here")
    socket_dir = pg.socket_dir

    async def main() -> None:
        async with loop.mod.Client(host=socket_dir, port=pg.port, user="postgres", dbname="postgres") as client:
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
            async with loop.timeout(0.1):
                await client.query("SELECT pg_sleep(10)")  # the cancel request goes over the socket too
            assert (await client.query("SELECT 2 AS two")).rows == [{"two": 2}]

    loop.run(main)
