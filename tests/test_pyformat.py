"""pyformat placeholders become $n, and quoted text and comments are never touched."""

from __future__ import annotations

import re
from collections import OrderedDict, UserDict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neon_proto.errors import ProgrammingError
from neon_proto.pyformat import MAX_PARAMETERS, _split, convert_pyformat

# --- placeholders --------------------------------------------------------------------------


def test_positional() -> None:
    assert convert_pyformat("SELECT %s, %s", (1, "a")) == ("SELECT $1, $2", [1, "a"])


def test_positional_list() -> None:
    assert convert_pyformat("SELECT %s", [None]) == ("SELECT $1", [None])


def test_positional_any_sequence() -> None:
    assert convert_pyformat("SELECT %s, %s", range(2)) == ("SELECT $1, $2", [0, 1])


def test_named() -> None:
    assert convert_pyformat("SELECT %(a)s, %(b)s", {"b": 2, "a": 1}) == ("SELECT $1, $2", [1, 2])


def test_named_reused_keeps_its_number() -> None:
    sql, params = convert_pyformat("SELECT %(a)s, %(b)s, %(a)s, %(b)s", {"a": 1, "b": 2})
    assert sql == "SELECT $1, $2, $1, $2"
    assert params == [1, 2]


def test_named_extra_keys_are_ignored() -> None:
    assert convert_pyformat("SELECT %(a)s", {"a": 1, "unused": 2}) == ("SELECT $1", [1])


def test_named_any_mapping() -> None:
    assert convert_pyformat("SELECT %(a)s", UserDict({"a": 1})) == ("SELECT $1", [1])
    assert convert_pyformat("SELECT %(a)s", OrderedDict(a=1)) == ("SELECT $1", [1])


def test_named_with_odd_characters() -> None:
    assert convert_pyformat("SELECT %(the name!)s", {"the name!": 1}) == ("SELECT $1", [1])


def test_double_percent_is_a_literal_percent() -> None:
    assert convert_pyformat("SELECT 10 %% 3, %s", (1,)) == ("SELECT 10 % 3, $1", [1])
    assert convert_pyformat("SELECT 10 %% 3", ()) == ("SELECT 10 % 3", [])
    assert convert_pyformat("SELECT %%%s%%", (1,)) == ("SELECT %$1%", [1])


def test_params_none_leaves_the_query_alone() -> None:
    query = "SELECT 10 % 3, '%s', %%, %(x)s"
    assert convert_pyformat(query, None) == (query, [])


def test_no_placeholders() -> None:
    assert convert_pyformat("SELECT 1", ()) == ("SELECT 1", [])
    assert convert_pyformat("SELECT 1", {}) == ("SELECT 1", [])
    assert convert_pyformat("SELECT 1", {"unused": 1}) == ("SELECT 1", [])


def test_returns_a_fresh_list() -> None:
    params = [1]
    _, converted = convert_pyformat("SELECT %s", params)
    assert converted == params and converted is not params


def test_placeholder_next_to_words_and_casts() -> None:
    assert convert_pyformat("SELECT %s::int, x=%s,(%s)", (1, 2, 3)) == ("SELECT $1::int, x=$2,($3)", [1, 2, 3])


def test_many_placeholders() -> None:
    query = ", ".join(["%s"] * 1000)
    sql, params = convert_pyformat(query, list(range(1000)))
    assert sql == ", ".join(f"${i}" for i in range(1, 1001))
    assert params == list(range(1000))


# --- lexical structure ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "quoted",
    [
        "'%s'",
        "'it''s %s'",
        "''",
        "'%(x)s'",
        "'100%'",
        "E'\\'%s'",
        "e'%s\\\\'",
        "E'it''s %s'",
        '"%s"',
        '"a""%s"',
        "U&'%s'",
        'U&"%s"',
        "B'%s'",
        "-- %s %(x)s\n",
        "--%s\r",
        "/* %s */",
        "/* /* %s */ %s */",
        "/*/* */ %s */",
        "$$ %s ' \" -- $$",
        "$tag$ %s $$ %s $tag$",
        "$_$%s$_$",
        "$é$ %s $é$",
    ],
)
def test_placeholders_in_quoted_text_and_comments_stay_text(quoted: str) -> None:
    sql, params = convert_pyformat(f"SELECT {quoted} %s", ("v",))
    assert sql == f"SELECT {quoted} $1"
    assert params == ["v"]


@pytest.mark.parametrize(
    ("quoted", "sent"),
    [
        ("'100%%'", "'100%'"),
        ("'thi%%s ca%%(u)se'", "'thi%s ca%(u)se'"),
        ("E'%%\\\\'", "E'%\\\\'"),
        ('"a%%b"', '"a%b"'),
        ("$$ %% $$", "$$ % $$"),
        ("$fn$ x %% 2 $fn$", "$fn$ x % 2 $fn$"),
        ("-- 50%%\n", "-- 50%\n"),
        ("/* 50%% /* %% */ */", "/* 50% /* % */ */"),
    ],
)
def test_double_percent_means_percent_inside_quoted_text_and_comments(quoted: str, sent: str) -> None:
    assert convert_pyformat(f"SELECT {quoted}, %s", (1,)) == (f"SELECT {sent}, $1", [1])
    assert convert_pyformat(f"SELECT {quoted}", ()) == (f"SELECT {sent}", [])


