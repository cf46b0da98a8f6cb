"""Dumping parameters: Python values to (type oid, format, data), and to text literals."""

from __future__ import annotations

import enum
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neon_proto.errors import DataError, ProgrammingError
from neon_proto.types import (
    Box,
    Circle,
    Json,
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
    write_hstore_text,
)

utc = timezone.utc
dump = default_registry.dump
literal = default_registry.literal_text


def load(oid: int, data: bytes | None, fmt: int = 0, registry: TypeRegistry = default_registry) -> Any:
    assert data is not None
    return registry.get_loader(oid, fmt)(data)


class Color(enum.Enum):
    red = "R"
    green = 2


class Level(enum.IntEnum):
    high = 3


class Flavor(str, enum.Enum):
    sweet = "sw"


CASES: list[tuple[Any, tuple[int, int, bytes | None]]] = [
    (None, (0, 0, None)),
    (True, (16, 0, b"t")),
    (False, (16, 0, b"f")),
    (0, (23, 0, b"0")),
    (2**63 - 1, (20, 0, b"9223372036854775807")),
    (-(2**63), (20, 0, b"-9223372036854775808")),
    (2**63, (1700, 0, b"9223372036854775808")),
    (-(2**63) - 1, (1700, 0, b"-9223372036854775809")),
    (1.5, (701, 0, b"1.5")),
    (-0.0, (701, 0, b"-0.0")),
    (math.inf, (701, 0, b"Infinity")),
    (-math.inf, (701, 0, b"-Infinity")),
    (math.nan, (701, 0, b"NaN")),
    (Decimal("1.50"), (1700, 0, b"1.50")),
    (Decimal("NaN"), (1700, 0, b"NaN")),
    (Decimal("sNaN"), (1700, 0, b"NaN")),
    (Decimal("-Infinity"), (1700, 0, b"-Infinity")),
    (Decimal("1E+3"), (1700, 0, b"1E+3")),
    ("", (0, 0, b"")),
    ("héllo 😀", (0, 0, "héllo 😀".encode())),
    (b"\x00\xff", (17, 1, b"\x00\xff")),
    (bytearray(b"ab"), (17, 1, b"ab")),
    (memoryview(b"cd"), (17, 1, b"cd")),
    (date(2020, 2, 29), (1082, 0, b"2020-02-29")),
    (date(1, 1, 1), (1082, 0, b"0001-01-01")),
    (time(12, 34, 56, 789), (1083, 0, b"12:34:56.000789")),
    (time(12, 0, tzinfo=timezone(timedelta(hours=5, minutes=45))), (1266, 0, b"12:00:00+05:45")),
    (datetime(2020, 1, 1, 12, 34, 56, 123456), (1114, 0, b"2020-01-01 12:34:56.123456")),
    (datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-3))), (1184, 0, b"2020-01-01 00:00:00-03:00")),
    (datetime(1900, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=45, seconds=30))), (1184, 0, b"1900-01-01 00:00:00+05:45:30")),
    (datetime(2020, 7, 1, tzinfo=ZoneInfo("Europe/Rome")), (1184, 0, b"2020-07-01 00:00:00+02:00")),
    (timedelta(0), (1186, 0, b"+0 days +0 seconds")),
    (timedelta(days=-1, seconds=5, microseconds=3), (1186, 0, b"-1 days +5.000003 seconds")),
    (UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), (2950, 0, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    (ip_address("1.2.3.4"), (869, 0, b"1.2.3.4")),
    (ip_interface("1.2.3.4/24"), (869, 0, b"1.2.3.4/24")),
    (ip_address("::1"), (869, 0, b"::1")),
    (ip_network("10.0.0.0/8"), (650, 0, b"10.0.0.0/8")),
    (ip_network("2001:db8::/32"), (650, 0, b"2001:db8::/32")),
    (Color.red, (0, 0, b"red")),
    (Level.high, (23, 0, b"3")),
    (Flavor.sweet, (0, 0, b"sw")),
    (Json({"a": [1, None]}), (3802, 0, b'{"a": [1, null]}')),
    (Json([1], dumps=lambda o: "[ 1 ]"), (3802, 0, b"[ 1 ]")),
    (Point(1.5, -2), (600, 0, b"(1.5,-2.0)")),
    (Line(1, 2, 3), (628, 0, b"{1.0,2.0,3.0}")),
    (LineSegment(Point(1, 2), Point(3, 4)), (601, 0, b"[(1.0,2.0),(3.0,4.0)]")),
    (Box(Point(1, 1), Point(0, 0)), (603, 0, b"(1.0,1.0),(0.0,0.0)")),
    (Path([Point(1, 2), Point(3, 4)], closed=True), (602, 0, b"((1.0,2.0),(3.0,4.0))")),
    (Path([Point(1, 2)]), (602, 0, b"[(1.0,2.0)]")),
    (Polygon([Point(0, 0), Point(1, 0), Point(0, 1)]), (604, 0, b"((0.0,0.0),(1.0,0.0),(0.0,1.0))")),
    (Circle(Point(1, 2), 3), (718, 0, b"<(1.0,2.0),3.0>")),
    (Point(math.inf, math.nan), (600, 0, b"(Infinity,NaN)")),
    (Range(1, 5), (0, 0, b"[1,5)")),
    (Range.empty(), (0, 0, b"empty")),
    (Range(None, None, "()"), (0, 0, b"(,)")),
    (Range(Decimal("1.5"), None, "(]"), (3906, 0, b"(1.5,]")),
    (Range(date(2020, 1, 1), date(2020, 2, 1)), (3912, 0, b"[2020-01-01,2020-02-01)")),
    (Range(datetime(2020, 1, 1), None), (3908, 0, b'["2020-01-01 00:00:00",)')),
    (Range(datetime(2020, 1, 1, tzinfo=utc), None), (3910, 0, b'["2020-01-01 00:00:00+00:00",)')),
    (Range("a b", 'q"\\'), (0, 0, b'["a b","q""\\\\")')),
    ([], (0, 0, b"{}")),
    ([None], (0, 0, b"{NULL}")),
    ([1, None, 3], (1007, 0, b"{1,NULL,3}")),
    ([[1, 2], [3, None]], (1007, 0, b"{{1,2},{3,NULL}}")),
    ([1, 2**64], (1231, 0, b"{1,18446744073709551616}")),
    ([1.5, math.nan], (1022, 0, b"{1.5,NaN}")),
    ([Decimal("1.5")], (1231, 0, b"{1.5}")),
    ([True, False, None], (1000, 0, b"{t,f,NULL}")),
    (["a", "b"], (0, 0, b"{a,b}")),
    ([1, "a"], (0, 0, b"{1,a}")),
    (
        ["a,b", "", None, "NULL", "null", "\\", '"', "x y", "{}", "😀", "tab\t"],
        (0, 0, '{"a,b","",NULL,"NULL","null","\\\\","\\"","x y","{}",😀,"tab\t"}'.encode()),
    ),
    ([b"\x01", b""], (1001, 0, b'{"\\\\x01","\\\\x"}')),
    ([date(2020, 1, 1)], (1182, 0, b"{2020-01-01}")),
    ([datetime(2020, 1, 1, tzinfo=utc)], (1185, 0, b'{"2020-01-01 00:00:00+00:00"}')),
    ([timedelta(days=1)], (1187, 0, b'{"+1 days +0 seconds"}')),
    ([UUID(int=5)], (2951, 0, b"{00000000-0000-0000-0000-000000000005}")),
    ([Json({"a": 1}), Json("x")], (3807, 0, b'{"{\\"a\\": 1}","\\"x\\""}')),
    ([Box(Point(1, 1), Point(0, 0)), Box(Point(2, 2), Point(1, 1))], (1020, 0, b"{(1.0,1.0),(0.0,0.0);(2.0,2.0),(1.0,1.0)}")),
    ([Point(1, 2)], (1017, 0, b'{"(1.0,2.0)"}')),
    ([ip_address("1.2.3.4"), ip_interface("::1/64")], (1041, 0, b"{1.2.3.4,::1/64}")),
    ([Range(1, 3), Range.empty()], (0, 0, b'{"[1,3)",empty}')),
    ([Range(date(2020, 1, 1), None)], (3913, 0, b'{"[2020-01-01,)"}')),
]


