"""Binary results for fixed-width columns: the row parser's struct runs, and the per-column
result formats a cached (prepared) statement gets.

The parser reads a run of fixed-width binary columns (ints, float8, bool, uuid, dates and
times) with their field lengths in one struct call and hands any row it does not expect (a
NULL there, a wrong length) to the column-by-column path; the property test checks that it
always gives what decoding each cell with its loader gives. Against the server, a statement
served from the prepared-statement cache asks for those columns in binary and must return
exactly the values (and Python types, and timezones) of the plain text path.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neon_proto.errors import DataError
from neon_proto.events import FieldDescription
from neon_proto.results import make_row_converter, make_row_parser
from neon_proto.types import TypeRegistry
from neon_proto.types.registry import default_registry
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres

# ------------------------------------------------------------------------------ the parser

_EPOCH = datetime(2000, 1, 1)
_EPOCH_UTC = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _micros(delta: timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


# (oid, format, strategy of Python values, encoder to the wire)
Column = tuple[int, int, st.SearchStrategy[Any], Callable[[Any], bytes]]

COLUMNS: list[Column] = [
    (23, 1, st.integers(-(2**31), 2**31 - 1), lambda v: struct.pack("!i", v)),
    (20, 1, st.integers(-(2**63), 2**63 - 1), lambda v: struct.pack("!q", v)),
    (21, 1, st.integers(-(2**15), 2**15 - 1), lambda v: struct.pack("!h", v)),
    (26, 1, st.integers(0, 2**32 - 1), lambda v: struct.pack("!I", v)),
    (701, 1, st.floats(allow_nan=False), lambda v: struct.pack("!d", v)),
    (16, 1, st.booleans(), lambda v: b"\x01" if v else b"\x00"),
    (2950, 1, st.uuids(), lambda v: v.bytes),
    (1184, 1, st.datetimes(timezones=st.just(timezone.utc)), lambda v: struct.pack("!q", _micros(v - _EPOCH_UTC))),
    (1114, 1, st.datetimes(), lambda v: struct.pack("!q", _micros(v - _EPOCH))),
    (1082, 1, st.dates(), lambda v: struct.pack("!i", (v - date(2000, 1, 1)).days)),
    (1083, 1, st.times(), lambda v: struct.pack("!q", ((v.hour * 60 + v.minute) * 60 + v.second) * 10**6 + v.microsecond)),
    (25, 0, st.text(max_size=20), lambda v: v.encode()),
    (25, 1, st.text(max_size=20), lambda v: v.encode()),
    (23, 0, st.integers(-(2**31), 2**31 - 1), lambda v: str(v).encode()),
    (3802, 0, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3), lambda v: __import__("json").dumps(v).encode()),
]


def _data_row(cells: list[bytes | None]) -> bytes:
    out = [struct.pack("!H", len(cells))]
    for cell in cells:
        out.append(struct.pack("!i", -1) if cell is None else struct.pack("!i", len(cell)) + cell)
    return b"".join(out)


def _fields(columns: list[Column]) -> list[FieldDescription]:
    return [
        FieldDescription(name=f"c{i}", table_oid=0, column_id=i, type_oid=oid, type_size=0, type_modifier=-1, format=fmt)
        for i, (oid, fmt, _values, _encode) in enumerate(columns)
    ]


@st.composite
def _rows(draw: st.DrawFn) -> tuple[list[Column], list[bytes | None]]:
    columns = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=12))
    cells: list[bytes | None] = []
    for _oid, _fmt, values, encode in columns:
        cells.append(None if draw(st.integers(0, 5)) == 0 else encode(draw(values)))
    return columns, cells


@settings(max_examples=400)
@given(_rows(), st.sampled_from(["array", "tuple", "dict"]))
def test_struct_runs_give_what_each_loader_gives(row: tuple[list[Column], list[bytes | None]], mode: Any) -> None:
    columns, cells = row
    fields = _fields(columns)
    payload = b"garbage before" + _data_row(cells) + b"D\x00\x00 a next message"
    start = len(b"garbage before")
    end = start + len(_data_row(cells))
    parsed = make_row_parser(fields, default_registry, mode)(payload, start, end)
    (expected,) = make_row_converter(fields, default_registry, mode)([cells])
    assert parsed == expected
    values = parsed.values() if mode == "dict" else parsed
    assert [type(v) for v in values] == [type(v) for v in (expected.values() if mode == "dict" else expected)]


def test_a_shape_with_fixed_width_columns_reads_them_in_runs() -> None:
    columns = [COLUMNS[0], COLUMNS[1], COLUMNS[11], COLUMNS[7], COLUMNS[6]]  # int4 int8 text ts uuid
    when = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
    ident = uuid.UUID("c4ca4238-a0b9-2382-0dcc-509a6f75849b")
    cells = [columns[0][3](7), columns[1][3](-8), b"seven", columns[3][3](when), columns[4][3](ident)]
    data = _data_row(cells)
    parser = make_row_parser(_fields(columns), default_registry, "array")
    assert parser(data, 0, len(data)) == [7, -8, "seven", when, ident]
    # Two runs: count, int4, int8 and the text's length; then the timestamp, the uuid.
    assert sorted(name for name in parser.__globals__ if name.startswith("S")) == ["S0", "S1"]


@pytest.mark.parametrize(
    "cells, message",
    [
        ([struct.pack("!i", 1)], "wrong number of columns"),  # one cell for a two-column shape
        ([struct.pack("!i", 1), struct.pack("!q", 2) + b"x"], "do not add up"),  # a longer int8
    ],
)
def test_malformed_rows_raise(cells: list[bytes], message: str) -> None:
    fields = _fields([COLUMNS[0], COLUMNS[1]])
    data = _data_row(cells)
    with pytest.raises((ValueError, struct.error)):
        make_row_parser(fields, default_registry, "array")(data, 0, len(data))


def test_a_cell_that_is_not_its_width_fails_like_its_loader() -> None:
    fields = _fields([COLUMNS[0], COLUMNS[7]])
    data = _data_row([struct.pack("!i", 1), b"\x00\x01\x02"])  # a 3-byte timestamptz
    with pytest.raises(struct.error):
        make_row_parser(fields, default_registry, "array")(data, 0, len(data))


def test_an_out_of_range_timestamp_is_a_data_error_on_both_paths() -> None:
    fields = _fields([COLUMNS[7]])
    data = _data_row([struct.pack("!q", 2**63 - 1)])  # 'infinity'
    with pytest.raises(DataError, match="too large"):
        make_row_parser(fields, default_registry, "array")(data, 0, len(data))


# ------------------------------------------------------------------------------ the server

FAST_TYPES = ("int2", "int4", "int8", "oid", "float8", "bool", "uuid", "date", "time", "timestamp", "timestamptz")

VALUES_SQL = """
SELECT * FROM (VALUES
  (1::int2, 2::int4, 3::int8, 4::oid, 1.5::float8, true, 'c4ca4238-a0b9-2382-0dcc-509a6f75849b'::uuid,
   '2024-02-29'::date, '23:59:59.999999'::time, '2024-01-01 12:34:56.789'::timestamp,
   '2024-01-01 12:34:56.789+02'::timestamptz, 'text'::text, 1.50::numeric, '{"a": 1}'::jsonb),
  (-32768, -2147483648, -9223372036854775808, 4294967295, 'NaN', false, NULL,
   '0001-01-01', '00:00', '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00', NULL, 'NaN', 'null'),
  (NULL, NULL, NULL, NULL, '-Infinity', NULL, 'ffffffff-ffff-ffff-ffff-ffffffffffff', NULL, NULL, NULL, NULL,
   '', NULL, NULL),
  (32767, 2147483647, 9223372036854775807, 0, 1e-308, NULL, '00000000-0000-0000-0000-000000000000',
   '2000-01-01', '12:00', '2000-01-01', '2000-01-01 00:00+00', 'x', -0.000001, '[]')
) AS t(i2, i4, i8, o, f8, b, u, d, t, ts, tstz, txt, num, js) WHERE $1::int = 1
"""


@pytest.fixture
def clients(pg: EmbeddedPostgres) -> Iterator[tuple[Client, Client]]:
    """A client that prepares and caches its statements, and one that never does."""
    cached = Client(pg.dsn(), sslmode="disable", array_mode=True, prepared_statement_cache_size=8).connect()
    plain = Client(pg.dsn(), sslmode="disable", array_mode=True).connect()
    for client in (cached, plain):
        client.query("SET TimeZone = 'UTC'")
    try:
        yield cached, plain
    finally:
        cached.close()
        plain.close()


def _same(a: list[list[Any]], b: list[list[Any]]) -> None:
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b):
        for x, y in zip(row_a, row_b):
            assert type(x) is type(y)
            if x != x:  # NaN (float or Decimal)
                assert y != y
            else:
                assert x == y
            if isinstance(x, datetime):
                assert x.tzinfo == y.tzinfo


def test_a_cached_statement_reads_fixed_width_columns_in_binary(clients: tuple[Client, Client]) -> None:
    cached, plain = clients
    expected = plain.query(VALUES_SQL, [1])
    assert all(f.format == 0 for f in expected.fields)
    first = cached.query(VALUES_SQL, [1])  # prepares: the column types are not known yet
    assert all(f.format == 0 for f in first.fields)
    again = cached.query(VALUES_SQL, [1])
    formats = {f.name: f.format for f in again.fields}
    assert [formats[n] for n in ("i2", "i4", "i8", "o", "f8", "b", "u", "d", "t", "ts", "tstz")] == [1] * 11
    assert [formats[n] for n in ("txt", "num", "js")] == [0, 0, 0]
    _same(again.rows, expected.rows)
    _same(first.rows, expected.rows)
    # The same through a pipeline of several queries (its Bind takes the same choice).
    pipeline = cached.pipeline()
    pipeline.add(VALUES_SQL, [1])
    pipeline.add("SELECT 41 + $1::int AS n", [1])
    a, b = pipeline.run()
    assert not isinstance(a, Exception) and not isinstance(b, Exception)
    assert [f.format for f in a.fields] == [f.format for f in again.fields]
    _same(a.rows, expected.rows)
    assert b.rows == [[42]]


def test_timestamptz_stays_text_outside_utc(clients: tuple[Client, Client]) -> None:
    cached, plain = clients
    for client in clients:
        client.query("SET TimeZone = 'Asia/Kolkata'")
    sql = "SELECT '2024-01-01 12:00+00'::timestamptz AS tstz, 5::int4 AS n WHERE $1::int = 1"
    cached.query(sql, [1])
    again = cached.query(sql, [1])
    assert [f.format for f in again.fields] == [0, 1]
    expected = plain.query(sql, [1]).rows
    _same(again.rows, expected)
    assert again.rows[0][0].utcoffset() == timedelta(hours=5, minutes=30)


def test_a_replaced_loader_keeps_its_column_in_text(pg: EmbeddedPostgres) -> None:
    registry = TypeRegistry(parent=default_registry)
    registry.register_loader("int4", lambda data: ("int4 text", data.decode()))
    with Client(pg.dsn(), sslmode="disable", array_mode=True, prepared_statement_cache_size=4, registry=registry) as c:
        sql = "SELECT 7::int4 AS n, 8::int8 AS m WHERE $1::int = 1"
        c.query(sql, [1])
        again = c.query(sql, [1])
        assert [f.format for f in again.fields] == [0, 1]
        assert again.rows == [[("int4 text", "7"), 8]]


def test_a_changed_table_behind_a_cached_statement(pg: EmbeddedPostgres, clients: tuple[Client, Client]) -> None:
    cached, _plain = clients
    table = f"formats_{uuid.uuid4().hex[:8]}"
    cached.query(f"CREATE TABLE {table} (a int4, b text)")
    try:
        cached.query(f"INSERT INTO {table} VALUES (1, 'one')")
        sql = f"SELECT * FROM {table} WHERE $1::int = 1"
        assert cached.query(sql, [1]).rows == [[1, "one"]]
        assert [f.format for f in cached.query(sql, [1]).fields] == [1, 0]
        cached.query(f"ALTER TABLE {table} ALTER COLUMN a TYPE text")
        try:
            rows = cached.query(sql, [1]).rows
        except Exception as exc:  # the server refuses the cached plan once (0A000), then it is re-prepared
            assert getattr(exc, "sqlstate", None) == "0A000", exc
            rows = cached.query(sql, [1]).rows
        assert rows == [["1", "one"]]
        again = cached.query(sql, [1])
        assert [f.format for f in again.fields] == [0, 0] and again.rows == [["1", "one"]]
    finally:
        cached.query(f"DROP TABLE {table}")


def test_an_infinite_timestamp_fails_alike_cached_or_not(clients: tuple[Client, Client]) -> None:
    cached, plain = clients
    sql = "SELECT 'infinity'::timestamptz AS t WHERE $1::int = 1"
    with pytest.raises(DataError):
        plain.query(sql, [1])
    for _ in range(2):
        with pytest.raises(DataError):
            cached.query(sql, [1])
    assert cached.query("SELECT 1 AS one WHERE $1::int = 1", [1]).rows == [[1]]


def test_every_fast_type_is_covered() -> None:
    # The table of types read in binary and this file's server test name the same types.
    from neon_proto.types.catalog import builtin_oid
    from neon_proto.types.registry import _FAST_BINARY_PAIRS

    assert {builtin_oid(name) for name in FAST_TYPES} == set(_FAST_BINARY_PAIRS)
    assert default_registry.fast_result_formats([25, 1700, 3802, 700], utc=True) == ()
    assert default_registry.fast_result_formats([23, 1184], utc=False) == (1, 0)
    assert default_registry.fast_result_formats([23, 1184], utc=True) == (1, 1)
