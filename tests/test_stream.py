"""Client.stream: rows in batches from a suspended portal, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from neon_proto.errors import InterfaceError, ProgrammingError
from neon_proto.sqlstate import DivisionByZero
from neon_sync import Client, dbapi
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def client(pg: EmbeddedPostgres) -> Iterator[Client]:
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


def test_stream_yields_every_row_in_order(client: Client) -> None:
    rows = list(client.stream("SELECT g AS n FROM generate_series(1, 2500) g", batch_rows=1000))
    assert rows == [{"n": i} for i in range(1, 2501)]


def test_stream_takes_parameters_and_a_row_mode(client: Client) -> None:
    rows = list(client.stream("SELECT g, $1::text FROM generate_series(1, $2::int) g", ["x", 3], mode="tuple"))
    assert rows == [(1, "x"), (2, "x"), (3, "x")]


def test_stream_reads_batch_by_batch(client: Client) -> None:
    stream = client.session.stream_open("SELECT generate_series(1, 10)", max_rows=4)
    portal = client._run(stream)
    assert len(portal.rows) == 4 and not portal.done
    client._run(client.session.stream_fetch(portal))
    assert portal.rows == [(5,), (6,), (7,), (8,)]
    client._run(client.session.stream_fetch(portal))
    assert portal.rows == [(9,), (10,)] and portal.done and portal.row_count == 10
    assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_stopping_early_leaves_the_connection_usable(client: Client) -> None:
    it = client.stream("SELECT generate_series(1, 100000)", batch_rows=100)
    assert next(it) == {"generate_series": 1}
    it.close()  # type: ignore[attr-defined]
    assert client.transaction_status == "I"
    assert client.query("SELECT 2 AS two").rows == [{"two": 2}]


def test_another_query_while_streaming_is_refused(client: Client) -> None:
    it = client.stream("SELECT generate_series(1, 10)", batch_rows=2)
    next(it)
    with pytest.raises(InterfaceError, match="in progress"):
        client.query("SELECT 1")
    assert len(list(it)) == 9
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_error_in_the_middle_of_a_stream_is_raised_and_the_connection_survives(client: Client) -> None:
    it = client.stream("SELECT 10 / (5 - g) FROM generate_series(1, 10) g", batch_rows=2, mode="tuple")
    got = []
    with pytest.raises(DivisionByZero):
        for row in it:
            got.append(row)
    assert got == [(2,), (3,), (5,), (10,)]
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_statement_without_rows(client: Client) -> None:
    assert list(client.stream("CREATE TEMP TABLE s (x int)")) == []
    assert client.query("SELECT count(*) AS n FROM s").rows == [{"n": 0}]


def test_parse_error_is_raised(client: Client) -> None:
    with pytest.raises(ProgrammingError):
        list(client.stream("SELEC 1"))
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_stream_inside_a_transaction_keeps_it_open(client: Client) -> None:
    client.query("BEGIN")
    assert list(client.stream("SELECT generate_series(1, 5)", batch_rows=2, mode="tuple")) == [(i,) for i in range(1, 6)]
    assert client.transaction_status == "T"
    client.query("ROLLBACK")


def test_zero_batch_size_is_refused(client: Client) -> None:
    with pytest.raises(ProgrammingError, match="at least one row"):
        list(client.stream("SELECT 1", batch_rows=0))
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_stream_copy_and_named_cursor_over_websocket(proxy: Any) -> None:
    # Through neon_proxy's WebSocket endpoint: Flush, PortalSuspended and COPY pass the tunnel.
    options: dict[str, Any] = {"transport": "websocket", "ws_proxy": proxy.server.ws_proxy, "use_secure_websocket": False}
    with Client(proxy.database_url(), **options) as c:
        assert list(c.stream("SELECT generate_series(1, 5000) AS n", batch_rows=1000, mode="tuple")) == [
            (i,) for i in range(1, 5001)
        ]
        c.query("CREATE TEMP TABLE ws_copy (a int, b text)")
        with c.copy("COPY ws_copy FROM STDIN") as copy:
            for i in range(3000):
                copy.write_row((i, f"row\t{i}"))
        with c.copy("COPY ws_copy TO STDOUT") as copy:
            copy.set_types(["int4", "text"])
            rows = list(copy.rows())
        assert len(rows) == 3000 and rows[-1] == (2999, "row\t2999")
    conn = dbapi.connect(proxy.database_url(), **options)
    try:
        cur = conn.cursor(name="ws_cursor")
        cur.itersize = 100
        cur.execute("SELECT generate_series(1, 450)")
        assert [r[0] for r in cur] == list(range(1, 451))
    finally:
        conn.close()


def test_streaming_memory_stays_at_one_batch(client: Client) -> None:
    # Pure Python: tracemalloc sees every allocation of the driver. 30,000 rows held at once
    # take several MiB; a stream of them never holds more than a batch.
    import tracemalloc

    sql = "SELECT g::int8, 'row number ' || g, now() FROM generate_series(1, 30000) g"
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        count = sum(1 for _ in client.stream(sql, batch_rows=1000, mode="tuple"))
        stream_peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        held = client.execute(sql).rows
        held_peak = tracemalloc.get_traced_memory()[1] - base
        del held
    finally:
        tracemalloc.stop()
    assert count == 30000
    assert stream_peak < 2 * 1024 * 1024, (stream_peak, held_peak)
    assert held_peak > 3 * stream_peak, (stream_peak, held_peak)  # what makes the bound meaningful
