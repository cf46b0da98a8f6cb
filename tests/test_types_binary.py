"""Binary-format loaders: the server's binary forms to Python values.

psycopg's binary dumpers write exactly what the server sends, so they make the cells for the
property-based round trips; the rest are built by hand with struct.
"""

from __future__ import annotations

import math
import struct
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.adapt import PyFormat, Transformer
from psycopg.types.json import Jsonb
from psycopg.types.numeric import Float4, Int2, Int4, Int8

from neon_proto.errors import DataError
from neon_proto.types import (
    TEXT_PREFERRED_OIDS,
    Box,
    Circle,
    Line,
    LineSegment,
    Path,
    Point,
    Polygon,
    Range,
    TypeInfo,
    TypeRegistry,
    builtin_oid,
    default_registry,
    make_row_decoder,
)

utc = timezone.utc


def load(oid_or_name: int | str, data: bytes, registry: TypeRegistry = default_registry) -> Any:
    oid = builtin_oid(oid_or_name) if isinstance(oid_or_name, str) else oid_or_name
    return registry.get_loader(oid, 1)(data)


def pg_binary(value: Any) -> tuple[int, bytes]:
    """psycopg's binary dump of a value: the type OID and the bytes the server would send."""
    dumper = Transformer().get_dumper(value, PyFormat.BINARY)
    data = dumper.dump(value)
    assert data is not None
    return dumper.oid, bytes(data)


_SAME = object()


def round_trip(value: Any, expected: Any = _SAME) -> None:
    oid, data = pg_binary(value)
    assert default_registry.has_binary_loader(oid)
    got = default_registry.get_loader(oid, 1)(data)
    assert got == (value if expected is _SAME else expected)


def i4(n: int) -> bytes:
    return struct.pack("!i", n)


def array(elem_oid: int, dims: list[int], cells: list[bytes | None], lbounds: list[int] | None = None) -> bytes:
    lbounds = lbounds or [1] * len(dims)
    head = struct.pack("!iiI", len(dims), int(None in cells), elem_oid)
    head += b"".join(struct.pack("!ii", d, lb) for d, lb in zip(dims, lbounds))
    body = b"".join(i4(-1) if c is None else i4(len(c)) + c for c in cells)
    return head + body


def range_binary(flags: int, *bounds: bytes) -> bytes:
    return bytes([flags]) + b"".join(i4(len(b)) + b for b in bounds)


# --- fixed cells --------------------------------------------------------------------------

