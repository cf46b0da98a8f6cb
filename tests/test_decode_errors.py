"""A value that cannot become a Python object fails its query, never the connection."""

from __future__ import annotations

import pytest

from neon_proto.errors import DataError
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres

QUERIES = [
    "SELECT 'infinity'::timestamptz AS t",
    "SELECT 'infinity'::timestamptz AS t FROM generate_series(1, 5000)",  # decoded in large batches
    "SELECT 1 AS a; SELECT 'infinity'::date AS d",
]


@pytest.mark.parametrize("sql", QUERIES)
@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_undecodable_value_raises_data_error_and_connection_stays_usable(
    pg: EmbeddedPostgres, sql: str, protocol: str
) -> None:
    if protocol == "extended" and ";" in sql:
        sql = sql.split(";")[1]
    with Client(pg.dsn(), sslmode="disable") as client:
        with pytest.raises(DataError, match="infinity"):
            client.query(sql, None if protocol == "simple" else [])
        assert client.transaction_status == "I"
        assert client.query("SELECT $1::int AS ok", [1]).rows == [{"ok": 1}]


def test_undecodable_value_fails_only_its_pipelined_query(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable") as client:
        pipe = client.pipeline()
        bad = pipe.add("SELECT 'infinity'::timestamptz AS t")
        good = pipe.add("SELECT 2 AS b")
        pipe.run()
        assert isinstance(bad.error, DataError)
        assert good.outcome().rows == [{"b": 2}]
        assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_a_parameter_no_dumper_takes_fails_before_sending_and_the_connection_stays_usable(
    pg: EmbeddedPostgres,
) -> None:
    from neon_proto.types import TypeRegistry, default_registry

    class Odd:
        pass

    def refuse(value: Odd) -> bytes:
        raise ValueError("this dumper refuses")

    registry = TypeRegistry(parent=default_registry)
    registry.register_dumper(Odd, refuse, oid="text")
    with Client(pg.dsn(), sslmode="disable", registry=registry) as client:
        with pytest.raises(ValueError, match="refuses"):
            client.query("SELECT $1::text AS t", [Odd()])
        assert not client.closed
        assert client.query("SELECT $1::int AS ok", [1]).rows == [{"ok": 1}]
