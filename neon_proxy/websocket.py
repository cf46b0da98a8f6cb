"""The WebSocket side of the proxy: Postgres's wire protocol over WebSocket, as Neon serves it.

An HTTP upgrade on any path (``/v2`` is canonical) of the proxy's port becomes a WebSocket
whose binary messages carry a byte stream: their boundaries mean nothing (a message may
hold half a Postgres message or ten). Two modes:

- **auth mode** (the default, as Neon's proxy): the proxy plays the server side of startup
  (``neon_proto.backend``), asks for a cleartext password, logs in to the upstream with it
  by whatever method the upstream asks (``neon_trio.Client``), hands the client the
  upstream's ParameterStatus and ReadyForQuery with a BackendKeyData of its own, then relays
  bytes both ways. A CancelRequest carrying that key, as the first packet of a new
  connection, cancels the right upstream query; upstream keys never leave the proxy.
- **relay mode** (``--ws-relay``, as Neon's wsproxy): raw bytes to ``?address=host:port``,
  only if the address is allowed (by default, the configured upstreams); else 400 before
  any connection is made.

Text frames close the connection (1003), pings are answered, fragments are a byte stream
like any other. A client that goes away while its query runs gets the query cancelled and
its upstream connection closed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import math
import os
import secrets
from typing import Mapping, Protocol
from urllib.parse import parse_qs, urlsplit

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from neon_proto import backend as be
from neon_proto.conninfo import CLIENT_ONLY_KEYWORDS, ConnectionParams
from neon_proto.errors import Diagnostic, Error, ProgrammingError, RemoteProtocolError
from neon_proto.frontend import NEED_DATA
from neon_proxy.config import ProxyConfig
from neon_proxy.request import RequestError
from neon_trio import Client
from neon_trio._io import direct_fd

__all__ = [
    "WebSocketEndpoint",
    "ServerWebSocket",
    "WebSocketClosed",
    "parse_address",
    "address_allowed",
    "split_password_endpoint",
]

logger = logging.getLogger("neon_proxy")

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_RECEIVE_SIZE = 65536
_CLIENT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_TERMINATE = b"X\x00\x00\x00\x04"
_READY_PREFIX = b"Z\x00\x00\x00\x05"
_CHECKPOINT_EVERY = 15  # a relay loop yields to trio at least every 16 turns
# Startup parameters that name the session, not a server setting: never passed on as GUCs.
_STARTUP_OWN = frozenset({"user", "database", "options", "application_name", "replication"})

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011


class _ByteStream:
    """A trio stream read and written with ``os.read``/``os.write`` while the kernel has room.

    As the HTTP side does: on a plain socket, bytes that can move at once skip trio's extra
    scheduler pass; only an empty or full buffer waits through trio. Sends are serialized.
    """

    __slots__ = ("stream", "_fd", "_lock")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._fd = direct_fd(stream)
        self._lock = trio.Lock()

    async def receive(self) -> bytes:
        """Bytes from the peer; b"" at EOF (or when the connection broke)."""
        fd = self._fd
        try:
            if fd is None:
                return bytes(await self.stream.receive_some(_RECEIVE_SIZE))
            while True:
                try:
                    return os.read(fd, _RECEIVE_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
        except _CLIENT_ERRORS:
            return b""

    async def send_all(self, data: bytes | memoryview) -> None:
        """Write everything (trio.BrokenResourceError if the peer is gone)."""
        fd = self._fd
        if fd is not None and not self._lock.locked():
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if written == len(data):
                return
            data = memoryview(data)[written:]
        async with self._lock:
            await self.stream.send_all(data)


class WebSocketClosed(Exception):
    """The WebSocket ended on our side because the client broke its rules (a text frame...)."""


class ServerWebSocket:
    """The server end of an upgraded connection: binary messages in and out as a byte stream.

    ``receive()`` returns payload bytes as they arrive (fragments and message boundaries
    are not kept: the content is a byte stream) and b"" once the client closed; a text
    frame or a framing error closes the connection and raises WebSocketClosed. ``send``
    writes one binary message. Pings are answered.
    """

    def __init__(self, stream: trio.abc.Stream, received: bytes = b"") -> None:
        self.stream = _ByteStream(stream)
        self._ws = Connection(ConnectionType.SERVER)
        self._peer_closed = False
        self.sent_close = False
        if received:
            self._ws.receive_data(received)

    @property
    def open(self) -> bool:
        """Whether messages can still be sent."""
        return self._ws.state is ConnectionState.OPEN and not self.sent_close

    async def _write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> bytes:
        """The next payload bytes; b"" when the client has closed (or the connection dropped)."""
        while True:
            if self._peer_closed:
                return b""
            chunks: list[bytes] = []
            for event in self._ws.events():
                if isinstance(event, BytesMessage):
                    chunks.append(bytes(event.data))
                elif isinstance(event, Ping):
                    if self.open:
                        await self._write(self._ws.send(event.response()))
                elif isinstance(event, TextMessage):
                    await self.close(CLOSE_UNSUPPORTED_DATA, "text frames are not supported: send binary messages")
                    raise WebSocketClosed("the client sent a text frame")
                elif isinstance(event, CloseConnection):
                    self._peer_closed = True
                    code = event.code
                    if code not in (CLOSE_NORMAL, CLOSE_GOING_AWAY, 1005, 1006):
                        logger.debug("WebSocket closed by the client: %s %s", code, event.reason)
                    if code == CLOSE_PROTOCOL_ERROR or code == 1007 or code == 1009:
                        # wsproto reports a framing error as a close: answer it and stop.
                        await self.close(code, event.reason or "invalid WebSocket framing")
                        raise WebSocketClosed(f"invalid WebSocket framing: {event.reason}")
                    await self.close(CLOSE_NORMAL, "")
                    break
            if chunks:
                return b"".join(chunks) if len(chunks) > 1 else chunks[0]
            if self._peer_closed:
                return b""
            data = await self.stream.receive()
            if self._ws.state is ConnectionState.CLOSED:
                self._peer_closed = True
                return b""
            self._ws.receive_data(bytes(data) if data else None)

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one binary message."""
        if not data:
            return
        await self._write(self._ws.send(BytesMessage(data=data)))

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (once) if the connection allows it; errors are ignored."""
        if self.sent_close:
            return
        self.sent_close = True
        state = self._ws.state
        if state is ConnectionState.OPEN or state is ConnectionState.REMOTE_CLOSING:
            try:
                data = self._ws.send(CloseConnection(code=code, reason=reason))
                with trio.move_on_after(1.0) as scope:
                    scope.shield = True
                    await self._write(data)
            except (*_CLIENT_ERRORS, trio.BusyResourceError):
                pass
            except Exception:  # wsproto refused (state changed meanwhile)
                pass


class _ClientChannel(Protocol):
    """The client's byte stream: a WebSocket's binary payload, or a plain TCP connection."""

    async def receive(self) -> bytes: ...

    async def send(self, data: bytes) -> None: ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None: ...


class _PlainChannel:
    """A client speaking Postgres over plain TCP to the proxy's port (its first byte is NUL, never HTTP)."""

    def __init__(self, stream: trio.abc.Stream, received: bytes) -> None:
        self.stream = _ByteStream(stream)
        self._pending = received

    async def receive(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return await self.stream.receive()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Nothing to say: the server closes the stream."""


def accept_token(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode("ascii")


def _check_upgrade(method: bytes, headers: Mapping[str, str | None]) -> str:
    """The client's Sec-WebSocket-Key; RequestError for an upgrade we cannot accept."""
    if method != b"GET":
        raise RequestError(400, "a WebSocket upgrade must be a GET request")
    connection = [t.strip() for t in (headers.get("connection") or "").lower().split(",")]
    if "upgrade" not in connection:
        raise RequestError(400, "a WebSocket upgrade needs `Connection: Upgrade`")
    version = headers.get("sec-websocket-version")
    if version != "13":
        raise RequestError(426, "unsupported WebSocket version: only 13 is supported")
    key = headers.get("sec-websocket-key") or ""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise RequestError(400, "invalid Sec-WebSocket-Key") from None
    return key


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) from a relay's ``?address=``; ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {text!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c in host for c in "/@?#[] "):
        raise ValueError(f"invalid address {text!r}: expected host:port")
    return host.lower(), int(port)


