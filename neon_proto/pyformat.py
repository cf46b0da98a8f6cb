"""DB-API "pyformat" placeholders (``%s``, ``%(name)s``) turned into Postgres ``$n`` parameters.

The query is split once per distinct text (an LRU cache keyed by the query string) by a scanner
that knows SQL's lexical structure, so each execute only checks the parameters and builds a list.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterator, Mapping, Sequence

import attrs

from neon_proto.errors import ProgrammingError

__all__ = ["MAX_PARAMETERS", "convert_pyformat", "format_query", "quote_identifier", "quote_literal"]

MAX_PARAMETERS = 65535  # the Bind message counts parameters in an int16

# One alternative per lexical element that can hide a "%" or needs to be skipped whole.
# Words are matched whole so that E'...' and $tag$ are only seen where a token starts,
# as the server's lexer sees them ("where$x$" is one identifier, "somee'x'" is a word then a string).
_TOKEN = re.compile(
    r"""
      (?P<estring> [eE]'[^'\\]*(?:(?:\\.|'')[^'\\]*)*(?P<estring_end>')? )
    | (?P<string>  '[^']*(?:''[^']*)*(?P<string_end>')? )
    | (?P<ident>   "[^"]*(?:""[^"]*)*(?P<ident_end>")? )
    | (?P<line>    --[^\n\r]* )
    | (?P<block>   /\* )
    | (?P<dollar>  \$(?:[^\W\d]|[\x80-\U0010ffff])(?:[\w\x80-\U0010ffff])*\$ | \$\$ )
    | (?P<number>  \$[0-9]+ )
    | (?P<word>    [\w\x80-\U0010ffff][\w$\x80-\U0010ffff]* )
    | (?P<percent> %(?: (?P<literal>%) | (?P<positional>s)
                      | \((?P<name>[^)]*)\)(?P<named_format>.)?
                      | (?P<other>.)? ) )
    """,
    re.VERBOSE | re.DOTALL,
)
_BLOCK_EDGE = re.compile(r"/\*|\*/")
_MIXED = (
    "the query mixes %s and %(name)s placeholders: use one style, all %s with a sequence"
    " or all %(name)s with a mapping"
)


def _region_end(query: str, m: re.Match[str]) -> tuple[int, str | None]:
    """Where a block comment (nested) or a dollar-quoted string that ``m`` opens ends, and
    what it is when it runs unclosed to the end of the query."""
    pos = m.end()
    if m.lastgroup == "block":
        depth = 1
        while depth:
            edge = _BLOCK_EDGE.search(query, pos)
            if edge is None:
                return len(query), "/* comment"
            depth += 1 if edge.group(0) == "/*" else -1
            pos = edge.end()
        return pos, None
    close = query.find(m.group(0), pos)
    if close == -1:
        return len(query), f"{m.group(0)} quoted string"
    return close + len(m.group(0)), None


_OPEN_QUOTE = {"estring": "E'...' string", "string": "quoted string", "ident": "quoted identifier"}


def _lex(query: str, *, percent_is_operator: bool = False) -> Iterator[tuple[re.Match[str], int, str | None]]:
    """Each lexical element that matters, where it ends, and what it is if it runs unclosed to
    the end of the query. With ``percent_is_operator`` a ``%`` is one character (no placeholders)."""
    pos = 0
    search = _TOKEN.search
    while True:
        m = search(query, pos)
        if m is None:
            return
        kind = m.lastgroup
        end = m.end()
        unterminated: str | None = None
        if kind == "block" or kind == "dollar":
            end, unterminated = _region_end(query, m)
        elif kind == "percent" and percent_is_operator:
            end = m.start() + 1
        elif kind in _OPEN_QUOTE and m.group(f"{kind}_end") is None:
            unterminated = _OPEN_QUOTE[kind]
        yield m, end, unterminated
        pos = end


@attrs.frozen
class _Template:
    """A query split once: the converted SQL, and where each parameter comes from."""

    sql: str
    positional: int  # how many %s placeholders (0 when named)
    names: tuple[str, ...]  # the %(name)s names in $n order (empty when positional)
    unterminated: str | None  # what runs to the end of the query unclosed, for error hints


def _hint(template: _Template) -> str:
    if template.unterminated is None:
        return ""
    return f" (note: the query has an unterminated {template.unterminated}, which hides what follows it)"


@functools.lru_cache(maxsize=512)
def _split(query: str) -> _Template:
    pieces: list[str] = []
    names: dict[str, int] = {}
    positional = 0
    last = 0  # start of the text not yet copied into pieces
    unterminated: str | None = None
    for m, pos, open_region in _lex(query):
        kind = m.lastgroup
        if open_region is not None:
            unterminated = open_region
        if kind == "percent":
            pieces.append(query[last : m.start()])
            last = pos
            if m.group("literal") is not None:
                pieces.append("%")
            elif m.group("positional") is not None:
                if names:
                    raise ProgrammingError(_MIXED)
                positional += 1
                pieces.append(f"${positional}")
            elif m.group("name") is not None:
                name = m.group("name")
                if m.group("named_format") != "s":
                    raise ProgrammingError(
                        f"placeholder %({name}) must be followed by 's' (got {m.group(0)!r}); write %% for a literal %"
                    )
                if not name:
                    raise ProgrammingError("empty placeholder name %()s in the query")
                if positional:
                    raise ProgrammingError(_MIXED)
                index = names.setdefault(name, len(names) + 1)
                pieces.append(f"${index}")
            elif m.group("other") is not None:
                raise ProgrammingError(
                    f"unsupported placeholder {m.group(0)!r} in the query: only %s and %(name)s are"
                    " placeholders; write %% for a literal %"
                )
            else:
                raise ProgrammingError("incomplete placeholder: the query ends with a lone %; write %% for a literal %")
            continue
        if kind == "word" or kind == "number":
            continue
        # Quoted text and comments: placeholders stay text, but %% still means % (as in psycopg,
        # where the whole query goes through %-formatting).
        if query.find("%%", m.start(), pos) != -1:
            pieces.append(query[last : m.start()])
            pieces.append(query[m.start() : pos].replace("%%", "%"))
            last = pos
    if positional > MAX_PARAMETERS or len(names) > MAX_PARAMETERS:
        raise ProgrammingError(f"the query has more than {MAX_PARAMETERS} placeholders, the most Postgres accepts")
    if not pieces:
        sql = query  # nothing to replace: share the string
    else:
        pieces.append(query[last:])
        sql = "".join(pieces)
    return _Template(sql, positional, tuple(names), unterminated)


def convert_pyformat(query: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """Turn ``%s`` / ``%(name)s`` into ``$1, $2...`` and return the SQL with its parameter list.

    ``%%`` becomes ``%`` everywhere, inside quoted strings (``'...'``, ``E'...'``,
    ``$tag$...$tag$``), quoted identifiers and comments too, as psycopg and the DB-API suite
    expect. Placeholders in those regions stay text (``'%s'`` is the two characters), and so does
    a lone ``%`` there (``'100%'``). A name used twice reuses its ``$n``; unused mapping keys are
    ignored.
    Single-quoted strings are read with standard_conforming_strings on (the default since 9.1).
    With ``params=None`` the query is returned untouched, as psycopg does.
    Raises ProgrammingError for mixed styles, a wrong number of parameters, a missing name, or a
    ``%`` that is not a placeholder.
    """
    if params is None:
        return query, []
    template = _split(query)
    if isinstance(params, (tuple, list)):  # the common cases first, before the slower ABC checks
        if len(params) == template.positional and not template.names:
            return template.sql, list(params)
        return template.sql, _positional_values(template, params)
    if isinstance(params, (dict, Mapping)):
        if template.positional:
            raise ProgrammingError(
                f"the query uses %s placeholders but a mapping was given: pass a sequence{_hint(template)}"
            )
        try:
            return template.sql, [params[name] for name in template.names]
        except KeyError:
            missing = [name for name in template.names if name not in params]
            if not missing:
                raise  # a KeyError from inside a custom mapping, not ours to rename
            raise ProgrammingError(
                f"query parameter {missing[0]!r} is missing from the mapping{_hint(template)}"
            ) from None
    if isinstance(params, (str, bytes, bytearray)) or not isinstance(params, Sequence):
        raise ProgrammingError(
            f"query parameters must be a sequence or a mapping, not {type(params).__name__}"
        )
    return template.sql, _positional_values(template, params)


def _positional_values(template: _Template, params: Sequence[Any]) -> list[Any]:
    if template.names:
        raise ProgrammingError(
            f"the query uses %(name)s placeholders but a sequence was given: pass a mapping{_hint(template)}"
        )
    if len(params) != template.positional:
        raise ProgrammingError(
            f"the query has {template.positional} placeholder{'s' if template.positional != 1 else ''}"
            f" but {len(params)} parameter{'s were' if len(params) != 1 else ' was'} given{_hint(template)}"
        )
    return list(params)


_FLOAT_WORDS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def quote_identifier(name: str) -> str:
    """A name as an SQL identifier, always in double quotes (``LISTEN "Jobs"``, a role name)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: Any, registry: Any) -> str:
    """A value as an SQL literal (``NULL``, ``true``, ``42``, ``'it''s'``, ``'\\x00'::bytea``)."""
    if value is None:
        return "NULL"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = repr(value)
        special = _FLOAT_WORDS.get(number)
        if special is not None:
            return f"'{special}'::float8"
        return f"({number})" if number.startswith("-") else number
    text: str = registry.literal_text(value)
    quoted = "'" + text.replace("'", "''") + "'"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return quoted + "::bytea"
    return quoted


def format_query(query: str, params: Sequence[Any] | None, registry: Any = None) -> str:
    """``query`` with each ``$n`` outside quotes and comments replaced by its parameter as a
    literal: what the server would see, for logs and error reports. Never execute the result."""
    if not params:
        return query
    if registry is None:
        from neon_proto.types import default_registry

        registry = default_registry
    literals = [quote_literal(value, registry) for value in params]
    pieces: list[str] = []
    last = 0
    for m, end, _ in _lex(query, percent_is_operator=True):
        if m.lastgroup == "number":
            index = int(m.group(0)[1:]) - 1
            if 0 <= index < len(literals):
                pieces.append(query[last : m.start()])
                pieces.append(literals[index])
                last = end
    pieces.append(query[last:])
    return "".join(pieces)
