"""The HTTP side of the proxy: trio streams, HTTP/1.1, routing, and one request's life.

A request for ``POST /sql`` goes through these steps: the headers are checked (connection
string, Neon-* settings), then the body is read while an upstream connection is acquired
(when the body came with the head, as it usually does, it is simply parsed first), then
the queries run while the client socket is watched (a client that goes away gets its query
cancelled) and the response size is counted (past the limit the query is cancelled and
507 answered). The session reset rides behind the queries (see ``neon_proxy.upstream``);
the response goes out and the upstream connection goes back to the pool.

The common request costs little: a plain, complete request is read in one pass
(``neon_proxy.simple_request``; h11 reads every other), responses are written directly,
and no task is spawned (one ``HangupWatcher`` task notices the clients that leave).
"""

from __future__ import annotations

import logging
import os
import ssl
import uuid
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Iterable

import h11
import trio

from neon_proto.errors import Error, ProgrammingError
from neon_proxy.cells import ResponseBudget
from neon_proxy.client_channel import drain_before_close
from neon_proxy.config import ProxyConfig
from neon_proxy.hangups import HangupWatcher
from neon_proxy.limits import REFUSAL, ConnectionSlots, RequestDeadlines, timeout_response
from neon_proxy.pool import PooledConnection, PoolKey, UpstreamPool
from neon_proxy.request import (
    CONNECTION_STRING_HEADER,
    ConnInfo,
    Payload,
    RequestError,
    parse_conn_info,
    parse_payload,
    parse_request_options,
)
from neon_proxy.response import CANCELLED_MESSAGE, error_json, pg_error_json
from neon_proxy.simple_request import parse_simple_request
from neon_proxy.upstream import (
    PlainTextRegistry,
    QueryOutcome,
    UpstreamClient,
    needs_reset,
    reset_session,
    run_payload,
)
from neon_proxy.websocket import WebSocketEndpoint
from neon_trio import Client
from neon_trio._io import direct_fd, stream_socket

__all__ = ["ProxyServer", "serve", "CORS_ALLOW_HEADERS"]

logger = logging.getLogger("neon_proxy")

CORS_ALLOW_HEADERS = (
    "Authorization, Neon-Connection-String, Neon-Raw-Text-Output, Neon-Array-Mode, Neon-Pool-Opt-In, "
    "Neon-Batch-Read-Only, Neon-Batch-Isolation-Level"
)
_NOT_SUPPORTED = b'"query is not supported"'
_RECEIVE_SIZE = 65536
_MAX_HEADER_BYTES = 64 * 1024
_MAX_BUFFERED_WHILE_WATCHING = 1024 * 1024
_CLIENT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_MIGHT_SWITCH_PROTOCOL = getattr(h11, "MIGHT_SWITCH_PROTOCOL")  # after an Upgrade request's body
_ROUTE_CACHE_SIZE = 1024
_RETRY = -1  # from _run_queries: nothing was answered, send the request again
_CAPACITY_QUERY = (
    "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
    " - coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0)"
)


class _ClientGone(Exception):
    """The client closed its connection or broke the HTTP protocol mid-request."""