@pytest.mark.parametrize(("value", "expected"), CASES, ids=[repr(v)[:40] for v, _ in CASES])
def test_dump_gives_oid_format_and_data(value: Any, expected: tuple[int, int, bytes | None]) -> None:
    assert dump(value) == expected


def test_int4_params_option_sends_narrow_ints_as_int4() -> None:
    reg = TypeRegistry(parent=default_registry)
    assert reg.dump(5) == (23, 0, b"5")  # the default, so that substr(s, $1) resolves
    reg.int4_params = False
    assert reg.dump(5) == (20, 0, b"5")
    assert reg.dump([1, None]) == (1016, 0, b"{1,NULL}")
    reg.int4_params = True
    assert reg.dump(5) == (23, 0, b"5")
    assert reg.dump(-(2**31)) == (23, 0, b"-2147483648")
    assert reg.dump(2**31) == (20, 0, b"2147483648")
    assert reg.dump(2**63) == (1700, 0, b"9223372036854775808")
    assert reg.dump([1, None]) == (1007, 0, b"{1,NULL}")
    assert reg.dump([1, 2**40]) == (1016, 0, b"{1,1099511627776}")
    assert reg.dump([1, 2**70]) == (1231, 0, b"{1,1180591620717411303424}")
    assert TypeRegistry(parent=reg).int4_params
    assert reg.copy().int4_params
    assert default_registry.dump(5) == (23, 0, b"5")


