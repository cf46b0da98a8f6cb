"""PEP 249's two-phase commit extension (xid, tpc_begin, tpc_prepare, tpc_commit,
tpc_rollback, tpc_recover) against a real PostgreSQL (max_prepared_transactions > 0)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from neon_sync import dbapi
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def dsn(pg: EmbeddedPostgres, fresh_db: str) -> str:
    return pg.dsn(database=fresh_db, sslmode="disable")


@pytest.fixture
def conn(dsn: str) -> Iterator[dbapi.Connection]:
    c = dbapi.connect(dsn)
    c.cursor().execute("CREATE TABLE tpc_t (v int)")
    c.commit()
    yield c
    if not c.closed:
        c.close()


def new_xid(conn: dbapi.Connection) -> dbapi.Xid:
    return conn.xid(42, f"gtrid-{uuid.uuid4().hex[:8]}", "bqual")


def committed_rows(dsn: str) -> list[int]:
    with dbapi.connect(dsn, autocommit=True) as other:
        cur = other.cursor()
        cur.execute("SELECT v FROM tpc_t ORDER BY v")
        return [r[0] for r in cur.fetchall()]


def prepared_gids(dsn: str) -> list[str]:
    with dbapi.connect(dsn, autocommit=True) as other:
        cur = other.cursor()
        cur.execute("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")
        return [r[0] for r in cur.fetchall()]


def test_xid_behaves_as_a_three_tuple(conn: dbapi.Connection) -> None:
    xid = conn.xid(42, "gtrid", "bqual")
    assert tuple(xid) == (42, "gtrid", "bqual")
    assert xid[0] == 42 and xid[1] == "gtrid" and xid[2] == "bqual"
    assert len(xid) == 3
    assert (xid.format_id, xid.gtrid, xid.bqual) == (42, "gtrid", "bqual")


def test_xid_parts_are_checked(conn: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError, match="64 bytes"):
        conn.xid(1, "g" * 65, "b")
    with pytest.raises(dbapi.ProgrammingError, match="format_id"):
        conn.xid(-1, "g", "b")


def test_tpc_commit_without_prepare_is_one_phase(conn: dbapi.Connection, dsn: str) -> None:
    conn.tpc_begin(new_xid(conn))
    conn.cursor().execute("INSERT INTO tpc_t VALUES (1)")
    conn.tpc_commit()
    assert committed_rows(dsn) == [1]
    assert prepared_gids(dsn) == []


def test_tpc_rollback_without_prepare(conn: dbapi.Connection, dsn: str) -> None:
    conn.tpc_begin(new_xid(conn))
    conn.cursor().execute("INSERT INTO tpc_t VALUES (1)")
    conn.tpc_rollback()
    assert committed_rows(dsn) == []


def test_prepared_transaction_survives_until_tpc_commit(conn: dbapi.Connection, dsn: str) -> None:
    xid = new_xid(conn)
    conn.tpc_begin(xid)
    conn.cursor().execute("INSERT INTO tpc_t VALUES (2)")
    conn.tpc_prepare()
    assert committed_rows(dsn) == []
    assert len(prepared_gids(dsn)) == 1
    conn.tpc_commit()
    assert committed_rows(dsn) == [2]
    assert prepared_gids(dsn) == []


def test_prepared_transaction_rolled_back(conn: dbapi.Connection, dsn: str) -> None:
    conn.tpc_begin(new_xid(conn))
    conn.cursor().execute("INSERT INTO tpc_t VALUES (3)")
    conn.tpc_prepare()
    conn.tpc_rollback()
    assert committed_rows(dsn) == []
    assert prepared_gids(dsn) == []


def test_recover_then_commit_from_another_connection(conn: dbapi.Connection, dsn: str) -> None:
    xid = new_xid(conn)
    conn.tpc_begin(xid)
    conn.cursor().execute("INSERT INTO tpc_t VALUES (4)")
    conn.tpc_prepare()
    conn.close()  # the prepared transaction outlives its connection
    with dbapi.connect(dsn) as other:
        recovered = other.tpc_recover()
        assert recovered == [xid]
        other.tpc_commit(recovered[0])
    assert committed_rows(dsn) == [4]


def test_recover_then_rollback_by_xid(conn: dbapi.Connection, dsn: str) -> None:
    xid = new_xid(conn)
    conn.tpc_begin(xid)
    conn.cursor().execute("INSERT INTO tpc_t VALUES (5)")
    conn.tpc_prepare()
    with dbapi.connect(dsn) as other:
        other.tpc_rollback(xid)
    assert committed_rows(dsn) == [] and prepared_gids(dsn) == []


def test_a_foreign_transaction_name_is_recovered_as_it_is(conn: dbapi.Connection, dsn: str) -> None:
    with dbapi.connect(dsn) as other:
        other.cursor().execute("INSERT INTO tpc_t VALUES (6)")
        other.cursor().execute("PREPARE TRANSACTION 'not-an-xa-id'")
    recovered = conn.tpc_recover()
    assert recovered == [dbapi.Xid(None, "not-an-xa-id", None)]
    conn.tpc_commit(recovered[0])
    assert committed_rows(dsn) == [6]


def test_tpc_begin_inside_a_transaction_is_refused(conn: dbapi.Connection) -> None:
    conn.cursor().execute("SELECT 1")
    with pytest.raises(dbapi.ProgrammingError, match="inside a transaction"):
        conn.tpc_begin(new_xid(conn))


def test_tpc_begin_inside_a_two_phase_transaction_is_refused(conn: dbapi.Connection) -> None:
    conn.tpc_begin(new_xid(conn))
    with pytest.raises(dbapi.ProgrammingError):
        conn.tpc_begin(new_xid(conn))
    conn.tpc_rollback()


def test_commit_and_rollback_inside_a_two_phase_transaction_are_refused(conn: dbapi.Connection) -> None:
    conn.tpc_begin(new_xid(conn))
    with pytest.raises(dbapi.ProgrammingError, match="tpc_commit"):
        conn.commit()
    with pytest.raises(dbapi.ProgrammingError, match="tpc_rollback"):
        conn.rollback()
    conn.tpc_rollback()


def test_misuse_outside_a_two_phase_transaction(conn: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError):
        conn.tpc_prepare()
    with pytest.raises(dbapi.ProgrammingError):
        conn.tpc_commit()
    with pytest.raises(dbapi.ProgrammingError):
        conn.tpc_rollback()


def test_statements_after_prepare_are_refused(conn: dbapi.Connection) -> None:
    conn.tpc_begin(new_xid(conn))
    conn.tpc_prepare()
    with pytest.raises(dbapi.ProgrammingError, match="prepared"):
        conn.cursor().execute("SELECT 1")
    with pytest.raises(dbapi.ProgrammingError, match="already prepared"):
        conn.tpc_prepare()
    conn.tpc_rollback()


def test_commit_by_xid_inside_a_transaction_is_refused(conn: dbapi.Connection) -> None:
    conn.cursor().execute("SELECT 1")
    with pytest.raises(dbapi.ProgrammingError, match="outside a transaction"):
        conn.tpc_commit(new_xid(conn))


def test_tpc_works_in_autocommit_mode(dsn: str) -> None:
    with dbapi.connect(dsn, autocommit=True) as c:
        c.cursor().execute("CREATE TABLE tpc_t (v int)")
        c.tpc_begin(c.xid(7, "auto", "b"))
        c.cursor().execute("INSERT INTO tpc_t VALUES (7)")
        assert committed_rows(dsn) == []  # the statement ran inside the two-phase transaction
        c.tpc_prepare()
        c.tpc_commit()
    assert committed_rows(dsn) == [7]
