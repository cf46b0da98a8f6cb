"""Connection options: a DSN plus keyword arguments become ``ConnectionParams`` and ``TransportOptions``.

Every binding (neon_sync, neon_trio, neon_asyncio, their pools and DB-API ``connect()``) builds
its connection settings here, once, so a keyword means the same everywhere and a misspelt one
fails the same way everywhere: ``TypeError`` naming the valid keywords, with the closest match.
Server settings (GUCs) are never guessed from unknown keywords: they go through ``options=``
(``"-c search_path=app"``) or ``server_settings={"search_path": "app"}``.

``neon_config`` holds the defaults of the transport options, as the JS driver's ``neonConfig``
does, with the same names in snake_case. A keyword argument overrides it per connection.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any, Callable, Literal, Mapping, TypedDict, Union
from urllib.parse import quote

import attrs

from neon_proto.conninfo import CLIENT_ONLY_KEYWORDS, ConnectionParams, parse_connection_string

__all__ = [
    "TransportName",
    "PipelineConnect",
    "WsProxy",
    "FetchEndpointOption",
    "NeonConfig",
    "neon_config",
    "TransportOptions",
    "ConnectOptions",
    "ConnectKeywords",
    "CONNECTION_KEYWORDS",
    "TRANSPORT_KEYWORDS",
    "resolve_connect_options",
    "check_keywords",
    "WebSocketTarget",
    "is_loopback_host",
]

TransportName = Literal["tcp", "websocket", "auto"]
"""``tcp``, ``websocket``, or ``auto`` (websocket when a ws_proxy is configured or there are no sockets)."""

PipelineConnect = Literal["auto", "password", "scram", False]
"""How the connect is pipelined: ``password`` (cleartext with the StartupMessage), ``scram``
(client-first with the StartupMessage), ``False`` (wait for each server message), or ``auto``
(``password`` over WebSocket, ``scram`` over TCP)."""

WsProxy = Union[str, Callable[[str, int], str], None]
"""Where the WebSocket goes: a string (``?address=host:port`` is appended) or ``(host, port) -> str``; no scheme."""

FetchEndpointOption = Union[str, Callable[[str, int], str], None]

_TRANSPORTS = ("tcp", "websocket", "auto")
_PIPELINES: tuple[object, ...] = ("auto", "password", "scram", False)


def _check_transport(_instance: object, _attribute: Any, value: Any) -> None:
    if value not in _TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(map(repr, _TRANSPORTS))}, not {value!r}")


def _check_pipeline(_instance: object, _attribute: Any, value: Any) -> None:
    if value is False or (isinstance(value, str) and value in _PIPELINES):
        return
    raise ValueError(f"pipeline_connect must be 'auto', 'password', 'scram' or False, not {value!r}")


def _check_ws_proxy(_instance: object, _attribute: Any, value: Any) -> None:
    if value is None or callable(value):
        return
    if not isinstance(value, str) or not value:
        raise ValueError("ws_proxy must be a non-empty string or a function (host, port) -> str")
    if "://" in value:
        raise ValueError(
            f"ws_proxy {value!r} must not have a scheme: use_secure_websocket chooses wss:// or ws://"
        )


def _check_endpoint(_instance: object, _attribute: Any, value: Any) -> None:
    if value is not None and not callable(value) and not isinstance(value, str):
        raise ValueError("fetch_endpoint must be a URL string or a function (host, port) -> URL")


def _check_bool(_instance: object, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be True or False, not {value!r}")


@attrs.define(on_setattr=attrs.setters.validate)
class NeonConfig:
    """Defaults for the WebSocket and pipelining options (the JS driver's ``neonConfig``).

    Change them once at import time (``neon_config.ws_proxy = "proxy.local/v2"``); a keyword
    argument to ``Client``/``Pool``/``connect()`` overrides them for one connection.
    """

    ws_proxy: WsProxy = attrs.field(default=None, validator=_check_ws_proxy)
    use_secure_websocket: bool = attrs.field(default=True, validator=_check_bool)
    pipeline_connect: PipelineConnect = attrs.field(default="auto", validator=_check_pipeline)
    pipeline_tls: bool = attrs.field(default=False, validator=_check_bool)
    force_disable_pg_ssl: bool = attrs.field(default=True, validator=_check_bool)
    coalesce_writes: bool = attrs.field(default=True, validator=_check_bool)
    pool_query_via_fetch: bool = attrs.field(default=False, validator=_check_bool)
    fetch_endpoint: FetchEndpointOption = attrs.field(default=None, validator=_check_endpoint)

    def reset(self) -> None:
        """Put every option back to its default (tests use this)."""
        for field in attrs.fields(NeonConfig):
            setattr(self, field.name, field.default)


neon_config = NeonConfig()
"""The process-wide defaults; see ``NeonConfig``."""


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ::1, a Unix socket)."""
    if host.startswith("/") or host.startswith("@") or host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@attrs.frozen
class WebSocketTarget:
    """Where a WebSocket connection goes: ``wss://host:port/resource``."""

    secure: bool
    host: str
    port: int
    resource: str  # path and query, starting with "/"

    @property
    def url(self) -> str:
        """The URL, as a log line may show it (it holds no secret)."""
        scheme = "wss" if self.secure else "ws"
        default = 443 if self.secure else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == default else f":{self.port}"
        return f"{scheme}://{host}{port}{self.resource}"

    @classmethod
    def parse(cls, location: str, *, secure: bool) -> WebSocketTarget:
        """``host[:port][/path][?query]`` (no scheme) as a target; the port defaults to 443 or 80."""
        cut = len(location)
        for stop in ("/", "?"):
            found = location.find(stop)
            if found != -1:
                cut = min(cut, found)
        authority, resource = location[:cut], location[cut:]
        if not resource.startswith("/"):
            resource = "/" + resource
        port = 443 if secure else 80
        if authority.startswith("["):
            close = authority.find("]")
            if close == -1:
                raise ValueError(f"unterminated IPv6 address in WebSocket location {location!r}")
            host, rest = authority[1:close], authority[close + 1 :]
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"bad WebSocket location {location!r}")
                port = _port(rest[1:], location)
        else:
            host, colon, port_text = authority.partition(":")
            if colon:
                port = _port(port_text, location)
        if not host:
            raise ValueError(f"no host in WebSocket location {location!r}")
        return cls(secure, host, port, resource)


