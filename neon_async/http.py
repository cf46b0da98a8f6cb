"""``neon()`` for async code: Postgres queries over Neon's SQL-over-HTTP protocol, on any loop.

``sql = neon(dsn)``; ``await sql("SELECT $1::int", [1])`` sends one ``POST /sql`` and returns
the rows. Connections are HTTP/1.1 keep-alive, reused per endpoint, so a warm query costs one
round trip. The protocol lives in ``neon_proto.http``; this module only moves bytes.

A request that may have reached the server is never sent again: the only retry is on a
kept-alive connection that the peer had already closed when the write failed. A cancelled
or timed-out request closes its connection; the proxy then cancels the query it was running.
"""

from __future__ import annotations

import logging
import select
from typing import Any, Callable, ClassVar, Generator, Literal, Sequence, overload

from neon_async.backend import Backend, Stream
from neon_proto.errors import ConnectionClosed, Error, OperationalError
from neon_proto.fetch_client import AuthToken, FetchClientBase, FetchEndpoint, FetchQueryBase
from neon_proto.http import (
    NEED_DATA,
    Endpoint,
    FetchConnection,
    FetchRequest,
    FetchResponse,
    HTTPQuery,
    read_response,
)
from neon_proto.results import Result

__all__ = ["NeonHTTP", "NeonQuery", "AuthToken", "FetchEndpoint"]

logger = logging.getLogger("neon_async.http")


class _HTTPConnection:
    """A stream to one endpoint and the h11-based machine that speaks on it."""

    __slots__ = ("endpoint", "stream", "machine", "idle_since")

    def __init__(self, endpoint: Endpoint, stream: Stream, machine: FetchConnection) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self.machine = machine
        self.idle_since = 0.0

    def is_alive(self) -> bool:
        """An idle HTTP connection must have nothing to read: EOF, a reset or stray bytes end it."""
        stream = self.stream
        if stream.closed or stream.receive_nowait() is not None:
            return False
        sock = getattr(stream, "socket", None)
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable or stream.is_tls  # under TLS, a session ticket is not data

    async def aclose(self) -> None:
        self.machine.close()
        await self.stream.aclose()


class _NothingSent(Exception):
    """The write of a request failed on a connection the peer had closed: nothing arrived."""


class NeonQuery(FetchQueryBase):
    """A query built by ``sql.query()``: ``await`` it (or ``await q.execute()``; each run sends it
    again), or pass it to ``sql.transaction()``."""

    __slots__ = ()

    async def execute(self) -> Any:
        """Send the query and return its rows (or its ``Result`` with ``full_results``)."""
        return await self._sql._run_query(self.http_query, self._auth_token, self.timeout)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.execute().__await__()