def test_str_with_nul_raises_data_error_before_sending() -> None:
    with pytest.raises(DataError, match="NUL"):
        dump("a\x00b")
    with pytest.raises(DataError, match="NUL"):
        dump(["ok", "a\x00b"])
    with pytest.raises(DataError, match="NUL"):
        literal("\x00")


def test_dict_needs_json_or_the_option() -> None:
    with pytest.raises(ProgrammingError, match="Json"):
        dump({"a": 1})
    reg = TypeRegistry(parent=default_registry)
    reg.dict_as_jsonb = True
    assert reg.dump({"a": 1}) == (3802, 0, b'{"a": 1}')
    assert reg.dump([{"a": 1}]) == (3807, 0, b'{"{\\"a\\": 1}"}')
    with pytest.raises(ProgrammingError):
        dump({"a": 1})


def test_child_registry_inherits_the_option_at_creation() -> None:
    parent = TypeRegistry()
    parent.dict_as_jsonb = True
    assert TypeRegistry(parent=parent).dict_as_jsonb


def test_unadaptable_type_raises_programming_error() -> None:
    with pytest.raises(ProgrammingError, match="cannot adapt type 'object'"):
        dump(object())
    with pytest.raises(ProgrammingError, match="tuple"):
        dump((1, 2))


def test_time_with_a_zone_needing_a_date_raises_data_error() -> None:
    with pytest.raises(DataError, match="offset"):
        dump(time(12, 0, tzinfo=ZoneInfo("Europe/Rome")))


def test_subclasses_use_their_base_dumper() -> None:
    class MyInt(int):
        pass

    class MyStr(str):
        pass

    assert dump(MyInt(5)) == (23, 0, b"5")
    assert dump(MyStr("x")) == (0, 0, b"x")
    assert dump(datetime(2020, 1, 1)) == (1114, 0, b"2020-01-01 00:00:00")


