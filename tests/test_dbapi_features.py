"""neon_sync.dbapi beyond PEP 249: row factories, connection info, notices, transaction
settings, server-side cursors, streaming, mogrify; against a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from neon_proto.errors import Diagnostic
from neon_proto.rows import args_row, class_row, dict_row, kwargs_row, namedtuple_row, tuple_row
from neon_sync import dbapi
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def conn(pg: EmbeddedPostgres) -> Iterator[dbapi.Connection]:
    c = dbapi.connect(pg.dsn(), sslmode="disable")
    try:
        yield c
    finally:
        if not c.closed:
            c.close()


# ---------------------------------------------------------------- row factories


def test_rows_are_tuples_by_default(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1 AS a, 'x' AS b")
    assert cur.row_factory is tuple_row
    assert cur.fetchone() == (1, "x")


def test_dict_row_on_the_cursor(conn: dbapi.Connection) -> None:
    cur = conn.cursor(row_factory=dict_row)
    cur.execute("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y'")
    assert cur.fetchone() == {"a": 1, "b": "x"}
    assert cur.fetchall() == [{"a": 2, "b": "y"}]


def test_row_factory_on_the_connection_applies_to_new_cursors(pg: EmbeddedPostgres) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", row_factory=dict_row) as c:
        assert c.cursor().execute("SELECT 5 AS five").fetchone() == {"five": 5}
        c.row_factory = namedtuple_row
        row = c.cursor().execute("SELECT 5 AS five, 6 AS \"?column?\"").fetchone()
        assert row.five == 5 and row[1] == 6


def test_namedtuple_row_makes_valid_field_names(conn: dbapi.Connection) -> None:
    cur = conn.cursor(row_factory=namedtuple_row)
    cur.execute('SELECT 1 AS "select", 2 AS "my col", 3 AS "1st"')
    row = cur.fetchone()
    assert tuple(row) == (1, 2, 3)
    assert row._fields[1] == "my_col"


@dataclasses.dataclass
class Item:
    id: int
    name: str


def test_class_row_builds_any_class(conn: dbapi.Connection) -> None:
    cur = conn.cursor(row_factory=class_row(Item))
    cur.execute("SELECT 7 AS id, 'pen' AS name")
    assert cur.fetchall() == [Item(7, "pen")]


def test_args_and_kwargs_rows_call_any_callable(conn: dbapi.Connection) -> None:
    cur = conn.cursor(row_factory=args_row(lambda a, b: a + b))
    assert cur.execute("SELECT 2 AS a, 3 AS b").fetchone() == 5
    cur.row_factory = kwargs_row(lambda **kw: sorted(kw))
    assert cur.execute("SELECT 2 AS b, 3 AS a").fetchmany(1) == [["a", "b"]]


def test_row_factory_follows_each_result_of_nextset(conn: dbapi.Connection) -> None:
    cur = conn.cursor(row_factory=dict_row)
    cur.execute("SELECT 1 AS a; SELECT 2 AS b")
    assert cur.fetchall() == [{"a": 1}]
    cur.nextset()
    assert cur.fetchall() == [{"b": 2}]


# ---------------------------------------------------------------- info and notices


def test_info_tells_about_the_server(conn: dbapi.Connection) -> None:
    info = conn.info
    cur = conn.cursor()
    cur.execute("SELECT current_setting('server_version_num')::int, pg_backend_pid()")
    version, pid = cur.fetchone()
    assert info.server_version == version
    assert info.backend_pid == pid
    assert info.transaction_status == "T"
    conn.rollback()
    assert info.transaction_status == "I"
    assert info.encoding == "utf-8"
    assert info.parameter_status("TimeZone") == "UTC"
    assert info.parameters["client_encoding"] == "UTF8"
    assert info.dbname == "postgres" and isinstance(info.port, int)
    conn.close()
    assert info.transaction_status == "X"


def test_notice_handler_sees_raise_notice(conn: dbapi.Connection) -> None:
    seen: list[Diagnostic] = []
    conn.add_notice_handler(seen.append)
    conn.cursor().execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
    assert [d.message for d in seen] == ["hello 42"]
    assert seen[0].severity == "NOTICE"
    conn.remove_notice_handler(seen.append)
    conn.cursor().execute("DO $$ BEGIN RAISE NOTICE 'again'; END $$")
    assert len(seen) == 1


# ---------------------------------------------------------------- transaction settings


def test_isolation_level_read_only_and_deferrable_apply_to_the_next_transaction(conn: dbapi.Connection) -> None:
    conn.isolation_level = dbapi.IsolationLevel.SERIALIZABLE
    conn.read_only = True
    conn.deferrable = True
    cur = conn.cursor()
    cur.execute("SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'),"
                " current_setting('transaction_deferrable')")
    assert cur.fetchone() == ("serializable", "on", "on")
    conn.rollback()
    conn.isolation_level = "repeatable read"
    conn.read_only = None
    conn.deferrable = None
    cur.execute("SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')")
    assert cur.fetchone() == ("repeatable read", "off")
    conn.rollback()


def test_read_only_transaction_refuses_writes(conn: dbapi.Connection) -> None:
    conn.read_only = True
    with pytest.raises(dbapi.InternalError, match="read-only"):
        conn.cursor().execute("CREATE TEMP TABLE x (a int)")
    conn.rollback()


def test_settings_cannot_change_inside_a_transaction(conn: dbapi.Connection) -> None:
    conn.cursor().execute("SELECT 1")
    with pytest.raises(dbapi.ProgrammingError, match="inside a transaction"):
        conn.isolation_level = dbapi.IsolationLevel.SERIALIZABLE
    with pytest.raises(dbapi.ProgrammingError, match="inside a transaction"):
        conn.read_only = True
    assert conn.isolation_level is None and conn.read_only is None


def test_unknown_isolation_level_names_the_valid_ones(conn: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="SERIALIZABLE"):
        conn.isolation_level = "serialisable"


def test_transaction_block_uses_the_settings(conn: dbapi.Connection) -> None:
    conn.isolation_level = dbapi.IsolationLevel.REPEATABLE_READ
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT current_setting('transaction_isolation')")
        assert cur.fetchone() == ("repeatable read",)


# ---------------------------------------------------------------- mogrify


def test_mogrify_shows_the_literals(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    text = cur.mogrify("SELECT %s, %(n)s", {"n": "it's"}) if False else cur.mogrify(
        "SELECT %s, %s, %s, %s, '%%s', %s", (1, "it's", None, -2, b"\x00\xff")
    )
    assert text == "SELECT 1, 'it''s', NULL, (-2), '%s', '\\x00ff'::bytea"
    cur.execute(text)  # for logs only, but it is what the server would run
    assert cur.fetchone() == (1, "it's", None, -2, "%s", b"\x00\xff")


def test_format_query_leaves_quoted_dollars_alone(conn: dbapi.Connection) -> None:
    assert conn.client.format_query("SELECT $1, '$1', $$ $1 $$ -- $1", ["a"]) == "SELECT 'a', '$1', $$ $1 $$ -- $1"


# ---------------------------------------------------------------- server-side cursors


@pytest.fixture
def numbers(pg: EmbeddedPostgres) -> str:
    name = f"numbers_{uuid.uuid4().hex[:8]}"
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as admin:
        admin.cursor().execute(f"CREATE TABLE {name} AS SELECT g AS n FROM generate_series(1, 25) g")
    return name


def test_named_cursor_fetches_in_batches(conn: dbapi.Connection, numbers: str) -> None:
    cur = conn.cursor(name="c1")
    cur.itersize = 10
    cur.execute(f"SELECT n FROM {numbers} WHERE n > %s ORDER BY n", (0,))
    assert cur.description is not None and cur.description[0].name == "n"
    assert cur.fetchone() == (1,)
    assert cur.fetchmany(3) == [(2,), (3,), (4,)]
    assert [r[0] for r in cur] == list(range(5, 26))
    assert cur.fetchone() is None
    cur.close()
    check = conn.cursor()
    check.execute("SELECT count(*) FROM pg_cursors WHERE name = 'c1'")
    assert check.fetchone() == (0,)


def test_named_cursor_fetchall_reads_the_rest(conn: dbapi.Connection, numbers: str) -> None:
    cur = conn.cursor(name="c2", row_factory=dict_row)
    cur.itersize = 4
    cur.execute(f"SELECT n FROM {numbers} ORDER BY n")
    cur.fetchmany(2)
    assert cur.fetchall() == [{"n": i} for i in range(3, 26)]


def test_named_cursor_is_declared_on_the_server(conn: dbapi.Connection, numbers: str) -> None:
    cur = conn.cursor(name="c3", scrollable=True)
    cur.execute(f"SELECT n FROM {numbers} ORDER BY n")
    check = conn.cursor()
    check.execute("SELECT is_scrollable, is_holdable FROM pg_cursors WHERE name = 'c3'")
    assert check.fetchone() == (True, False)


def test_scrollable_cursor_scrolls_both_ways(conn: dbapi.Connection, numbers: str) -> None:
    cur = conn.cursor(name="c4", scrollable=True)
    cur.itersize = 5
    cur.execute(f"SELECT n FROM {numbers} ORDER BY n")
    cur.scroll(20, mode="absolute")
    assert cur.fetchone() == (21,)
    cur.scroll(-11)
    assert cur.fetchone() == (11,)
    assert cur.rownumber == 11
    cur.scroll(0, mode="absolute")
    assert cur.fetchone() == (1,)


def test_no_scroll_cursor_refuses_to_go_back(conn: dbapi.Connection, numbers: str) -> None:
    cur = conn.cursor(name="c5", scrollable=False)
    cur.itersize = 5
    cur.execute(f"SELECT n FROM {numbers} ORDER BY n")
    cur.scroll(12, mode="absolute")
    with pytest.raises(dbapi.OperationalError, match="only scan forward"):
        cur.scroll(1, mode="absolute")


def test_withhold_cursor_survives_commit(conn: dbapi.Connection, numbers: str) -> None:
    cur = conn.cursor(name="c6", withhold=True)
    cur.itersize = 3
    cur.execute(f"SELECT n FROM {numbers} ORDER BY n")
    conn.commit()
    assert len(cur.fetchall()) == 25
    cur.close()


def test_cursor_without_hold_in_autocommit_is_a_clear_error(pg: EmbeddedPostgres) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        with pytest.raises(dbapi.ProgrammingError, match="withhold=True"):
            c.cursor(name="c7").execute("SELECT 1")
        cur = c.cursor(name="c8", withhold=True)
        assert cur.execute("SELECT 1").fetchall() == [(1,)]


def test_scrollable_is_only_for_named_cursors(conn: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="named"):
        conn.cursor(scrollable=True)


# ---------------------------------------------------------------- cursor.stream


def test_cursor_stream_applies_the_row_factory(conn: dbapi.Connection) -> None:
    cur = conn.cursor(row_factory=dict_row)
    rows = list(cur.stream("SELECT g AS n FROM generate_series(1, %s) g", (5,), size=2))
    assert rows == [{"n": i} for i in range(1, 6)]
    assert cur.description is not None and cur.description[0].name == "n"
    assert conn.info.transaction_status == "T"  # opened by BEGIN in the same flight


def test_cursor_stream_without_parameters_leaves_percent_alone(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    assert list(cur.stream("SELECT '100%'")) == [("100%",)]


def test_executemany_with_settings_opens_that_transaction(conn: dbapi.Connection) -> None:
    conn.isolation_level = dbapi.IsolationLevel.SERIALIZABLE
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE em (a int)")
    conn.commit()
    cur.executemany("INSERT INTO em VALUES (%s)", [(1,), (2,)])
    cur.execute("SELECT current_setting('transaction_isolation'), count(*) FROM em")
    rows: Any = cur.fetchone()
    assert rows == ("serializable", 2)


def test_closing_a_cursor_stream_early_frees_the_connection(conn: dbapi.Connection) -> None:
    for factory in (tuple_row, dict_row):
        cur = conn.cursor(row_factory=factory)
        it = cur.stream("SELECT generate_series(1, 100000)", size=100)
        next(it)
        it.close()  # type: ignore[attr-defined]
        cur.execute("SELECT 1")
        assert cur.fetchone() in ((1,), {"?column?": 1})
