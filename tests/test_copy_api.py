"""``copy()`` (Client and DB-API cursor) in psycopg's manner, against a real PostgreSQL."""

from __future__ import annotations

import datetime
import decimal
import struct
import uuid
from collections.abc import Iterator

import pytest

from neon_proto.copy import CopyRowReader, CopyRowWriter, escape_copy_text, unescape_copy_text
from neon_proto import events as ev
from neon_proto.errors import ProgrammingError, RemoteProtocolError
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from neon_proto.sqlstate import InvalidTextRepresentation
from neon_proto.types import default_registry
from neon_sync import Client, dbapi
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def client(pg: EmbeddedPostgres) -> Iterator[Client]:
    with Client(pg.dsn(), sslmode="disable") as c:
        c.query("CREATE TEMP TABLE t (id int8, name text, at timestamptz, price numeric, tags text[], raw bytea)")
        yield c


ODD = "tab\there\nnew line\\back\rslash é 'q' \"d\""
AT = datetime.datetime(2026, 12, 4, 10, 30, tzinfo=datetime.timezone.utc)


def test_write_row_sends_values_through_the_dumpers(client: Client) -> None:
    rows = [
        (1, ODD, AT, decimal.Decimal("1.50"), ["a", "b c", None], b"\x00\t\n\\"),
        (2, None, None, None, None, None),
        (3, "\\N", AT, decimal.Decimal("-2"), [], b""),
    ]
    with client.copy("COPY t FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    assert copy.rowcount == 3
    got = client.query("SELECT * FROM t ORDER BY id", array_mode=True).rows
    assert [tuple(r) for r in got] == rows


def test_write_takes_bytes_and_str(client: Client) -> None:
    with client.copy("COPY t (id, name) FROM STDIN") as copy:
        copy.write(b"1\tone\n2\t")
        copy.write("two\n")
    assert client.query("SELECT id, name FROM t ORDER BY id", array_mode=True).rows == [[1, "one"], [2, "two"]]


def test_small_writes_rows_and_large_blocks_keep_their_order(client: Client) -> None:
    big = b"".join(f"{i}\tbig\n".encode() for i in range(10, 20000))
    assert len(big) > 64 * 1024
    with client.copy("COPY t (id, name) FROM STDIN") as copy:
        copy.write_row((1, "row"))
        copy.write(b"2\tsmall\n")
        copy.write(big)
        copy.write_row((3, "after"))
    got = client.query("SELECT id, name FROM t", array_mode=True).rows
    assert got[:3] == [[1, "row"], [2, "small"], [10, "big"]]
    assert got[-1] == [3, "after"] and len(got) == 3 + 19990


def test_many_rows_in_large_messages(client: Client) -> None:
    with client.copy("COPY t (id, name) FROM STDIN") as copy:
        for i in range(20000):
            copy.write_row((i, f"name {i}"))
    assert client.query("SELECT count(*) AS n, sum(id) AS s FROM t").rows == [{"n": 20000, "s": sum(range(20000))}]


def test_error_inside_the_block_aborts_the_copy(client: Client) -> None:
    with pytest.raises(RuntimeError):
        with client.copy("COPY t (id) FROM STDIN") as copy:
            copy.write_row((1,))
            raise RuntimeError("stop")
    assert client.query("SELECT count(*) AS n FROM t").rows == [{"n": 0}]
    assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_bad_data_is_the_servers_error(client: Client) -> None:
    with pytest.raises(InvalidTextRepresentation):
        with client.copy("COPY t (id) FROM STDIN") as copy:
            copy.write("not a number\n")
    assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_read_and_iteration(client: Client) -> None:
    client.query("INSERT INTO t (id, name) SELECT g, 'n' || g FROM generate_series(1, 1000) g")
    with client.copy("COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT") as copy:
        data = b"".join(copy)
    assert data == b"".join(f"{i}\tn{i}\n".encode() for i in range(1, 1001))
    with client.copy("COPY (SELECT 1) TO STDOUT") as copy:
        assert copy.read() == b"1\n"
        assert copy.read() == b""
        assert copy.read() == b""


def test_rows_as_text_and_through_the_loaders(client: Client) -> None:
    with client.copy("COPY t FROM STDIN") as copy:
        copy.write_row((1, ODD, AT, decimal.Decimal("1.5"), ["x"], b"\x01"))
        copy.write_row((2, None, None, None, None, None))
    with client.copy("COPY (SELECT id, name, at FROM t ORDER BY id) TO STDOUT") as copy:
        assert list(copy.rows()) == [("1", ODD, "2026-12-04 10:30:00+00"), ("2", None, None)]
    with client.copy("COPY (SELECT id, name, at, price, tags, raw FROM t ORDER BY id) TO STDOUT") as copy:
        copy.set_types(["int8", "text", "timestamptz", "numeric", "text[]", "bytea"])
        assert list(copy.rows()) == [
            (1, ODD, AT, decimal.Decimal("1.5"), ["x"], b"\x01"),
            (2, None, None, None, None, None),
        ]


def test_read_row_one_at_a_time(client: Client) -> None:
    with client.copy("COPY (SELECT g, 'x' || g FROM generate_series(1, 3) g) TO STDOUT") as copy:
        copy.set_types(["int4", "text"])
        assert copy.read_row() == (1, "x1")
        assert list(copy.rows()) == [(2, "x2"), (3, "x3")]
        assert copy.read_row() is None


def test_leaving_a_copy_out_early_drains_it(client: Client) -> None:
    with client.copy("COPY (SELECT generate_series(1, 100000)) TO STDOUT") as copy:
        copy.read()
    assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_wrong_direction_is_a_clear_error(client: Client) -> None:
    with client.copy("COPY (SELECT 1) TO STDOUT") as copy:
        with pytest.raises(ProgrammingError, match="FROM STDIN"):
            copy.write_row((1,))
    with client.copy("COPY t (id) FROM STDIN") as copy:
        with pytest.raises(ProgrammingError, match="TO STDOUT"):
            copy.read()
    with pytest.raises(ProgrammingError, match="COPY"):
        with client.copy("SELECT 1"):
            pass
    assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_copy_out_chunks_hold_many_rows(client: Client) -> None:
    chunks = list(client.copy_to("COPY (SELECT generate_series(1, 50000)) TO STDOUT"))
    assert b"".join(chunks) == b"".join(f"{i}\n".encode() for i in range(1, 50001))
    assert len(chunks) < 5000  # not one chunk per row


def test_cursor_copy_runs_in_the_transaction(pg: EmbeddedPostgres) -> None:
    name = f"copy_{uuid.uuid4().hex[:8]}"
    with dbapi.connect(pg.dsn(), sslmode="disable") as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {name} (a int, b text)")
        conn.commit()
        with cur.copy(f"COPY {name} FROM STDIN") as copy:
            copy.write_row((1, "x"))
        assert conn.info.transaction_status == "T"
        conn.rollback()
        with cur.copy(f"COPY {name} FROM STDIN") as copy:
            copy.write_row((2, "y"))
        conn.commit()
        with cur.copy(f"COPY {name} TO STDOUT") as copy:
            assert list(copy.rows()) == [("2", "y")]


# ---------------------------------------------------------------- the text format, without a server


@pytest.mark.parametrize("text", ["", "plain", ODD, "\\N", "a\\tb", "\t\n\r\\"])
def test_escape_round_trips(text: str) -> None:
    assert unescape_copy_text(escape_copy_text(text)) == text


def test_unescape_reads_every_escape_the_server_writes() -> None:
    assert unescape_copy_text("\\b\\f\\v\\101\\x41\\q") == "\b\f\vAAq"


def test_reader_joins_rows_split_across_chunks() -> None:
    data = CopyRowWriter(default_registry).format_rows([(1, "a\tb"), (None, "c")])
    reader = CopyRowReader(default_registry)
    rows = []
    for i in range(len(data)):
        rows += reader.feed(data[i : i + 1])
    reader.finish()
    assert rows == [("1", "a\tb"), (None, "c")]


def test_reader_refuses_a_cut_row() -> None:
    reader = CopyRowReader(default_registry)
    reader.feed(b"1\t2")
    with pytest.raises(Exception, match="middle of a row"):
        reader.finish()


def test_writer_refuses_nul() -> None:
    with pytest.raises(Exception, match="NUL"):
        CopyRowWriter(default_registry).format_row(("a\x00b",))


# ---------------------------------------------------------------- the machine's CopyData fast path


def _message(type_byte: bytes, body: bytes = b"") -> bytes:
    return type_byte + struct.pack("!i", len(body) + 4) + body


def _copy_out_machine() -> FrontendConnection:
    conn = FrontendConnection()
    conn.send_startup({"user": "u"})
    conn.receive_data(_message(b"R", struct.pack("!i", 0)) + _message(b"Z", b"I"))
    while conn.next_event() is not NEED_DATA:
        pass
    conn.send_query("COPY t TO STDOUT")
    conn.receive_data(_message(b"H", struct.pack("!bh", 0, 0)))
    assert type(conn.next_event()) is ev.CopyOutResponse
    assert conn.state is State.COPY_OUT
    return conn


def test_copy_out_data_takes_every_complete_message_and_stops_at_a_partial_one() -> None:
    conn = _copy_out_machine()
    stream = b"".join(_message(b"d", f"{i}\n".encode()) for i in range(5))
    conn.receive_data(stream[:-2])
    assert conn.copy_out_data() == [b"0\n", b"1\n", b"2\n", b"3\n"]
    assert conn.copy_out_data() == []
    assert conn.next_event() is NEED_DATA  # waits for the rest of message 4
    tail = _message(b"c") + _message(b"C", b"COPY 5\x00") + _message(b"Z", b"I")
    conn.receive_data(stream[-2:] + tail)
    assert conn.copy_out_data() == [b"4\n"]
    # What next_event waited for was consumed: the small messages behind are read at once.
    assert type(conn.next_event()) is ev.CopyDone
    assert type(conn.next_event()) is ev.CommandComplete
    assert type(conn.next_event()) is ev.ReadyForQuery
    assert conn.state is State.READY


def test_copy_out_data_leaves_a_bad_length_to_next_event() -> None:
    conn = _copy_out_machine()
    conn.receive_data(b"d" + struct.pack("!i", 2) + b"xx")
    assert conn.copy_out_data() == []
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_copy_out_data_outside_copy_is_empty() -> None:
    assert FrontendConnection().copy_out_data() == []