def test_enums_match_psycopg() -> None:
    from psycopg.adapt import PyFormat, Transformer

    tx = Transformer()
    for member in (Color.red, Color.green, Level.high, Flavor.sweet):
        ours = dump(member)
        theirs = tx.get_dumper(member, PyFormat.TEXT)
        data = theirs.dump(member)
        assert data is not None
        assert ours[2] == bytes(data)
        assert (ours[0] == 0) == (theirs.oid == 0)


# --- registering dumpers ----------------------------------------------------------------------


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def test_register_dumper_with_fixed_oid() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_dumper(Money, lambda m: b"%d.%02d" % divmod(m.cents, 100), oid="money")
    assert reg.dump(Money(123456)) == (790, 0, b"1234.56")
    assert reg.dump([Money(1)]) == (791, 0, b"{0.01}")
    assert reg.literal_text(Money(5)) == "0.05"


def test_register_dumper_choosing_oid_per_value() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_dumper(int, lambda n: (23 if -(2**31) <= n < 2**31 else 20, 0, str(n).encode()))
    assert reg.dump(5) == (23, 0, b"5")
    assert reg.dump([5, 6]) == (1007, 0, b"{5,6}")
    assert reg.dump(2**40) == (20, 0, b"1099511627776")


def test_child_registry_sees_parent_dumpers_registered_later() -> None:
    parent = TypeRegistry()
    child = TypeRegistry(parent=parent)
    with pytest.raises(ProgrammingError):
        child.dump(Money(1))
    parent.register_dumper(Money, lambda m: str(m.cents).encode(), oid=20)
    assert child.dump(Money(1)) == (20, 0, b"1")


def test_binary_dumper_cannot_go_in_an_array() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_dumper(Money, lambda m: m.cents.to_bytes(8, "big"), oid=790, format=1)
    assert reg.dump(Money(1)) == (790, 1, b"\x00" * 7 + b"\x01")
    with pytest.raises(ProgrammingError, match="binary"):
        reg.dump([Money(1)])


def test_copy_is_independent() -> None:
    reg = TypeRegistry(parent=default_registry)
    copy = reg.copy()
    copy.register_dumper(Money, lambda m: b"1", oid=20)
    assert copy.dump(Money(1)) == (20, 0, b"1")
    with pytest.raises(ProgrammingError):
        reg.dump(Money(1))


def test_composite_namedtuple_dumps_as_the_composite() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(
        TypeInfo("card", 90001, 90002, "composite", field_names=["id", "name", "tags"], field_oids=[23, 25, 1009])
    )
    Card = reg.get_factory("card")
    assert Card is not None
    value = Card(1, 'a "b"', ["x", None])
    oid, fmt, data = reg.dump(value)
    assert (oid, fmt) == (90001, 0)
    assert data == b'(1,"a ""b""","{x,NULL}")'
    assert reg.get_loader(90001)(data) == value
    assert reg.dump([value, None])[0] == 90002
    assert reg.dump(Card(None, "", None))[2] == b'(,"",)'


def test_composite_user_class_dumps_by_attribute() -> None:
    class Pair:
        def __init__(self, a: int, b: str) -> None:
            self.a, self.b = a, b

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Pair) and (self.a, self.b) == (other.a, other.b)

    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("pair", 90005, 90006, "composite", field_names=["a", "b"], field_oids=[23, 25]), factory=Pair)
    assert reg.dump(Pair(1, "x y")) == (90005, 0, b'(1,"x y")')
    assert reg.get_loader(90005)(b'(1,"x y")') == Pair(1, "x y")


def test_type_info_checks_its_fields() -> None:
    with pytest.raises(ValueError):
        TypeInfo("x", 1, 2, "composite", field_names=["a"], field_oids=[])
    with pytest.raises(ValueError):
        TypeInfo("x", 1, 2, "table")  # type: ignore[arg-type]


