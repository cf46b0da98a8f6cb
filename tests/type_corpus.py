"""A corpus of Postgres values, edge cases first: one (SQL type, SQL expression) per case.

Each case is read back with ``SELECT (<expr>)::<type>``. The differential tests run every
case through neon_sync (text and binary results), psycopg (text and binary cursors) and
neon() over HTTP, against the same server. User types live in the schema ``SCHEMA``,
created by ``SETUP_SQL`` in a fresh database; ``EXTENSIONS`` are created when the server
has them (cases that need one are skipped, with the reason, when it does not).

Values Python cannot hold (infinite or BC dates, ``24:00:00``) are in the corpus too: every
client must then raise DataError.

``corpus_database`` makes such a database; ``read_catalog`` and ``neon_registry`` describe
its types to the comparison and to a neon_proto TypeRegistry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import attrs
import psycopg

from neon_proto.types import TypeInfo, TypeRegistry, default_registry
from neon_sync.embedded import EmbeddedPostgres

__all__ = [
    "Case",
    "CASES",
    "SCHEMA",
    "SETUP_SQL",
    "EXTENSIONS",
    "DOCUMENTED_RULE_NAMES",
    "MOOD_LABELS",
    "CorpusDatabase",
    "corpus_database",
    "PgType",
    "read_catalog",
    "user_types",
    "neon_registry",
]

SCHEMA: Final = "type_corpus"

EXTENSIONS: Final = ("hstore", "citext")

MOOD_LABELS: Final = ("sad", "ok", "happy", "very happy", "a,b", '"q"', "ünï", "😀", "it's", "NULL", " ")
"""The labels of the corpus enum ``mood``: quoting hazards in arrays, composites and literals."""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SETUP_SQL: Final[tuple[str, ...]] = (
    f"CREATE SCHEMA {SCHEMA}",
    f"CREATE TYPE {SCHEMA}.mood AS ENUM ({', '.join(_quote(label) for label in MOOD_LABELS)})",
    f"CREATE DOMAIN {SCHEMA}.posint AS int4 CHECK (VALUE > 0)",
    f"CREATE DOMAIN {SCHEMA}.label AS text",
    f"CREATE DOMAIN {SCHEMA}.intlist AS int4[]",
    f"CREATE TYPE {SCHEMA}.pair AS (n int4, s text, d date)",
    f"CREATE TYPE {SCHEMA}.nested AS (p {SCHEMA}.pair, tags text[], m {SCHEMA}.mood)",
    f"CREATE TYPE {SCHEMA}.floatrange AS RANGE (subtype = float8)",
    f"CREATE TYPE {SCHEMA}.textrange AS RANGE (subtype = text, collation = \"C\")",
)

DOCUMENTED_RULE_NAMES: Final = frozenset({"interval_iso_8601", "interval_too_large", "non_iso_datestyle"})
"""Case-level rules (DIFFERENCES.md rows that depend on a session setting, not on the type)."""


@attrs.frozen
class Case:
    """One value: ``SELECT (<expr>)::<type>``, in a session with ``settings`` applied.

    ``rule`` names a documented difference that this case exercises beyond its type's own
    (see DOCUMENTED_RULE_NAMES); ``extension`` the extension the type comes from.
    """

    type: str
    expr: str
    settings: tuple[tuple[str, str], ...] = ()
    extension: str | None = None
    rule: str | None = attrs.field(default=None)

    @rule.validator
    def _known_rule(self, attribute: object, value: str | None) -> None:
        if value is not None and value not in DOCUMENTED_RULE_NAMES:
            raise ValueError(f"unknown rule {value!r}")

    @property
    def sql(self) -> str:
        return f"SELECT ({self.expr})::{self.type} AS v"

    @property
    def id(self) -> str:
        text = f"{self.type}:{self.expr}".encode("ascii", "backslashreplace").decode()
        if len(text) > 80:
            text = text[:77] + "..."
        if self.settings:
            text += "@" + ",".join(f"{k}={v}" for k, v in self.settings)
        return text


def lit(text: str) -> str:
    """A string as an SQL literal: E'' with backslashes and quotes escaped."""
    body = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"E'{body}'"


def typed(
    sql_type: str, *literals: str, settings: tuple[tuple[str, str], ...] = (), rule: str | None = None
) -> list[Case]:
    """Cases of one type from plain string literals (quoted here)."""
    return [Case(sql_type, _quote(v), settings, rule=rule) for v in literals]


def exprs(sql_type: str, *expressions: str) -> list[Case]:
    """Cases of one type from SQL expressions."""
    return [Case(sql_type, e) for e in expressions]


KATHMANDU: Final = (("TimeZone", "Asia/Kathmandu"),)
ST_JOHNS: Final = (("TimeZone", "America/St_Johns"),)
BYTEA_ESCAPE: Final = (("bytea_output", "escape"),)
CHATHAM: Final = (("TimeZone", "Pacific/Chatham"),)
KIRITIMATI: Final = (("TimeZone", "Pacific/Kiritimati"),)

ALL_BYTES: Final = (
    "(SELECT decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex')"
    " FROM generate_series(0, 255) AS i)"
)
CONTROL_CHARS: Final = "".join(chr(c) for c in range(1, 32)) + "\x7f"

S = SCHEMA

CASES: list[Case] = [
    # --- bool and integers: extremes first
    *typed("bool", "true", "false"),
    *typed("int2", "-32768", "32767", "0", "-1"),
    *typed("int4", "-2147483648", "2147483647", "0", "1"),
    *typed("int8", "-9223372036854775808", "9223372036854775807", "0", "4294967296", "-2147483649"),
    *typed("oid", "0", "4294967295", "1259"),
    # --- floats: NaN, infinities, extremes, negative zero, subnormals
    *typed("float4", "NaN", "Infinity", "-Infinity", "3.4028235e38", "-3.4028235e38",
           "1.1754944e-38", "1e-45", "0", "-0", "0.1", "1.5", "16777217"),
    *typed("float8", "0.1", "1e308", "5e-324", settings=(("extra_float_digits", "0"),)),
    *typed("float4", "0.1", "3.4028235e38", settings=(("extra_float_digits", "-3"),)),
    *typed("float8", "NaN", "Infinity", "-Infinity", "1.7976931348623157e308",
           "-1.7976931348623157e308", "2.2250738585072014e-308", "5e-324", "0", "-0", "0.1",
           "1e300", "123456789.12345679", "9007199254740993"),
    # --- numeric: special values, huge precision and scale, trailing zeros kept
    *typed("numeric", "NaN", "Infinity", "-Infinity", "0", "0.00", "-0.5", "1.50", "100.000",
           "12345678901234567890123456789", "-0.0000000000000000000001", "1e-20", "1e20"),
    Case("numeric", "'1' || repeat('0', 20000)"),
    Case("numeric", "'0.' || repeat('0', 16382) || '1'"),
    Case("numeric", "repeat('9', 1000) || '.' || repeat('9', 1000)"),
    Case("numeric", "'-' || repeat('1234567890', 100) || '.5'"),
    *typed("numeric(10,4)", "3.14159", "-999999.9999"),
    *typed("numeric(1000,500)", "1.5"),
    # --- money (lc_monetary of the server)
    *typed("money", "0", "12.34", "-12.34", "1000000", "92233720368547758.07",
           "-92233720368547758.08", "0.01"),
    # --- strings: empty, non-BMP, control characters, quoting, padding
    *typed("text", "", "hello", "😀🎉 outside the BMP: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈", "ünïcödé ✓",
           "\u200b\ufeff\u2028\u2029", "'\"\\", "NULL", "null", " leading and trailing  ",
           "עברית العربية", "e\u0301 combining"),
    Case("text", lit(CONTROL_CHARS)),
    Case("text", "repeat('x', 100000)"),
    Case("text", "repeat('😀', 10000)"),
    *typed("varchar", "", "abc"),
    *typed("varchar(5)", "abcde", "😀😀"),
    *typed("char(5)", "ab", "", "abcde", "😀"),
    *typed("bpchar", "ab  ", ""),
    *typed("char", "x"),
    *typed("name", "", "pg_catalog", "😀", "x" * 63, "y" * 70),
    *typed('"char"', "a", "", "é", "\\"),
    # --- bytea: empty, every byte value, NUL, escapes
    *typed("bytea", "", "\\x00", "\\xdeadbeef", "abc", "\\\\"),
    Case("bytea", ALL_BYTES),
    Case("bytea", "decode(repeat('ff00', 50000), 'hex')"),
    *typed("bytea", "", "\\x005c27ff0a", "abc \\\\ def", settings=BYTEA_ESCAPE),
    Case("bytea", ALL_BYTES, settings=BYTEA_ESCAPE),
    *typed("bytea[]", '{"\\\\x00ff5c",NULL,"\\\\x"}', settings=BYTEA_ESCAPE),
    # --- uuid
    *typed("uuid", "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
           "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12}",
           "a0eebc999c0b4ef8bb6d6bb9bd380a13"),
    # --- json and jsonb: empty containers, nesting, unicode, numbers
    *typed("json", "{}", "[]", "null", "true", "0", "-1.5e300", '"é😀"', '"\\ud83d\\ude00"',
           '{"a": [1, 2.5, "x", null, true, {"b": {}}]}', '{"a": 1, "a": 2}',
           "  [1 ,\n 2]  ", "12345678901234567890123", "1.0", '"\\u0000"'),
    *typed("jsonb", "{}", "[]", "null", "false", "0", "1.0", "1e-7", "123456789012345678901234567890",
           '{"b": 1, "a": [null, {"é": "😀"}]}', '"\\"quoted\\" \\\\ \\n"', '{"": ""}',
           "[" * 100 + "]" * 100, "3.141592653589793238462643383279"),
    *typed("jsonpath", "$", "$.a[*] ? (@ > 1)", 'strict $."key with space"'),
    *typed("xml", "<a>1</a>", "<é attr=\"😀\">&amp;</é>", ""),
    # --- dates: leap days, year 1, year 9999; infinity and BC cannot be held
    *typed("date", "2024-02-29", "2023-02-28", "2024-03-01", "2000-02-29", "1900-02-28",
           "0001-01-01", "9999-12-31", "2000-01-01", "1999-12-31", "1970-01-01"),
    *typed("date", "infinity", "-infinity", "0001-12-31 BC", "10000-01-01"),
    *typed("date", "2024-02-29", "0001-01-01", settings=(("DateStyle", "ISO, DMY"),)),
    # --- times: microseconds; 24:00:00 cannot be held
    *typed("time", "00:00:00", "23:59:59.999999", "12:34:56.789", "00:00:00.000001", "24:00:00"),
    *typed("timetz", "24:00:00+00", "24:00:00-15:59"),
    Case("time(3)", "'12:00:00.123456'"),
    *typed("timetz", "12:34:56+05:45", "12:34:56-09:30", "00:00:00+14", "23:59:59.999999-12",
           "12:00:00+05:45:30", "00:00:00.000001+00", "23:59:59-15:59", "06:00:00+15:59:59"),
    # --- timestamps
    *typed("timestamp", "2024-02-29 12:00:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999",
           "2000-01-01 00:00:00.000001", "1999-12-31 23:59:59.999999", "1970-01-01 00:00:00",
           "infinity", "-infinity", "0001-01-01 00:00:00 BC"),
    *typed("timestamptz", "2024-02-29 12:00:00+00", "2024-02-29 23:59:59.999999+05:45",
           "9999-12-31 23:59:59.999999+00", "0001-01-01 00:00:00+00", "2000-01-01 00:00:00+00",
           "1970-01-01 00:00:00-09:30", "infinity"),
    *typed("timestamptz", "2024-02-29 12:00:00+00", "1900-01-01 00:00:00+00",
           "0001-01-01 12:00:00+00", "9999-12-31 12:00:00+00", settings=KATHMANDU),
    *typed("timestamptz", "2024-03-10 05:29:59+00", "2024-03-10 05:30:00+00",
           "2024-11-03 03:30:00+00", "1900-01-01 00:00:00+00", "2024-07-01 12:00:00.123456+00",
           settings=ST_JOHNS),
    *typed("timestamptz", "2024-04-07 02:44:59+12:45", "2024-01-01 00:00:00+00", settings=CHATHAM),
    *typed("timestamptz", "2024-01-01 00:00:00+00", "1979-01-01 00:00:00+00", settings=KIRITIMATI),
    *typed("timestamptz", "2024-04-06 14:59:59+00", "2024-04-06 15:00:00+00", "2024-01-01 00:00:00+00",
           settings=(("TimeZone", "Australia/Lord_Howe"),)),
    *typed("timestamptz", "2024-02-29 12:00:00+00", "1900-01-01 00:00:00+00", settings=(("TimeZone", "Europe/Amsterdam"),)),
    *typed("timestamptz[]", "{2024-02-29 12:00:00+00,NULL,1900-01-01 00:00:00+00}", settings=KATHMANDU),
    *typed("tstzrange", "[2024-03-10 05:29:59+00,2024-03-10 05:30:00+00)", settings=ST_JOHNS),
    # --- intervals: months, years, negative, mixed, microseconds
    *typed("interval", "0", "1 year", "1 mon", "12 mons", "13 mons", "-1 year", "-1 mon", "3 days",
           "1 year 2 mons 3 days 04:05:06.789", "-1 days +02:03:04", "1 year -1 mon",
           "-1 year -2 mons +3 days -04:05:06", "00:00:00.000001", "-00:00:00.000001",
           "2147483647 days", "-2147483648 days", "100 years", "3 weeks", "1.5 months",
           "838:59:59.999999", "-2562047788:00:54.775807", "2562047788:00:54.775807",
           "@ 1 minute ago", "999999999 days", "-999999999 days", "1 year 2 mons -3 days -04:05:06.000001",
           "-00:00:00.5", "23:59:59.999999", "-23:59:59.999999", "1 day -00:00:00.000001"),
    Case("interval", "'P1Y2M3DT4H5M6.789S'", settings=(("IntervalStyle", "iso_8601"),),
         rule="interval_iso_8601"),
    Case("interval", "'-1 year +2 days -00:00:01.5'", settings=(("IntervalStyle", "iso_8601"),),
         rule="interval_iso_8601"),
    *typed("interval", "PT0S", "-00:00:00.5", "1 day -00:00:00.000001", "3 weeks 2 days", "-1 year",
           "1 mon -00:00:00.000001", settings=(("IntervalStyle", "iso_8601"),), rule="interval_iso_8601"),
    Case("interval", "'178000000 years'", rule="interval_too_large"),
    Case("interval", "'-178000000 years'", rule="interval_too_large"),
    Case("interval", "'1000000000 days'", rule="interval_too_large"),
    Case("date", "'2024-02-29'", settings=(("DateStyle", "German"),), rule="non_iso_datestyle"),
    # --- network
    *typed("inet", "192.168.0.1", "192.168.0.1/24", "10.0.0.0/8", "0.0.0.0/0",
           "255.255.255.255/32", "::1", "2001:db8::1/64", "::ffff:1.2.3.4", "::/0",
           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    *typed("cidr", "10.0.0.0/8", "192.168.1.0/24", "0.0.0.0/0", "1.2.3.4/32", "2001:db8::/32",
           "::/0", "::1/128"),
    *typed("macaddr", "08:00:2b:01:02:03", "FF-FF-FF-FF-FF-FF", "00:00:00:00:00:00"),
    *typed("macaddr8", "08:00:2b:01:02:03:04:05", "08:00:2b:01:02:03"),
    # --- bit strings
    *typed("bit(8)", "10101010", "00000000"),
    *typed("bit(1)", "1"),
    *typed("bit(13)", "1111111111111"),
    *typed("varbit", "", "1", "0101", "1" * 100),
    # --- geometry
    *typed("point", "(1,2)", "(-0,1e300)", "(1.5e-300,-2.5)", "(NaN,Infinity)", "(0.1,0.2)"),
    *typed("line", "{1,-1,0}", "{0,1,-2.5}"),
    *typed("lseg", "[(0,0),(1,1)]", "[(-1.5,2),(3,-4.25)]"),
    *typed("box", "(1,1),(0,0)", "(0,0),(1,1)", "(-1,5),(3,-2.5)"),
    *typed("path", "[(0,0),(1,1),(2,0)]", "((0,0),(1,1),(2,0))", "[(0.5,0.5)]"),
    *typed("polygon", "((0,0),(1,1),(2,0))", "((1.5,-2))"),
    *typed("circle", "<(0,0),1>", "<(1.5,-2.5),0.001>"),
    # --- ranges: empty, unbounded, normalized
    *typed("int4range", "[1,10)", "(1,10]", "empty", "(,)", "[1,)", "(,5)", "[-2147483648,2147483647)"),
    *typed("int8range", "[-9223372036854775808,9223372036854775807)", "empty", "(0,)"),
    *typed("numrange", "[1.5,2.5]", "(,)", "(-0.001,1e20)", "[NaN,NaN]", "empty"),
    *typed("daterange", "[2024-02-29,2024-03-01)", "[2024-02-29,2024-02-29]", "(,2024-01-01)",
           "[0001-01-01,9999-12-31)", "empty"),
    *typed("daterange", "[2024-01-01,infinity)"),
    *typed("tsrange", '["2024-02-29 00:00","2024-03-01 00:00.000001")', "(,)", "empty"),
    *typed("tstzrange", '["2024-02-29 00:00+05:45",)', "(,)", "empty"),
    *typed(f"{S}.floatrange", "[1.5,2.5)", "(,)", "[-Infinity,Infinity]", "empty"),
    *typed(f"{S}.textrange", '["a,b","c\\"d")', '("",zzz]', '(" ","\\\\")', "(,)", "empty",
           '["(",")"]', '[NULL,"null")'),
    # --- multiranges
    *typed("int4multirange", "{}", "{[1,3),[5,7)}", "{(,)}", "{[1,2],[3,4]}"),
    *typed("int8multirange", "{[1,2)}"),
    *typed("nummultirange", "{(,0.5),[1.5,)}", "{}"),
    *typed("datemultirange", "{[2024-02-29,2024-03-01),[2025-01-01,)}"),
    *typed("tsmultirange", '{["2024-02-29 00:00","2024-03-01 00:00")}'),
    *typed("tstzmultirange", '{["2024-02-29 00:00+00","2024-03-01 00:00+00")}'),
    *typed(f"{S}.floatmultirange", "{[1,2),[3,4)}", "{}"),
    *typed(f"{S}.textmultirange", '{["a,b","c\\"d"),[x,y]}'),
    # --- arrays: empty, NULL elements, dimensions, lower bounds, quoting
    *typed("int4[]", "{}", "{1,NULL,3}", "{{1,2},{3,4}}", "[0:2]={1,2,3}",
           "[-5:-4][1:2]={{1,2},{3,4}}", "{{{1},{2}},{{3},{4}}}", "{NULL}", "{{NULL,NULL}}"),
    Case("int4[]", "array_fill(7, ARRAY[2, 3], ARRAY[-1, 5])"),
    Case("int4[]", "ARRAY(SELECT generate_series(1, 1000))"),
    *typed("int2[]", "{-32768,32767}"),
    *typed("int8[]", "{-9223372036854775808,NULL,9223372036854775807}"),
    *typed("oid[]", "{0,4294967295}"),
    *typed("text[]", '{"a,b","c\\"d","e\\\\f","{}","NULL",NULL,""," spaced ","null","x;y"}',
           "{}", '{"😀","é","\t\n"}', "{{a,b},{c,d}}", '{"{","}",",","\\\\"}'),
    Case("text[]", "ARRAY['NULL', NULL, '', '\"', '\\', 'a b', E'\\n']"),
    Case("text[]", f"ARRAY[{lit(CONTROL_CHARS)}, 'ok']"),
    *typed("varchar[]", "{a,NULL,\"b c\"}"),
    *typed("char(3)[]", "{a,bc,\"\"}"),
    *typed("name[]", "{pg_catalog,public}"),
    *typed('"char"[]', "{a,b,\"\\\\\"}"),
    Case('"char"[]', "ARRAY['é'::\"char\", '', 'x']"),
    *typed("bool[]", "{t,f,NULL}"),
    *typed("float4[]", "{NaN,Infinity,-Infinity,-0,1.5}"),
    *typed("float8[]", "{NaN,Infinity,-Infinity,-0,5e-324,NULL}"),
    *typed("numeric[]", "{NaN,Infinity,1.50,-0.001,NULL}", "{{1,2},{3,4}}"),
    *typed("money[]", "{1.5,-2}"),
    *typed("bytea[]", '{"\\\\x00ff","\\\\x",NULL}'),
    *typed("uuid[]", "{00000000-0000-0000-0000-000000000000,NULL}"),
    *typed("json[]", '{"{\\"a\\": 1}","[]",NULL,"\\"x\\""}'),
    *typed("jsonb[]", '{"{\\"a\\": [1, 2]}","null"}'),
    *typed("date[]", "{2024-02-29,0001-01-01,9999-12-31,NULL}"),
    *typed("time[]", "{00:00:00,23:59:59.999999}"),
    *typed("timetz[]", "{12:00:00+05:45,12:00:00-09:30}"),
    *typed("timestamp[]", '{"2024-02-29 12:00:00",NULL}'),
    *typed("timestamptz[]", '{"2024-02-29 12:00:00+00"}'),
    *typed("interval[]", '{"1 year 2 mons","-00:00:00.000001",NULL}'),
    *typed("inet[]", "{192.168.0.1/24,::1,NULL}"),
    *typed("cidr[]", "{10.0.0.0/8,2001:db8::/32}"),
    *typed("macaddr[]", "{08:00:2b:01:02:03}"),
    *typed("bit(2)[]", "{01,10}"),
    *typed("varbit[]", '{"",1,0101}'),
    *typed("point[]", '{"(1,2)","(3,4)",NULL}'),
    *typed("box[]", "{(1,1),(0,0);(2,2),(1,1)}", "{(1,1),(0,0)}", "{}", "{(1,1),(0,0);NULL}"),
    *typed("circle[]", '{"<(0,0),1>"}'),
    *typed("polygon[]", '{"((0,0),(1,1),(2,0))"}'),
    *typed("int4range[]", '{"[1,2)",empty,"(,)",NULL}'),
    *typed("daterange[]", '{"[2024-02-29,2024-03-01)"}'),
    *typed("int4multirange[]", '{"{[1,2),[3,4)}","{}"}'),
    *typed("tstzmultirange[]", '{"{[\\"2024-01-01 00:00+00\\",)}"}'),
    *typed("nummultirange[]", '{"{[1.5,2.5)}"}'),
    *typed("datemultirange[]", '{"{[2024-01-01,2024-02-01)}"}'),
    *typed("int8multirange[]", '{"{[1,2)}"}'),
    *typed("tsmultirange[]", '{"{[\\"2024-01-01 00:00\\",)}"}'),
    *typed("regtype[]", "{int4,text}"),
    *typed("tsvector[]", "{\"a b\"}"),
    # --- enums, domains, composites
    *typed(f"{S}.mood", *MOOD_LABELS),
    *typed(f"{S}.mood[]", '{NULL,"NULL"," ","it\'s"}'),
    *typed(f"{S}.mood[]", '{sad,"very happy","a,b","\\"q\\"",NULL,😀}'),
    *typed(f"{S}.posint", "1", "2147483647"),
    *typed(f"{S}.label", "", "domain text"),
    *typed(f"{S}.intlist", "{1,2,NULL}"),
    *typed(f"{S}.posint[]", "{1,2}"),
    *exprs(f"{S}.pair", "ROW(1, 'one', '2024-02-29')", "ROW(NULL, NULL, NULL)",
           "ROW(-1, '', NULL)", "ROW(2, 'a,b \"c\" (d) \\ e', '0001-01-01')", "ROW(3, 'NULL', NULL)",
           "ROW(4, '😀', '9999-12-31')"),
    *exprs(f"{S}.pair[]", f"ARRAY[ROW(1, 'x', NULL)::{S}.pair, NULL, ROW(2, 'a,b', NULL)::{S}.pair]"),
    *exprs(f"{S}.nested",
           f"ROW(ROW(1, 'in\"ner', '2024-02-29')::{S}.pair, ARRAY['a', NULL, 'b c'], 'happy')",
           "ROW(NULL, '{}', NULL)", f"ROW(ROW(NULL, NULL, NULL)::{S}.pair, NULL, '😀')",
           f"ROW(ROW(5, E'\\\\ \"', NULL)::{S}.pair, ARRAY['\"x\"', E'a\\\\b', '', 'NULL', '(,)'], 'a,b')"),
    *exprs("record", "ROW('(1,2)'::point, 12.5::money, ARRAY['1.5'::money])"),
    *exprs("record", "ROW(1, 'a b', NULL)", "ROW()", "ROW('\"', ',', '')", "ROW(ROW(1, 2), ARRAY[1])",
           "ROW(1.5::numeric, '2024-02-29'::date, true)"),
    # --- text search
    *typed("tsvector", "a fat cat", "", "'it''s' b:1A,2B c:3", "😀 é"),
    Case("tsvector", "to_tsvector('english', 'The quick brown foxes jumped')"),
    *typed("tsquery", "fat & (rat | cat)", "!a <-> b:*", "'😀'"),
    # --- system types
    *typed("pg_lsn", "16/B374D848", "0/0", "FFFFFFFF/FFFFFFFF"),
    *typed("regclass", "pg_class", "pg_catalog.pg_type", "0", "12345"),
    *typed("regtype", "int4", "timestamptz", "int4[]", f"{S}.mood", "\"char\""),
    *typed("regproc", "now", "-"),
    *typed("regprocedure", "sum(int4)", "pg_catalog.substr(text, int4)"),
    *typed("regoper", "||/"),
    *typed("regoperator", "+(int4,int4)", "-(NONE,int4)"),
    *typed("regnamespace", "pg_catalog", S),
    *typed("regrole", "postgres"),
    *typed("regconfig", "english", "simple"),
    *typed("regdictionary", "simple"),
    *typed("regcollation", '"C"', '"POSIX"'),
    *typed("xid", "0", "4294967295"),
    *typed("xid8", "0", "18446744073709551615"),
    *typed("cid", "0", "4294967295"),
    *typed("tid", "(0,1)", "(4294967295,65535)"),
    *typed("int2vector", "1 2 3", ""),
    *typed("oidvector", "23 25", ""),
    *typed("pg_snapshot", "10:20:10,14,15"),
    *typed("txid_snapshot", "10:20:"),
    *typed("aclitem", "postgres=arwdDxt/postgres"),
    *exprs("void", "pg_sleep(0)"),
    # --- extensions
    Case("hstore", r"""'"a"=>"1", "b"=>NULL, "c d"=>"e\\\"f"'""", extension="hstore"),
    Case("hstore", "''", extension="hstore"),
    Case("hstore", "'\"😀\"=>\"é\", \"NULL\"=>\"NULL\", \"\"=>\"\"'", extension="hstore"),
    Case("hstore[]", "ARRAY['a=>1'::hstore, NULL, '']", extension="hstore"),
    Case("citext", "'MiXeD CaSe'", extension="citext"),
    Case("citext", "''", extension="citext"),
    Case("citext[]", "'{A,b,NULL}'", extension="citext"),
]


# --------------------------------------------------------------------------- the database


@attrs.frozen
class CorpusDatabase:
    """A database holding the corpus schema; ``missing`` says why an extension is absent."""

    name: str
    extensions: frozenset[str]
    missing: dict[str, str]


@contextmanager
def corpus_database(pg: EmbeddedPostgres) -> Iterator[CorpusDatabase]:
    """A new database with the corpus schema and whichever EXTENSIONS the server has; dropped after."""
    name = f"types_corpus_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    extensions: set[str] = set()
    missing: dict[str, str] = {}
    try:
        with psycopg.connect(pg.dsn(database=name), autocommit=True) as conn:
            for statement in SETUP_SQL:
                conn.execute(statement.encode())
            available = {row[0] for row in conn.execute(
                "SELECT name::text FROM pg_available_extensions WHERE name = ANY(%s)", [list(EXTENSIONS)]
            ).fetchall()}
            for ext in EXTENSIONS:
                if ext not in available:
                    missing[ext] = "not in pg_available_extensions"
                    continue
                try:
                    conn.execute(f"CREATE EXTENSION {ext}".encode())
                    extensions.add(ext)
                except psycopg.Error as exc:
                    missing[ext] = f"CREATE EXTENSION failed: {exc}"
        yield CorpusDatabase(name, frozenset(extensions), missing)
    finally:
        with psycopg.connect(pg.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


# --------------------------------------------------------------------------- its types, read from the catalog


@attrs.frozen
class PgType:
    """What the comparison needs to know of one type, read from the catalog."""

    oid: int
    name: str
    schema: str
    kind: str  # pg_type.typtype: b, c, d, e, m, p, r
    array: int = 0  # its array type
    elem: int = 0  # for arrays: the element type
    subtype: int = 0  # for ranges and multiranges
    multirange: int = 0  # for ranges
    base: int = 0  # for domains
    fields: tuple[tuple[str, int], ...] = ()  # for composites of the corpus schema


CATALOG_SQL = """
SELECT t.oid::int8, t.typname::text, n.nspname::text, t.typtype::text, t.typarray::int8,
       coalesce((SELECT e.oid FROM pg_type e WHERE e.typarray = t.oid), 0)::int8,
       coalesce(r.rngsubtype, mr.rngsubtype, 0)::int8, coalesce(r.rngmultitypid, 0)::int8,
       t.typbasetype::int8
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_range mr ON mr.rngmultitypid = t.oid
"""

FIELDS_SQL = """
SELECT a.attname::text, a.atttypid::int8
FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid
WHERE t.oid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


