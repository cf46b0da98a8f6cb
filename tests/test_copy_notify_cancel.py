"""COPY in both directions, LISTEN/NOTIFY, cancel, query timeouts and a backend killed mid-query."""

from __future__ import annotations

import io
import pathlib
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from neon_proto.errors import ConnectionClosed, OperationalError, ProgrammingError, QueryCanceled
from neon_proto.sqlstate import (
    AdminShutdown,
    BadCopyFileFormat,
    DivisionByZero,
    InvalidTextRepresentation,
    UndefinedTable,
)
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def client(pg: EmbeddedPostgres) -> Iterator[Client]:
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


@pytest.fixture
def other(pg: EmbeddedPostgres) -> Iterator[Client]:
    """A second connection, to watch or disturb the first."""
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


@pytest.fixture
def items(client: Client) -> str:
    client.query("CREATE TEMP TABLE items (id int, name text)")
    return "items"


def rows_of(client: Client, table: str) -> list[list[object]]:
    return client.query(f"SELECT id, name FROM {table} ORDER BY id", array_mode=True).rows


def usable(client: Client) -> bool:
    return client.query("SELECT 1 AS one").rows == [{"one": 1}]


# ---------------------------------------------------------------- COPY FROM STDIN


def test_copy_from_bytes(client: Client, items: str) -> None:
    assert client.copy_from(f"COPY {items} FROM STDIN", b"1\tone\n2\ttwo\n") == 2
    assert rows_of(client, items) == [[1, "one"], [2, "two"]]


def test_copy_from_str(client: Client, items: str) -> None:
    assert client.copy_from(f"COPY {items} FROM STDIN", "1\tün\n2\t\\N\n") == 2
    assert rows_of(client, items) == [[1, "ün"], [2, None]]


def test_copy_from_an_iterable_of_chunks(client: Client, items: str) -> None:
    chunks: list[bytes | str] = [b"1\tone\n2\t", "tw", b"o\n", b"", "3\tthree\n"]
    assert client.copy_from(f"COPY {items} FROM STDIN", iter(chunks)) == 3
    assert rows_of(client, items) == [[1, "one"], [2, "two"], [3, "three"]]


def test_copy_from_a_binary_file(client: Client, items: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"".join(b"%d,name %d\n" % (i, i) for i in range(1000)))
    with path.open("rb") as f:
        assert client.copy_from(f"COPY {items} FROM STDIN (FORMAT csv)", f) == 1000
    assert rows_of(client, items)[999] == [999, "name 999"]


