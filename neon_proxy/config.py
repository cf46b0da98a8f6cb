"""The proxy's settings: where it listens, which Postgres serves which endpoint, and its limits.

Upstreams come only from here, never from a request: a request's connection string names an
endpoint (the first label of its host) and brings the credentials; this table says where
that endpoint's Postgres is. With a single default upstream, every endpoint name goes there.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Mapping

import attrs

from neon_proto.conninfo import ConnectionParams, parse_connection_string
from neon_proto.errors import ProgrammingError
from neon_proxy.limits import default_max_connections

__all__ = ["ProxyConfig", "parse_listen", "parse_endpoint_table", "MiB"]

MiB = 1024 * 1024

# Upstream URL settings that describe how to reach and trust the server; the credentials,
# database and options come from each request.
_UPSTREAM_KEEP = ("host", "port", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslnegotiation", "connect_timeout")


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; ``:PORT`` means 127.0.0.1) as a pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid listen address {text!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def parse_endpoint_table(text: str) -> dict[str, str]:
    """``name=postgres://...`` entries separated by whitespace or commas."""
    table: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"invalid endpoint entry {item!r}: expected NAME=postgres://HOST:PORT")
        table[name] = url
    return table


def _upstream_params(url: str, what: str) -> ConnectionParams:
    try:
        params = parse_connection_string(url, env=None)
    except ProgrammingError as exc:
        raise ValueError(f"invalid {what}: {exc}") from None
    if len(params.hosts) > 1:
        raise ValueError(f"invalid {what}: give one host (the proxy does not choose among several)")
    if params.user is not None or params.password is not None or params.database is not None:
        # They would be ignored (each request brings its own), and could leak into a repr.
        raise ValueError(f"invalid {what}: give only host, port and TLS settings; credentials come from each request")
    kept = {name: getattr(params, name) for name in _UPSTREAM_KEEP}
    return ConnectionParams(**kept, channel_binding=params.channel_binding)


def _str_tuple(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _copy_table(table: Mapping[str, str]) -> dict[str, str]:
    return dict(table)


def _positive(instance: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen
class ProxyConfig:
    """Every setting of the proxy; the CLI fills it from flags and NEON_PROXY_* variables."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 4444
    upstream: str | None = None
    """The default upstream (``postgres://HOST:PORT``, with ``sslmode`` etc. if wanted)."""
    endpoints: Mapping[str, str] = attrs.field(factory=dict, converter=_copy_table)
    """Endpoint name -> upstream URL, consulted before the default upstream."""
    tls_cert: str | None = None
    tls_key: str | None = None
    max_request_size: int = attrs.field(default=10 * MiB, validator=_positive)
    max_response_size: int = attrs.field(default=10 * MiB, validator=_positive)
    pool_max_per_key: int = attrs.field(default=20, validator=_positive)
    pool_max_per_user: int = attrs.field(default=50, validator=_positive)
    """Upstream connections of one user of one server, across databases and options."""
    pool_max_total: int = attrs.field(default=20000, validator=_positive)
    """Upstream connections per upstream server (and never more than the server accepts)."""
    pool_idle_timeout: float = attrs.field(default=300.0, validator=_positive)
    """Seconds an idle upstream connection of a busy pool key is kept."""
    pool_rare_idle_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Seconds an idle upstream connection of a rarely used pool key is kept."""
    upstream_max_connections: int | None = attrs.field(default=None)
    """Connections the proxy may open to each upstream server; by default read from the server
    on first contact (max_connections minus reserved slots) less ``upstream_spare_connections``."""
    upstream_spare_connections: int = attrs.field(default=5)
    """Connection slots of each upstream server left for other clients."""
    connect_timeout: float = attrs.field(default=15.0, validator=_positive)
    """Seconds to connect and authenticate to an upstream (and to wait for a pooled one)."""
    keepalive_timeout: float = attrs.field(default=75.0, validator=_positive)
    """Seconds an idle HTTP keep-alive connection is kept open."""
    head_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds a request's head may take, from its first byte to its blank line (408 past it)."""
    body_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Seconds a request's body may take once its head is in (408 past it)."""
    max_client_connections: int = attrs.field(factory=default_max_connections, validator=_positive)
    """Open client connections per listener; one more is answered 503 and closed."""
    shutdown_timeout: float = attrs.field(default=30.0, validator=_positive)
    """Seconds in-flight requests get to finish after SIGINT/SIGTERM."""
    cancel_timeout: float = attrs.field(default=5.0, validator=_positive)
    """Seconds to cancel and drain an upstream query whose client went away."""
    ws_relay: bool = False
    """WebSocket relay mode (Neon's wsproxy): raw bytes to ``?address=``, no authentication here."""
    ws_relay_allow: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    """``HOST:PORT`` entries (``*.suffix`` hosts allowed) a relay may reach; empty: the configured upstreams."""
    ws_relay_thread: bool = True
    """Carry sessions' bytes on one relay thread (``neon_proxy.relay_thread``) where the sockets allow; else in trio."""
    ws_max_connections: int = attrs.field(default=1000, validator=_positive)
    """Concurrent WebSocket connections; past it an upgrade is refused with 503."""
    ws_handshake_timeout: float = attrs.field(default=10.0, validator=_positive)
    """Seconds a WebSocket client has to send its startup message and password."""
    ws_idle_timeout: float = attrs.field(default=600.0, validator=_positive)
    """Seconds a WebSocket session may sit idle (no query running, nothing sent) before it is closed."""
    _routes: dict[str, ConnectionParams] = attrs.field(init=False, repr=False, eq=False)
    _default: ConnectionParams | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        default = None if self.upstream is None else _upstream_params(self.upstream, "upstream URL")
        routes = {name: _upstream_params(url, f"upstream URL of endpoint {name!r}") for name, url in self.endpoints.items()}
        object.__setattr__(self, "_default", default)
        object.__setattr__(self, "_routes", routes)

    @property
    def has_upstream(self) -> bool:
        """Whether any request can be served (a default upstream or an endpoint table)."""
        return self._default is not None or bool(self._routes)

    @property
    def tls(self) -> bool:
        """Whether the proxy serves HTTPS."""
        return self.tls_cert is not None

    def upstream_for(self, endpoint: str) -> ConnectionParams | None:
        """How to reach the Postgres serving ``endpoint`` (without credentials), or None."""
        return self._routes.get(endpoint, self._default)

    @property
    def listen_url_host(self) -> str:
        """The listen host as it goes into a URL (IPv6 in brackets)."""
        try:
            if ipaddress.ip_address(self.listen_host).version == 6:
                return f"[{self.listen_host}]"
        except ValueError:
            pass
        return self.listen_host