def address_allowed(host: str, port: int, allowed: tuple[str, ...]) -> bool:
    """Whether ``host:port`` matches one of ``allowed`` (``HOST:PORT``, ``*.suffix:PORT``)."""
    for entry in allowed:
        try:
            pattern_host, pattern_port = parse_address(entry.replace("*.", "wildcard.", 1))
        except ValueError:
            continue
        if pattern_port != port:
            continue
        if entry.startswith("*."):
            suffix = pattern_host[len("wildcard") :]
            if host.endswith(suffix) and len(host) > len(suffix):
                return True
        elif pattern_host == host:
            return True
    return False


def _query_param(target: bytes, name: str) -> str | None:
    try:
        query = urlsplit(target.decode("ascii")).query
    except (UnicodeDecodeError, ValueError):
        return None
    values = parse_qs(query, keep_blank_values=True).get(name)
    return values[0] if values else None


def split_password_endpoint(password: str) -> tuple[str | None, str]:
    """Neon's ``endpoint=<id>;<password>`` (or ``$`` as separator) form: the endpoint and the real password."""
    if password.startswith("endpoint="):
        rest = password[len("endpoint=") :]
        cut = min((i for i in (rest.find(";"), rest.find("$")) if i >= 0), default=-1)
        if cut > 0:
            return rest[:cut], rest[cut + 1 :]
    return None, password


