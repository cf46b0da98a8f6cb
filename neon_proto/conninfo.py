"""Connection strings, parsed the way libpq parses them.

Accepts ``postgres://`` / ``postgresql://`` URIs and libpq ``key=value`` strings, fills gaps from
PG* environment variables (taken as a mapping, never read from ``os.environ`` here) and returns
one immutable :class:`ConnectionParams`. Nothing here does I/O.

Precedence, highest first: keyword overrides, the connection string, the environment, defaults.
An empty value counts as "not given" and falls through to the next layer.

Error messages never repeat the password, and never repeat text from the user-info or host part
of a URI (a URI missing its ``@host`` puts the password where the port should be).

Several hosts (``host=a,b port=1,2``, ``postgresql://a:1,b:2/db``) become ``hosts``; the
binding tries them in the order ``connection_attempts`` gives (``load_balance_hosts``), and keeps
the first whose session matches ``target_session_attrs`` (``session_matches``). Service files
(``service``, PGSERVICEFILE, PGSYSCONFDIR) and password files (``passfile``, PGPASSFILE,
~/.pgpass) are read through a ``read_file`` callback the binding passes, so that this module
stays free of I/O; without one they are not consulted.

Departures from libpq: client_encoding must be UTF8; unknown keywords are kept in ``extra`` (and
sent as server settings) instead of refused; a query value may contain an unencoded ``=``; ``''``
inside a quoted key=value value is a quote; connect_timeout may have a fraction; the default host
is ``localhost``, not a socket directory (a socket directory matches ``localhost`` in a password
file); the system service file is read only when PGSYSCONFDIR is set.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import stat
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import quote, unquote_to_bytes

import attrs

from neon_proto.errors import ProgrammingError

__all__ = [
    "TARGET_SESSION_ATTRS",
    "LOAD_BALANCE_HOSTS",
    "HostTarget",
    "ConfigFileReader",
    "connection_attempts",
    "session_matches",
    "parse_pgpass",
    "match_pgpass",
    "parse_service_file",
    "SSLMODES",
    "SSL_NEGOTIATIONS",
    "CHANNEL_BINDINGS",
    "CLIENT_ONLY_KEYWORDS",
    "FrozenParams",
    "ConnectionParams",
    "parse_connection_string",
]

logger = logging.getLogger("neon_proto")

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TARGET_SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
LOAD_BALANCE_HOSTS = ("disable", "random")

ConfigFileReader = Callable[[str], "tuple[str, int] | None"]
"""``read_file(path) -> (text, st_mode)``, or None when the file does not exist or cannot be read."""
SSL_NEGOTIATIONS = ("postgres", "direct")
CHANNEL_BINDINGS = ("disable", "prefer", "require")

# libpq keywords that configure the client and must not reach the server as startup parameters.
# ("replication" is a libpq keyword too, but libpq sends it in the startup packet, so it passes.)
CLIENT_ONLY_KEYWORDS = frozenset(
    {
        "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service", "servicefile",
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
    "target_session_attrs": "target_session_attrs",
    "load_balance_hosts": "load_balance_hosts",
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


def _check_port(port: object) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ProgrammingError("port must be an integer from 1 to 65535")


@attrs.frozen
class HostTarget:
    """One server of a multi-host connection string, with the password to give it."""

    host: str
    port: int
    password: str | None = attrs.field(default=None, repr=False, converter=_empty_to_none)

    def __attrs_post_init__(self) -> None:
        _check_text("host", self.host)
        if not self.host:
            raise ProgrammingError("host must not be empty")
        if "," in self.host:
            raise ProgrammingError("a host name must not contain ','")
        _check_port(self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class ConnectionParams:
    """Everything needed to open one connection; immutable, and its repr never shows the password.

    ``host``, ``port`` and ``password`` are those of the first server; ``hosts`` lists every
    server (one unless the connection string named several), each with its own password (the
    one given, or the password file's entry for that host).
    """

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
    target_session_attrs: str = "any"
    load_balance_hosts: str = "disable"
    hosts: tuple[HostTarget, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        for name in _TEXT_FIELDS:
            _check_text(name, getattr(self, name))
        if not self.host:
            raise ProgrammingError("host must not be empty")
        if "," in self.host:
            raise ProgrammingError("give several hosts as hosts=, or host='a,b' in a connection string")
        _check_port(self.port)
        if not self.hosts:
            object.__setattr__(self, "hosts", (HostTarget(self.host, self.port, self.password),))
        elif (self.hosts[0].host, self.hosts[0].port, self.hosts[0].password) != (self.host, self.port, self.password):
            raise ProgrammingError("host, port and password must be those of hosts[0]")
        _check_choice("target_session_attrs", self.target_session_attrs, TARGET_SESSION_ATTRS)
        _check_choice("load_balance_hosts", self.load_balance_hosts, LOAD_BALANCE_HOSTS)
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
        """A copy with some fields changed (``dbname`` is accepted for ``database``).

        Changing ``host`` or ``port`` leaves one server; changing ``password`` gives it to every server.
        """
        if "dbname" in changes:
            changes["database"] = changes.pop("dbname")
        if "hosts" in changes:
            hosts = tuple(changes["hosts"])
            changes.update(host=hosts[0].host, port=hosts[0].port, password=hosts[0].password)
        elif "host" in changes or "port" in changes:
            changes["hosts"] = ()
        elif "password" in changes:
            changes["hosts"] = tuple(attrs.evolve(h, password=changes["password"]) for h in self.hosts)
        return attrs.evolve(self, **changes)

    def for_host(self, target: HostTarget) -> ConnectionParams:
        """These parameters for one of ``hosts`` alone: what one connection attempt uses."""
        return attrs.evolve(self, host=target.host, port=target.port, password=target.password, hosts=())

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
        hosts = []
        for target in self.hosts:
            if ":" in target.host:
                hosts.append("[" + quote(target.host, safe=":") + f"]:{target.port}")
            else:
                hosts.append(quote(target.host, safe="") + f":{target.port}")
        url = f"postgresql://{userinfo}{','.join(hosts)}"
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
            ("target_session_attrs", "any"),
            ("load_balance_hosts", "disable"),
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


def _split_uri_host(hostport: str) -> tuple[str, str]:
    """``host[:port]`` or ``[v6][:port]`` of a URI's authority, undecoded."""
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
        return host, after[1:]
    host, _, port = hostport.partition(":")
    return host, port


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
    hosts: list[str] = []
    ports: list[str] = []
    for item in hostport.split(","):
        host, port = _split_uri_host(item)
        host = _percent_decode(host, "host") if host else ""
        if "," in host:
            raise ProgrammingError("a host in the connection URI must not contain an encoded ','")
        hosts.append(host)
        ports.append(port)
    if any(hosts):
        values["host"] = (",".join(hosts), source, False)
    if any(ports):
        values["port"] = (",".join(ports), source, False)

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


def _port_number(text: str, source: str, echo: bool) -> int:
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ProgrammingError(f"invalid port{_shown(text, echo)} (from {source}): expected an integer from 1 to 65535")
    return int(text)


def _host_targets(host_value: _Value | None, port_value: _Value | None, password: str | None) -> list[HostTarget]:
    """libpq's host and port lists: one port for every host, or one each; empty entries are defaults."""
    hosts = [h or "localhost" for h in host_value[0].split(",")] if host_value else ["localhost"]
    ports: list[int] = [5432]
    if port_value is not None:
        text, source, echo = port_value
        ports = [_port_number(p, source, echo) if p else 5432 for p in text.split(",")]
    if len(ports) == 1:
        ports *= len(hosts)
    elif len(ports) != len(hosts):
        raise ProgrammingError(f"could not match {len(ports)} port numbers to {len(hosts)} hosts")
    return [HostTarget(h, p, password) for h, p in zip(hosts, ports)]


def _build(values: Mapping[str, _Value]) -> ConnectionParams:
    kwargs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, (value, source, echo) in values.items():  # echo: may an error repeat the value?
        field = _FIELD_FOR_KEYWORD.get(key)
        if field is None:
            extra[key] = value
        elif field in ("host", "port"):
            continue  # below: lists of hosts and ports
        elif field == "connect_timeout":
            if not _NUMBER.fullmatch(value):
                raise ProgrammingError(
                    f"invalid connect_timeout{_shown(value, echo)} (from {source}): expected a number of seconds"
                )
            kwargs["connect_timeout"] = float(value)
        elif field in _CHOICES:
            _check_choice(field, value, _CHOICES[field], source)
            kwargs[field] = value
        else:
            kwargs[field] = value
    if kwargs.get("sslrootcert") == "system" and "sslmode" not in kwargs:
        kwargs["sslmode"] = "verify-full"  # libpq 16+: the system store implies verify-full
    hosts = _host_targets(values.get("host"), values.get("port"), kwargs.get("password") or None)
    kwargs.update(host=hosts[0].host, port=hosts[0].port, hosts=hosts, extra=extra)
    return ConnectionParams(**kwargs)


_CHOICES = {
    "sslmode": SSLMODES,
    "sslnegotiation": SSL_NEGOTIATIONS,
    "channel_binding": CHANNEL_BINDINGS,
    "target_session_attrs": TARGET_SESSION_ATTRS,
    "load_balance_hosts": LOAD_BALANCE_HOSTS,
}


# ------------------------------------------------------------------ password and service files


def _unescaped_fields(line: str) -> list[str]:
    """A .pgpass line split at unescaped ':' with backslash escapes removed."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            current.append(line[i + 1])
            i += 2
            continue
        if c == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    fields.append("".join(current))
    return fields


def parse_pgpass(text: str) -> list[tuple[str, str, str, str, str]]:
    """``hostname:port:database:username:password`` entries of a password file, in order."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        fields = _unescaped_fields(line)
        if len(fields) >= 5:
            entries.append((fields[0], fields[1], fields[2], fields[3], fields[4]))
    return entries


def match_pgpass(
    entries: Sequence[tuple[str, str, str, str, str]], host: str, port: int, database: str, user: str
) -> str | None:
    """The password of the first entry matching (``*`` matches anything), as libpq picks it.

    A Unix-socket directory matches the entry ``localhost``.
    """
    hosts = {host, "localhost"} if host.startswith("/") else {host}
    for entry_host, entry_port, entry_db, entry_user, password in entries:
        if (
            (entry_host == "*" or entry_host in hosts)
            and entry_port in ("*", str(port))
            and entry_db in ("*", database)
            and entry_user in ("*", user)
        ):
            return password
    return None


def _read_pgpass(path: str, read_file: ConfigFileReader) -> list[tuple[str, str, str, str, str]]:
    found = read_file(path)
    if found is None:
        return []
    text, mode = found
    if not stat.S_ISREG(mode):
        logger.warning("password file %r is not a plain file; ignoring it", path)
        return []
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "password file %r has group or world access; permissions should be u=rw (0600) or less; ignoring it", path
        )
        return []
    return parse_pgpass(text)


