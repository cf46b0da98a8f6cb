"""What every ``neon()`` binding decides the same way, before and after the bytes move.

``FetchClientBase`` holds the options of a ``neon()`` object and turns a call into the
``FetchRequest`` to send (endpoint, token, timeout); ``FetchQueryBase`` is the query object of
``sql.query()``. The bindings (``neon_sync.http``, ``neon_async.http``) subclass both and add
only the I/O: keep-alive connections, sending, reading.
"""

from __future__ import annotations

from ssl import PROTOCOL_TLS_CLIENT, SSLContext
from typing import Any, Callable, Generic, Mapping, Protocol, Sequence, TypeVar

from neon_proto.conninfo import ConnectionParams
from neon_proto.http import (
    DEFAULT_MAX_RESPONSE_SIZE,
    Endpoint,
    FetchRequest,
    FetchSettings,
    FetchTarget,
    HTTPQuery,
    TransactionOptions,
    build_query_request,
    build_transaction_request,
    neon_connection_string,
    query_params,
    transaction_queries,
)

__all__ = ["AuthToken", "FetchEndpoint", "FetchClientBase", "FetchQueryBase", "http_ssl_context"]

AuthToken = str | Callable[[], str]
"""A bearer token, or a zero-argument function giving one for each request."""
FetchEndpoint = str | Callable[[str, int], str]
"""The URL to POST to, or a function ``(host, port) -> URL``."""


def http_ssl_context(sslrootcert: str | None) -> SSLContext:
    """The default context of a ``neon()`` object: chain and name checked, HTTP/1.1 by ALPN."""
    ctx = SSLContext(PROTOCOL_TLS_CLIENT)  # checks the chain and the host name
    if sslrootcert:
        ctx.load_verify_locations(cafile=sslrootcert)
    else:
        ctx.load_default_certs()
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class FetchQueryBase:
    """A query built by ``sql.query()``: its text, parameters, and the options it runs with alone."""

    __slots__ = ("_sql", "http_query", "timeout", "_auth_token")

    def __init__(
        self, sql: Any, http_query: HTTPQuery, timeout: float | None = None, auth_token: AuthToken | None = None
    ) -> None:
        self._sql = sql
        self.http_query = http_query
        self.timeout = timeout
        self._auth_token = auth_token

    @property
    def text(self) -> str:
        """The SQL text."""
        return self.http_query.text

    @property
    def params(self) -> tuple[Any, ...]:
        """The parameters."""
        return self.http_query.params

    def __repr__(self) -> str:
        return f"<NeonQuery {self.http_query.text[:60]!r} params={len(self.http_query.params)}>"


class IdleConnection(Protocol):
    """What the idle table needs of a binding's kept-alive connection."""

    endpoint: Endpoint
    idle_since: float


ConnectionT = TypeVar("ConnectionT", bound=IdleConnection)


class FetchClientBase(Generic[ConnectionT]):
    """The options of a ``neon()`` object and the requests they make; no I/O. ``ConnectionT`` is
    the binding's kept-alive connection, held idle per endpoint in ``_idle``."""

    def __init__(
        self,
        dsn: str | ConnectionParams,
        *,
        fetch_endpoint: FetchEndpoint | None = None,
        auth_token: AuthToken | None = None,
        array_mode: bool = False,
        full_results: bool = False,
        types: Any = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        ssl_context: SSLContext | None = None,
        sslrootcert: str | None = None,
        max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE,
        max_idle_connections: int = 8,
        idle_timeout: float = 30.0,
    ) -> None:
        self.params, connection_string = neon_connection_string(dsn)
        self._settings = FetchSettings(
            connection_string,
            array_mode=array_mode,
            full_results=full_results,
            types=types,
            headers=tuple((headers or {}).items()),
        )
        self._target = FetchTarget(self.params, fetch_endpoint, auth_token)
        self.timeout = timeout
        self.max_response_size = max_response_size
        self.max_idle_connections = max_idle_connections
        self.idle_timeout = idle_timeout
        self._ssl_context = ssl_context
        self._sslrootcert = sslrootcert
        self._idle: dict[Endpoint, list[ConnectionT]] = {}
        self.connections_opened = 0
        """How many connections this object has opened (keep-alive makes it small)."""
        self._init_io()

    def _init_io(self) -> None:
        """Set up what the binding's I/O needs (locks, ...); called at the end of ``__init__``."""

    def __repr__(self) -> str:
        p = self.params
        return f"<{type(self).__module__.split('.')[0]}.NeonHTTP {p.user}@{p.host}/{p.dbname}>"

    def _timeout(self, timeout: float | None) -> float | None:
        """A call's own timeout, else the object's."""
        return self.timeout if timeout is None else timeout

    def _make_ssl_context(self) -> SSLContext:
        ctx = self._ssl_context
        if ctx is None:
            ctx = self._ssl_context = http_ssl_context(self._sslrootcert)
        return ctx

    @staticmethod
    def _http_query(
        text: str,
        params: Sequence[Any] | None,
        array_mode: bool | None,
        full_results: bool | None,
        types: Any,
    ) -> HTTPQuery:
        return HTTPQuery(text, query_params(params), array_mode, full_results, types)

    def _query_request(self, query: HTTPQuery, auth_token: AuthToken | None) -> tuple[Endpoint, FetchRequest]:
        """Where one query goes and what is sent."""
        endpoint = self._target.endpoint()
        request = build_query_request(endpoint, self._settings, query, auth_token=self._target.token(auth_token))
        return endpoint, request

    def _transaction_request(
        self,
        queries: Any,
        isolation_level: str | None,
        read_only: bool | None,
        deferrable: bool | None,
        array_mode: bool | None,
        full_results: bool | None,
    ) -> tuple[Endpoint, FetchRequest] | None:
        """Where a transaction goes and what is sent; None for no queries (nothing to send)."""
        http_queries = transaction_queries(queries, self)
        options = TransactionOptions(isolation_level, read_only, deferrable, array_mode, full_results)
        if not http_queries:
            return None
        endpoint = self._target.endpoint()
        request = build_transaction_request(
            endpoint, self._settings, http_queries, options, auth_token=self._target.token()
        )
        return endpoint, request

    def _take_idle(
        self, endpoint: Endpoint, now: float, is_alive: Callable[[ConnectionT], bool]
    ) -> tuple[ConnectionT | None, list[ConnectionT]]:
        """The most recently used idle connection to ``endpoint`` that is neither past
        ``idle_timeout`` nor dead, and the stale ones passed over (the caller closes them)."""
        stale: list[ConnectionT] = []
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if now - conn.idle_since > self.idle_timeout or not is_alive(conn):
                stale.append(conn)
                continue
            return conn, stale
        return None, stale

    def _keep_idle(self, conn: ConnectionT, now: float) -> bool:
        """Keep a connection for the next request, unless ``max_idle_connections`` are kept
        already (False: the caller closes it)."""
        conn.idle_since = now
        idle = self._idle.setdefault(conn.endpoint, [])
        if len(idle) < self.max_idle_connections:
            idle.append(conn)
            return True
        return False