class _MalformedRequest(_ClientGone):
    """The client broke the HTTP protocol: answered with ``status`` and a message holding none of its bytes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def describe_http_error(exc: h11.RemoteProtocolError) -> str:
    """What h11 found wrong, without the bytes it quotes (a header line may hold a password).

    h11 puts the offending line after a colon (``illegal header line: bytearray(b'...')``):
    only the words before it are kept.
    """
    text = str(exc)
    for mark in (": bytearray(", ": b'", ': b"', "'", '"', "\\"):
        cut = text.find(mark)
        if cut >= 0:
            text = text[:cut]
    text = text.strip().rstrip(":").strip()
    return f"malformed HTTP request: {text or 'invalid syntax'}"


class _Request:
    """A request's method, target, headers (first value per lower-case name) and body.

    ``body`` is None when h11 reads the body; otherwise it is what came with the head, and
    the connection's ``body_missing`` says how many bytes are still to come.
    """

    __slots__ = ("method", "target", "headers", "body")

    def __init__(self, method: bytes, target: bytes, headers: dict[str, str | None], body: bytes | None) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body


_LINGER_BYTES = 64 * 1024 * 1024  # a request body cut short by our answer (413) may be this long


def _still_sending(http: "_HttpConnection") -> bool:
    """Whether the client may still be sending the body of a request we answered early."""
    return http.body_missing > 0 or (http.h11 is not None and http.h11.their_state is h11.SEND_BODY)


class _HttpConnection:
    """One client connection: its stream, what it sent that is not read yet, how to answer.

    A plain, complete request is read straight from ``buffer`` (``parse_simple_request``);
    any other is read by an h11 machine made for it, which gives back what it received
    beyond its request (pipelining) when the request is over. Responses are written here,
    not by h11: they are a status line and a few headers of ours.
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = b""  # received, not yet given to a reader
        self.eof = False
        self.h11: h11.Connection | None = None  # reading the current request, if it is not plain
        self.must_close = False
        self.responded = False  # the current request's final response is written
        self.keep_alive = True  # the current request's client may send another
        self.head_only = False  # a HEAD request: headers without the body
        self.body_missing = 0  # body bytes of a plain request still to come (h11 counts its own)
        self.watched: trio.socket.SocketType | None = None  # registered with the hang-up watcher
        self.gone = False  # the client hung up (seen by the hang-up watcher)
        self.on_hangup: Callable[[], None] | None = None  # what stops the running request
        self._fd = direct_fd(stream)

    def hung_up(self) -> None:
        """The hang-up watcher saw the client close its end."""
        self.watched = None
        self.gone = True
        if self.on_hangup is not None:
            self.on_hangup()

    def use_h11(self) -> h11.Connection:
        """Hand what is buffered to an h11 machine, which reads the current request."""
        machine = self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        if self.buffer:
            machine.receive_data(self.buffer)
            self.buffer = b""
        if self.eof:
            machine.receive_data(b"")
        return machine

    def take_upgrade_bytes(self) -> bytes | None:
        """What the client sent after an upgrade request's head; None if the request has a body."""
        if self.h11 is None:
            if self.body_missing:
                return None
            data, self.buffer = self.buffer, b""
            return data
        if type(self.next_event()) is not h11.EndOfMessage:
            return None
        return self.h11.trailing_data[0]

    def next_cycle(self) -> None:
        """Get ready for the next request (keeping what the last machine received beyond its own)."""
        if self.h11 is not None:
            self.buffer, self.eof = self.h11.trailing_data
            self.h11 = None
        self.responded = False
        self.keep_alive = True
        self.head_only = False

    async def receive(self) -> bytes:
        fd = self._fd
        try:
            if fd is None:
                return bytes(await self.stream.receive_some(_RECEIVE_SIZE))
            while True:
                try:
                    return os.read(fd, _RECEIVE_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
        except _CLIENT_ERRORS as exc:
            raise _ClientGone(str(exc)) from exc

    def next_event(self) -> Any:
        assert self.h11 is not None
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise _MalformedRequest(exc.error_status_hint, describe_http_error(exc)) from exc

    async def send(self, *events: Any) -> None:
        """Send h11 events (an interim ``100 Continue``)."""
        assert self.h11 is not None
        await self.send_bytes(b"".join(self.h11.send(event) or b"" for event in events))

    async def send_bytes(self, data: bytes) -> None:
        fd = self._fd
        try:
            if fd is not None:
                try:
                    written = os.write(fd, data)
                except BlockingIOError:
                    written = 0
                if written == len(data):
                    return
                await self.stream.send_all(memoryview(data)[written:])
            else:
                await self.stream.send_all(data)
        except _CLIENT_ERRORS as exc:
            raise _ClientGone(str(exc)) from exc


_STATUS_LINES = {status.value: b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()) for status in HTTPStatus}


def _header_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str | None]:
    """Lower-case names to the first value; a value that is not visible ASCII maps to None."""
    result: dict[str, str | None] = {}
    for name, value in headers:
        key = name.lower().decode("ascii")
        if key in result:
            continue
        try:
            text: str | None = value.decode("ascii")
        except UnicodeDecodeError:
            text = None
        result[key] = text
    return result


def _upstream_options(options: str | None) -> str | None:
    """The ``options`` for Postgres, without Neon's ``endpoint=``/``project=`` routing hints."""
    if options is None:
        return None
    kept = [t for t in options.split() if not t.startswith(("endpoint=", "project="))]
    return " ".join(kept) or None


