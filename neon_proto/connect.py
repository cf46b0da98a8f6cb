"""The whole connect sequence as one sans-IO plan that every binding drives.

``connect_plan`` is a generator of instructions: ``OpenStream`` (TCP or a Unix socket),
``StartTLS`` (wrap the socket in TLS; the binding sends back the server certificate),
``SendBytes``, ``ReceiveBytes`` (the binding sends back what it read, ``b""`` at EOF) and
``CloseStream`` (before another attempt). A binding performs each one and, when an
instruction fails, throws the error into the plan (``plan.throw(exc)``) so the plan can
retry or explain. The plan returns a ``Connected``: the started ``Session`` and the ``Link``
(WebSocket, TLS inside it) the Postgres bytes travel through from now on, if any.

Everything protocol-shaped happens here, once: sslmode and SSLRequest, sslnegotiation=direct,
channel_binding, the WebSocket upgrade, TLS inside the tunnel (``pipeline_tls`` too), the
choice of pipelining (``pipeline_connect``, what the server asked last time, whether a
cleartext password may travel), and the retries (sslmode=allow; a server that asked for
another authentication than the pipelined flight assumed).
"""

from __future__ import annotations

import logging
from ssl import SSLCertVerificationError, SSLContext
from typing import Any, Callable, Generator, Hashable, TypeVar, Union

import attrs

from neon_proto.auth import AuthMethodMemory, ScramKeyCache, auth_method_memory, scram_key_cache
from neon_proto.conninfo import ConnectionParams
from neon_proto.errors import ConnectionClosed, OperationalError
from neon_proto.messages import SSL_REQUEST, cancel_request
from neon_proto.options import ConnectOptions, TransportOptions, WebSocketTarget, is_loopback_host
from neon_proto.session import Op, Session
from neon_proto.startup import AuthPipelineMismatch, StartupPipeline
from neon_proto.tls import TLSTunnel, make_ssl_context
from neon_proto.websocket import WebSocketTunnel

__all__ = [
    "OpenStream",
    "StartTLS",
    "SendBytes",
    "ReceiveBytes",
    "CloseStream",
    "ConnectStep",
    "Connected",
    "Link",
    "connect_plan",
    "cancel_plan",
    "choose_pipeline",
]

logger = logging.getLogger("neon_proto.connect")

T = TypeVar("T")


@attrs.frozen
class OpenStream:
    """Open a TCP connection (or a Unix socket when ``host`` starts with ``/``)."""

    host: str
    port: int


@attrs.frozen
class StartTLS:
    """Wrap the stream in TLS; send back the server certificate (DER) or None."""

    context: SSLContext
    server_hostname: str | None


@attrs.frozen
class SendBytes:
    """Write every byte."""

    data: bytes


@attrs.frozen
class ReceiveBytes:
    """Read what is available (at least one byte, or ``b""`` at EOF) and send it back."""


@attrs.frozen
class CloseStream:
    """Close the stream: the attempt is over (another may follow)."""


ConnectStep = Union[OpenStream, StartTLS, SendBytes, ReceiveBytes, CloseStream]
Plan = Generator[ConnectStep, Any, T]


class Link:
    """What sits between the socket and Postgres: a WebSocket, and maybe TLS inside it.

    ``send(pg)`` gives the bytes to write; ``receive_data(raw)`` takes what was read, then
    ``read()`` gives Postgres bytes (None: nothing yet, ``b""``: the stream ended) and
    ``data_to_send()`` what the link owes the peer (pongs, the close handshake).
    """

    def __init__(self, websocket: WebSocketTunnel) -> None:
        self.websocket = websocket
        self.tls: TLSTunnel | None = None

    def __repr__(self) -> str:
        return f"<Link {self.websocket!r}{' + TLS' if self.tls else ''}>"

    @property
    def secure(self) -> bool:
        """Whether Postgres bytes are encrypted on the way (wss or TLS inside the tunnel)."""
        return self.websocket.target.secure or self.tls is not None

    def send(self, data: bytes) -> bytes:
        """The bytes to write for these Postgres bytes (one WebSocket message)."""
        if self.tls is not None:
            data = self.tls.send(data)
        return self.websocket.send(data)

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the socket (``b""`` at EOF)."""
        self.websocket.receive_data(data)

    def read(self) -> bytes | None:
        """Postgres bytes received so far: None if none, ``b""`` once the stream ended."""
        data = self.websocket.read()
        tls = self.tls
        if tls is None or data is None:
            return data
        tls.receive_data(data)
        plain = tls.read()
        if plain:
            return plain
        return b"" if not data else None

    def data_to_send(self) -> bytes:
        """Frames the link must send on its own (pongs, the close handshake)."""
        return self.websocket.data_to_send()

    def close(self) -> bytes:
        """The bytes of a polite goodbye (the WebSocket close frame)."""
        return self.websocket.close()


def _receive(link: Link | None) -> Plan[bytes]:
    """The next Postgres bytes (``b""`` at EOF), reading the stream as needed."""
    if link is None:
        data: bytes = yield ReceiveBytes()
        return data
    while True:
        got = link.read()
        if got is not None:
            return got
        raw: bytes = yield ReceiveBytes()
        link.receive_data(raw)
        owed = link.data_to_send()
        if owed:
            yield SendBytes(owed)


def _drive(op: Op[T], link: Link | None) -> Plan[T]:
    """Run a session operation over the link: its bytes out, the link's bytes in."""
    data: bytes | None = None
    while True:
        try:
            out = op.send(data)
        except StopIteration as stop:
            result: T = stop.value
            return result
        if out is None:
            data = yield from _receive(link)
        else:
            if out:
                yield SendBytes(link.send(out) if link is not None else out)
            data = None


