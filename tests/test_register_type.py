"""User and extension types registered by name on a connection, read from the real catalog."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
import trio

import neon_trio
from neon_proto.errors import ProgrammingError
from neon_proto.types import Range
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture(scope="module")
def typed_db(pg: EmbeddedPostgres) -> Iterator[str]:
    dsn = pg.dsn(sslmode="disable")
    with Client(dsn) as admin:
        admin.simple_query(
            """
            DROP SCHEMA IF EXISTS regtypes CASCADE;
            CREATE SCHEMA regtypes;
            CREATE TYPE regtypes.mood AS ENUM ('sad', 'ok', 'happy');
            CREATE TYPE regtypes.point3d AS (x float8, y float8, label text);
            CREATE DOMAIN regtypes.positive AS int4 CHECK (VALUE > 0);
            CREATE TYPE regtypes.floatrange AS RANGE (subtype = float8);
            CREATE EXTENSION IF NOT EXISTS hstore;
            """
        )
    yield dsn
    with Client(dsn) as admin:
        admin.query("DROP SCHEMA regtypes CASCADE")


def test_enum_arrays_load_as_lists_once_registered(typed_db: str) -> None:
    with Client(typed_db) as client:
        assert client.query("SELECT ARRAY['ok', 'happy']::regtypes.mood[] AS m").rows[0]["m"] == "{ok,happy}"
        info = client.register_type("regtypes.mood")
        assert info.kind == "enum" and info.labels == ("sad", "ok", "happy")
        assert client.query("SELECT ARRAY['ok', 'happy']::regtypes.mood[] AS m").rows[0]["m"] == ["ok", "happy"]


def test_enum_with_a_python_enum_factory(typed_db: str) -> None:
    class Mood(enum.Enum):
        sad = "sad"
        ok = "ok"
        happy = "happy"

    with Client(typed_db) as client:
        client.register_type("regtypes.mood", factory=Mood)
        row = client.query("SELECT $1::regtypes.mood AS m, 'sad'::regtypes.mood AS s", [Mood.happy]).rows[0]
        assert row == {"m": Mood.happy, "s": Mood.sad}


def test_composite_rows_come_back_as_named_tuples_and_go_back_as_parameters(typed_db: str) -> None:
    with Client(typed_db) as client:
        info = client.register_type("regtypes.point3d")
        assert info.field_names == ("x", "y", "label")
        value = client.query("SELECT ROW(1.5, -2, 'a \"b\", c')::regtypes.point3d AS p").rows[0]["p"]
        assert (value.x, value.y, value.label) == (1.5, -2.0, 'a "b", c')
        back = client.query("SELECT ($1::regtypes.point3d).label AS l", [value]).rows[0]["l"]
        assert back == 'a "b", c'


def test_composite_with_a_user_class(typed_db: str) -> None:
    class Point3D(NamedTuple):
        x: float
        y: float
        label: str | None

    with Client(typed_db) as client:
        client.register_type("regtypes.point3d", factory=Point3D)
        rows = client.query("SELECT ARRAY[ROW(1, 2, NULL)::regtypes.point3d] AS ps").rows
        assert rows == [{"ps": [Point3D(1.0, 2.0, None)]}]


def test_domain_loads_as_its_base_type(typed_db: str) -> None:
    with Client(typed_db) as client:
        client.register_type("regtypes.positive")
        assert client.query("SELECT 5::regtypes.positive AS p").rows == [{"p": 5}]


def test_user_range_loads_as_range(typed_db: str) -> None:
    with Client(typed_db) as client:
        client.register_type("regtypes.floatrange")
        value = client.query("SELECT regtypes.floatrange(1.5, 2.5) AS r").rows[0]["r"]
        assert value == Range(1.5, 2.5, "[)")


def test_hstore_loads_as_dict(typed_db: str) -> None:
    with Client(typed_db) as client:
        client.register_type("hstore")
        value = client.query("""SELECT 'a=>1, "b c"=>NULL'::hstore AS h""").rows[0]["h"]
        assert value == {"a": "1", "b c": None}


def test_registration_stays_on_its_connection(typed_db: str) -> None:
    with Client(typed_db) as first, Client(typed_db) as second:
        first.register_type("regtypes.mood")
        sql = "SELECT ARRAY['ok']::regtypes.mood[] AS m"
        assert first.query(sql).rows[0]["m"] == ["ok"]
        assert second.query(sql).rows[0]["m"] == "{ok}"


def test_unknown_type_name_is_a_programming_error_and_the_connection_stays_usable(typed_db: str) -> None:
    with Client(typed_db) as client:
        with pytest.raises(ProgrammingError, match="does not exist"):
            client.register_type("regtypes.no_such_type")
        assert client.query("SELECT 1 AS ok").rows == [{"ok": 1}]


def test_trio_client_registers_types_too(typed_db: str) -> None:
    async def main() -> Any:
        async with neon_trio.Client(typed_db) as client:
            await client.register_type("regtypes.point3d")
            return (await client.query("SELECT ROW(1, 2, 'z')::regtypes.point3d AS p")).rows[0]["p"]

    value = trio.run(main)
    assert (value.x, value.y, value.label) == (1.0, 2.0, "z")