class NeonHTTP(FetchClientBase[_HTTPConnection]):
    """SQL over HTTP: ``sql = neon(dsn); await sql("SELECT $1::int", [1])``. Tasks share the
    kept-alive connections, per endpoint. Options as ``neon_sync.neon``: ``fetch_endpoint``,
    ``auth_token``, ``array_mode``, ``full_results``, ``types``, ``timeout`` (bounds each request),
    ``headers``, ``ssl_context`` or ``sslrootcert``, ``max_response_size``,
    ``max_idle_connections``, ``idle_timeout``.
    """

    backend: ClassVar[Backend]

    # ------------------------------------------------------------------ public API

    @overload
    async def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: Literal[True],
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> Result: ...

    @overload
    async def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: Literal[False],
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> list[Any]: ...

    @overload
    async def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: None = None,
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> Any: ...

    async def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: bool | None = None,
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> Any:
        """Run one statement (``$1``-style placeholders) and return its rows.

        Rows are dicts, or lists with ``array_mode``; ``full_results=True`` returns the
        ``Result``. Options here win over ``neon()``'s.
        """
        return await self._run_query(self._http_query(text, params, array_mode, full_results, types), auth_token, timeout)

    def query(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: bool | None = None,
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> NeonQuery:
        """A query to ``await`` now or later, or to pass to ``transaction()``; nothing is sent yet."""
        return NeonQuery(self, self._http_query(text, params, array_mode, full_results, types), timeout, auth_token)

    async def transaction(
        self,
        queries: Sequence[NeonQuery] | Callable[[NeonHTTP], Sequence[NeonQuery]],
        *,
        isolation_level: str | None = None,
        read_only: bool | None = None,
        deferrable: bool | None = None,
        array_mode: bool | None = None,
        full_results: bool | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Run queries in one transaction with one request: all of them or none; one result each."""
        built = self._transaction_request(queries, isolation_level, read_only, deferrable, array_mode, full_results)
        await self.backend.checkpoint_if_cancelled()
        if built is None:
            return []
        result: list[Any] = await self._fetch(*built, self._timeout(timeout))
        return result

    async def close(self) -> None:
        """Close the idle connections; the object stays usable (new connections open on demand)."""
        conns = [c for lst in self._idle.values() for c in lst]
        self._idle.clear()
        for conn in conns:
            await conn.aclose()

    async def __aenter__(self) -> NeonHTTP:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    async def _run_query(self, query: HTTPQuery, auth_token: AuthToken | None, timeout: float | None) -> Any:
        await self.backend.checkpoint_if_cancelled()
        return await self._fetch(*self._query_request(query, auth_token), self._timeout(timeout))

    async def _fetch(self, endpoint: Endpoint, request: FetchRequest, timeout: float | None) -> Any:
        async with self.backend.timeout(timeout) as scope:
            response = await self._exchange(endpoint, request)
        if scope.expired:
            raise OperationalError(f"the request timed out after {timeout:g} s")
        return read_response(request, response)

    async def _exchange(self, endpoint: Endpoint, request: FetchRequest) -> FetchResponse:
        conn, reused = await self._checkout(endpoint)
        if conn is None:
            conn = await self._connect(endpoint)
        try:
            try:
                response = await self._send_and_read(conn, conn.machine.send_request(request))
            except _NothingSent:
                if not reused:
                    raise
                # The kept-alive connection was closed by the server before our request: it
                # cannot have seen it, so one fresh connection may carry it.
                await conn.aclose()
                logger.debug("kept-alive connection to %s was closed; reconnecting", endpoint.host)
                conn = await self._connect(endpoint)
                response = await self._send_and_read(conn, conn.machine.send_request(request))
        except _NothingSent as exc:
            await conn.aclose()
            raise OperationalError(f"Error connecting to database: {exc.__cause__}") from exc.__cause__
        except BaseException:
            await conn.aclose()
            raise
        if conn.machine.reusable:
            await self._checkin(conn)
        else:
            await conn.aclose()
        return response

    async def _checkout(self, endpoint: Endpoint) -> tuple[_HTTPConnection | None, bool]:
        """An idle connection that is still open (and whether one was found)."""
        conn, stale = self._take_idle(endpoint, self.backend.time(), _HTTPConnection.is_alive)
        for dead in stale:
            await dead.aclose()
        return conn, conn is not None

    async def _checkin(self, conn: _HTTPConnection) -> None:
        if not self._keep_idle(conn, self.backend.time()):
            await conn.aclose()

    async def _connect(self, endpoint: Endpoint) -> _HTTPConnection:
        host, port = endpoint.host, endpoint.port
        try:
            stream = await self.backend.open_stream(host, port)
        except OperationalError as exc:
            raise OperationalError(f"Error connecting to database: {exc}") from exc.__cause__
        if endpoint.tls:
            try:
                await stream.start_tls(self._make_ssl_context(), host)
            except OperationalError as exc:
                await stream.aclose()
                raise OperationalError(f"Error connecting to database: {exc}") from exc.__cause__
            except BaseException:
                await stream.aclose()
                raise
        self.connections_opened += 1
        logger.debug("opened %s connection to %s:%s", endpoint.scheme, host, port)
        return _HTTPConnection(endpoint, stream, FetchConnection(max_response_size=self.max_response_size))

    async def _send_and_read(self, conn: _HTTPConnection, data: bytes) -> FetchResponse:
        """Write the request and read the response; an early answer (413) is read too."""
        machine = conn.machine
        stream = conn.stream
        try:
            await stream.send(data, machine)
        except ConnectionClosed as exc:
            # The server stopped reading: it may have answered first (a 413). A request it did
            # not read whole cannot have run, so without an answer it may go again.
            try:
                pending = stream.receive_nowait()
                if pending:
                    machine.receive_data(pending)
                early = machine.next_event()
            except Error:
                early = NEED_DATA
            if early is not NEED_DATA:
                machine.close()
                answer: FetchResponse = early
                return answer
            raise _NothingSent() from exc
        while True:
            event = machine.next_event()
            if event is not NEED_DATA:
                result: FetchResponse = event
                return result
            machine.receive_data(await stream.receive())


neon = NeonHTTP
"""``sql = neon(dsn, **options)``: the JS driver's name."""