def test_copy_from_a_text_file(client: Client, items: str, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("1\tété\n2\tnaïve\n", encoding="utf-8")
    with path.open("r", encoding="utf-8") as f:
        assert client.copy_from(f"COPY {items} FROM STDIN", f) == 2
    assert rows_of(client, items) == [[1, "été"], [2, "naïve"]]


def test_copy_from_a_file_like_object(client: Client, items: str) -> None:
    assert client.copy_from(f"COPY {items} FROM STDIN", io.BytesIO(b"7\tseven\n")) == 1
    assert rows_of(client, items) == [[7, "seven"]]


def test_copy_from_nothing(client: Client, items: str) -> None:
    assert client.copy_from(f"COPY {items} FROM STDIN", b"") == 0
    assert usable(client)


def test_copy_from_streams_50_megabytes(client: Client, other: Client) -> None:
    """The data is sent while the iterator runs, never gathered in memory."""
    client.query("CREATE TEMP TABLE big (id int, payload text)")
    line = b"%d\t" + b"x" * 120 + b"\n"
    chunk = b"".join(line % i for i in range(500))  # ~62 KB
    chunks = 50 * 1024 * 1024 // len(chunk) + 1
    seen_by_server: list[int] = []
    pid = client.backend_pid

    def produce() -> Iterator[bytes]:
        for i in range(chunks):
            if i == chunks // 2:
                progress = other.query(
                    "SELECT bytes_processed FROM pg_stat_progress_copy WHERE pid = $1::int", [pid]
                ).rows
                seen_by_server.append(progress[0]["bytes_processed"] if progress else 0)
            yield chunk

    tracemalloc.start()
    try:
        started = time.monotonic()
        count = client.copy_from("COPY big FROM STDIN", produce())
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == chunks * 500
    assert chunks * len(chunk) >= 50 * 1024 * 1024
    assert seen_by_server and seen_by_server[0] > 1024 * 1024, "the server had nothing halfway through"
    assert peak < 10 * 1024 * 1024, f"peak traced memory {peak} bytes"
    assert elapsed < 25
    assert client.query("SELECT count(*) AS n FROM big").rows == [{"n": chunks * 500}]


def test_copy_from_bad_data_is_an_error_and_the_connection_stays_usable(client: Client, items: str) -> None:
    with pytest.raises(InvalidTextRepresentation) as info:
        client.copy_from(f"COPY {items} FROM STDIN", b"1\tone\nnot a number\ttwo\n")
    assert info.value.diag.where is not None and "COPY" in info.value.diag.where
    assert usable(client)
    assert rows_of(client, items) == []


def test_copy_from_with_too_many_columns_is_an_error(client: Client, items: str) -> None:
    with pytest.raises(BadCopyFileFormat):
        client.copy_from(f"COPY {items} FROM STDIN", b"1\tone\textra\n")
    assert usable(client)


def test_copy_from_an_unknown_table_is_an_error(client: Client) -> None:
    with pytest.raises(UndefinedTable):
        client.copy_from("COPY no_such_table FROM STDIN", b"1\n")
    assert usable(client)


def test_error_in_the_data_source_aborts_the_copy(client: Client, items: str) -> None:
    def broken() -> Iterator[bytes]:
        yield b"1\tone\n"
        raise ValueError("the source failed")

    with pytest.raises(ValueError, match="the source failed"):
        client.copy_from(f"COPY {items} FROM STDIN", broken())
    assert usable(client)
    assert rows_of(client, items) == []


def test_copy_from_with_a_non_copy_statement_is_a_programming_error(client: Client) -> None:
    with pytest.raises(ProgrammingError):
        client.copy_from("SELECT 1", b"")
    assert usable(client)


def test_copy_from_with_copy_to_is_a_programming_error(client: Client, items: str) -> None:
    client.query(f"INSERT INTO {items} VALUES (1, 'a')")
    with pytest.raises(ProgrammingError):
        client.copy_from(f"COPY {items} TO STDOUT", b"")
    assert usable(client)


def test_copy_from_stdin_through_query_is_a_programming_error(client: Client, items: str) -> None:
    with pytest.raises(ProgrammingError, match="copy"):
        client.query(f"COPY {items} FROM STDIN")
    assert usable(client)
    with pytest.raises(ProgrammingError, match="copy"):
        client.query(f"COPY {items} TO STDOUT")
    assert usable(client)


def test_copy_in_a_transaction_rolls_back(client: Client, items: str) -> None:
    client.query("BEGIN")
    client.copy_from(f"COPY {items} FROM STDIN", b"1\tone\n")
    assert client.transaction_status == "T"
    client.query("ROLLBACK")
    assert rows_of(client, items) == []


# ---------------------------------------------------------------- COPY TO STDOUT


def test_copy_to_yields_chunks(client: Client) -> None:
    chunks = client.copy_to("COPY (SELECT g, 'row ' || g FROM generate_series(1, 50000) g) TO STDOUT")
    assert iter(chunks) is chunks
    received = list(chunks)
    assert len(received) > 1
    assert all(isinstance(c, bytes) for c in received)
    data = b"".join(received)
    assert data.count(b"\n") == 50000
    assert data.startswith(b"1\trow 1\n") and data.endswith(b"50000\trow 50000\n")
    assert usable(client)


def test_copy_to_csv_with_header(client: Client) -> None:
    data = b"".join(client.copy_to("COPY (SELECT 1 AS a, 'x,y' AS b) TO STDOUT (FORMAT csv, HEADER)"))
    assert data == b'a,b\n1,"x,y"\n'


def test_copy_to_is_lazy(client: Client) -> None:
    chunks = client.copy_to("COPY (SELECT 1) TO STDOUT")
    # Nothing is sent until the iteration starts.
    assert usable(client)
    assert list(chunks) == [b"1\n"]


def test_copy_to_with_an_error_midway(client: Client) -> None:
    with pytest.raises(DivisionByZero):
        for _ in client.copy_to("COPY (SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g) TO STDOUT"):
            pass
    assert usable(client)


def test_copy_to_with_copy_from_is_a_programming_error(client: Client, items: str) -> None:
    with pytest.raises(ProgrammingError):
        list(client.copy_to(f"COPY {items} FROM STDIN"))
    assert usable(client)


def test_abandoned_copy_to_leaves_the_connection_usable(client: Client) -> None:
    chunks = client.copy_to("COPY (SELECT g FROM generate_series(1, 200000) g) TO STDOUT")
    next(chunks)
    chunks.close()
    assert usable(client)


# ---------------------------------------------------------------- LISTEN / NOTIFY


def test_notification_from_another_connection_arrives(client: Client, other: Client) -> None:
    client.listen("jobs")
    other.notify("jobs", "payload 1")
    note = client.wait_notification(timeout=5)
    assert note is not None
    assert (note.channel, note.payload, note.process_id) == ("jobs", "payload 1", other.backend_pid)


def test_wait_notification_times_out_with_none(client: Client) -> None:
    client.listen("quiet")
    started = time.monotonic()
    assert client.wait_notification(timeout=0.5) is None
    assert 0.45 <= time.monotonic() - started < 1.5
    assert usable(client)


def test_notification_sent_while_waiting_wakes_the_waiter(client: Client, other: Client) -> None:
    client.listen("later")
    timer = threading.Timer(0.3, lambda: other.query("NOTIFY later, 'woke'"))
    timer.start()
    try:
        started = time.monotonic()
        note = client.wait_notification(timeout=5)
    finally:
        timer.join()
    assert note is not None and note.payload == "woke"
    assert time.monotonic() - started < 3


def test_notification_received_during_a_query_is_kept(client: Client, other: Client) -> None:
    client.listen("during")
    client.query("BEGIN")
    other.notify("during", "queued")
    client.query("SELECT pg_sleep(0.1)")
    client.query("COMMIT")
    note = client.wait_notification(timeout=0)
    assert note is not None and note.payload == "queued"


def test_own_notification_after_commit(client: Client) -> None:
    client.listen("self")
    client.notify("self", "me")
    note = client.wait_notification(timeout=2)
    assert note is not None and note.process_id == client.backend_pid


def test_notifications_iterator_stops_after_the_timeout(client: Client, other: Client) -> None:
    client.listen("many")
    for i in range(3):
        other.notify("many", str(i))
    assert [n.payload for n in client.notifications(timeout=0.5)] == ["0", "1", "2"]


def test_channel_names_are_quoted(client: Client, other: Client) -> None:
    name = 'Mixed Case "quoted"'
    client.listen(name)
    other.notify(name, "ok")
    note = client.wait_notification(timeout=5)
    assert note is not None and note.channel == name


def test_unlisten_stops_notifications(client: Client, other: Client) -> None:
    client.listen("gone")
    client.unlisten("gone")
    other.notify("gone", "x")
    assert client.wait_notification(timeout=0.3) is None


def test_notification_handlers_are_called(client: Client, other: Client) -> None:
    seen: list[str] = []
    client.session.notification_handlers.append(lambda n: seen.append(n.payload))
    client.listen("handled")
    other.notify("handled", "h")
    assert client.wait_notification(timeout=5) is not None
    assert seen == ["h"]


# ---------------------------------------------------------------- cancel and timeouts


def test_cancel_stops_a_long_query(client: Client) -> None:
    timer = threading.Timer(0.3, client.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(QueryCanceled) as info:
            client.query("SELECT pg_sleep(5)")
    finally:
        timer.join()
    assert info.value.sqlstate == "57014"
    assert isinstance(info.value, OperationalError)
    assert time.monotonic() - started < 3
    assert not client.closed
    assert usable(client)


def test_cancel_with_nothing_running_is_harmless(client: Client) -> None:
    client.cancel()
    time.sleep(0.1)
    assert usable(client)


def test_cancel_in_a_transaction_fails_the_transaction(client: Client) -> None:
    client.query("BEGIN")
    timer = threading.Timer(0.3, client.cancel)
    timer.start()
    try:
        with pytest.raises(QueryCanceled):
            client.query("SELECT pg_sleep($1)", [5])
    finally:
        timer.join()
    assert client.transaction_status == "E"
    client.query("ROLLBACK")
    assert usable(client)


def test_query_timeout_cancels_the_query(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(QueryCanceled):
        client.query("SELECT pg_sleep(5)", timeout=0.5)
    assert 0.4 <= time.monotonic() - started < 3
    assert usable(client)


def test_query_timeout_with_parameters(client: Client) -> None:
    with pytest.raises(QueryCanceled):
        client.query("SELECT pg_sleep($1)", [5], timeout=0.3)
    assert usable(client)


def test_query_finishing_within_its_timeout_is_not_canceled(client: Client) -> None:
    assert client.query("SELECT 1 AS done FROM pg_sleep(0.05)", timeout=5).rows == [{"done": 1}]


def test_a_timeout_does_not_leak_into_later_queries(client: Client) -> None:
    """The socket timeout used for one query must not limit the next one."""
    assert client.query("SELECT 1 AS one", timeout=0.3).rows == [{"one": 1}]
    assert client.query("SELECT 1 AS slept FROM pg_sleep(0.6)").rows == [{"slept": 1}]
    assert client.query("SELECT 1 AS slept FROM pg_sleep($1)", [0.6]).rows == [{"slept": 1}]


# ---------------------------------------------------------------- the server kills the backend


def terminate_soon(killer: Client, pid: int) -> threading.Thread:
    def kill() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            state = killer.query("SELECT state FROM pg_stat_activity WHERE pid = $1::int", [pid]).rows
            if state and state[0]["state"] == "active":
                break
            time.sleep(0.02)
        killer.query("SELECT pg_terminate_backend($1::int)", [pid])

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


def test_backend_terminated_mid_query_is_a_clear_error(client: Client, other: Client) -> None:
    assert client.backend_pid is not None
    thread = terminate_soon(other, client.backend_pid)
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError) as info:
            client.query("SELECT pg_sleep(5)")
    finally:
        thread.join()
    assert time.monotonic() - started < 4
    assert isinstance(info.value, AdminShutdown)
    assert "terminating connection" in str(info.value)
    assert client.closed
    with pytest.raises(ConnectionClosed):
        client.query("SELECT 1")


def test_backend_terminated_while_idle_is_noticed_at_the_next_query(client: Client, other: Client) -> None:
    assert client.backend_pid is not None
    other.query("SELECT pg_terminate_backend($1::int)", [client.backend_pid])
    time.sleep(0.2)
    with pytest.raises(OperationalError):
        client.query("SELECT 1")
    assert client.closed


def test_backend_terminated_while_waiting_for_notifications(client: Client, other: Client) -> None:
    client.listen("never")
    assert client.backend_pid is not None
    killer = threading.Timer(0.2, lambda: other.query("SELECT pg_terminate_backend($1::int)", [client.backend_pid]))
    killer.start()
    try:
        with pytest.raises(OperationalError):
            client.wait_notification(timeout=5)
    finally:
        killer.join()
    assert client.closed


def test_copy_through_the_extended_protocol_is_a_programming_error(client: Client, items: str) -> None:
    with pytest.raises(ProgrammingError, match="copy"):
        client.query(f"COPY {items} FROM STDIN", [])
    assert usable(client)
    with pytest.raises(ProgrammingError, match="copy"):
        client.query(f"COPY {items} TO STDOUT", [])
    assert usable(client)


def test_copy_followed_by_more_pipelined_queries_loses_the_connection(client: Client, items: str) -> None:
    """The server reads the next query's messages as COPY data and ends the session (FATAL:
    protocol synchronization was lost): a clear OperationalError, and the client knows it is closed."""
    pipe = client.pipeline()
    pipe.add(f"COPY {items} FROM STDIN", [])
    pipe.add("SELECT $1::int AS after", [2])
    with pytest.raises(OperationalError):
        pipe.run(atomic=True)
    assert client.closed


def test_copy_as_the_last_query_of_a_pipeline_is_refused_cleanly(client: Client, items: str) -> None:
    pipe = client.pipeline()
    pipe.add("SELECT $1::int AS before", [1])
    pipe.add(f"COPY {items} FROM STDIN", [])
    before, copy = pipe.run()
    assert before.rows == [{"before": 1}]  # type: ignore[union-attr]
    assert isinstance(copy, ProgrammingError)
    assert usable(client)


# ---------------------------------------------------------------- poll: what arrived while idle


def test_poll_collects_notifications_without_blocking(client: Client, other: Client) -> None:
    client.listen("polled")
    assert client.poll() is True
    other.notify("polled", "p")
    deadline = time.monotonic() + 5
    while not client.session.notifications:
        assert time.monotonic() < deadline
        started = time.monotonic()
        assert client.poll() is True
        assert time.monotonic() - started < 0.1
    assert client.wait_notification(timeout=0) is not None


def test_poll_notices_a_terminated_backend(client: Client, other: Client) -> None:
    other.query("SELECT pg_terminate_backend($1::int)", [client.backend_pid])
    deadline = time.monotonic() + 5
    while client.poll():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert client.closed


def test_poll_on_a_closed_client_is_false(client: Client) -> None:
    client.close()
    assert client.poll() is False


def test_breaking_out_of_a_copy_to_loop_leaves_the_connection_usable(client: Client) -> None:
    for _chunk in client.copy_to("COPY (SELECT g FROM generate_series(1, 200000) g) TO STDOUT"):
        break
    assert usable(client)
