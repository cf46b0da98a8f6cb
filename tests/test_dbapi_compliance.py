"""The DB-API 2.0 compliance suite (``dbapi20``, from the dbapi-compliance package) against
``neon_sync.dbapi.connect`` and a real PostgreSQL, each test in its own fresh database.

The suite leaves two tests for drivers to write (``test_nextset`` and ``test_setoutputsize``
raise NotImplementedError until overridden); ours are below. The two-phase commit extension
is covered by tests/test_dbapi_tpc.py.
"""

from __future__ import annotations

from typing import Any

import dbapi20  # type: ignore[import-untyped]
import pytest

from neon_sync import dbapi
from neon_sync.embedded import EmbeddedPostgres


class TestDBAPI20Compliance(dbapi20.DatabaseAPI20Test):  # type: ignore[misc]
    driver = dbapi
    connect_args: tuple[Any, ...] = ()
    connect_kw_args: dict[str, Any] = {}
    lower_func = "lower"

    @pytest.fixture(autouse=True)
    def _database(self, pg: EmbeddedPostgres, fresh_db: str) -> None:
        self.connect_args = (pg.dsn(database=fresh_db),)
        self.connect_kw_args = {"sslmode": "disable"}

    def test_nextset(self) -> None:
        con = self._connect()
        try:
            cur = con.cursor()
            self.executeDDL1(cur)
            for sql in self._populate():
                cur.execute(sql)
            cur.execute(f"SELECT count(*) FROM {self.table_prefix}booze; SELECT name FROM {self.table_prefix}booze")
            assert cur.fetchone()[0] == len(self.samples)
            assert cur.nextset()
            assert len(cur.fetchall()) == len(self.samples)
            assert cur.nextset() is None
        finally:
            con.close()

    def test_setoutputsize(self) -> None:
        # Postgres has no use for it: accepted and ignored, the cursor still works.
        con = self._connect()
        try:
            cur = con.cursor()
            cur.setoutputsize(10, 0)
            cur.execute("SELECT repeat('x', 100)")
            assert cur.fetchone() == ("x" * 100,)
        finally:
            con.close()
