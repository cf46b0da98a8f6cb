"""DB-API 2.0 (PEP 249) over neon_sync, against a real PostgreSQL."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator

import pytest

import neon_sync
from neon_proto.errors import Error
from neon_proto.sqlstate import DivisionByZero, UndefinedTable, UniqueViolation
from neon_sync import dbapi
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def conn(pg: EmbeddedPostgres) -> Iterator[dbapi.Connection]:
    c = dbapi.connect(pg.dsn(), sslmode="disable")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def table(pg: EmbeddedPostgres) -> str:
    """A real (not temporary) table, so that another connection can see what was committed.

    Never dropped: the test's connection may still hold a lock on it at teardown, and the
    throwaway server goes away with the session anyway.
    """
    name = f"dbapi_{uuid.uuid4().hex[:8]}"
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as admin:
        admin.cursor().execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v text)")
    return name


def count_elsewhere(pg: EmbeddedPostgres, table: str) -> int:
    """Rows of ``table`` as another session sees them (only what was committed)."""
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as other:
        cur = other.cursor()
        cur.execute(f"SELECT count(*) FROM {table}")
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


# ---------------------------------------------------------------- module


def test_module_globals() -> None:
    assert dbapi.apilevel == "2.0"
    assert dbapi.threadsafety in (1, 2)
    assert dbapi.paramstyle == "pyformat"
    assert neon_sync.apilevel == "2.0" and neon_sync.paramstyle == "pyformat"


def test_exception_hierarchy_is_pep_249() -> None:
    assert issubclass(dbapi.Warning, Exception)
    assert issubclass(dbapi.Error, Exception)
    assert issubclass(dbapi.InterfaceError, dbapi.Error)
    assert issubclass(dbapi.DatabaseError, dbapi.Error)
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError"):
        assert issubclass(getattr(dbapi, name), dbapi.DatabaseError)


def test_exceptions_are_connection_attributes(conn: dbapi.Connection) -> None:
    for name in (
        "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
        "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    ):  # fmt: skip
        assert getattr(conn, name) is getattr(dbapi, name)


def test_type_objects_compare_equal_to_their_type_codes() -> None:
    assert dbapi.STRING == 25 and dbapi.STRING == 1043
    assert dbapi.NUMBER == 23 and dbapi.NUMBER == 1700 and dbapi.NUMBER != 25
    assert dbapi.DATETIME == 1184 and dbapi.DATETIME == 1082
    assert dbapi.BINARY == 17
    assert dbapi.ROWID == 26


def test_constructors() -> None:
    assert dbapi.Date(2024, 2, 29) == datetime.date(2024, 2, 29)
    assert dbapi.Time(13, 14, 15) == datetime.time(13, 14, 15)
    assert dbapi.Timestamp(2024, 2, 29, 13, 14, 15) == datetime.datetime(2024, 2, 29, 13, 14, 15)
    ticks = datetime.datetime(2024, 2, 29, 13, 14, 15).timestamp()
    assert dbapi.TimestampFromTicks(ticks) == datetime.datetime(2024, 2, 29, 13, 14, 15)
    assert dbapi.DateFromTicks(ticks) == datetime.date(2024, 2, 29)
    assert dbapi.TimeFromTicks(ticks) == datetime.time(13, 14, 15)
    assert dbapi.Binary(bytearray(b"\x00\x01")) == b"\x00\x01"


def test_constructed_values_round_trip(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    values = (dbapi.Date(2024, 2, 29), dbapi.Timestamp(2024, 2, 29, 13, 14, 15), dbapi.Binary(b"\x00\xff"))
    cur.execute("SELECT %s::date, %s::timestamp, %s::bytea", values)
    assert cur.fetchone() == values


# ---------------------------------------------------------------- execute and fetch


def test_positional_placeholders(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT %s::int + %s::int, %s::text", (1, 2, "x"))
    assert cur.fetchall() == [(3, "x")]


def test_named_placeholders(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT %(a)s::int, %(b)s::text, %(a)s::int * 2", {"a": 21, "b": "y"})
    assert cur.fetchall() == [(21, "y", 42)]


def test_double_percent_is_a_literal_percent(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 10 %% 3, %s::text", ("p",))
    assert cur.fetchall() == [(1, "p")]


def test_execute_without_parameters_leaves_percent_alone(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 10 % 3")
    assert cur.fetchall() == [(1,)]


def test_wrong_number_of_parameters_is_a_programming_error(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT %s, %s", (1,))


def test_fetchone_fetchmany_fetchall(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT g FROM generate_series(1, 10) g")
    assert cur.fetchone() == (1,)
    assert cur.fetchmany(3) == [(2,), (3,), (4,)]
    assert cur.fetchmany() == [(5,)]  # arraysize defaults to 1
    cur.arraysize = 2
    assert cur.fetchmany() == [(6,), (7,)]
    assert cur.fetchall() == [(8,), (9,), (10,)]
    assert cur.fetchone() is None
    assert cur.fetchmany(5) == []
    assert cur.fetchall() == []


def test_arraysize_defaults_to_one(conn: dbapi.Connection) -> None:
    assert conn.cursor().arraysize == 1


def test_cursor_is_iterable(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT g FROM generate_series(1, 4) g")
    assert [row for row in cur] == [(1,), (2,), (3,), (4,)]


def test_execute_returns_the_cursor(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    assert cur.execute("SELECT 1") is cur
    assert conn.execute("SELECT 2").fetchall() == [(2,)]


def test_description_has_seven_items(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1::int4 AS i, 'x'::varchar(12) AS v, 1.5::numeric(10, 3) AS n, now() AS ts")
    assert cur.description is not None
    assert all(len(column) == 7 for column in cur.description)
    i, v, n, ts = cur.description
    assert (i.name, i.type_code, i.internal_size) == ("i", 23, 4)
    assert i.type_code == dbapi.NUMBER
    assert (v.name, v.display_size) == ("v", 12)
    assert v.type_code == dbapi.STRING
    assert (n.precision, n.scale) == (10, 3)
    assert ts.type_code == dbapi.DATETIME
    assert tuple(i)[0] == "i"


def test_description_is_none_without_rows(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    assert cur.description is None
    cur.execute("SET search_path = public")
    assert cur.description is None


def test_fetch_without_a_result_is_a_programming_error(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(dbapi.ProgrammingError):
        cur.fetchone()
    cur.execute("SET search_path = public")
    with pytest.raises(dbapi.ProgrammingError):
        cur.fetchall()


def test_rowcount(conn: dbapi.Connection, table: str) -> None:
    cur = conn.cursor()
    assert cur.rowcount == -1
    cur.execute(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    assert cur.rowcount == 3
    cur.execute(f"UPDATE {table} SET v = %s WHERE id > %s", ("z", 1))
    assert cur.rowcount == 2
    cur.execute(f"SELECT * FROM {table}")
    assert cur.rowcount == 3
    cur.execute(f"DELETE FROM {table}")
    assert cur.rowcount == 3


def test_executemany(conn: dbapi.Connection, table: str) -> None:
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(i, str(i)) for i in range(100)])
    assert cur.rowcount == 100
    cur.executemany(f"UPDATE {table} SET v = %(v)s WHERE id = %(id)s", [{"id": 1, "v": "one"}, {"id": 2, "v": "two"}])
    assert cur.rowcount == 2
    cur.execute(f"SELECT v FROM {table} WHERE id IN (1, 2) ORDER BY id")
    assert cur.fetchall() == [("one",), ("two",)]


def test_executemany_with_no_rows(conn: dbapi.Connection, table: str) -> None:
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [])
    assert cur.rowcount == 0


def test_executemany_error_inserts_nothing(conn: dbapi.Connection, table: str) -> None:
    cur = conn.cursor()
    with pytest.raises(dbapi.IntegrityError):
        cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(1, "a"), (1, "b")])
    conn.rollback()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone() == (0,)


def test_callproc(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE FUNCTION pg_temp.add_em(a bigint, b bigint) RETURNS bigint LANGUAGE sql AS 'SELECT a + b'")
    assert cur.callproc("pg_temp.add_em", (2, 3)) == (2, 3)
    assert cur.fetchall() == [(5,)]
    assert cur.callproc("lower", ["ABC"]) == ["ABC"]
    assert cur.fetchone() == ("abc",)


def test_callproc_set_returning_function(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.callproc("generate_series", (1, 3))
    assert cur.fetchall() == [(1,), (2,), (3,)]


def test_nextset_walks_multi_statement_results(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1; SELECT 2, 3; SET search_path = public")
    assert cur.fetchall() == [(1,)]
    assert cur.nextset() is True
    assert cur.fetchall() == [(2, 3)]
    assert cur.nextset() is True
    assert cur.description is None
    assert cur.nextset() is None


def test_nextset_with_one_result_is_none(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT %s::int", (1,))
    assert cur.nextset() is None


def test_double_percent_inside_a_literal_is_a_percent(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 'thi%%s ca%%(u)se', $$50%%$$, %s::text /* %% */", ("p",))
    assert cur.fetchone() == ("thi%s ca%(u)se", "50%", "p")
    cur.execute("SELECT '100%%', '%s'")  # no parameters: the text goes as written
    assert cur.fetchone() == ("100%%", "%s")


def test_mixing_placeholder_styles_is_refused_with_a_clear_message(conn: dbapi.Connection) -> None:
    # As psycopg does: one style per query (the README's example once mixed them).
    with pytest.raises(dbapi.ProgrammingError, match=r"mixes %s and %\(name\)s placeholders: use one style"):
        conn.cursor().execute("SELECT %s, %(x)s", {"x": 1})
    assert conn.client.transaction_status == "I"  # refused before anything was sent


def test_setinputsizes_and_setoutputsize_are_accepted(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.setinputsizes([None])
    cur.setoutputsize(10)
    cur.setoutputsize(10, 0)


def test_server_errors_are_raised_with_their_class(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(UndefinedTable) as info:
        cur.execute("SELECT * FROM no_such_table")
    assert isinstance(info.value, dbapi.ProgrammingError)
    conn.rollback()
    with pytest.raises(DivisionByZero) as info2:
        cur.execute("SELECT 1 / %s", (0,))
    assert isinstance(info2.value, dbapi.DataError)


# ---------------------------------------------------------------- transactions


def test_first_statement_opens_a_transaction(conn: dbapi.Connection) -> None:
    assert conn.client.transaction_status == "I"
    conn.cursor().execute("SELECT 1")
    assert conn.client.transaction_status == "T"
    conn.cursor().execute("SELECT %s::int", (1,))
    assert conn.client.transaction_status == "T"
    conn.commit()
    assert conn.client.transaction_status == "I"


def test_error_position_is_relative_to_the_statement(conn: dbapi.Connection) -> None:
    # BEGIN travels as its own message: the server's position points into our text.
    with pytest.raises(dbapi.ProgrammingError) as info:
        conn.cursor().execute("SELECT 1 AS ok, FROM")
    assert info.value.diag.position == "17"


def test_begin_runs_even_when_the_statement_fails_to_parse(conn: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError):
        conn.cursor().execute("SELEC 1")
    assert conn.client.transaction_status == "E"  # inside the (failed) transaction BEGIN opened
    conn.rollback()
    assert conn.client.transaction_status == "I"


def test_multi_statement_execute_after_begin_keeps_every_result(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1; SELECT 2, 3")
    assert cur.fetchall() == [(1,)]
    assert cur.nextset() is True
    assert cur.fetchall() == [(2, 3)]
    assert conn.client.transaction_status == "T"


def test_statement_with_parameters_opens_a_transaction_too(conn: dbapi.Connection) -> None:
    conn.cursor().execute("SELECT %s::int", (1,))
    assert conn.client.transaction_status == "T"


def test_commit_makes_changes_visible(pg: EmbeddedPostgres, conn: dbapi.Connection, table: str) -> None:
    conn.cursor().execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "a"))
    assert count_elsewhere(pg, table) == 0
    conn.commit()
    assert count_elsewhere(pg, table) == 1


def test_rollback_discards_changes(pg: EmbeddedPostgres, conn: dbapi.Connection, table: str) -> None:
    cur = conn.cursor()
    cur.execute(f"INSERT INTO {table} VALUES (1, 'a')")
    cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)", [(2, "b"), (3, "c")])
    conn.rollback()
    cur.execute(f"SELECT count(*) FROM {table}")
    assert cur.fetchone() == (0,)
    conn.commit()
    assert count_elsewhere(pg, table) == 0


def test_close_without_commit_discards_changes(pg: EmbeddedPostgres, table: str) -> None:
    c = dbapi.connect(pg.dsn(), sslmode="disable")
    c.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
    c.close()
    assert count_elsewhere(pg, table) == 0


def test_commit_and_rollback_outside_a_transaction_do_nothing(conn: dbapi.Connection) -> None:
    conn.commit()
    conn.rollback()
    assert conn.client.transaction_status == "I"


def test_error_needs_a_rollback(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(DivisionByZero):
        cur.execute("SELECT 1/0")
    assert conn.client.transaction_status == "E"
    with pytest.raises(dbapi.InternalError):  # 25P02: current transaction is aborted
        cur.execute("SELECT 1")
    conn.rollback()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]


def test_autocommit_commits_each_statement(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        assert c.autocommit is True
        c.cursor().execute(f"INSERT INTO {table} VALUES (%s, 'a')", (1,))
        assert c.client.transaction_status == "I"
        assert count_elsewhere(pg, table) == 1


def test_autocommit_can_be_switched_between_transactions(conn: dbapi.Connection) -> None:
    conn.autocommit = True
    conn.cursor().execute("SELECT 1")
    assert conn.client.transaction_status == "I"
    conn.autocommit = False
    conn.cursor().execute("SELECT 1")
    assert conn.client.transaction_status == "T"
    with pytest.raises(dbapi.ProgrammingError):
        conn.autocommit = True
    conn.rollback()


def test_connection_context_manager_commits(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable") as c:
        c.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
    assert c.closed
    assert count_elsewhere(pg, table) == 1


def test_connection_context_manager_rolls_back_on_error(pg: EmbeddedPostgres, table: str) -> None:
    with pytest.raises(RuntimeError):
        with dbapi.connect(pg.dsn(), sslmode="disable") as c:
            c.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
            raise RuntimeError("boom")
    assert count_elsewhere(pg, table) == 0


def test_transaction_block_commits(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        with c.transaction():
            c.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
            assert count_elsewhere(pg, table) == 0
        assert count_elsewhere(pg, table) == 1


def test_transaction_block_rolls_back_on_error(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        with pytest.raises(UniqueViolation):
            with c.transaction():
                c.cursor().execute(f"INSERT INTO {table} VALUES (1, 'a')")
                c.cursor().execute(f"INSERT INTO {table} VALUES (1, 'b')")
        assert c.client.transaction_status == "I"
        assert count_elsewhere(pg, table) == 0


def test_nested_transaction_failure_keeps_the_outer_work(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        cur = c.cursor()
        with c.transaction():
            cur.execute(f"INSERT INTO {table} VALUES (1, 'outer')")
            with pytest.raises(UniqueViolation):
                with c.transaction():
                    cur.execute(f"INSERT INTO {table} VALUES (2, 'inner')")
                    cur.execute(f"INSERT INTO {table} VALUES (1, 'clash')")
            assert c.client.transaction_status == "T"
            with c.transaction():
                cur.execute(f"INSERT INTO {table} VALUES (3, 'second inner')")
        cur.execute(f"SELECT id, v FROM {table} ORDER BY id")
        assert cur.fetchall() == [(1, "outer"), (3, "second inner")]
        assert count_elsewhere(pg, table) == 2


def test_nested_transaction_python_error_rolls_back_the_savepoint(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        cur = c.cursor()
        with c.transaction():
            cur.execute(f"INSERT INTO {table} VALUES (1, 'outer')")
            try:
                with c.transaction():
                    cur.execute(f"INSERT INTO {table} VALUES (2, 'inner')")
                    raise KeyError("inner")
            except KeyError:
                pass
        assert count_elsewhere(pg, table) == 1


def test_outer_failure_discards_committed_savepoints(pg: EmbeddedPostgres, table: str) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable", autocommit=True) as c:
        cur = c.cursor()
        with pytest.raises(ValueError):
            with c.transaction():
                with c.transaction():
                    cur.execute(f"INSERT INTO {table} VALUES (1, 'inner')")
                raise ValueError("outer")
        assert count_elsewhere(pg, table) == 0


def test_deeply_nested_savepoints(conn: dbapi.Connection) -> None:
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE nest (n int)")
    with conn.transaction():
        for depth in range(1, 4):
            with conn.transaction():
                cur.execute("INSERT INTO nest VALUES (%s)", (depth,))
                if depth == 2:
                    with pytest.raises(ZeroDivisionError):
                        with conn.transaction():
                            cur.execute("INSERT INTO nest VALUES (99)")
                            1 / 0  # noqa: B018
    cur.execute("SELECT n FROM nest ORDER BY n")
    assert cur.fetchall() == [(1,), (2,), (3,)]


# ---------------------------------------------------------------- closing


def test_closed_cursor_refuses_work(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.close()
    assert cur.closed
    for action in (lambda: cur.execute("SELECT 1"), cur.fetchone, cur.fetchall, lambda: cur.fetchmany(1)):
        with pytest.raises(dbapi.InterfaceError):
            action()


def test_cursor_context_manager_closes(conn: dbapi.Connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert cur.closed


def test_closed_connection_refuses_work(pg: EmbeddedPostgres) -> None:
    c = dbapi.connect(pg.dsn(), sslmode="disable")
    cur = c.cursor()
    c.close()
    assert c.closed
    with pytest.raises(dbapi.InterfaceError):
        c.cursor()
    with pytest.raises(dbapi.InterfaceError):
        cur.execute("SELECT 1")
    with pytest.raises(dbapi.InterfaceError):
        c.commit()
    with pytest.raises(dbapi.InterfaceError):
        c.rollback()


def test_closing_a_connection_twice_is_an_error(pg: EmbeddedPostgres) -> None:
    # PEP 249: "An Error (or subclass) exception will be raised if any operation is attempted
    # with the connection" once closed; the compliance suite checks close() too.
    c = dbapi.connect(pg.dsn(), sslmode="disable")
    c.close()
    with pytest.raises(dbapi.Error, match="already closed"):
        c.close()


def test_context_manager_after_an_explicit_close_does_not_raise(pg: EmbeddedPostgres) -> None:
    with dbapi.connect(pg.dsn(), sslmode="disable") as c:
        c.close()
    assert c.closed


def test_every_error_is_a_dbapi_error(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    with pytest.raises(Error):
        cur.execute("SELEC 1")


def test_connect_accepts_keywords(pg: EmbeddedPostgres) -> None:
    role = pg.role("md5_user")
    with dbapi.connect(host=pg.host, port=pg.port, user=role.name, password=role.password, dbname="postgres", sslmode="disable") as c:
        cur = c.cursor()
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("md5_user",)


def test_connect_failure_is_an_operational_error(pg: EmbeddedPostgres) -> None:
    with pytest.raises(dbapi.OperationalError):
        dbapi.connect(pg.dsn("scram_user", password="nope"), sslmode="disable")


def test_copy_through_execute_is_a_programming_error(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("CREATE TEMP TABLE c (n int)")
    conn.commit()
    for params in (None, ()):
        with pytest.raises(dbapi.ProgrammingError):
            cur.execute("COPY c FROM STDIN", params)
        conn.rollback()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]


def test_connection_cancel_stops_a_running_statement(conn: dbapi.Connection) -> None:
    import threading

    timer = threading.Timer(0.3, conn.cancel)
    timer.start()
    try:
        with pytest.raises(dbapi.OperationalError) as info:
            conn.cursor().execute("SELECT pg_sleep(5)")
    finally:
        timer.join()
    assert getattr(info.value, "sqlstate", None) == "57014"
    conn.rollback()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]


def test_query_without_rows_still_has_a_description(conn: dbapi.Connection) -> None:
    cur = conn.cursor()
    cur.execute("SELECT 1 AS a WHERE false")
    assert cur.description is not None and cur.description[0].name == "a"
    assert cur.rowcount == 0
    assert cur.fetchall() == []
    assert cur.fetchone() is None