def _drive_holding_last(op: Op[T], link: Link) -> Plan[tuple[T, bytes]]:
    """``_drive``, except that what the operation sends last is returned instead of sent: the
    binding sends it with the next operation's first bytes, as one WebSocket message."""
    data: bytes | None = None
    held = b""
    while True:
        try:
            out = op.send(data)
        except StopIteration as stop:
            return stop.value, held
        if out is None:
            if held:
                yield SendBytes(link.send(held))
                held = b""
            data = yield from _receive(link)
        else:
            held += out
            data = None


def _open_websocket(target: WebSocketTarget, params: ConnectionParams) -> Plan[Link]:
    """TCP to the proxy, TLS for wss, the upgrade: a link ready for Postgres bytes."""
    yield OpenStream(target.host, target.port)
    if target.secure:
        yield StartTLS(_websocket_tls_context(params), target.host)
    tunnel = WebSocketTunnel(target)
    yield SendBytes(tunnel.start())
    while not tunnel.handshake_complete:
        raw: bytes = yield ReceiveBytes()
        tunnel.receive_data(raw)
        if not tunnel.handshake_complete and tunnel.eof:
            raise ConnectionClosed(f"the WebSocket proxy at {target.url} closed the connection during the upgrade")
    logger.debug("WebSocket open to %s", target.url)
    return Link(tunnel)


def _websocket_tls_context(params: ConnectionParams) -> SSLContext:
    """wss checks the proxy's certificate like a browser does (sslrootcert as the CA if given)."""
    return make_ssl_context(params.with_(sslmode="verify-full", sslnegotiation="postgres"))


def _tls_in_tunnel(session: Session, link: Link, params: ConnectionParams, pipeline_tls: bool) -> Plan[bool]:
    """SSLRequest inside the WebSocket, then TLS over it (for relays that pass Postgres TLS through)."""
    mode = params.sslmode
    tunnel = TLSTunnel(make_ssl_context(params), None if params.host.startswith("/") else params.host)
    if pipeline_tls:
        # Assume 'S': send SSLRequest and the ClientHello in one message.
        hello, _ = tunnel.handshake()
        yield SendBytes(link.send(SSL_REQUEST + hello))
        first = yield from _receive(link)
        if not first:
            raise ConnectionClosed("the server closed the connection after SSLRequest")
        if first[:1] != b"S":
            raise OperationalError(
                f"pipeline_tls: the server answered SSLRequest with {first[:1]!r}, not 'S' (it does not do TLS here;"
                " a Neon proxy never does over WebSocket: use force_disable_pg_ssl=True)"
            )
        rest = first[1:]
        if rest:
            tunnel.receive_data(rest)
    else:
        accepted = yield from _drive(session.request_tls(), link)
        if not accepted:
            if mode in ("require", "verify-ca", "verify-full"):
                raise OperationalError(f"the server does not support TLS, but sslmode={mode} requires it")
            return False
    while True:
        out, done = tunnel.handshake()
        if out:
            yield SendBytes(link.send(out))
        if done:
            break
        data = yield from _receive(link)
        if not data:
            hint = (
                " (pipeline_tls: PostgreSQL refuses a ClientHello sent before its 'S', as a guard against"
                " injected plaintext; use pipeline_tls=False)"
                if pipeline_tls
                else ""
            )
            raise ConnectionClosed(f"the server closed the connection during the TLS handshake{hint}")
        tunnel.receive_data(data)
    link.tls = tunnel
    return True


_logged_reasons: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _logged_reasons:
        _logged_reasons.add(message)
        logger.info("%s", message)


def choose_pipeline(
    transport: TransportOptions,
    params: ConnectionParams,
    *,
    learned: str | None,
    encrypted: bool,
    loopback: bool,
) -> StartupPipeline:
    """The pipelining for this attempt: the configured one, adjusted to what the server asked
    last time (``learned``) and to whether a cleartext password may travel (encrypted or loopback)."""
    if transport.pipeline_connect is False or params.sslmode == "allow" or params.channel_binding == "require":
        return False
    if params.password is None:
        return "startup"
    mode = transport.pipeline_for(has_password=True)
    if learned == "trust":
        return "startup"
    if learned == "md5":
        return False  # the salt comes from the server: nothing to pipeline
    if learned == "scram":
        mode = "scram"
    elif learned == "cleartext":
        mode = "password"
    if mode == "password" and not (encrypted or loopback):
        _log_once(
            f"pipeline_connect='password': not sending the password before the server asks, since the"
            f" connection to {params.host} is neither encrypted nor to this machine"
        )
        return False
    return mode