class ProxyServer:
    """Neon's SQL-over-HTTP protocol on ``config.listen_host:listen_port``, over a pool of upstreams.

    ``await server.run(task_status=...)`` serves until ``shutdown()``, which stops
    accepting, lets in-flight requests finish (up to ``shutdown_timeout``) and returns.
    """

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.pool = UpstreamPool(
            reset=reset_session,
            needs_reset=needs_reset,
            max_per_key=config.pool_max_per_key,
            max_per_user=config.pool_max_per_user,
            max_total=config.pool_max_total,
            idle_timeout=config.pool_idle_timeout,
            rare_idle_timeout=config.pool_rare_idle_timeout,
            learns_capacity=True,
            acquire_timeout=config.connect_timeout,
            reset_timeout=config.cancel_timeout,
        )
        self.port: int | None = None
        self.in_flight = 0
        self.listener_slots: list[ConnectionSlots] = []  # one per listener, made when it starts
        self.deadlines = RequestDeadlines(config.head_timeout, config.body_timeout)
        self._refusing = 0
        self._stopping = False
        self._accept_scope: trio.CancelScope | None = None
        self._connections_scope: trio.CancelScope | None = None
        self._idle_scopes: set[trio.CancelScope] = set()
        self._hangups = HangupWatcher()
        self._routes: dict[str, tuple[ConnInfo, PoolKey, Callable[[], Awaitable[Client]]]] = {}
        self.websocket = WebSocketEndpoint(config, self.pool, self._learn_capacity)

    def __repr__(self) -> str:
        return f"<ProxyServer {self.config.listen_host}:{self.port} in_flight={self.in_flight}>"

    @property
    def open_connections(self) -> int:
        """Client connections open now, on every listener (each holds a slot of its listener)."""
        return sum(slots.open for slots in self.listener_slots)

    @property
    def url(self) -> str:
        """The fetch endpoint clients post to (``http(s)://host:port/sql``)."""
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.listen_url_host}:{self.port}/sql"

    @property
    def ws_proxy(self) -> str:
        """The WebSocket endpoint as the JS driver's ``neonConfig.wsProxy`` wants it (no scheme)."""
        return f"{self.config.listen_url_host}:{self.port}/v2"

    # ------------------------------------------------------------------ lifecycle

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        assert self.config.tls_cert is not None
        ctx.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until ``shutdown()``; ``task_status.started`` gets the bound port."""
        ssl_context = self._ssl_context()
        listeners = await trio.open_tcp_listeners(self.config.listen_port, host=self.config.listen_host)
        self.port = listeners[0].socket.getsockname()[1]
        logger.info("neon_proxy listening on %s", self.url)
        try:
            async with trio.open_nursery() as outer:
                await outer.start(self.pool.run)
                await outer.start(self._hangups.run)
                async with trio.open_nursery() as connections:
                    self._connections_scope = connections.cancel_scope
                    with trio.CancelScope() as accept_scope:
                        self._accept_scope = accept_scope
                        if self._stopping:
                            accept_scope.cancel()
                        async with trio.open_nursery() as acceptors:
                            for listener in listeners:
                                acceptors.start_soon(self._accept_loop, listener, connections, ssl_context)
                            task_status.started(self.port)
                    for listener in listeners:
                        await trio.aclose_forcefully(listener)
                    if self.in_flight:
                        logger.info("stopped accepting; finishing %d in-flight requests", self.in_flight)
                outer.cancel_scope.cancel()
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            logger.info("neon_proxy on port %s stopped", self.port)

    def shutdown(self) -> None:
        """Stop accepting and close idle connections; in-flight requests finish, then ``run`` returns.

        A second call stops at once. Call it from the trio thread (``trio.from_thread.run_sync``
        from others).
        """
        if self._stopping:
            if self._connections_scope is not None:
                self._connections_scope.cancel()
            return
        self._stopping = True
        logger.info("neon_proxy shutting down")
        self.websocket.shutdown()
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for scope in list(self._idle_scopes):
            scope.cancel()
        if self._connections_scope is not None:
            self._connections_scope.deadline = trio.current_time() + self.config.shutdown_timeout

    async def _accept_loop(
        self, listener: trio.SocketListener, nursery: trio.Nursery, ssl_context: ssl.SSLContext | None
    ) -> None:
        slots = ConnectionSlots(self.config.max_client_connections)
        self.listener_slots.append(slots)
        while True:
            try:
                stream: trio.abc.Stream = await listener.accept()
            except OSError as exc:  # e.g. out of file descriptors: back off, keep serving
                logger.error("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            if not slots.try_take():
                if self._refusing < 64:
                    self._refusing += 1
                    nursery.start_soon(self._refuse_connection, stream, ssl_context, slots)
                else:
                    await trio.aclose_forcefully(stream)
                continue
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
            nursery.start_soon(self._serve_connection, stream, slots)

    async def _refuse_connection(
        self, stream: trio.abc.Stream, ssl_context: ssl.SSLContext | None, slots: ConnectionSlots
    ) -> None:
        """Every slot is taken: answer 503 and close (within a second, whatever the client does)."""
        if slots.refused % 1000 == 1:
            logger.warning("refusing connections: %d are open (the limit); %d refused so far", slots.open, slots.refused)
        try:
            with trio.move_on_after(1.0):
                if ssl_context is not None:
                    stream = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
                await stream.send_all(REFUSAL)
                # Read what the client sent, so that closing does not reset the connection
                # before it has read the answer.
                while await stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._refusing -= 1
            await trio.aclose_forcefully(stream)

    # ------------------------------------------------------------------ one connection

    async def _serve_connection(self, stream: trio.abc.Stream, slots: ConnectionSlots) -> None:
        """Serve one client connection until it ends; then its listener slot is free again."""
        http = _HttpConnection(stream)
        sock = stream_socket(stream)
        if sock is not None and self._hangups.watch(sock, http.hung_up):
            http.watched = sock
        try:
            while True:
                request = await self._read_request(http)
                if request is None:
                    break
                self.in_flight += 1
                try:
                    await self._handle(http, request)
                finally:
                    self.in_flight -= 1
                if http.must_close or self._stopping or not http.responded or http.body_missing:
                    break
                if http.h11 is not None:
                    their_state = http.h11.their_state
                    if their_state is not h11.DONE and their_state is not _MIGHT_SWITCH_PROTOCOL:
                        break  # a refused Upgrade leaves MIGHT_SWITCH_PROTOCOL: the client goes on
                http.next_cycle()
        except _ClientGone as exc:
            logger.debug("client connection ended: %s", exc)
        except Exception as exc:
            # One line: a traceback per connection would let a client flood the log.
            logger.error("unexpected %s while serving an HTTP connection", type(exc).__name__)
            logger.debug("the unexpected error", exc_info=True)
        finally:
            slots.give_back()
            if http.watched is not None:
                self._hangups.unwatch(http.watched)
            if http.responded and not self._stopping and _still_sending(http):
                await drain_before_close(stream, budget=_LINGER_BYTES)  # a 413 answered mid-body
            await trio.aclose_forcefully(stream)

    async def _receive_idle(self, http: _HttpConnection) -> bytes | None:
        """The first bytes of the next request; None at keep-alive timeout or shutdown."""
        with trio.CancelScope(deadline=trio.current_time() + self.config.keepalive_timeout) as scope:
            self._idle_scopes.add(scope)
            try:
                if self._stopping:
                    return None
                return await http.receive()
            finally:
                self._idle_scopes.discard(scope)
        return None

    async def _read_request(self, http: _HttpConnection) -> _Request | None:
        """The next request; None when the client is done (or idle too long, or we stop)."""
        while not http.buffer:
            if http.eof:
                return None
            data = await self._receive_idle(http)
            if data is None:
                return None
            if data:
                http.buffer = data
            else:
                http.eof = True
        if http.buffer[0] == 0:  # a Postgres packet, never HTTP: a CancelRequest or a plain-TCP session
            http.must_close = True
            await self.websocket.serve_tcp(http.stream, http.buffer)
            return None
        simple = parse_simple_request(http.buffer, _MAX_HEADER_BYTES)
        if simple is not None:
            http.buffer = http.buffer[simple.size :]
            http.body_missing = simple.missing
            http.keep_alive = simple.keep_alive
            http.head_only = simple.method == b"HEAD"
            return _Request(simple.method, simple.target, simple.headers, simple.body)
        deadline = self.deadlines.head_deadline(trio.current_time())
        return await self._read_request_with_h11(http, http.use_h11(), deadline)

    async def _read_request_with_h11(
        self, http: _HttpConnection, machine: h11.Connection, deadline: float
    ) -> _Request | None:
        """A request that is not plain and complete: h11 reads it (and says what is wrong).

        The head must be complete by ``deadline``, however its bytes trickle in.
        """
        while True:
            try:
                event = http.next_event()
            except _ClientGone as exc:
                await self._answer_protocol_error(http, exc)
                return None
            if isinstance(event, h11.Request):
                raw_headers = event.headers.raw_items()
                http.head_only = event.method == b"HEAD"
                http.keep_alive = event.http_version >= b"1.1" and not any(
                    name.lower() == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]
                    for name, value in raw_headers
                )
                return _Request(event.method, event.target, _header_map(raw_headers), None)
            if event is not h11.NEED_DATA:
                return None  # ConnectionClosed
            data: bytes | None = None
            with trio.move_on_at(deadline):
                data = await http.receive()
            if data is None:
                await self._answer_timeout(http, "head", self.config.head_timeout)
                return None
            machine.receive_data(data)

    async def _answer_timeout(self, http: _HttpConnection, what: str, seconds: float) -> None:
        """A request whose head or body is late: 408, and the connection is closed."""
        http.must_close = True
        logger.info("request %s did not arrive within %g s; closing the connection", what, seconds)
        if http.responded:
            return
        http.responded = True
        try:
            with trio.move_on_after(1.0):
                await http.send_bytes(timeout_response(what, seconds))
        except _ClientGone:
            pass

    async def _answer_protocol_error(self, http: _HttpConnection, exc: _ClientGone) -> None:
        if http.responded or not isinstance(exc, _MalformedRequest):
            return
        http.must_close = True
        request_id = str(uuid.uuid4())
        logger.info("refused a malformed request: %s (request %s)", exc.message, request_id)
        try:
            await self._respond(http, request_id, exc.status, error_json(exc.message))
        except _ClientGone:
            pass

    async def _discard_body(self, http: _HttpConnection) -> None:
        """Read what is left of the request body (bounded), so the connection can go on.

        If too much is left, or it takes too long, the connection is closed after the response.
        """
        machine = http.h11
        if machine is None:
            await self._discard_plain_body(http)
            return
        budget = 8 * self.config.max_request_size
        with trio.move_on_after(self.config.body_timeout):
            try:
                while machine.their_state is h11.SEND_BODY:
                    event = http.next_event()
                    if event is h11.NEED_DATA:
                        if machine.they_are_waiting_for_100_continue:
                            break  # never told to send it: nothing more will come
                        machine.receive_data(await http.receive())
                    elif isinstance(event, h11.Data):
                        budget -= len(event.data)
                        if budget < 0:
                            break
                    else:
                        break
            except _ClientGone:
                pass
        if machine.their_state is not h11.DONE and machine.their_state is not _MIGHT_SWITCH_PROTOCOL:
            http.must_close = True

    async def _discard_plain_body(self, http: _HttpConnection) -> None:
        """The rest of a plain request's body, read and dropped (bounded, like ``_discard_body``)."""
        if http.body_missing > 8 * self.config.max_request_size:
            http.must_close = True
            return
        with trio.move_on_after(self.config.body_timeout):
            try:
                while http.body_missing:
                    data = await http.receive()
                    if not data:
                        break
                    if len(data) > http.body_missing:
                        http.buffer = data[http.body_missing :]  # a pipelined request
                    http.body_missing -= min(len(data), http.body_missing)
            except _ClientGone:
                pass
        if http.body_missing:
            http.must_close = True

    async def _respond(
        self,
        http: _HttpConnection,
        request_id: str,
        status: int,
        body: bytes,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
        *,
        content_type: bytes | None = b"application/json",
    ) -> None:
        """Write the final response (every header name and value here is ours, not the client's)."""
        if not http.keep_alive or self._stopping:
            http.must_close = True
        parts = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        if content_type is not None:
            parts.append(b"content-type: " + content_type + b"\r\n")
        parts.append(
            b"content-length: %d\r\nneon-request-id: %s\r\naccess-control-allow-origin: *\r\n"
            % (len(body), request_id.encode())
        )
        for name, value in extra_headers:
            parts.append(name + b": " + value + b"\r\n")
        if http.must_close:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if not http.head_only:
            parts.append(body)
        http.responded = True
        await http.send_bytes(b"".join(parts))

    # ------------------------------------------------------------------ one request

    async def _handle(self, http: _HttpConnection, request: _Request) -> None:
        started = trio.current_time()
        request_id = str(uuid.uuid4())
        headers = request.headers
        path = request.target.split(b"?", 1)[0]
        method = request.method
        status: int
        if "websocket" in (headers.get("upgrade") or "").lower():
            status = await self._upgrade(http, request, request_id)
        elif path == b"/sql" and method == b"POST":
            status = await self._handle_sql(http, request, headers, request_id)
        elif path == b"/sql" and method == b"OPTIONS":
            await self._discard_body(http)
            status = 200
            cors = [
                (b"allow", b"OPTIONS, POST"),
                (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"86400"),
            ]
            await self._respond(http, request_id, status, b"", cors, content_type=None)
        else:
            await self._discard_body(http)
            status = 400
            await self._respond(http, request_id, status, _NOT_SUPPORTED)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s %s -> %d in %.1f ms (request %s)",
                method.decode("ascii", "replace"),
                path.decode("ascii", "replace"),
                status,
                (trio.current_time() - started) * 1000,
                request_id,
            )

    async def _upgrade(self, http: _HttpConnection, request: _Request, request_id: str) -> int:
        """A WebSocket upgrade (any path): served by ``neon_proxy.websocket`` to its end."""
        http.must_close = True
        received = http.take_upgrade_bytes() if not request.body else None
        if received is None:
            await self._discard_body(http)
            await self._respond(http, request_id, 400, error_json("a WebSocket upgrade request has no body"))
            return 400
        try:
            return await self.websocket.serve(http.stream, request.method, request.target, request.headers, received)
        except RequestError as exc:
            await self._respond(http, request_id, exc.status, error_json(exc.message), exc.headers)
            return exc.status

    async def _refuse(self, http: _HttpConnection, request_id: str, exc: RequestError) -> int:
        if http.body_missing or (http.h11 is not None and http.h11.their_state is h11.SEND_BODY):
            await self._discard_body(http)
        await self._respond(http, request_id, exc.status, error_json(exc.message), exc.headers)
        return exc.status

    def _connect(self, info: ConnInfo) -> tuple[PoolKey, Callable[[], Awaitable[Client]]]:
        """The pool key and the connect function for a request's endpoint and credentials."""
        upstream = self.config.upstream_for(info.endpoint)
        if upstream is None:
            logger.info("no upstream for endpoint %r", info.endpoint)
            raise RequestError(400, f"password authentication failed for user '{info.user}'")
        try:
            params = upstream.with_(
                user=info.user,
                password=info.password,
                database=info.database,
                options=_upstream_options(info.options),
                connect_timeout=self.config.connect_timeout,
            )
        except ProgrammingError as exc:
            raise RequestError(400, str(exc)) from None
        cancel_timeout = self.config.cancel_timeout
        server = f"{upstream.host}:{upstream.port}"
        if self.config.upstream_max_connections is not None and self.pool.server_capacity(server) is None:
            self.pool.set_server_capacity(server, self.config.upstream_max_connections)

        async def connect() -> Client:
            client = UpstreamClient.from_params(params, registry=PlainTextRegistry(), cancel_timeout=cancel_timeout)
            await client.connect()
            if self.pool.server_capacity(server) is None:
                await self._learn_capacity(client, server)
            client.needs_reset = False  # a new session: nothing to reset
            return client

        key = PoolKey.build(info.endpoint, info.database, info.user, info.password, info.options, server)
        return key, connect

    async def _learn_capacity(self, client: Client, server: str) -> None:
        """Cap the pool's connections to ``server`` below what Postgres accepts, on first contact.

        The configured ``upstream_max_connections`` wins; otherwise the server's
        max_connections minus its reserved slots, less ``upstream_spare_connections`` for
        other clients.
        """
        capacity = self.config.upstream_max_connections
        if capacity is None:
            try:
                results = await client.run(client.session.simple_query(_CAPACITY_QUERY, mode="list"))
                available = int(results[-1].rows[0][0])
            except (Error, ValueError, IndexError) as exc:
                logger.warning("could not read max_connections of %s (%s); only pool_max_total applies", server, exc)
                available = self.config.pool_max_total + self.config.upstream_spare_connections
            capacity = available - self.config.upstream_spare_connections
        self.pool.set_server_capacity(server, capacity)
        logger.info("upstream %s: the pool opens at most %d connections to it", server, self.pool.server_capacity(server))

    def _route(self, headers: dict[str, str | None]) -> tuple[ConnInfo, PoolKey, Callable[[], Awaitable[Client]]]:
        """Who connects where, remembered per connection string: clients repeat theirs.

        The answer depends only on the header (and the absence of Authorization), so
        credentials are still checked by Postgres for every key, as before.
        """
        raw = headers.get(CONNECTION_STRING_HEADER)
        cacheable = raw is not None and "authorization" not in headers
        if cacheable:
            assert raw is not None
            route = self._routes.get(raw)
            if route is not None:
                return route
        info = parse_conn_info(headers, routes_by_endpoint=bool(self.config.endpoints))
        key, connect = self._connect(info)
        route = (info, key, connect)
        if cacheable:
            assert raw is not None
            if len(self._routes) >= _ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[raw] = route
        return route

    async def _handle_sql(
        self, http: _HttpConnection, request: _Request, headers: dict[str, str | None], request_id: str
    ) -> int:
        try:
            info, key, connect = self._route(headers)
            options = parse_request_options(headers)
            limit = self.config.max_request_size
            length = _content_length(headers.get("content-length"))
            if length is not None and length > limit:
                raise RequestError(413, f"request is too large (max is {limit} bytes)")
            body = _BodyReader(http, limit, request.body)
            if not body.complete:
                # The body is on its way: a connection may be opened meanwhile, but none is
                # taken from the pool until the body is in (a slow body holds nothing).
                self.pool.warm(key, connect)
                await self._finish_body(http, body)
            payload = parse_payload(body.data())
        except RequestError as exc:
            return await self._refuse(http, request_id, exc)
        except trio.TooSlowError:
            await self._answer_timeout(http, "body", self.config.body_timeout)
            return 408
        except _ClientGone:
            http.must_close = True
            return 400
        try:
            conn = await self.pool.acquire(key, connect)
        except (Error, OSError) as exc:
            status, body_json = _connect_error(exc)
            logger.info("connecting to endpoint %r as %r failed: %s", info.endpoint, info.user, exc)
            await self._respond(http, request_id, status, body_json)
            return status
        status = await self._run_queries(http, request_id, conn, payload, options)
        if status != _RETRY:
            return status
        # The server ended the connection before it began the request: once more, on a new one.
        logger.info("upstream connection was ended before it read the request; retrying on a new one (request %s)", request_id)
        try:
            conn = await self.pool.acquire(key, connect, fresh=True)
        except (Error, OSError) as exc:
            status, body_json = _connect_error(exc)
            await self._respond(http, request_id, status, body_json)
            return status
        return await self._run_queries(http, request_id, conn, payload, options, may_retry=False)

    async def _finish_body(self, http: _HttpConnection, body: "_BodyReader") -> None:
        """Read the rest of the body by the body deadline (asking for it if the client waits for ``100 Continue``)."""
        if http.h11 is not None and http.h11.they_are_waiting_for_100_continue:
            await http.send(h11.InformationalResponse(status_code=100, headers=[]))
        with trio.fail_at(self.deadlines.body_deadline(trio.current_time())):
            await body.read_rest()

    async def _run_queries(
        self,
        http: _HttpConnection,
        request_id: str,
        conn: PooledConnection,
        payload: Payload,
        options: Any,
        *,
        may_retry: bool = True,
    ) -> int:
        """Run the payload on ``conn``, answer, give the connection back; the status.

        ``_RETRY`` (nothing answered) when the connection was lost before the server began
        the request and ``may_retry``.
        """
        client = conn.client
        assert isinstance(client, UpstreamClient)
        limit = self.config.max_response_size
        reasons: list[str] = []
        work = trio.CancelScope()

        def stop(reason: str) -> None:
            if not reasons:
                reasons.append(reason)
                work.cancel()

        budget = ResponseBudget(limit, lambda: stop("too large"))
        outcome: QueryOutcome | None = None
        if http.watched is not None or http.gone:
            http.on_hangup = lambda: stop("client")
            if http.gone:
                stop("client")
            try:
                with work:
                    outcome = await self._run_payload(client, payload, options, budget, request_id)
            finally:
                http.on_hangup = None
        else:  # no hang-up watcher here: a task reads the client meanwhile
            async with trio.open_nursery() as watchers:
                watchers.start_soon(self._watch_client, http, stop)
                with work:
                    outcome = await self._run_payload(client, payload, options, budget, request_id)
                watchers.cancel_scope.cancel()

        healthy = not client.closed and client.session.idle
        if may_retry and not reasons and outcome is not None and outcome.unanswered:
            await self.pool.release(conn, reusable=False)
            return _RETRY
        extra: list[tuple[bytes, bytes]] = []
        if reasons and reasons[0] == "client":
            logger.info("client went away during the query; it was cancelled (request %s)", request_id)
            http.must_close = True
            status, body, reusable = 400, error_json(CANCELLED_MESSAGE, code="08P01"), healthy
        elif budget.exceeded or (outcome is not None and outcome.body is not None and len(outcome.body) > limit):
            status, body, reusable = 507, error_json(f"response is too large (max is {limit} bytes)"), healthy
        elif outcome is None or outcome.conversion_failed:
            status, body, reusable = 500, error_json("could not parse postgres response"), False
        elif outcome.error is not None:
            error = outcome.error
            if error.diag.code:
                status, body = 400, pg_error_json(error.diag, str(error))
            else:
                status, body = 500, error_json(str(error))
            # A failed single query's connection is dropped; a batch's is kept once rolled back.
            reusable = healthy and payload.batch and outcome.rolled_back
        else:
            assert outcome.body is not None
            status, body, reusable = 200, outcome.body.encode("utf-8"), healthy
            if payload.batch:
                if options.isolation_level is not None:
                    extra.append((b"neon-batch-isolation-level", options.isolation_level.encode()))
                if options.read_only:
                    extra.append((b"neon-batch-read-only", b"true"))
                if options.deferrable:
                    extra.append((b"neon-batch-deferrable", b"true"))
        try:
            await self._respond(http, request_id, status, body, extra)
        finally:
            await self.pool.release(conn, reusable=reusable)
        return status

    @staticmethod
    async def _run_payload(
        client: UpstreamClient, payload: Payload, options: Any, budget: ResponseBudget, request_id: str
    ) -> QueryOutcome:
        try:
            return await run_payload(client, payload, options, budget)
        except Error as exc:
            return QueryOutcome(error=exc)
        except Exception as exc:
            logger.error("unexpected %s running a request's queries (request %s)", type(exc).__name__, request_id)
            logger.debug("the unexpected error", exc_info=True)
            return QueryOutcome(conversion_failed=True)

    async def _watch_client(self, http: _HttpConnection, stop: Callable[[str], None]) -> None:
        """While queries run: a client that closes its connection stops them."""
        try:
            while True:
                data = await http.stream.receive_some(_RECEIVE_SIZE)
                if not data:
                    break
                # A pipelined request: kept for later.
                if http.h11 is not None:
                    http.h11.receive_data(bytes(data))
                    buffered = len(http.h11.trailing_data[0])
                else:
                    http.buffer += data
                    buffered = len(http.buffer)
                if buffered > _MAX_BUFFERED_WHILE_WATCHING:
                    return
        except _CLIENT_ERRORS:
            pass
        stop("client")