def parse_service_file(text: str, path: str = "the service file") -> dict[str, dict[str, str]]:
    """``[service]`` sections of ``keyword=value`` lines; ``#`` starts a comment line."""
    services: dict[str, dict[str, str]] = {}
    section: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = services.setdefault(line[1:-1].strip(), {})
            continue
        key, equals, value = line.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ProgrammingError(f"syntax error in service file {path!r}, line {number}")
        if section is None:
            continue  # before the first section: libpq ignores it too
        if key == "service":
            raise ProgrammingError(f"nested service specifications not supported in service file {path!r}, line {number}")
        section[key] = value.strip()
    return services


def _service_layer(
    name: str, servicefile: str | None, env: Mapping[str, str], read_file: ConfigFileReader
) -> dict[str, _Value]:
    """The keywords of service ``name``: from the user's service file, else the system's."""
    candidates = []
    user_file = servicefile or env.get("PGSERVICEFILE")
    if user_file:
        candidates.append(user_file)
    elif env.get("HOME"):
        candidates.append(env["HOME"].rstrip("/") + "/.pg_service.conf")
    if env.get("PGSYSCONFDIR"):
        candidates.append(env["PGSYSCONFDIR"].rstrip("/") + "/pg_service.conf")
    for path in candidates:
        found = read_file(path)
        if found is None:
            continue
        section = parse_service_file(found[0], path).get(name)
        if section is not None:
            source = f"service {name!r} in {path}"
            return {k: (v, source, k != "password" and k not in _SECRET_KEYS) for k, v in section.items()}
    raise ProgrammingError(f"definition of service {name!r} not found")