CASES: list[tuple[str, bytes, Any]] = [
    ("bool", b"\x01", True),
    ("bool", b"\x00", False),
    ("int2", struct.pack("!h", -32768), -32768),
    ("int4", struct.pack("!i", 2**31 - 1), 2**31 - 1),
    ("int8", struct.pack("!q", -(2**63)), -(2**63)),
    ("oid", struct.pack("!I", 2**32 - 1), 2**32 - 1),
    ("float4", struct.pack("!f", 1.5), 1.5),
    ("float8", struct.pack("!d", -math.inf), -math.inf),
    ("numeric", struct.pack("!HhHH", 0, 0, 0xC000, 0), Decimal("NaN")),
    ("numeric", struct.pack("!HhHH", 0, 0, 0xD000, 0), Decimal("Infinity")),
    ("numeric", struct.pack("!HhHH", 0, 0, 0xF000, 0), Decimal("-Infinity")),
    ("numeric", struct.pack("!HhHH", 0, 0, 0, 3), Decimal("0.000")),
    ("numeric", struct.pack("!HhHHH", 1, 1, 0, 0, 1), Decimal("10000")),
    ("numeric", struct.pack("!HhHHHH", 2, 0, 0x4000, 3, 1, 5000), Decimal("-1.500")),
    ("numeric", struct.pack("!HhHHH", 1, -6, 0, 24, 1234), Decimal("0.000000000000000000001234")),
    ("text", "héllo 😀".encode(), "héllo 😀"),
    ("varchar", b"", ""),
    ("bpchar", b"ab  ", "ab  "),
    ("name", b"pg_class", "pg_class"),
    ('"char"', b"a", "a"),
    ('"char"', b"\xe9", "\\351"),
    ("xml", b"<a/>", "<a/>"),
    ("jsonpath", b'\x01$."a"', '$."a"'),
    ("bytea", b"\x00\xff", b"\x00\xff"),
    ("uuid", UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").bytes, UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ("json", b'{"a": [1, null]}', {"a": [1, None]}),
    ("jsonb", b'\x01{"a": [1, null]}', {"a": [1, None]}),
    ("date", i4(0), date(2000, 1, 1)),
    ("date", i4(-730119), date(1, 1, 1)),
    ("date", i4(2921939), date(9999, 12, 31)),
    ("time", struct.pack("!q", 86399999999), time(23, 59, 59, 999999)),
    ("timetz", struct.pack("!qi", 3600 * 10**6, -19800), time(1, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    ("timestamp", struct.pack("!q", 0), datetime(2000, 1, 1)),
    ("timestamp", struct.pack("!q", -63082281600000000), datetime(1, 1, 1)),
    ("timestamptz", struct.pack("!q", 1), datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=utc)),
    ("interval", struct.pack("!qii", 5, 3, 14), timedelta(days=365 + 60 + 3, microseconds=5)),
    ("interval", struct.pack("!qii", -5, -3, -14), timedelta(days=-365 - 60 - 3, microseconds=-5)),
    ("inet", bytes([2, 32, 0, 4, 1, 2, 3, 4]), ip_address("1.2.3.4")),
    ("inet", bytes([2, 24, 0, 4, 1, 2, 3, 4]), ip_interface("1.2.3.4/24")),
    ("inet", bytes([3, 128, 0, 16]) + ip_address("::1").packed, ip_address("::1")),
    ("cidr", bytes([2, 8, 1, 4, 10, 0, 0, 0]), ip_network("10.0.0.0/8")),
    ("cidr", bytes([3, 32, 1, 16]) + ip_address("2001:db8::").packed, ip_network("2001:db8::/32")),
    ("macaddr", bytes([8, 0, 0x2B, 1, 2, 3]), "08:00:2b:01:02:03"),
    ("macaddr8", bytes([8, 0, 0x2B, 1, 2, 3, 4, 5]), "08:00:2b:01:02:03:04:05"),
    ("bit", i4(4) + b"\x50", "0101"),
    ("varbit", i4(9) + b"\xaa\x80", "101010101"),
    ("varbit", i4(0), ""),
    ("pg_lsn", struct.pack("!II", 0x16, 0xB374D848), "16/B374D848"),
    ("xid", struct.pack("!I", 123), "123"),
    ("tid", struct.pack("!IH", 0, 1), "(0,1)"),
    ("regclass", struct.pack("!I", 1259), 1259),
    ("point", struct.pack("!2d", 1, 2), Point(1, 2)),
    ("line", struct.pack("!3d", 1, 2, 3), Line(1, 2, 3)),
    ("lseg", struct.pack("!4d", 1, 2, 3, 4), LineSegment(Point(1, 2), Point(3, 4))),
    ("box", struct.pack("!4d", 1, 1, 0, 0), Box(Point(1, 1), Point(0, 0))),
    ("path", b"\x01" + i4(2) + struct.pack("!4d", 1, 2, 3, 4), Path([Point(1, 2), Point(3, 4)], closed=True)),
    ("path", b"\x00" + i4(1) + struct.pack("!2d", 1, 2), Path([Point(1, 2)], closed=False)),
    ("polygon", i4(3) + struct.pack("!6d", 1, 2, 3, 4, 5, 6), Polygon([Point(1, 2), Point(3, 4), Point(5, 6)])),
    ("circle", struct.pack("!3d", 1, 2, 3), Circle(Point(1, 2), 3)),
    ("int4range", b"\x01", Range.empty()),
    ("int4range", range_binary(0x02, i4(1), i4(5)), Range(1, 5, "[)")),
    ("int4range", range_binary(0x08, i4(6)), Range(None, 6, "()")),
    ("int8range", range_binary(0x18), Range(None, None, "()")),
    ("daterange", range_binary(0x06, i4(0), i4(31)), Range(date(2000, 1, 1), date(2000, 2, 1), "[]")),
    ("int4multirange", i4(0), []),
    (
        "int4multirange",
        i4(2) + i4(17) + range_binary(0x02, i4(1), i4(3)) + i4(17) + range_binary(0x02, i4(5), i4(7)),
        [Range(1, 3), Range(5, 7)],
    ),
    ("record", i4(3) + struct.pack("!Ii", 23, 4) + i4(7) + struct.pack("!Ii", 25, -1) + struct.pack("!Ii", 25, 1) + b"x", (7, None, "x")),
]


@pytest.mark.parametrize(("name", "data", "expected"), CASES, ids=[f"{n}:{d[:20]!r}" for n, d, _ in CASES])
def test_binary_cell_loads_as_expected(name: str, data: bytes, expected: Any) -> None:
    got = load(name, data)
    if isinstance(expected, Decimal) and expected.is_nan():
        assert isinstance(got, Decimal) and got.is_nan()
    else:
        assert got == expected


def test_binary_nan_loads_as_nan() -> None:
    assert math.isnan(load("float8", struct.pack("!d", math.nan)))
    assert math.isnan(load("float4", struct.pack("!f", math.nan)))


ARRAY_CASES: list[tuple[str, bytes, Any]] = [
    ("_int4", array(23, [], []), []),
    ("_int4", array(23, [3], [i4(1), None, i4(3)]), [1, None, 3]),
    ("_int4", array(23, [3], [i4(1), i4(2), i4(3)], [0]), [1, 2, 3]),
    ("_int4", array(23, [2, 2], [i4(1), i4(2), i4(3), None]), [[1, 2], [3, None]]),
    ("_int4", array(23, [2, 1, 2], [i4(1), i4(2), i4(3), i4(4)]), [[[1, 2]], [[3, 4]]]),
    ("_text", array(25, [3], [b"a,b", b"", None]), ["a,b", "", None]),
    ("_bool", array(16, [2], [b"\x01", b"\x00"]), [True, False]),
    ("_date", array(1082, [1], [i4(0)]), [date(2000, 1, 1)]),
    ("_jsonb", array(3802, [1], [b'\x01{"a": 1}']), [{"a": 1}]),
    ("_box", array(603, [1], [struct.pack("!4d", 1, 1, 0, 0)]), [Box(Point(1, 1), Point(0, 0))]),
    ("_int4range", array(3904, [2], [range_binary(0x02, i4(1), i4(3)), b"\x01"]), [Range(1, 3), Range.empty()]),
]


@pytest.mark.parametrize(("name", "data", "expected"), ARRAY_CASES, ids=[f"{n}:{i}" for i, (n, _, _) in enumerate(ARRAY_CASES)])
def test_binary_array_loads_as_expected(name: str, data: bytes, expected: Any) -> None:
    assert load(name, data) == expected


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("date", i4(2**31 - 1), "date too large"),
        ("date", i4(-(2**31)), "date too small"),
        ("timestamp", struct.pack("!q", 2**63 - 1), "timestamp too large"),
        ("timestamp", struct.pack("!q", -(2**63)), "timestamp too small"),
        ("timestamptz", struct.pack("!q", 2**63 - 1), "timestamp too large"),
        ("time", struct.pack("!q", 86400 * 10**6), "time not supported"),
        ("interval", struct.pack("!qii", 0, 0, 2**31 - 1), "can't load interval"),
        ("jsonb", b'\x02{"a": 1}', "version"),
        ("numeric", struct.pack("!HhHH", 0, 0, 0xE000, 0), "bad numeric sign"),
    ],
)
def test_binary_values_python_cannot_hold_raise_data_error(name: str, data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load(name, data)


def test_unknown_binary_is_str_when_utf8_else_bytes() -> None:
    assert load(987654, "ok 😀".encode()) == "ok 😀"
    assert load(987654, b"\xff\x00") == b"\xff\x00"


# --- which types have binary loaders --------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["bool", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "text", "varchar", "bpchar", "name",
     "bytea", "uuid", "json", "jsonb", "date", "time", "timetz", "timestamp", "timestamptz", "interval",
     "inet", "cidr", "point", "box", "int4range", "tstzrange", "int4multirange", "_int4", "_text", "_timestamptz",
     "_int4range", "_box", "_jsonb", "_numeric", "_uuid"],
)
def test_core_types_have_binary_loaders(name: str) -> None:
    assert default_registry.has_binary_loader(builtin_oid(name))