def read_catalog(conn: psycopg.Connection[Any]) -> dict[int, PgType]:
    types: dict[int, PgType] = {}
    for oid, name, schema, kind, array, elem, subtype, multirange, base in conn.execute(CATALOG_SQL).fetchall():
        fields: tuple[tuple[str, int], ...] = ()
        if kind == "c" and schema == SCHEMA:
            fields = tuple((n, o) for n, o in conn.execute(FIELDS_SQL, [oid]).fetchall())
        types[oid] = PgType(oid, name, schema, kind, array, elem, subtype, multirange, base, fields)
    return types


def user_types(types: dict[int, PgType]) -> list[PgType]:
    """The corpus schema's types and the extensions' types, arrays and multiranges left out."""
    return sorted(
        (t for t in types.values()
         if (t.schema == SCHEMA or t.name in EXTENSIONS) and not t.elem and t.kind != "m"),
        key=lambda t: t.oid,
    )


def neon_registry(types: dict[int, PgType], conn: psycopg.Connection[Any]) -> TypeRegistry:
    """A connection registry knowing the corpus schema's types and the extensions' types."""
    reg = TypeRegistry(parent=default_registry)
    for t in user_types(types):
        if t.kind == "e":
            labels = [row[0] for row in conn.execute(
                "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", [t.oid]
            ).fetchall()]
            info = TypeInfo(t.name, t.oid, t.array, "enum", labels=labels)
        elif t.kind == "d":
            info = TypeInfo(t.name, t.oid, t.array, "domain", base_oid=t.base)
        elif t.kind == "c":
            info = TypeInfo(
                t.name, t.oid, t.array, "composite",
                field_names=[n for n, _ in t.fields], field_oids=[o for _, o in t.fields],
            )
        elif t.kind == "r":
            multi = types[t.multirange]
            info = TypeInfo(
                t.name, t.oid, t.array, "range", subtype_oid=t.subtype,
                multirange_oid=multi.oid, multirange_array_oid=multi.array,
            )
        else:
            info = TypeInfo(t.name, t.oid, t.array)
        reg.register_type_info(info)
    return reg