# ------------------------------------------------------------------ several hosts


def connection_attempts(
    params: ConnectionParams, shuffle: Callable[[list[HostTarget]], None] | None = None
) -> list[tuple[ConnectionParams, str]]:
    """The connection attempts to make, in order: (parameters for one host, session wanted).

    ``load_balance_hosts=random`` lets ``shuffle`` (the binding's ``random.shuffle``) order
    the hosts. ``prefer-standby`` tries every host for a standby, then every host again for any
    server, as libpq does.
    """
    hosts = list(params.hosts)
    if params.load_balance_hosts == "random" and shuffle is not None:
        shuffle(hosts)
    wanted = params.target_session_attrs
    passes = ["standby", "any"] if wanted == "prefer-standby" else [wanted]
    return [(params.for_host(h), w) for w in passes for h in hosts]


SESSION_STATE_SQL = "SELECT pg_catalog.pg_is_in_recovery()::text, pg_catalog.current_setting('transaction_read_only')"
"""What a binding asks a server that did not report ``in_hot_standby`` (before PostgreSQL 14)."""


def session_state(parameter_status: Mapping[str, str]) -> tuple[bool, bool] | None:
    """(hot standby, read only) from the ParameterStatus a server sent, or None if it did not say."""
    standby = parameter_status.get("in_hot_standby")
    read_only = parameter_status.get("default_transaction_read_only")
    if standby is None or read_only is None:
        return None
    return standby == "on", read_only == "on" or standby == "on"