def test_registered_enum_class_dumps_with_its_oid() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("color", 90007, 90008, "enum", labels=["red", "green"]), factory=Color)
    assert reg.dump(Color.green) == (90007, 0, b"green")
    assert reg.dump([Color.red]) == (90008, 0, b"{red}")
    assert reg.get_loader(90008)(b"{red,green}") == [Color.red, Color.green]


def test_hstore_dumper_can_be_registered_for_dicts() -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("hstore", 90111, 90112))
    reg.register_dumper(dict, write_hstore_text, oid="hstore")
    value = {"a": "1", "b": None, 'q"k': "v\\"}
    oid, _, data = reg.dump(value)
    assert oid == 90111 and data is not None
    assert reg.get_loader(90111)(data) == value


# --- literal_text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (2**70, str(2**70)),
        (math.inf, "Infinity"),
        (Decimal("NaN"), "NaN"),
        ("a\nb", "a\nb"),
        (b"\x00\xff", "\\x00ff"),
        (bytearray(b"a"), "\\x61"),
        (date(2020, 1, 1), "2020-01-01"),
        (datetime(2020, 1, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30))), "2020-01-01 12:00:00+05:30"),
        (datetime(2020, 1, 1, 12), "2020-01-01 12:00:00"),
        (timedelta(days=1, seconds=1), "+1 days +1 seconds"),
        ([1, None], "{1,NULL}"),
        ([[True, False]], "{{t,f}}"),
        (["a b", None, "NULL"], '{"a b",NULL,"NULL"}'),
        ([b"\x01"], '{"\\\\x01"}'),
        (Json({"k": "v"}), '{"k": "v"}'),
        (Range(1, 2), "[1,2)"),
        (Color.red, "red"),
        (ip_network("10.0.0.0/8"), "10.0.0.0/8"),
    ],
)
def test_literal_text(value: Any, expected: str | None) -> None:
    assert literal(value) == expected


# --- round trips: dump, then load the form the server sends back -----------------------------

texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@given(st.integers())
def test_int_round_trip(n: int) -> None:
    oid, _, data = dump(n)
    assert load(oid, data) == n


@given(st.floats())
def test_float_round_trip(x: float) -> None:
    oid, _, data = dump(x)
    got = load(oid, data)
    assert got == x or (math.isnan(got) and math.isnan(x))


@given(st.decimals())
def test_decimal_round_trip(d: Decimal) -> None:
    oid, _, data = dump(d)
    got = load(oid, data)
    if d.is_nan():
        assert got.is_qnan()  # sNaN too: Postgres has a single NaN
    else:
        assert got == d


@given(texts)
def test_str_round_trip(s: str) -> None:
    _, _, data = dump(s)
    assert load(25, data) == s


@given(st.binary())
def test_bytes_round_trip(b: bytes) -> None:
    oid, fmt, data = dump(b)
    assert load(oid, data, fmt) == b
    assert load(oid, default_registry.literal_text(b).encode()) == b  # type: ignore[union-attr]


@given(st.dates())
def test_date_round_trip(d: date) -> None:
    oid, _, data = dump(d)
    assert load(oid, data) == d


@given(st.datetimes(timezones=st.none() | st.timezones()))
def test_datetime_round_trip(dt: datetime) -> None:
    oid, _, data = dump(dt)
    got = load(oid, data)
    offset = dt.utcoffset()
    # Compare with the fixed offset sent: PEP 495 makes times in a DST gap or fold unequal
    # to any time in another zone.
    assert got == (dt if offset is None else dt.replace(tzinfo=timezone(offset)))
    assert (got.tzinfo is None) == (offset is None)


@given(st.times())
def test_time_round_trip(t: time) -> None:
    oid, _, data = dump(t)
    assert load(oid, data) == t


@given(st.uuids())
def test_uuid_round_trip(u: UUID) -> None:
    oid, _, data = dump(u)
    assert load(oid, data) == u


scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), texts, st.dates(), st.booleans(), st.uuids())


@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=8))
def test_int_list_round_trip(items: list[int | None]) -> None:
    _, _, data = dump(items)
    assert load(1016, data) == items


@given(st.lists(st.one_of(st.none(), texts), max_size=8))
def test_str_list_round_trip_and_psycopg_agrees(items: list[str | None]) -> None:
    _, _, data = dump(items)
    assert data is not None
    assert load(1009, data) == items
    loader = psycopg.adapters.get_loader(1009, psycopg.pq.Format.TEXT)
    assert loader is not None
    assert loader(1009).load(data) == items


@given(st.lists(st.lists(st.one_of(st.none(), texts), min_size=3, max_size=3), min_size=1, max_size=3))
def test_nested_str_list_round_trip(rows: list[list[str | None]]) -> None:
    _, _, data = dump(rows)
    assert load(1009, data) == rows


@given(st.one_of(st.integers(-(2**31), 2**31 - 1), st.none()), st.one_of(st.integers(-(2**31), 2**31 - 1), st.none()), st.sampled_from(["[)", "(]", "()", "[]"]))
def test_int_range_round_trip(lower: int | None, upper: int | None, bounds: str) -> None:
    value = Range(lower, upper, bounds)
    _, _, data = dump(value)
    assert load(builtin_oid("int4range"), data) == value


@given(texts, texts)
def test_text_range_literal_round_trip(lower: str, upper: str) -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("textrange", 90061, 90062, "range", subtype_oid=25))
    _, _, data = reg.dump(Range(lower, upper))
    assert data is not None
    assert reg.get_loader(90061)(data) == Range(lower, upper)


@given(st.tuples(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), st.one_of(st.none(), texts)))
def test_composite_round_trip(fields: tuple[int | None, str | None]) -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("pair", 90003, 90004, "composite", field_names=["a", "b"], field_oids=[23, 25]))
    Pair = reg.get_factory(90003)
    assert Pair is not None
    value = Pair(*fields)
    _, _, data = reg.dump(value)
    assert data is not None
    assert reg.get_loader(90003)(data) == value


@given(st.dictionaries(texts, st.one_of(st.none(), texts), max_size=5))
def test_hstore_round_trip(value: dict[str, str | None]) -> None:
    reg = TypeRegistry(parent=default_registry)
    reg.register_type_info(TypeInfo("hstore", 90111, 90112))
    assert reg.get_loader(90111)(write_hstore_text(value)) == value


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
def test_point_round_trip(x: float, y: float) -> None:
    oid, _, data = dump(Point(x, y))
    assert load(oid, data) == Point(x, y)


# --- value classes ------------------------------------------------------------------------------


def test_range_contains_respects_bounds() -> None:
    r = Range(1, 5)
    assert 1 in r and 4 in r and 5 not in r and 0 not in r
    assert 5 in Range(1, 5, "[]") and 1 not in Range(1, 5, "(]")
    assert 10**9 in Range(1, None) and -(10**9) in Range(None, 5)
    assert 3 not in Range.empty()


def test_range_properties_and_validation() -> None:
    assert Range(None, 5, "()").lower_inf and not Range(None, 5, "()").upper_inf
    assert Range(1, 5, "[]").lower_inc and Range(1, 5, "[]").upper_inc
    assert not Range(None, 5, "[)").lower_inc
    assert not Range.empty() and Range(1, 2)
    assert Range(1, 2, isempty=True) == Range.empty()
    with pytest.raises(ValueError):
        Range(1, 2, "[[")


def test_geometry_values_coerce_numbers_to_float() -> None:
    assert Point(1, 2) == Point(1.0, 2.0)
    assert Circle(Point(0, 0), 1).radius == 1.0
    assert Path([Point(0, 0)]).points == (Point(0, 0),)