def test_double_percent_in_quoted_text_is_untouched_without_parameters() -> None:
    assert convert_pyformat("SELECT '100%%'", None) == ("SELECT '100%%'", [])


def test_standard_strings_take_backslash_literally() -> None:
    # standard_conforming_strings=on: the backslash does not escape the quote.
    assert convert_pyformat("SELECT '\\' %s", (1,)) == ("SELECT '\\' $1", [1])


def test_e_only_starts_an_escape_string_at_a_token_start() -> None:
    # "somee" is an identifier, so '\' closes a standard string.
    assert convert_pyformat("SELECT somee'\\' %s", (1,)) == ("SELECT somee'\\' $1", [1])


def test_dollar_inside_an_identifier_is_not_a_quote() -> None:
    assert convert_pyformat("SELECT a$b$ %s, $1x", (1,)) == ("SELECT a$b$ $1, $1x", [1])


def test_numbered_parameter_is_not_a_dollar_quote() -> None:
    assert convert_pyformat("SELECT $1 %s $1", (1,)) == ("SELECT $1 $1 $1", [1])


def test_dollar_quote_needs_the_same_tag_to_close() -> None:
    assert convert_pyformat("SELECT $a$ $b$ %s $a$ %s", (1,)) == ("SELECT $a$ $b$ %s $a$ $1", [1])


def test_single_minus_and_slash_are_operators() -> None:
    assert convert_pyformat("SELECT %s-%s/%s*%s", (1, 2, 3, 4)) == ("SELECT $1-$2/$3*$4", [1, 2, 3, 4])


def test_line_comment_ends_at_newline() -> None:
    assert convert_pyformat("SELECT 1 -- %s\n, %s", (1,)) == ("SELECT 1 -- %s\n, $1", [1])


def test_unterminated_string_hides_the_rest_and_says_so() -> None:
    with pytest.raises(ProgrammingError, match="unterminated quoted string"):
        convert_pyformat("SELECT 'oops, %s", (1,))


@pytest.mark.parametrize(
    ("query", "what"),
    [
        ("SELECT /* %s", "/\\* comment"),
        ("SELECT $x$ %s", "\\$x\\$ quoted string"),
        ('SELECT "%s', "quoted identifier"),
        ("SELECT E'\\' %s", "E'...' string"),
    ],
)
def test_unterminated_regions_are_named_in_count_errors(query: str, what: str) -> None:
    with pytest.raises(ProgrammingError, match=f"unterminated {what}"):
        convert_pyformat(query, (1,))


def test_unterminated_region_is_passed_through_when_counts_agree() -> None:
    assert convert_pyformat("SELECT %s, 'oops", (1,)) == ("SELECT $1, 'oops", [1])


# --- errors --------------------------------------------------------------------------------


def test_mixed_styles() -> None:
    with pytest.raises(ProgrammingError, match="mixes"):
        convert_pyformat("SELECT %s, %(a)s", (1,))
    with pytest.raises(ProgrammingError, match="mixes"):
        convert_pyformat("SELECT %(a)s, %s", {"a": 1})


def test_too_few_positional() -> None:
    with pytest.raises(ProgrammingError, match="2 placeholders but 1 parameter was given"):
        convert_pyformat("SELECT %s, %s", (1,))


def test_too_many_positional() -> None:
    with pytest.raises(ProgrammingError, match="1 placeholder but 2 parameters were given"):
        convert_pyformat("SELECT %s", (1, 2))
    with pytest.raises(ProgrammingError, match="0 placeholders"):
        convert_pyformat("SELECT 1", (1,))


def test_missing_name() -> None:
    with pytest.raises(ProgrammingError, match="'b' is missing"):
        convert_pyformat("SELECT %(a)s, %(b)s", {"a": 1})


def test_missing_name_does_not_show_values() -> None:
    with pytest.raises(ProgrammingError) as info:
        convert_pyformat("SELECT %(a)s, %(b)s", {"a": "s3cret"})
    assert "s3cret" not in str(info.value)


def test_sequence_for_named_placeholders() -> None:
    with pytest.raises(ProgrammingError, match="pass a mapping"):
        convert_pyformat("SELECT %(a)s", (1,))


def test_mapping_for_positional_placeholders() -> None:
    with pytest.raises(ProgrammingError, match="pass a sequence"):
        convert_pyformat("SELECT %s", {"a": 1})


@pytest.mark.parametrize("params", ["ab", b"ab", bytearray(b"ab"), 5, {1, 2}, iter([1, 2])])
def test_params_must_be_a_sequence_or_mapping(params: Any) -> None:
    with pytest.raises(ProgrammingError, match="sequence or a mapping"):
        convert_pyformat("SELECT %s, %s", params)