def _endpoint_name(
    startup: be.StartupMessage, password_endpoint: str | None, address: str | None, host_header: str | None
) -> str:
    """Which endpoint the session asks for, as Neon reads it.

    ``options`` ``endpoint=<id>``, else the password's ``endpoint=<id>;``, else the first label
    of ``?address=``, else of the Host header. It only matters to an endpoint table.
    """
    for token in (startup.parameters.get("options") or "").split():
        for prefix in ("endpoint=", "project=", "--endpoint="):
            if token.startswith(prefix):
                return token[len(prefix) :]
    if password_endpoint:
        return password_endpoint
    for name in (address, host_header):
        if name:
            host = name.rsplit(":", 1)[0] if not name.endswith("]") else name
            return host.strip("[]").split(".", 1)[0]
    return ""


def _upstream_options(options: str | None) -> str | None:
    if options is None:
        return None
    kept = [t for t in options.split() if not t.startswith(("endpoint=", "project=", "--endpoint="))]
    return " ".join(kept) or None


def _fatal(message: str, code: str) -> Diagnostic:
    return Diagnostic(severity="FATAL", severity_local="FATAL", code=code, message=message)


class _UpstreamSession(Client):
    """An upstream connection made by ``neon_trio.Client``, whose stream is then relayed as bytes."""

    def take_stream(self) -> tuple[trio.abc.Stream, bytes]:
        """The connected stream and what the server sent past its ReadyForQuery."""
        transport = self._transport
        assert transport is not None
        return transport.stream, self.session.conn.trailing_data[0]


class _Session:
    """What a running auth-mode session leaves for a CancelRequest to find."""

    __slots__ = ("secret_key", "upstream", "relay")

    def __init__(self, secret_key: int, upstream: _UpstreamSession, relay: "_Relay") -> None:
        self.secret_key = secret_key
        self.upstream = upstream
        self.relay = relay


