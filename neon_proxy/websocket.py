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

Once a session relays, its bytes move on the endpoint's relay thread
(``neon_proxy.relay_thread``), TLS on either side included (the thread works trio's TLS
record layer); its trio task keeps the idle timeout, shutdown and cancel, and takes the
bytes over (``_Relay``'s trio tasks) where a client's frames need wsproto or a peer is slow
to read.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Awaitable, Callable, Mapping
from urllib.parse import parse_qs, urlsplit

import trio

from neon_proto import backend as be
from neon_proto.conninfo import CLIENT_ONLY_KEYWORDS, ConnectionParams
from neon_proto.errors import ConnectionClosed, Diagnostic, Error, ProgrammingError, RemoteProtocolError
from neon_proto.frontend import NEED_DATA
from neon_proxy.client_channel import (
    CLIENT_ERRORS,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    ByteStream,
    ClientChannel,
    PlainChannel,
    ServerWebSocket,
    WebSocketClosed,
    accept_upgrade,
    check_upgrade,
    send_quietly,
    thread_tls,
)
from neon_proxy.config import ProxyConfig
from neon_proxy.pool import SessionSlot, SlotRefused, UpstreamPool
from neon_proxy.relay_thread import RelayLink, RelayThread
from neon_proxy.request import RequestError
from neon_trio import Client
from neon_trio._io import TrioTransport

__all__ = [
    "WebSocketEndpoint",
    "ServerWebSocket",
    "WebSocketClosed",
    "parse_address",
    "address_allowed",
    "split_password_endpoint",
]

logger = logging.getLogger("neon_proxy")

_TERMINATE = b"X\x00\x00\x00\x04"
_PASSING = ("blocked", "frames")  # why a session left the relay thread for a moment, not for good
_LAST_WORDS_SECONDS = 1.0  # how long an ending session's last unsent bytes may take
_LOGIN_WORDS = ("password", "SCRAM", "SASL", "channel binding", "authentication")
_CHECKPOINT_EVERY = 15  # a relay loop yields to trio at least every 16 turns
# Startup parameters that name the session, not a server setting: never passed on as GUCs.
_STARTUP_OWN = frozenset({"user", "database", "options", "application_name", "replication"})


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

    slot: SessionSlot | None = None
    """Its place in the upstream limits, given back once it is closed."""

    def take_stream(self) -> tuple[trio.abc.Stream, bytes]:
        """The connected stream and what the server sent past its ReadyForQuery."""
        transport = self._stream
        assert isinstance(transport, TrioTransport)
        return transport.stream, self.session.conn.trailing_data[0]


class _Session:
    """What a running auth-mode session leaves for a CancelRequest to find."""

    __slots__ = ("secret_key", "upstream", "relay")

    def __init__(self, secret_key: int, upstream: _UpstreamSession, relay: "_Relay") -> None:
        self.secret_key = secret_key
        self.upstream = upstream
        self.relay = relay


LearnCapacity = Callable[[Client, str], Awaitable[None]]


class WebSocketEndpoint:
    """The WebSocket endpoint of one ``ProxyServer``: counts, cancel keys, and each session.

    With a ``pool``, every session's upstream connection takes a slot in its limits (per
    user and per server for auth mode, per server for relay mode), as the ``/sql``
    requests' connections do; ``learn_capacity`` reads a server's capacity on first contact.
    """

    def __init__(
        self, config: ProxyConfig, pool: UpstreamPool | None = None, learn_capacity: LearnCapacity | None = None
    ) -> None:
        self.config = config
        self.pool = pool
        self.learn_capacity = learn_capacity
        self.active = 0
        self.stopping = False
        self._sessions: dict[int, _Session] = {}
        self.relay_thread = RelayThread() if config.ws_relay_thread and RelayThread.available() else None
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
        key = check_upgrade(method, headers)
        if self.active >= self.config.ws_max_connections:
            raise RequestError(503, "too many WebSocket connections; try again later")
        self.active += 1
        try:
            if self.config.ws_relay:
                return await self._serve_relay(stream, key, target, received)
            await accept_upgrade(stream, key)
            ws = ServerWebSocket(stream, received)
            try:
                await self._serve_auth(ws, target, headers)
            except WebSocketClosed as exc:
                logger.info("WebSocket session ended: %s", exc)
            finally:
                await ws.close(CLOSE_NORMAL, "")
            await ws.linger()
            return 101
        finally:
            self.active -= 1

    async def serve_tcp(self, stream: trio.abc.Stream, received: bytes) -> None:
        """A Postgres client on the proxy's port over plain TCP: a CancelRequest, or an auth-mode session.

        Relay mode has no use for it (the client can reach the address itself): refused.
        """
        if self.config.ws_relay:
            await send_quietly(
                PlainChannel(stream, b""),
                be.error_response(_fatal("this proxy relays WebSocket connections only", "08004")),
            )
            return
        if self.active >= self.config.ws_max_connections:
            await send_quietly(
                PlainChannel(stream, b""), be.error_response(_fatal("sorry, too many clients already", "53300"))
            )
            return
        self.active += 1
        try:
            channel = PlainChannel(stream, received)
            await self._serve_auth(channel, b"", {})
            await channel.linger()
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
        slot = await self._relay_slot(host, port)
        try:
            return await self._relay_to(stream, key, host, port, received)
        finally:
            if slot is not None and self.pool is not None:
                self.pool.release_slot(slot)

    async def _relay_slot(self, host: str, port: int) -> SessionSlot | None:
        """A place among the server's connections for a relayed stream, or 503."""
        if self.pool is None:
            return None
        server = f"{host}:{port}"  # as the /sql side names it
        if self.config.upstream_max_connections is not None and self.pool.server_capacity(server) is None:
            self.pool.set_server_capacity(server, self.config.upstream_max_connections)
        try:
            return await self.pool.reserve_slot(server, None)
        except SlotRefused:
            logger.info("WebSocket relay to %s refused: its connection limit is reached", server)
            raise RequestError(503, "too many connections to the database server; try again later") from None

    async def _relay_to(self, stream: trio.abc.Stream, key: str, host: str, port: int, received: bytes) -> int:
        address = f"{host}:{port}"
        try:
            with trio.fail_after(self.config.connect_timeout):
                upstream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            logger.info("WebSocket relay could not connect to %s:%d: %s", host, port, exc)
            raise RequestError(502, f"could not connect to {address}") from None
        try:
            await accept_upgrade(stream, key)
            ws = ServerWebSocket(stream, received)
            try:
                relay = _Relay(ws, upstream, self.config.ws_idle_timeout, sees_postgres=False, thread=self.relay_thread)
                why = await relay.run()
                logger.debug("WebSocket relay to %s:%d ended (%s)", host, port, why)
            except WebSocketClosed as exc:
                logger.info("WebSocket relay ended: %s", exc)
            finally:
                await ws.close(CLOSE_NORMAL, "")
                await trio.aclose_forcefully(upstream)
            await ws.linger()
        finally:
            await trio.aclose_forcefully(upstream)
        return 101

    # ------------------------------------------------------------------ auth mode

    async def _serve_auth(self, ws: ClientChannel, target: bytes, headers: Mapping[str, str | None]) -> None:
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
                await send_quietly(ws, conn.send_error(exc.diag))
                return
        if handshake.cancelled_caught:
            logger.info("WebSocket client took too long to start up")
            await send_quietly(
                ws, conn.send_error(_fatal("timed out waiting for the startup message and password", "08006"))
            )
            return
        assert startup is not None and password is not None
        upstream, error = await self._connect_upstream(startup, password, target, headers)
        if upstream is None:
            assert error is not None
            await send_quietly(ws, conn.send_error(error))
            return
        try:
            await self._run_session(ws, conn, upstream)
        finally:
            await self._close_upstream(upstream)

    async def _close_upstream(self, client: _UpstreamSession) -> None:
        try:
            await client.close()
        finally:
            if client.slot is not None and self.pool is not None:
                self.pool.release_slot(client.slot)

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
        if (startup.parameters.get("replication") or "false").lower() not in ("false", "off", "no", "0"):
            return None, _fatal("replication connections are not supported through this proxy", "0A000")
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
        server = f"{params.host}:{params.port}"
        if self.pool is not None:
            if self.config.upstream_max_connections is not None and self.pool.server_capacity(server) is None:
                self.pool.set_server_capacity(server, self.config.upstream_max_connections)
            try:
                client.slot = await self.pool.reserve_slot(server, user)
            except SlotRefused as exc:
                logger.info("WebSocket session for %r refused: %s", user, exc)
                return None, _fatal(str(exc), "53300")
        try:
            await client.connect()
            if self.pool is not None and self.learn_capacity is not None and self.pool.server_capacity(server) is None:
                await self.learn_capacity(client, server)
        except Error as exc:
            await self._close_upstream(client)
            if exc.diag.code:
                logger.info("WebSocket login to endpoint %r as %r refused upstream: %s", endpoint, user, exc)
                return None, exc.diag
            message = str(exc)
            if not isinstance(exc, ConnectionClosed) and any(w in message for w in _LOGIN_WORDS):
                # Refused by the proxy's own side of the login (no password for a server that
                # asks, a SCRAM proof that fails): the client's credentials did not get it in.
                logger.info("WebSocket login to endpoint %r as %r failed: %s", endpoint, user, exc)
                return None, _fatal(message, "28000")
            logger.warning("WebSocket session could not reach the upstream of endpoint %r: %s", endpoint, exc)
            return None, _fatal("could not connect to the database server", "08001")
        except BaseException:
            await self._close_upstream(client)
            raise
        return client, None

    async def _run_session(self, ws: ClientChannel, conn: be.BackendConnection, upstream: _UpstreamSession) -> None:
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
        relay = _Relay(ws, stream, self.config.ws_idle_timeout, sees_postgres=True, thread=self.relay_thread)
        self._sessions[pid] = _Session(secret, upstream, relay)
        try:
            await ws.send(b"".join(greeting) + upstream_extra)
            if self.stopping:
                relay.stop_when_idle()
            if pipelined:
                relay.link.saw_client_bytes(pipelined)
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
        except CLIENT_ERRORS as exc:
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
    """Bytes both ways between a client channel and an upstream stream until one side ends.

    On the endpoint's relay thread while both sides are sockets, plain or TLS, and the
    client's frames allow it (``neon_proxy.relay_thread``), else in two trio tasks. With
    ``sees_postgres`` the stream is Postgres's own in clear: a chunk from the upstream that
    ends in ReadyForQuery (with no client bytes since) means no query is running, which is
    when the idle timeout counts and a departing client needs no cancel.
    """

    def __init__(
        self,
        ws: ClientChannel,
        upstream: trio.abc.Stream,
        idle_timeout: float,
        *,
        sees_postgres: bool,
        thread: RelayThread | None = None,
    ) -> None:
        self.ws = ws
        self.upstream = ByteStream(upstream)
        self.idle_timeout = idle_timeout
        self.link = RelayLink(ws, ws.stream.fd, self.upstream.fd, sees_postgres)
        self.thread = thread
        # Where bytes the thread could not write go: the socket itself, under any TLS.
        self._raw_client: trio.abc.Stream | ByteStream = ws.stream
        self._raw_upstream: trio.abc.Stream | ByteStream = self.upstream
        self._scope = trio.CancelScope()
        self._on_thread = False

    def _thread_can_carry(self) -> bool:
        """Whether both sides are sockets the thread can work, TLS included (taken over here)."""
        link = self.link
        if link.client_fd is None and link.client_tls is None:
            found = thread_tls(self.ws.stream.stream)
            if found is not None:
                link.client_fd, link.client_tls, self._raw_client = found
        if link.upstream_fd is None and link.upstream_tls is None:
            found = thread_tls(self.upstream.stream)
            if found is not None:
                link.upstream_fd, link.upstream_tls, self._raw_upstream = found
        return link.client_fd is not None and link.upstream_fd is not None

    @property
    def upstream_idle(self) -> bool:
        """Whether no query is known to be running."""
        return self.link.upstream_idle

    @property
    def client_said_goodbye(self) -> bool:
        """Whether the client's last bytes were a Terminate message."""
        return self.link.client_tail == _TERMINATE

    @property
    def _quiet(self) -> bool:
        """Whether silence now counts as idleness (no query known to be running)."""
        return self.link.upstream_idle or not self.link.sees_postgres

    def _idle_left(self) -> float:
        """Seconds until the session would have been idle for ``idle_timeout``."""
        return max(0.0, self.link.last_activity + self.idle_timeout - time.monotonic())

    def _idle_over(self) -> bool:
        """Whether the session has been idle for ``idle_timeout``; a running query restarts the count."""
        link = self.link
        if not self._quiet:
            link.last_activity = time.monotonic()  # a query runs: idleness starts after it
            return False
        return time.monotonic() >= link.last_activity + self.idle_timeout

    async def _watch_idle(self) -> None:
        """End the relay once it has been idle for ``idle_timeout`` (wakes about once per period)."""
        while True:
            await trio.sleep(self._idle_left())
            if self._idle_over():
                self._end("idle")
                return

    def stop_when_idle(self) -> None:
        """End with ``shutdown`` now if no query runs, else when the running one is answered."""
        link = self.link
        if self._on_thread and self.thread is not None:
            with self.thread.lock:  # the thread checks the flag as it passes a ReadyForQuery
                link.stop_when_idle = True
                idle = link.upstream_idle
        else:
            link.stop_when_idle = True
            idle = link.upstream_idle
        if idle:
            self._end("shutdown")

    def _end(self, why: str) -> None:
        link = self.link
        if self._on_thread and self.thread is not None:
            if not self.thread.detach(link, why) and link.why in _PASSING:
                link.why = why  # it left the thread for a moment only: this ends it
        elif not link.why:
            link.why = why
        self._scope.cancel()

    async def run(self) -> str:
        """Relay until one side ends; why: ``client``, ``upstream``, ``idle`` or ``shutdown``."""
        link = self.link
        link.last_activity = time.monotonic()
        with self._scope:
            thread = self.thread if self.thread is not None and self._thread_can_carry() else None
            while thread is not None and self.ws.direct:
                why = await self._run_on_thread(thread)
                if why == "blocked":
                    why = await self._flush_unsent()
                if why and why != "frames":
                    link.why = why
                    break
                link.why = ""  # back on the thread after a flush, or on to wsproto in trio
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._client_to_upstream)
                    nursery.start_soon(self._upstream_to_client)
                    nursery.start_soon(self._watch_idle)
        if link.unsent:  # the last bytes of an answer, caught by the shutdown or idle timeout
            with trio.move_on_after(_LAST_WORDS_SECONDS):
                await self._flush_unsent()
        return link.why or "idle"

    async def _run_on_thread(self, thread: RelayThread) -> str:
        """Hand the session to the relay thread until it leaves; keep the idle timeout meanwhile."""
        link = self.link
        left = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def on_end() -> None:
            token.run_sync_soon(left.set)

        thread.attach(link, on_end)
        self._on_thread = True
        try:
            while True:
                with trio.move_on_after(self._idle_left()):
                    await left.wait()
                    return link.why
                if self._idle_over() and thread.detach(link, "idle"):
                    return "idle"
        finally:
            self._on_thread = False
            thread.detach(link, "cancelled")  # cancelled from outside: the thread lets go first

    async def _flush_unsent(self) -> str:
        """Write what the relay thread could not (a full socket buffer); "" once written, else why it ended."""
        link = self.link
        data, to_client = link.unsent, link.unsent_to_client
        link.unsent = b""
        try:
            with trio.move_on_after(self.idle_timeout) as scope:
                await (self._raw_client if to_client else self._raw_upstream).send_all(data)
        except CLIENT_ERRORS:
            return "client" if to_client else "upstream"
        if scope.cancelled_caught:
            return "idle"  # the peer has read nothing for the whole idle timeout
        link.last_activity = time.monotonic()
        if link.stop_when_idle and link.upstream_idle:
            return "shutdown"
        return ""

    async def _client_to_upstream(self) -> None:
        ws, upstream, link = self.ws, self.upstream, self.link
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
            link.saw_client_bytes(data)
            link.last_activity = time.monotonic()
            try:
                await upstream.send_all(data)
            except CLIENT_ERRORS:
                self._end("upstream")
                return

    async def _upstream_to_client(self) -> None:
        ws, upstream, link = self.ws, self.upstream, self.link
        turns = 0
        while True:
            turns += 1
            if not turns & _CHECKPOINT_EVERY:
                await trio.lowlevel.checkpoint()
            data = await upstream.receive()
            if not data:
                self._end("upstream")
                return
            if link.saw_upstream_bytes(data) and link.stop_when_idle:
                try:
                    await ws.send(data)
                except CLIENT_ERRORS:
                    pass
                self._end("shutdown")
                return
            link.last_activity = time.monotonic()
            try:
                await ws.send(data)
            except CLIENT_ERRORS:
                self._end("client")
                return


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