def session_matches(wanted: str, hot_standby: bool, read_only: bool) -> bool:
    """Whether a session fits ``target_session_attrs`` (one pass's value; never prefer-standby)."""
    if wanted == "read-write":
        return not read_only
    if wanted == "read-only":
        return read_only
    if wanted == "primary":
        return not hot_standby
    if wanted == "standby":
        return hot_standby
    return True


# ------------------------------------------------------------------ the entry point


def parse_connection_string(
    dsn: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    read_file: ConfigFileReader | None = None,
    **overrides: Any,
) -> ConnectionParams:
    """Parse a libpq URI or ``key=value`` string, fill in from ``env`` (PG* variables), apply overrides.

    ``env=None`` means no environment: bindings pass ``os.environ``. Overrides take the same names
    as the string (``dbname`` or ``database``, ``host``, ``port`` as int or str...); None values
    are ignored. Unknown keywords are kept in ``extra``. Raises ProgrammingError on bad input.

    With ``read_file``, a ``service`` (or PGSERVICE) is looked up in the service files, between
    the environment and the string in precedence, and a missing password is looked up in the
    password file for each host (``passfile``, PGPASSFILE, else ~/.pgpass).
    """
    env_layer: dict[str, _Value] = {}
    if env is not None:
        env_layer = {
            keyword: (env[var], f"environment variable {var}", var != "PGPASSWORD")
            for var, keyword in _ENV_KEYWORDS.items()
            if env.get(var)
        }
    explicit: list[dict[str, _Value]] = []
    if dsn is not None:
        if not isinstance(dsn, str):
            raise ProgrammingError(f"the connection string must be a str, not {type(dsn).__name__}")
        explicit.append(_parse_dsn(dsn))
    explicit.append(_override_values(overrides))
    given = {k: v[0] for layer in explicit for k, v in layer.items() if v[0]}
    service = given.get("service") or (env_layer["service"][0] if "service" in env_layer else None)
    service_layer: dict[str, _Value] = {}
    if service and read_file is not None:
        service_layer = _service_layer(service, given.get("servicefile"), env or {}, read_file)
    values: dict[str, _Value] = {}
    for layer in (env_layer, service_layer, *explicit):
        for key, value in layer.items():
            if not value[0]:
                continue  # empty means "not given", as in libpq
            values["dbname" if key == "database" else key] = value
    params = _build(values)
    if params.password is None and params.user is not None and read_file is not None:
        params = _with_passfile_passwords(params, env or {}, read_file)
    return params


def _with_passfile_passwords(params: ConnectionParams, env: Mapping[str, str], read_file: ConfigFileReader) -> ConnectionParams:
    path = params.extra.get("passfile")
    if not path and env.get("HOME"):
        path = env["HOME"].rstrip("/") + "/.pgpass"
    if not path:
        return params
    entries = _read_pgpass(path, read_file)
    if not entries:
        return params
    user = params.user
    assert user is not None
    database = params.dbname or user
    hosts = tuple(attrs.evolve(h, password=match_pgpass(entries, h.host, h.port, database, user)) for h in params.hosts)
    return params.with_(hosts=hosts)