class _BodyReader:
    """A request body, bounded by the size limit: already read, or what h11 holds, then the rest."""

    def __init__(self, http: _HttpConnection, limit: int, body: bytes | None) -> None:
        self.http = http
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        if body is not None:  # a plain request: framed by its Content-Length
            self.chunks.append(body)
            self.size = len(body)
            self.complete = not http.body_missing
            if self.size + http.body_missing > limit:
                raise RequestError(413, f"request is too large (max is {limit} bytes)")
        else:
            self.take_buffered()

    def data(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)

    def take_buffered(self) -> None:
        """Take the body events h11 can give without reading; ``complete`` once at its end."""
        http = self.http
        while True:
            try:
                event = http.next_event()
            except _MalformedRequest as exc:
                http.must_close = True
                raise RequestError(exc.status, exc.message) from None
            if event is h11.NEED_DATA:
                return
            if type(event) is h11.Data:
                self.size += len(event.data)
                if self.size > self.limit:
                    raise RequestError(413, f"request is too large (max is {self.limit} bytes)")
                self.chunks.append(bytes(event.data))
            elif type(event) is h11.EndOfMessage:
                self.complete = True
                return
            else:
                raise _ClientGone("the client closed the connection mid-request")

    async def read_rest(self) -> None:
        """Read until the end of the body."""
        http = self.http
        machine = http.h11
        if machine is None:
            while http.body_missing:
                data = await http.receive()
                if not data:
                    raise _ClientGone("the client closed the connection mid-request")
                if len(data) > http.body_missing:
                    http.buffer = data[http.body_missing :]  # a pipelined request
                    data = data[: http.body_missing]
                self.chunks.append(data)
                self.size += len(data)
                http.body_missing -= len(data)
            self.complete = True
            return
        self.take_buffered()
        while not self.complete:
            machine.receive_data(await http.receive())
            self.take_buffered()


def _content_length(value: str | None) -> int | None:
    """The Content-Length (h11 has checked that there is at most one)."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _connect_error(error: Exception | None) -> tuple[int, bytes]:
    """Status and body for a failed connect: the user's fault (auth, database) is 400, the rest 500."""
    if isinstance(error, Error) and error.diag.code:
        code = error.diag.code
        status = 400 if code.startswith("28") or code == "3D000" else 500
        return status, pg_error_json(error.diag, str(error))
    return 500, error_json(str(error) if error is not None else "could not connect to the database")


async def serve(config: ProxyConfig, *, task_status: trio.TaskStatus[ProxyServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a proxy for ``config`` until cancelled; ``task_status.started`` gets the server."""
    server = ProxyServer(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(server)