@pytest.mark.parametrize("name", ["tsvector", "tsquery", "regclass", "regtype", "money", "record", "_regclass", "_record", "int2vector", "aclitem"])
def test_types_read_better_as_text_have_no_binary_loader(name: str) -> None:
    assert not default_registry.has_binary_loader(builtin_oid(name))


def test_unknown_types_have_no_binary_loader() -> None:
    assert not default_registry.has_binary_loader(987654)


def test_text_preferred_types_still_load_binary_when_asked() -> None:
    assert 2205 in TEXT_PREFERRED_OIDS
    assert load("regclass", struct.pack("!I", 1259)) == 1259


def test_a_registered_binary_loader_counts_even_for_text_preferred_types() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_loader("money", lambda b: int.from_bytes(b, "big", signed=True), format=1)
    assert reg.has_binary_loader(790)
    assert not default_registry.has_binary_loader(790)


def test_composite_binary_needs_every_field_binary() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("a", 90101, 90102, "composite", field_names=["x", "y"], field_oids=[23, 25]))
    reg.register_type_info(TypeInfo("b", 90103, 90104, "composite", field_names=["x"], field_oids=[3614]))
    assert reg.has_binary_loader(90101) and reg.has_binary_loader(90102)
    assert not reg.has_binary_loader(90103) and not reg.has_binary_loader(90104)
    data = i4(2) + struct.pack("!Ii", 23, 4) + i4(7) + struct.pack("!Ii", 25, 2) + b"hi"
    assert reg.get_loader(90101, 1)(data) == (7, "hi")
    assert reg.get_loader(90102, 1)(array(90101, [2], [data, None])) == [(7, "hi"), None]


