"""Connection strings, parsed the way libpq parses them.

Accepts ``postgres://`` / ``postgresql://`` URIs and libpq ``key=value`` strings, fills gaps from
PG* environment variables (taken as a mapping, never read from ``os.environ`` here) and returns
one immutable :class:`ConnectionParams`. Nothing here does I/O.

Precedence, highest first: keyword overrides, the connection string, the environment, defaults.
An empty value counts as "not given" and falls through to the next layer.

Error messages never repeat the password, and never repeat text from the user-info or host part
of a URI (a URI missing its ``@host`` puts the password where the port should be).

Departures from libpq: one host only (no comma lists); client_encoding must be UTF8; unknown
keywords are kept in ``extra`` (and sent as server settings) instead of refused; a query value may
contain an unencoded ``=``; ``''`` inside a quoted key=value value is a quote; connect_timeout may
have a fraction; the default host is ``localhost``, not a socket directory; service files and
passfiles are not read (``service`` and ``passfile`` stay in ``extra``).
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote, unquote_to_bytes

import attrs

from neon_proto.errors import ProgrammingError

__all__ = [
    "SSLMODES",
    "SSL_NEGOTIATIONS",
    "CHANNEL_BINDINGS",
    "CLIENT_ONLY_KEYWORDS",
    "FrozenParams",
    "ConnectionParams",
    "parse_connection_string",
]

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SSL_NEGOTIATIONS = ("postgres", "direct")
CHANNEL_BINDINGS = ("disable", "prefer", "require")

# libpq keywords that configure the client and must not reach the server as startup parameters.
# ("replication" is a libpq keyword too, but libpq sends it in the startup packet, so it passes.)
CLIENT_ONLY_KEYWORDS = frozenset(
    {
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service",
        "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
        "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
        "keepalives_count", "tcp_user_timeout", "sslmode", "sslnegotiation", "sslcompression",
        "sslcert", "sslkey", "sslkeylogfile", "sslcertmode", "sslpassword", "sslrootcert",
        "sslcrl", "sslcrldir", "sslsni", "requirepeer", "require_auth", "min_protocol_version",
        "max_protocol_version", "ssl_min_protocol_version", "ssl_max_protocol_version",
        "gssencmode", "krbsrvname", "gsslib", "gssdelegation", "target_session_attrs",
        "load_balance_hosts", "scram_client_key", "scram_server_key", "oauth_issuer",
        "oauth_client_id", "oauth_client_secret", "oauth_scope", "authtype", "tty",
        "ssl",  # JDBC spelling; libpq turns ssl=true in a URI into sslmode=require
    }
)  # fmt: skip

# Extra keys whose values are secrets: redacted in repr, dropped by to_url(include_password=False).
_SECRET_KEYS = frozenset({"sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"})

# Connection-string keyword -> ConnectionParams field.
_FIELD_FOR_KEYWORD: dict[str, str] = {
    "host": "host",
    "port": "port",
    "user": "user",
    "password": "password",
    "dbname": "database",
    "database": "database",
    "sslmode": "sslmode",
    "sslrootcert": "sslrootcert",
    "sslcert": "sslcert",
    "sslkey": "sslkey",
    "sslnegotiation": "sslnegotiation",
    "channel_binding": "channel_binding",
    "options": "options",
    "application_name": "application_name",
    "connect_timeout": "connect_timeout",
}

# PG* environment variable -> keyword, as libpq reads them. PGCLIENTENCODING is left out on
# purpose: this driver always speaks UTF8, and a LATIN1 left in a shell for psql must not break it.
_ENV_KEYWORDS: dict[str, str] = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGDATABASE": "dbname",
    "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCERT": "sslcert",
    "PGSSLKEY": "sslkey",
    "PGSSLNEGOTIATION": "sslnegotiation",
    "PGCHANNELBINDING": "channel_binding",
    "PGAPPNAME": "application_name",
    "PGOPTIONS": "options",
    "PGCONNECT_TIMEOUT": "connect_timeout",
    "PGHOSTADDR": "hostaddr",
    "PGPASSFILE": "passfile",
    "PGSERVICE": "service",
    "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGREQUIREAUTH": "require_auth",
    "PGGSSENCMODE": "gssencmode",
    "PGSSLCRL": "sslcrl",
    "PGSSLCRLDIR": "sslcrldir",
    "PGSSLSNI": "sslsni",
    "PGSSLCERTMODE": "sslcertmode",
    "PGSSLMINPROTOCOLVERSION": "ssl_min_protocol_version",
    "PGSSLMAXPROTOCOLVERSION": "ssl_max_protocol_version",
    "PGLOADBALANCEHOSTS": "load_balance_hosts",
    "PGKRBSRVNAME": "krbsrvname",
    "PGGSSLIB": "gsslib",
}

_TEXT_FIELDS = (
    "host", "user", "password", "database", "sslmode", "sslrootcert", "sslcert", "sslkey",
    "sslnegotiation", "channel_binding", "options", "application_name",
)  # fmt: skip
_UTF8_NAMES = frozenset({"utf8", "utf-8", "unicode", "auto"})
_NEON_HOST_SUFFIXES = ("-pooler", "-local-proxy")


class FrozenParams(Mapping[str, str]):
    """An immutable, hashable str -> str mapping whose repr hides secret values."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._data: dict[str, str] = dict(items)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_KEYS else v) for k, v in self._data.items()}
        return f"FrozenParams({shown!r})"