def connect_plan(
    options: ConnectOptions,
    new_session: Callable[[], Session],
    *,
    scram_keys: ScramKeyCache | None = scram_key_cache,
    methods: AuthMethodMemory | None = auth_method_memory,
) -> Plan[Connected]:
    """Open, secure, upgrade and start a connection; see the module docstring."""
    params = options.params
    transport = options.transport
    tls_first = params.sslmode != "allow"
    attempts = 0
    while True:
        attempts += 1
        session = new_session()
        try:
            connected = yield from _attempt(params, transport, session, tls_first, scram_keys, methods)
            return connected
        except AuthPipelineMismatch:
            yield CloseStream()
            if attempts >= 3:
                raise
        except OperationalError as exc:
            yield CloseStream()
            if params.sslmode == "allow" and not tls_first and _retry_allow(exc):
                tls_first = True
                continue
            raise
        except Exception:
            yield CloseStream()
            raise


def _retry_allow(exc: OperationalError) -> bool:
    return exc.sqlstate in ("28000", "28P01") or isinstance(exc, ConnectionClosed)


@attrs.define
class Connected:
    """A started connection: its session and the link its bytes travel through (None: plain stream)."""

    session: Session
    link: Link | None
    pipeline: StartupPipeline
    #: The last flight of a pipelined WebSocket connect, not sent yet: it leaves with the first
    #: query, in one WebSocket message (the JS driver's coalesceWrites). Postgres bytes.
    unsent: bytes = b""


def _attempt(
    params: ConnectionParams,
    transport: TransportOptions,
    session: Session,
    tls_first: bool,
    scram_keys: ScramKeyCache | None,
    methods: AuthMethodMemory | None,
) -> Plan[Connected]:
    link: Link | None = None
    certificate: bytes | None = None
    encrypted = False
    if transport.transport == "websocket":
        target = transport.websocket_target(params.host, params.port)
        link = yield from _open_websocket(target, params)
        server: Hashable = ("websocket", target.url, params.host, params.port)
        loopback = is_loopback_host(target.host)
        if not transport.force_disable_pg_ssl and params.sslmode != "disable":
            yield from _tls_in_tunnel(session, link, params, transport.pipeline_tls)
            if link.tls is not None:
                certificate = link.tls.server_certificate
        encrypted = link.secure
        if params.channel_binding == "require" and link.tls is None:
            raise OperationalError("channel_binding=require needs TLS to Postgres (force_disable_pg_ssl=False)")
    else:
        server = ("tcp", params.host, params.port)
        loopback = is_loopback_host(params.host)
        yield OpenStream(params.host, params.port)
        unix = params.host.startswith("/")
        mode = params.sslmode
        hostname = None if unix else params.host
        if not unix and params.sslnegotiation == "direct":
            try:
                certificate = yield StartTLS(make_ssl_context(params), hostname)
            except OperationalError as exc:
                if isinstance(exc.__cause__, SSLCertVerificationError):
                    raise
                raise OperationalError(
                    f"{exc} (sslnegotiation=direct needs a server that accepts TLS at once: "
                    "PostgreSQL 17 or later, or a proxy that does)"
                ) from exc
            encrypted = True
        elif not unix and tls_first and mode != "disable":
            accepted = yield from _drive(session.request_tls(), None)
            if accepted:
                certificate = yield StartTLS(make_ssl_context(params), hostname)
                encrypted = True
            elif mode in ("require", "verify-ca", "verify-full"):
                raise OperationalError(f"the server does not support TLS, but sslmode={mode} requires it")
        if params.channel_binding == "require" and not encrypted:
            raise OperationalError("channel_binding=require needs a TLS connection")
    learned = methods.get(server, params.user or "") if methods is not None else None
    pipeline = choose_pipeline(transport, params, learned=learned, encrypted=encrypted, loopback=loopback)
    startup = session.startup(
        params.startup_parameters(),
        params.password,
        channel_binding=params.channel_binding,
        server_certificate=certificate,
        pipeline=pipeline,
        server=server,
        scram_keys=scram_keys,
        methods=methods,
    )
    if link is not None and pipeline is not False and transport.coalesce_writes:
        _, unsent = yield from _drive_holding_last(startup, link)
        return Connected(session, link, pipeline, unsent)
    yield from _drive(startup, link)
    return Connected(session, link, pipeline)


def cancel_plan(options: ConnectOptions, process_id: int, secret_key: int) -> Plan[None]:
    """Send a CancelRequest on a new connection (a new WebSocket over WebSocket) and wait for the close."""
    params = options.params
    transport = options.transport
    request = cancel_request(process_id, secret_key)
    try:
        if transport.transport == "websocket":
            link = yield from _open_websocket(transport.websocket_target(params.host, params.port), params)
            yield SendBytes(link.send(request))
            while (yield from _receive(link)):
                pass
        else:
            yield OpenStream(params.host, params.port)
            yield SendBytes(request)
            yield ReceiveBytes()  # the server closes the connection when it has processed the request
    except ConnectionClosed:
        pass
    yield CloseStream()