def test_hstore_binary() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("hstore", 90111, 90112))
    data = i4(2) + i4(1) + b"a" + i4(1) + b"1" + i4(1) + b"b" + i4(-1)
    assert reg.has_binary_loader(90111)
    assert reg.get_loader(90111, 1)(data) == {"a": "1", "b": None}


def test_enum_and_domain_binary() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("mood", 90121, 90122, "enum"))
    reg.register_type_info(TypeInfo("posint", 90123, 90124, "domain", base_oid=23))
    assert reg.get_loader(90121, 1)(b"ok") == "ok"
    assert reg.get_loader(90124, 1)(array(90123, [1], [i4(5)])) == [5]


def test_make_row_decoder_follows_the_protocol_format_codes() -> None:
    oids = [23, 25]
    assert make_row_decoder(default_registry, oids, [])[0](b"5") == 5
    assert make_row_decoder(default_registry, oids, [1])[0](i4(5)) == 5
    mixed = make_row_decoder(default_registry, oids, [1, 0])
    assert (mixed[0](i4(5)), mixed[1](b"x")) == (5, "x")


# --- property-based, with psycopg's binary dumpers as the source of cells --------------------


@given(st.integers(-(2**15), 2**15 - 1))
def test_int2_binary(n: int) -> None:
    round_trip(Int2(n), n)


@given(st.integers(-(2**31), 2**31 - 1))
def test_int4_binary(n: int) -> None:
    round_trip(Int4(n), n)


@given(st.integers(-(2**63), 2**63 - 1))
def test_int8_binary(n: int) -> None:
    round_trip(Int8(n), n)


@given(st.floats(allow_nan=False))
def test_float8_binary(x: float) -> None:
    round_trip(x)


@given(st.floats(width=32, allow_nan=False))
def test_float4_binary(x: float) -> None:
    round_trip(Float4(x), x)


@given(st.decimals(allow_nan=False, places=None).filter(lambda d: d.is_finite() and abs(d.adjusted()) < 1000))
def test_numeric_binary_keeps_value_and_scale(d: Decimal) -> None:
    oid, data = pg_binary(d)
    got = load(oid, data)
    assert got == d
    if d.as_tuple().exponent <= 0:  # type: ignore[operator]
        assert got.as_tuple().exponent == d.as_tuple().exponent


def test_numeric_binary_with_huge_precision() -> None:
    d = Decimal("9" * 5000 + "." + "1" * 3000)
    oid, data = pg_binary(d)
    assert load(oid, data) == d


@given(st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")))
def test_text_binary(s: str) -> None:
    round_trip(s)


@given(st.binary())
def test_bytea_binary(b: bytes) -> None:
    round_trip(b)


@given(st.uuids())
def test_uuid_binary(u: UUID) -> None:
    round_trip(u)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(json_values)
def test_jsonb_binary(v: Any) -> None:
    round_trip(Jsonb(v), v)


@given(st.dates())
def test_date_binary(d: date) -> None:
    round_trip(d)


@given(st.times())
def test_time_binary(t: time) -> None:
    round_trip(t)


@given(st.times(), st.integers(-15 * 3600, 15 * 3600))
def test_timetz_binary(t: time, offset: int) -> None:
    round_trip(t.replace(tzinfo=timezone(timedelta(seconds=offset))))


@given(st.datetimes())
def test_timestamp_binary(dt: datetime) -> None:
    round_trip(dt)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), st.integers(-15 * 3600, 15 * 3600))
def test_timestamptz_binary(dt: datetime, offset: int) -> None:
    aware = dt.replace(tzinfo=timezone(timedelta(seconds=offset)))
    oid, data = pg_binary(aware)
    got = load(oid, data)
    assert got == aware and got.tzinfo is utc


@given(st.timedeltas())
def test_interval_binary(td: timedelta) -> None:
    round_trip(td)


@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1).map(Int8)), max_size=6))
def test_int8_array_binary(items: list[Any]) -> None:
    if not any(x is not None for x in items):
        return  # psycopg sends those as text
    round_trip(items, [None if x is None else int(x) for x in items])


@given(st.lists(st.lists(st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))), min_size=2, max_size=2), min_size=1, max_size=3))
def test_two_dimensional_text_array_binary(rows: list[list[str | None]]) -> None:
    if not any(x is not None for row in rows for x in row):
        return
    round_trip(rows)


@given(st.lists(st.one_of(st.none(), st.datetimes()), min_size=1, max_size=5))
def test_timestamp_array_binary(items: list[datetime | None]) -> None:
    if not any(x is not None for x in items):
        return
    round_trip(items)