@pytest.mark.parametrize("query", ["SELECT %d", "SELECT 10 % 3", "SELECT %b", "SELECT %(a)d", "SELECT %("])
def test_unknown_placeholder(query: str) -> None:
    with pytest.raises(ProgrammingError, match="%"):
        convert_pyformat(query, {"a": 1})


def test_lone_percent_at_end() -> None:
    with pytest.raises(ProgrammingError, match="lone %"):
        convert_pyformat("SELECT 1 %", ())


def test_named_without_format_at_end() -> None:
    with pytest.raises(ProgrammingError, match="followed by 's'"):
        convert_pyformat("SELECT %(a)", {"a": 1})


def test_empty_name() -> None:
    with pytest.raises(ProgrammingError, match="empty placeholder name"):
        convert_pyformat("SELECT %()s", {"": 1})


def test_too_many_placeholders() -> None:
    with pytest.raises(ProgrammingError, match=str(MAX_PARAMETERS)):
        convert_pyformat("%s," * (MAX_PARAMETERS + 1), [0] * (MAX_PARAMETERS + 1))


# --- the cache -----------------------------------------------------------------------------


def test_the_split_is_cached_per_query() -> None:
    query = "SELECT %s /* cache probe */"
    _split.cache_clear()
    convert_pyformat(query, (1,))
    convert_pyformat(query, (2,))
    info = _split.cache_info()
    assert (info.misses, info.hits) == (1, 1)


def test_errors_are_not_cached_as_results() -> None:
    with pytest.raises(ProgrammingError):
        convert_pyformat("SELECT %d", ())
    with pytest.raises(ProgrammingError):
        convert_pyformat("SELECT %d", ())


# --- properties ----------------------------------------------------------------------------

_body = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=20)
_quoted = st.one_of(
    _body.map(lambda s: "'" + s.replace("'", "''") + "'"),
    _body.map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"),
    _body.map(lambda s: '"' + s.replace('"', '""') + '"'),
    _body.filter(lambda s: "\n" not in s and "\r" not in s).map(lambda s: "--" + s + "\n"),
    _body.filter(lambda s: "/*" not in s and "*/" not in s and not s.endswith(("*", "/")) and not s.startswith("/"))
    .map(lambda s: "/*" + s + "*/"),
    _body.filter(lambda s: "$q$" not in s and not s.endswith("$q")).map(lambda s: "$q$" + s + "$q$"),
    _body.filter(lambda s: "$" not in s).map(lambda s: "$$" + s + "$$"),
)
_plain = st.from_regex(r"[a-z0-9 ,()=+*<>]{0,8}", fullmatch=True)
_piece = st.one_of(_quoted, _plain, st.just("%s"), st.just("%%"))


@settings(max_examples=400)
@given(st.lists(_piece, max_size=12))
def test_quoted_pieces_survive_with_only_double_percents_halved(pieces: list[str]) -> None:
    # Glue pieces with spaces so no two merge into one token (e.g. "E" + "'...'").
    query = " ".join(pieces)
    count = pieces.count("%s")
    sql, params = convert_pyformat(query, list(range(count)))
    assert params == list(range(count))
    numbers = iter(range(1, count + 1))
    expected = " ".join(
        f"${next(numbers)}" if p == "%s" else "%" if p == "%%" else p.replace("%%", "%") for p in pieces
    )
    assert sql == expected


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["a", "b", "c", "long_name"]), min_size=1, max_size=10))
def test_named_numbers_follow_first_use(names: list[str]) -> None:
    query = " ".join(f"%({n})s" for n in names)
    params = {n: n.upper() for n in names}
    sql, values = convert_pyformat(query, params)
    order = list(dict.fromkeys(names))
    assert values == [n.upper() for n in order]
    assert sql == " ".join(f"${order.index(n) + 1}" for n in names)


@settings(max_examples=300)
@given(st.text(max_size=40))
def test_arbitrary_queries_convert_or_raise_programming_error(query: str) -> None:
    all_params: list[tuple[()] | dict[str, Any] | None] = [(), {}, None]
    for params in all_params:
        try:
            sql, values = convert_pyformat(query, params)
        except ProgrammingError:
            continue
        if params is None:
            assert sql == query
        assert values == []
        assert not re.search(r"\$\d", sql) or re.search(r"\$\d", query)


# --- format_query (for logs) ---------------------------------------------------------------


def test_format_query_quotes_each_value() -> None:
    from neon_proto.pyformat import format_query

    sql = "SELECT $1, $2, $3, $4, $5, $6, $7"
    params = [None, True, 3, -4, 1.5, float("nan"), "it's"]
    assert format_query(sql, params) == "SELECT NULL, true, 3, (-4), 1.5, 'NaN'::float8, 'it''s'"


def test_format_query_leaves_quotes_comments_and_unknown_numbers_alone() -> None:
    from neon_proto.pyformat import format_query

    sql = "SELECT $1 -- $1\n, '$1', $$ $1 $$, /* $1 */ $2, 10 %($1)"
    assert format_query(sql, ["a"]) == "SELECT 'a' -- $1\n, '$1', $$ $1 $$, /* $1 */ $2, 10 %('a')"
    assert format_query("SELECT $1", None) == "SELECT $1"