def _port(text: str, location: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port in WebSocket location {location!r}")
    return int(text)


@attrs.frozen
class TransportOptions:
    """How one connection reaches Postgres, once ``auto`` and ``neon_config`` are resolved."""

    transport: Literal["tcp", "websocket"] = "tcp"
    ws_proxy: WsProxy = None
    use_secure_websocket: bool = True
    pipeline_connect: PipelineConnect = "auto"
    pipeline_tls: bool = False
    force_disable_pg_ssl: bool = True
    coalesce_writes: bool = True
    pool_query_via_fetch: bool = False
    fetch_endpoint: FetchEndpointOption = None

    def websocket_target(self, host: str, port: int) -> WebSocketTarget:
        """The WebSocket URL for a Postgres host and port (Neon's rule without a ``ws_proxy``:
        ``host + "/v2"`` on the default port)."""
        proxy = self.ws_proxy
        if proxy is None:
            location = host + "/v2"
        elif callable(proxy):
            location = proxy(host, port)
            if not isinstance(location, str) or "://" in location:
                raise ValueError("ws_proxy(host, port) must return a location without a scheme, such as 'proxy/v2'")
        else:
            separator = "&" if "?" in proxy else "?"
            location = f"{proxy}{separator}address={quote(host, safe='')}:{port}"
        return WebSocketTarget.parse(location, secure=self.use_secure_websocket)

    def pipeline_for(self, *, has_password: bool) -> Literal["password", "scram", False]:
        """The pipelining to try: ``auto`` is ``password`` over WebSocket, ``scram`` over TCP with a password."""
        chosen = self.pipeline_connect
        if chosen == "auto":
            if self.transport == "websocket":
                return "password"
            return "scram" if has_password else False
        return chosen


@attrs.frozen
class ConnectOptions:
    """Everything a binding needs to open a connection: server parameters and transport."""

    params: ConnectionParams
    transport: TransportOptions


class ConnectKeywords(TypedDict, total=False):
    """The keyword arguments every ``Client``, ``Pool`` and ``connect()`` accepts.

    Used as ``**options: Unpack[ConnectKeywords]``, so mypy flags a misspelt keyword in user code.
    """

    host: str
    port: int | str
    user: str
    password: str
    dbname: str
    database: str
    sslmode: str
    sslrootcert: str
    sslcert: str
    sslkey: str
    sslnegotiation: str
    channel_binding: str
    options: str
    application_name: str
    fallback_application_name: str
    connect_timeout: float | int | str
    server_settings: Mapping[str, str]
    transport: TransportName
    ws_proxy: WsProxy
    use_secure_websocket: bool
    pipeline_connect: PipelineConnect
    pipeline_tls: bool
    force_disable_pg_ssl: bool
    coalesce_writes: bool
    pool_query_via_fetch: bool
    fetch_endpoint: FetchEndpointOption


TRANSPORT_KEYWORDS = frozenset(
    {
        "transport",
        "ws_proxy",
        "use_secure_websocket",
        "pipeline_connect",
        "pipeline_tls",
        "force_disable_pg_ssl",
        "coalesce_writes",
        "pool_query_via_fetch",
        "fetch_endpoint",
    }
)
"""Keywords that choose how to reach the server (defaults in ``neon_config``)."""

CONNECTION_KEYWORDS = frozenset(ConnectKeywords.__annotations__) - TRANSPORT_KEYWORDS - {"server_settings"}
"""Keywords that describe the server and the session (libpq's names)."""

_ALL_KEYWORDS = frozenset(ConnectKeywords.__annotations__)


def check_keywords(keywords: Mapping[str, Any], *, caller: str, also_valid: frozenset[str] = frozenset()) -> None:
    """Raise TypeError for a keyword nobody accepts, naming the closest valid one and the list."""
    valid = _ALL_KEYWORDS | also_valid
    unknown = [key for key in keywords if key not in valid]
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if key in CLIENT_ONLY_KEYWORDS and not close:
        hint = " (a libpq keyword this driver does not support)"
    elif not close:
        hint = " (server settings go in server_settings={...} or options='-c name=value')"
    raise TypeError(
        f"{caller}() got an unexpected keyword argument {key!r}{hint}; valid keywords: {', '.join(sorted(valid))}"
    )


def resolve_connect_options(
    dsn: str | None,
    keywords: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    config: NeonConfig | None = None,
    caller: str = "connect",
    also_valid: frozenset[str] = frozenset(),
    sockets_available: bool = True,
) -> ConnectOptions:
    """Validate ``keywords`` and combine them with the DSN, the PG* ``env`` and ``config`` defaults.

    Unknown keywords raise TypeError; bad values raise ProgrammingError (from the parser) or
    ValueError (transport options). ``sockets_available=False`` (Pyodide, some edge runtimes)
    makes ``auto`` choose WebSocket. ``also_valid`` names the caller's own keywords, for the
    list a TypeError shows.
    """
    check_keywords(keywords, caller=caller, also_valid=also_valid)
    config = neon_config if config is None else config
    connection = {k: v for k, v in keywords.items() if k in CONNECTION_KEYWORDS}
    params = parse_connection_string(dsn, env=env, **connection)
    settings = keywords.get("server_settings")
    if settings:
        params = params.with_(extra={**params.extra, **_server_settings(settings)})
    chosen: dict[str, Any] = {}
    for field in attrs.fields(NeonConfig):
        value = keywords.get(field.name)
        chosen[field.name] = getattr(config, field.name) if value is None else value
    NeonConfig(**chosen)  # validates the per-connection values the same way
    requested = keywords.get("transport") or "auto"
    _check_transport(None, None, requested)
    transport: Literal["tcp", "websocket"] = "tcp"
    if requested == "websocket" or (requested == "auto" and (chosen["ws_proxy"] is not None or not sockets_available)):
        transport = "websocket"
    return ConnectOptions(params, TransportOptions(transport=transport, **chosen))


def _server_settings(settings: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(settings, Mapping):
        raise TypeError("server_settings must be a mapping of setting name to value")
    out: dict[str, str] = {}
    for name, value in settings.items():
        if not isinstance(name, str) or not name:
            raise TypeError("server_settings names must be non-empty strings")
        if name in CLIENT_ONLY_KEYWORDS or name in CONNECTION_KEYWORDS or name in ("user", "database"):
            raise ValueError(f"{name!r} is a connection keyword, not a server setting: pass it as {name}=...")
        if isinstance(value, bool):
            value = "on" if value else "off"
        out[name] = value if isinstance(value, str) else str(value)
    return out