def _freeze_extra(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> FrozenParams:
    return value if isinstance(value, FrozenParams) else FrozenParams(value)


def _empty_to_none(value: str | None) -> str | None:
    return value or None


def _normalize_timeout(value: float | None) -> float | None:
    """libpq: zero or negative means wait forever, and anything shorter than 2 s becomes 2 s."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProgrammingError("connect_timeout must be a number of seconds")
    if not math.isfinite(value):
        raise ProgrammingError("connect_timeout must be a finite number of seconds")
    if value <= 0:
        return None
    return max(float(value), 2.0)


def _check_choice(name: str, value: object, choices: tuple[str, ...], source: str = "") -> None:
    if value not in choices:
        where = f" (from {source})" if source else ""
        allowed = ", ".join(choices)
        raise ProgrammingError(f"invalid {name} value {value!r}{where}: expected one of {allowed}")


def _check_text(name: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ProgrammingError(f"{name} must be a str")
    if "\x00" in value:
        # Startup messages are NUL-terminated: a NUL would let one value forge another.
        raise ProgrammingError(f"{name} must not contain a NUL character")


@attrs.frozen
class ConnectionParams:
    """Everything needed to open one connection; immutable, and its repr never shows the password."""

    host: str = "localhost"
    port: int = 5432
    user: str | None = attrs.field(default=None, converter=_empty_to_none)
    password: str | None = attrs.field(default=None, repr=False, converter=_empty_to_none)
    database: str | None = attrs.field(default=None, converter=_empty_to_none)
    sslmode: str = "prefer"
    sslrootcert: str | None = attrs.field(default=None, converter=_empty_to_none)
    sslcert: str | None = attrs.field(default=None, converter=_empty_to_none)
    sslkey: str | None = attrs.field(default=None, converter=_empty_to_none)
    sslnegotiation: str = "postgres"
    channel_binding: str = "prefer"
    options: str | None = attrs.field(default=None, converter=_empty_to_none)
    application_name: str | None = attrs.field(default=None, converter=_empty_to_none)
    connect_timeout: float | None = attrs.field(default=None, converter=_normalize_timeout)
    extra: Mapping[str, str] = attrs.field(factory=FrozenParams, converter=_freeze_extra)

    def __attrs_post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            _check_text(name, getattr(self, name))
        if not self.host:
            raise ProgrammingError("host must not be empty")
        if "," in self.host:
            raise ProgrammingError("multiple hosts are not supported: give exactly one host")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ProgrammingError("port must be an integer from 1 to 65535")
        _check_choice("sslmode", self.sslmode, SSLMODES)
        _check_choice("sslnegotiation", self.sslnegotiation, SSL_NEGOTIATIONS)
        _check_choice("channel_binding", self.channel_binding, CHANNEL_BINDINGS)
        if self.sslnegotiation == "direct" and self.sslmode not in ("require", "verify-ca", "verify-full"):
            raise ProgrammingError(
                f'weak sslmode "{self.sslmode}" may not be used with sslnegotiation=direct'
                ' (use "require", "verify-ca", or "verify-full")'
            )
        if self.sslrootcert == "system" and self.sslmode != "verify-full":
            raise ProgrammingError(
                f'weak sslmode "{self.sslmode}" may not be used with sslrootcert=system (use "verify-full")'
            )
        for key, value in self.extra.items():
            if not isinstance(key, str) or not key:
                raise ProgrammingError("extra parameter names must be non-empty strings")
            if key in _FIELD_FOR_KEYWORD:
                raise ProgrammingError(f"{key!r} is a ConnectionParams field, not an extra parameter")
            _check_text(f"extra parameter {key!r}", key)
            _check_text(f"extra parameter {key!r}", value)
        encoding = self.extra.get("client_encoding")
        if encoding is not None and encoding.lower() not in _UTF8_NAMES:
            raise ProgrammingError(f"client_encoding {encoding!r} is not supported: this driver only speaks UTF8")

    @property
    def dbname(self) -> str | None:
        """The database to connect to: ``database``, else the user name, as libpq does."""
        return self.database if self.database is not None else self.user

    @property
    def endpoint_id(self) -> str | None:
        """The Neon endpoint: ``endpoint=``/``project=`` in options, else the host's first DNS label."""
        if self.options:
            for token in self.options.split():
                for prefix in ("endpoint=", "project="):
                    if token.startswith(prefix) and len(token) > len(prefix):
                        return token[len(prefix) :]
        host = self.host
        if host.startswith(("/", "@")) or "." not in host:
            return None
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            return None
        label = host.split(".", 1)[0]
        for suffix in _NEON_HOST_SUFFIXES:
            label = label.removesuffix(suffix)
        return label or None

    def startup_parameters(self) -> dict[str, str]:
        """The parameters of the StartupMessage: user, database, settings, and extra server GUCs.

        ``user`` is left out when unknown (libpq would use the OS user; bindings decide).
        """
        params: dict[str, str] = {}
        if self.user is not None:
            params["user"] = self.user
        dbname = self.dbname
        if dbname is not None:
            params["database"] = dbname
        application_name = self.application_name or self.extra.get("fallback_application_name")
        if application_name:
            params["application_name"] = application_name
        if self.options is not None:
            params["options"] = self.options
        params["client_encoding"] = "UTF8"
        for key, value in self.extra.items():
            if key not in CLIENT_ONLY_KEYWORDS:
                params[key] = value
        return params

    def with_(self, **changes: Any) -> ConnectionParams:
        """A copy with some fields changed (``dbname`` is accepted for ``database``)."""
        if "dbname" in changes:
            changes["database"] = changes.pop("dbname")
        return attrs.evolve(self, **changes)

    def to_url(self, *, include_password: bool = True) -> str:
        """A ``postgresql://`` URI that parses back to these parameters (with no environment).

        Fields at their defaults are left out of the query string; the port is always written.
        ``include_password=False`` also drops secret extra parameters such as ``sslpassword``.
        """
        userinfo = ""
        if self.user is not None:
            userinfo = quote(self.user, safe="")
        if include_password and self.password is not None:
            userinfo += ":" + quote(self.password, safe="")
        if userinfo:
            userinfo += "@"
        if ":" in self.host:
            host = "[" + quote(self.host, safe=":") + "]"
        else:
            host = quote(self.host, safe="")
        url = f"postgresql://{userinfo}{host}:{self.port}"
        if self.database is not None:
            url += "/" + quote(self.database, safe="")
        query: list[tuple[str, str]] = []
        for name, default in (
            ("sslmode", "prefer"),
            ("sslrootcert", None),
            ("sslcert", None),
            ("sslkey", None),
            ("sslnegotiation", "postgres"),
            ("channel_binding", "prefer"),
            ("options", None),
            ("application_name", None),
        ):
            value = getattr(self, name)
            if value != default:
                query.append((name, value))
        if self.connect_timeout is not None:
            timeout = self.connect_timeout
            query.append(("connect_timeout", str(int(timeout)) if timeout.is_integer() else repr(timeout)))
        for key, value in self.extra.items():
            if include_password or key not in _SECRET_KEYS:
                query.append((key, value))
        if query:
            url += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
        return url


# One gathered value: (text, where it came from, whether an error message may repeat it).
_Value = tuple[str, str, bool]

_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_PERCENT_OK = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT = re.compile(r"\s*[0-9]+\s*")
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_SPACE = " \t\n\r\f\v"


def _keyword_label(key: str) -> str:
    """A keyword as an error may show it: only names we know, since an unknown one may be a
    fragment of an unquoted password that contained a space."""
    return repr(key) if key in _FIELD_FOR_KEYWORD or key in CLIENT_ONLY_KEYWORDS else "a keyword"


def _percent_decode(text: str, what: str) -> str:
    """libpq's URI decoding: every ``%`` starts two hex digits, ``%00`` is refused, ``+`` stays."""
    if "%" not in text:
        return text
    if _PERCENT_OK.search(text):
        raise ProgrammingError(f"invalid percent-encoding in the {what} of the connection URI")
    raw = unquote_to_bytes(text)
    if b"\x00" in raw:
        raise ProgrammingError(f"forbidden %00 in the {what} of the connection URI")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProgrammingError(f"percent-encoded {what} of the connection URI is not valid UTF-8") from None


def _parse_uri(uri: str, scheme_length: int) -> dict[str, _Value]:
    source = "the connection URI"
    values: dict[str, _Value] = {}
    rest = uri[scheme_length:]
    # The authority ends at the first "/" or "?" (RFC 3986); the user info ends at its last "@",
    # which forgives an unencoded "@" in a password.
    end = len(rest)
    for stop in ("/", "?"):
        found = rest.find(stop)
        if found != -1:
            end = min(end, found)
    authority, rest = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            values["user"] = (_percent_decode(user, "user name"), source, False)
        if colon and password:
            values["password"] = (_percent_decode(password, "password"), source, False)
    if "," in hostport:
        raise ProgrammingError("multiple hosts in a connection URI are not supported: give exactly one host")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise ProgrammingError("unterminated IPv6 host address ('[' without ']') in the connection URI")
        host = hostport[1:close]
        if not host:
            raise ProgrammingError("empty IPv6 host address ('[]') in the connection URI")
        after = hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise ProgrammingError("unexpected character after the IPv6 host address in the connection URI")
        port = after[1:]
    else:
        host, _, port = hostport.partition(":")
    if host:
        values["host"] = (_percent_decode(host, "host"), source, False)
    if port:
        values["port"] = (port, source, False)

    path, question, query = rest.partition("?")
    if path:
        dbname = path[1:]  # path starts with "/"; like libpq, a further "/" belongs to the name
        if dbname:
            values["dbname"] = (_percent_decode(dbname, "database name"), source, True)
    if question:
        for pair in query.split("&"):
            if not pair:
                continue
            raw_key, equals, raw_value = pair.partition("=")
            if not equals:
                raise ProgrammingError("missing '=' in a query parameter of the connection URI")
            key = _percent_decode(raw_key, "query parameter name")
            if not key:
                raise ProgrammingError("empty query parameter name in the connection URI")
            value = _percent_decode(raw_value, f"value of {_keyword_label(key)}")
            if key == "ssl" and value == "true":  # JDBC spelling, accepted by libpq in URIs
                key, value = "sslmode", "require"
            values[key] = (value, source, key != "password" and key not in _SECRET_KEYS)
    return values


def _parse_keyword_string(text: str) -> dict[str, _Value]:
    """libpq ``key=value`` syntax: values may be single-quoted; backslash escapes the next character.

    Inside quotes ``''`` also stands for one quote: libpq rejects that input, so nothing it
    accepts changes meaning.
    """
    source = "the connection string"
    values: dict[str, _Value] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n:
            return values
        start = i
        while i < n and text[i] != "=" and text[i] not in _SPACE:
            i += 1
        key = text[start:i]
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n or text[i] != "=":
            raise ProgrammingError(
                f"missing '=' after {_keyword_label(key)} at position {start} of the connection string"
            )
        if not key:
            raise ProgrammingError(f"empty keyword before '=' at position {start} of the connection string")
        i += 1
        while i < n and text[i] in _SPACE:
            i += 1
        chars: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ProgrammingError(
                        f"unterminated quoted value for {_keyword_label(key)} in the connection string"
                    )
                c = text[i]
                if c == "\\":
                    if i + 1 < n:
                        chars.append(text[i + 1])
                    i += 2
                elif c == "'":
                    if i + 1 < n and text[i + 1] == "'":
                        chars.append("'")
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    chars.append(c)
                    i += 1
        else:
            while i < n and text[i] not in _SPACE:
                c = text[i]
                if c == "\\":
                    if i + 1 < n:
                        chars.append(text[i + 1])
                    i += 2
                else:
                    chars.append(c)
                    i += 1
        values[key] = ("".join(chars), source, key != "password" and key not in _SECRET_KEYS)


def _parse_dsn(dsn: str) -> dict[str, _Value]:
    dsn = dsn.strip(_SPACE)
    if not dsn:
        return {}
    match = _URI_SCHEME.match(dsn)
    if match is not None:
        scheme = match.group(1)
        if scheme.lower() not in ("postgres", "postgresql"):
            raise ProgrammingError(
                f"unsupported URI scheme {scheme!r} in the connection string: use postgresql:// or postgres://"
            )
        return _parse_uri(dsn, match.end())
    return _parse_keyword_string(dsn)


def _override_values(overrides: Mapping[str, Any]) -> dict[str, _Value]:
    values: dict[str, _Value] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        source = f"keyword argument {key!r}"
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ProgrammingError(f"{source} must be a str, int or float, not {type(value).__name__}")
        text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
        values[key] = (text, source, key != "password" and key not in _SECRET_KEYS)
    return values


def _shown(value: str, echo: bool) -> str:
    return f" {value!r}" if echo else ""


def _build(values: Mapping[str, _Value]) -> ConnectionParams:
    kwargs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, (value, source, echo) in values.items():  # echo: may an error repeat the value?
        field = _FIELD_FOR_KEYWORD.get(key)
        if field is None:
            extra[key] = value
        elif field == "port":
            if not _PORT.fullmatch(value) or not 1 <= int(value) <= 65535:
                raise ProgrammingError(
                    f"invalid port{_shown(value, echo)} (from {source}): expected an integer from 1 to 65535"
                )
            kwargs["port"] = int(value)
        elif field == "connect_timeout":
            if not _NUMBER.fullmatch(value):
                raise ProgrammingError(
                    f"invalid connect_timeout{_shown(value, echo)} (from {source}): expected a number of seconds"
                )
            kwargs["connect_timeout"] = float(value)
        elif field in ("sslmode", "sslnegotiation", "channel_binding"):
            choices = {"sslmode": SSLMODES, "sslnegotiation": SSL_NEGOTIATIONS, "channel_binding": CHANNEL_BINDINGS}
            _check_choice(field, value, choices[field], source)
            kwargs[field] = value
        else:
            kwargs[field] = value
    if kwargs.get("sslrootcert") == "system" and "sslmode" not in kwargs:
        kwargs["sslmode"] = "verify-full"  # libpq 16+: the system store implies verify-full
    kwargs["extra"] = extra
    return ConnectionParams(**kwargs)


def parse_connection_string(
    dsn: str | None = None, *, env: Mapping[str, str] | None = None, **overrides: Any
) -> ConnectionParams:
    """Parse a libpq URI or ``key=value`` string, fill in from ``env`` (PG* variables), apply overrides.

    ``env=None`` means no environment: bindings pass ``os.environ``. Overrides take the same names
    as the string (``dbname`` or ``database``, ``host``, ``port`` as int or str...); None values
    are ignored. Unknown keywords are kept in ``extra``. Raises ProgrammingError on bad input.
    """
    values: dict[str, _Value] = {}
    layers: list[dict[str, _Value]] = []
    if env is not None:
        layers.append(
            {
                keyword: (env[var], f"environment variable {var}", var != "PGPASSWORD")
                for var, keyword in _ENV_KEYWORDS.items()
                if env.get(var)
            }
        )
    if dsn is not None:
        if not isinstance(dsn, str):
            raise ProgrammingError(f"the connection string must be a str, not {type(dsn).__name__}")
        layers.append(_parse_dsn(dsn))
    layers.append(_override_values(overrides))
    for layer in layers:
        for key, value in layer.items():
            if not value[0]:
                continue  # empty means "not given", as in libpq
            values["dbname" if key == "database" else key] = value
    return _build(values)