class WebSocketEndpoint:
    """The WebSocket endpoint of one ``ProxyServer``: counts, cancel keys, and each session."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.active = 0
        self.stopping = False
        self._sessions: dict[int, _Session] = {}
        self.allowed = config.ws_relay_allow or _configured_upstreams(config)

    def __repr__(self) -> str:
        return f"<WebSocketEndpoint {'relay' if self.config.ws_relay else 'auth'} active={self.active}>"

    def shutdown(self) -> None:
        """The server stops: auth-mode sessions end (1001) as soon as no query of theirs runs.

        Relay-mode sessions cannot tell and run on until the server's shutdown deadline.
        """
        self.stopping = True
        for session in list(self._sessions.values()):
            session.relay.stop_when_idle()

    async def serve(
        self, stream: trio.abc.Stream, method: bytes, target: bytes, headers: Mapping[str, str | None], received: bytes
    ) -> int:
        """Answer an upgrade request and serve the WebSocket to its end; the HTTP status given.

        Raises RequestError (to be answered as HTTP) when the upgrade is refused.
        """
        key = _check_upgrade(method, headers)
        if self.active >= self.config.ws_max_connections:
            raise RequestError(503, "too many WebSocket connections; try again later")
        self.active += 1
        try:
            if self.config.ws_relay:
                return await self._serve_relay(stream, key, target, received)
            await _accept(stream, key)
            ws = ServerWebSocket(stream, received)
            try:
                await self._serve_auth(ws, target, headers)
            except WebSocketClosed as exc:
                logger.info("WebSocket session ended: %s", exc)
            finally:
                await ws.close(CLOSE_NORMAL, "")
            return 101
        finally:
            self.active -= 1

    async def serve_tcp(self, stream: trio.abc.Stream, received: bytes) -> None:
        """A Postgres client on the proxy's port over plain TCP: a CancelRequest, or an auth-mode session.

        Relay mode has no use for it (the client can reach the address itself): refused.
        """
        if self.config.ws_relay:
            await _send_quietly(
                _PlainChannel(stream, b""),
                be.error_response(_fatal("this proxy relays WebSocket connections only", "08004")),
            )
            return
        if self.active >= self.config.ws_max_connections:
            await _send_quietly(
                _PlainChannel(stream, b""), be.error_response(_fatal("sorry, too many clients already", "53300"))
            )
            return
        self.active += 1
        try:
            await self._serve_auth(_PlainChannel(stream, received), b"", {})
        finally:
            self.active -= 1

    # ------------------------------------------------------------------ relay mode

    async def _serve_relay(self, stream: trio.abc.Stream, key: str, target: bytes, received: bytes) -> int:
        address = _query_param(target, "address")
        if not address:
            raise RequestError(400, "missing ?address=host:port")
        try:
            host, port = parse_address(address)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        if not address_allowed(host, port, self.allowed):
            logger.info("WebSocket relay to %s:%d refused: not in the allowlist", host, port)
            raise RequestError(400, f"address {address} is not allowed")
        try:
            with trio.fail_after(self.config.connect_timeout):
                upstream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            logger.info("WebSocket relay could not connect to %s:%d: %s", host, port, exc)
            raise RequestError(502, f"could not connect to {address}") from None
        try:
            await _accept(stream, key)
            ws = ServerWebSocket(stream, received)
            try:
                relay = _Relay(ws, upstream, self.config.ws_idle_timeout, sees_postgres=False)
                why = await relay.run()
                logger.debug("WebSocket relay to %s:%d ended (%s)", host, port, why)
            except WebSocketClosed as exc:
                logger.info("WebSocket relay ended: %s", exc)
            finally:
                await ws.close(CLOSE_NORMAL, "")
        finally:
            await trio.aclose_forcefully(upstream)
        return 101

    # ------------------------------------------------------------------ auth mode

    async def _serve_auth(self, ws: _ClientChannel, target: bytes, headers: Mapping[str, str | None]) -> None:
        conn = be.BackendConnection()
        startup: be.StartupMessage | None = None
        password: str | None = None
        with trio.move_on_after(self.config.ws_handshake_timeout) as handshake:
            try:
                while password is None:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        data = await ws.receive()
                        conn.receive_data(data)
                        continue
                    cls = type(event)
                    if cls is be.SSLRequest or cls is be.GSSENCRequest:
                        # wss encrypts; TLS inside the tunnel needs relay mode (Neon's proxy says N too).
                        await ws.send(conn.send_encryption_refusal())
                    elif cls is be.StartupMessage:
                        startup = event
                        await ws.send(conn.request_password())
                    elif cls is be.PasswordMessage:
                        password = event.password
                    elif cls is be.CancelRequest:
                        await self._cancel(event)
                        return
                    else:  # Terminate, or the client closed
                        return
            except RemoteProtocolError as exc:
                logger.info("WebSocket client broke the startup protocol: %s", exc)
                await _send_quietly(ws, conn.send_error(exc.diag))
                return
        if handshake.cancelled_caught:
            logger.info("WebSocket client took too long to start up")
            await _send_quietly(
                ws, conn.send_error(_fatal("timed out waiting for the startup message and password", "08006"))
            )
            return
        assert startup is not None and password is not None
        upstream, error = await self._connect_upstream(startup, password, target, headers)
        if upstream is None:
            assert error is not None
            await _send_quietly(ws, conn.send_error(error))
            return
        try:
            await self._run_session(ws, conn, upstream)
        finally:
            await upstream.close()

    async def _connect_upstream(
        self, startup: be.StartupMessage, password: str, target: bytes, headers: Mapping[str, str | None]
    ) -> tuple[_UpstreamSession | None, Diagnostic | None]:
        """Log in to the session's upstream with the client's credentials; or the error for the client."""
        user, database = startup.user, startup.database
        password_endpoint, password = split_password_endpoint(password)
        endpoint = _endpoint_name(startup, password_endpoint, _query_param(target, "address"), headers.get("host"))
        params = self.config.upstream_for(endpoint)
        failed = _fatal(f'password authentication failed for user "{user}"', "28P01")
        if params is None:
            logger.info("WebSocket session for endpoint %r refused: no upstream serves it", endpoint)
            return None, failed
        extra = {
            name: value
            for name, value in startup.parameters.items()
            if name not in _STARTUP_OWN and name not in CLIENT_ONLY_KEYWORDS
        }
        try:
            params = params.with_(
                user=user,
                password=password,
                database=database,
                options=_upstream_options(startup.parameters.get("options")),
                # libpq's fallback, which the JS driver sends too, is a client setting, not a GUC.
                application_name=startup.parameters.get("application_name")
                or startup.parameters.get("fallback_application_name"),
                connect_timeout=self.config.connect_timeout,
                extra=extra,
            )
        except ProgrammingError as exc:
            return None, _fatal(str(exc), "08004")
        client = _UpstreamSession.from_params(params, cancel_timeout=self.config.cancel_timeout)
        try:
            await client.connect()
        except Error as exc:
            await client.close()
            if exc.diag.code:
                logger.info("WebSocket login to endpoint %r as %r refused upstream: %s", endpoint, user, exc)
                return None, exc.diag
            logger.warning("WebSocket session could not reach the upstream of endpoint %r: %s", endpoint, exc)
            return None, _fatal("could not connect to the database server", "08001")
        except BaseException:
            await client.close()
            raise
        return client, None

    async def _run_session(self, ws: _ClientChannel, conn: be.BackendConnection, upstream: _UpstreamSession) -> None:
        facts = upstream.session.conn
        pid = self._new_process_id()
        secret = secrets.randbits(32) - (1 << 31)
        greeting = [conn.send_authentication_ok()]
        for name, value in facts.parameters.items():
            greeting.append(conn.send_parameter_status(name, value))
        greeting.append(conn.send_backend_key_data(pid, secret))
        greeting.append(conn.send_ready_for_query(facts.transaction_status))
        stream, upstream_extra = upstream.take_stream()
        pipelined, client_eof = conn.trailing_data
        relay = _Relay(ws, stream, self.config.ws_idle_timeout, sees_postgres=True)
        self._sessions[pid] = _Session(secret, upstream, relay)
        try:
            await ws.send(b"".join(greeting) + upstream_extra)
            if self.stopping:
                relay.stop_when_idle()
            if pipelined:
                relay.upstream_idle = False
                relay.last_client_bytes = pipelined
                await stream.send_all(pipelined)
            why = "client" if client_eof else await relay.run()
            if why == "client" and not relay.client_said_goodbye and not relay.upstream_idle:
                logger.info("WebSocket client went away during a query; cancelling it upstream")
                with trio.move_on_after(self.config.cancel_timeout) as scope:
                    scope.shield = True
                    try:
                        await upstream.cancel()
                    except Error as exc:
                        logger.warning("could not cancel the query of a departed WebSocket client: %s", exc)
            elif why == "idle":
                logger.info("WebSocket session closed after %.0f s idle", self.config.ws_idle_timeout)
                await ws.close(CLOSE_GOING_AWAY, "idle timeout")
            elif why == "shutdown":
                await ws.close(CLOSE_GOING_AWAY, "server shutting down")
        except _CLIENT_ERRORS as exc:
            logger.debug("WebSocket session ended: %s", exc)
        finally:
            del self._sessions[pid]

    def _new_process_id(self) -> int:
        while True:
            pid = secrets.randbits(31) or 1
            if pid not in self._sessions:
                return pid

    async def _cancel(self, request: be.CancelRequest) -> None:
        """Cancel the upstream query of the session that was given this key (nothing if none)."""
        session = self._sessions.get(request.process_id)
        if session is None or not secrets.compare_digest(
            request.secret_key.to_bytes(4, "big", signed=True), session.secret_key.to_bytes(4, "big", signed=True)
        ):
            logger.info("CancelRequest with an unknown key ignored")
            return
        try:
            with trio.fail_after(self.config.cancel_timeout):
                await session.upstream.cancel()
        except (Error, trio.TooSlowError) as exc:
            logger.warning("could not forward a CancelRequest upstream: %s", exc)


class _Relay:
    """Bytes both ways between a WebSocket and an upstream stream until one side ends.

    With ``sees_postgres`` the stream is Postgres's own in clear: a chunk from the upstream
    that ends in ReadyForQuery (with no client bytes since) means no query is running,
    which is when the idle timeout counts and a departing client needs no cancel.
    """

    def __init__(self, ws: _ClientChannel, upstream: trio.abc.Stream, idle_timeout: float, *, sees_postgres: bool) -> None:
        self.ws = ws
        self.upstream = _ByteStream(upstream)
        self.idle_timeout = idle_timeout
        self.sees_postgres = sees_postgres
        self.upstream_idle = True
        self.last_client_bytes = b""
        self._scope = trio.CancelScope()
        self._why = ""
        self._stop_when_idle = False

    @property
    def client_said_goodbye(self) -> bool:
        """Whether the client's last bytes were a Terminate message."""
        return self.last_client_bytes.endswith(_TERMINATE)

    def _touch(self) -> None:
        if self.sees_postgres and not self.upstream_idle:
            self._scope.deadline = math.inf
        else:
            self._scope.deadline = trio.current_time() + self.idle_timeout

    def stop_when_idle(self) -> None:
        """End with ``shutdown`` now if no query runs, else when the running one is answered."""
        self._stop_when_idle = True
        if self.upstream_idle:
            self._end("shutdown")

    def _end(self, why: str) -> None:
        if not self._why:
            self._why = why
        self._scope.cancel()

    async def run(self) -> str:
        """Relay until one side ends; why: ``client``, ``upstream``, ``idle`` or ``shutdown``."""
        self._touch()
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_upstream)
                nursery.start_soon(self._upstream_to_client)
        if not self._why:
            self._why = "idle"
        return self._why

    async def _client_to_upstream(self) -> None:
        ws, upstream = self.ws, self.upstream
        turns = 0
        while True:
            turns += 1
            if not turns & _CHECKPOINT_EVERY:
                # Reads and writes that never wait never yield: let other sessions run.
                await trio.lowlevel.checkpoint()
            try:
                data = await ws.receive()
            except WebSocketClosed as exc:
                logger.info("WebSocket session ended: %s", exc)
                data = b""
            if not data:
                self._end("client")
                return
            self.upstream_idle = False
            self.last_client_bytes = data[-5:] if len(data) >= 5 else self.last_client_bytes[len(data) :] + data
            self._touch()
            try:
                await upstream.send_all(data)
            except _CLIENT_ERRORS:
                self._end("upstream")
                return

    async def _upstream_to_client(self) -> None:
        ws, upstream = self.ws, self.upstream
        turns = 0
        while True:
            turns += 1
            if not turns & _CHECKPOINT_EVERY:
                await trio.lowlevel.checkpoint()
            data = await upstream.receive()
            if not data:
                self._end("upstream")
                return
            if self.sees_postgres and len(data) >= 6 and data[-6:-1] == _READY_PREFIX:
                self.upstream_idle = True
                if self._stop_when_idle:
                    try:
                        await ws.send(data)
                    except _CLIENT_ERRORS:
                        pass
                    self._end("shutdown")
                    return
            self._touch()
            try:
                await ws.send(data)
            except _CLIENT_ERRORS:
                self._end("client")
                return


async def _accept(stream: trio.abc.Stream, key: str) -> None:
    """The 101 response that turns the connection into a WebSocket (no subprotocol, no extension)."""
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + accept_token(key).encode("ascii") + b"\r\n\r\n"
    )
    await stream.send_all(response)


async def _send_quietly(ws: _ClientChannel, data: bytes) -> None:
    """Send a last message to a client that may already be gone."""
    try:
        await ws.send(data)
    except (*_CLIENT_ERRORS, trio.BusyResourceError):
        pass


def _configured_upstreams(config: ProxyConfig) -> tuple[str, ...]:
    """``host:port`` of the default upstream and of every endpoint's."""
    found: list[str] = []
    names: list[str] = [""] + list(config.endpoints)
    for name in names:
        params: ConnectionParams | None = config.upstream_for(name)
        if params is None or params.host.startswith("/"):
            continue
        host = f"[{params.host}]" if ":" in params.host else params.host
        entry = f"{host.lower()}:{params.port}"
        if entry not in found:
            found.append(entry)
    return tuple(found)
