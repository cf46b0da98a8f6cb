"""The client's side of a proxied Postgres session: a server-side WebSocket, or plain TCP.

``ServerWebSocket`` turns an upgraded connection into a byte stream (binary messages in and
out; message boundaries mean nothing), answering pings and refusing text frames;
``PlainChannel`` is the same interface over plain TCP. ``check_upgrade`` and
``accept_upgrade`` are the HTTP side of the handshake. The sessions that use them are in
``neon_proxy.websocket``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
from typing import Mapping, Protocol

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from neon_proto.ws_frames import frame_size, server_binary_frame, take_binary_frames
from neon_proxy.relay_thread import TLSRecords
from neon_proxy.request import RequestError
from neon_trio._io import direct_fd

__all__ = [
    "ByteStream",
    "ServerWebSocket",
    "PlainChannel",
    "ClientChannel",
    "WebSocketClosed",
    "accept_token",
    "thread_tls",
    "check_upgrade",
    "accept_upgrade",
    "send_quietly",
    "CLIENT_ERRORS",
    "CLOSE_NORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_UNSUPPORTED_DATA",
]

logger = logging.getLogger("neon_proxy")

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECEIVE_SIZE = 65536
CLIENT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_LINGER_SECONDS = 1.0  # how long a closing connection waits for the client's own close
_LINGER_BYTES = 1024 * 1024

_PING_OR_PONG = (0x89, 0x8A)  # first bytes of final ping and pong frames

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003



async def half_close(stream: trio.abc.Stream) -> bool:
    """End our side of a plain TCP connection (TLS has no half-close); False if the peer is gone."""
    if isinstance(stream, trio.SocketStream):
        try:
            await stream.send_eof()
        except CLIENT_ERRORS:
            return False
    return True


async def drain_before_close(stream: trio.abc.Stream, *, budget: int = _LINGER_BYTES) -> None:
    """Half-close, then read and drop what the peer still sends until its EOF, for at most
    ``_LINGER_SECONDS`` and ``budget`` bytes. Closing a socket with unread bytes in it resets
    the connection, and the reset can destroy our last answer before the client has read it."""
    if not await half_close(stream):
        return
    with trio.move_on_after(_LINGER_SECONDS):
        try:
            while budget > 0:
                data = await stream.receive_some(65536)
                if not data:
                    return
                budget -= len(data)
        except CLIENT_ERRORS:
            pass


def thread_tls(stream: trio.abc.Stream) -> tuple[int, TLSRecords, trio.abc.Stream] | None:
    """For a trio.SSLStream over a plain socket, past its handshake and with nothing in flight:
    the socket's descriptor, the stream's record layer (for the relay thread) and the stream
    under the TLS; else None.

    trio keeps the record layer private (its ``SSLObject`` and two ``MemoryBIO``); a trio that
    no longer has them leaves such sessions to trio's own path.
    """
    if not isinstance(stream, trio.SSLStream):
        return None
    fd = direct_fd(stream.transport_stream)
    ssl_object = getattr(stream, "_ssl_object", None)
    incoming = getattr(stream, "_incoming", None)
    outgoing = getattr(stream, "_outgoing", None)
    handshook = getattr(stream, "_handshook", None)
    if (
        fd is None
        or not isinstance(ssl_object, ssl.SSLObject)
        or not isinstance(incoming, ssl.MemoryBIO)
        or not isinstance(outgoing, ssl.MemoryBIO)
        or not getattr(handshook, "done", False)
        or getattr(stream, "_delayed_outgoing", None) is not None  # session tickets not yet sent
        or outgoing.pending
    ):
        return None
    return fd, TLSRecords(ssl_object, incoming, outgoing), stream.transport_stream


class ByteStream:
    """A trio stream read and written with ``os.read``/``os.write`` while the kernel has room.

    As the HTTP side does: on a plain socket, bytes that can move at once skip trio's extra
    scheduler pass; only an empty or full buffer waits through trio. Sends are serialized.
    """

    __slots__ = ("stream", "fd", "_lock", "_drained")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.fd = direct_fd(stream)
        """The socket's descriptor when bytes can move without trio (a plain socket), else None."""
        self._lock = trio.Lock()
        self._drained = False

    async def receive(self) -> bytes:
        """Bytes from the peer; b"" at EOF (or when the connection broke).

        A read that came back short emptied the socket: the next one waits first rather than
        paying a read that would only say EAGAIN (request and answer alternate on a relay).
        """
        fd = self.fd
        try:
            if fd is None:
                return bytes(await self.stream.receive_some(RECEIVE_SIZE))
            if self._drained:
                await trio.lowlevel.wait_readable(fd)
            while True:
                try:
                    data = os.read(fd, RECEIVE_SIZE)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(fd)
                    continue
                self._drained = len(data) < RECEIVE_SIZE
                return data
        except CLIENT_ERRORS:
            return b""

    async def send_all(self, data: bytes | memoryview) -> None:
        """Write everything (trio.BrokenResourceError if the peer is gone)."""
        fd = self.fd
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
        self.stream = ByteStream(stream)
        self._ws = Connection(ConnectionType.SERVER)
        self._peer_closed = False
        self.sent_close = False
        # The hot path: whole, masked, final binary frames (what clients send) are unmasked
        # here, and pings and pongs go through wsproto one by one; the first frame of any
        # other kind hands this and every later byte to wsproto.
        self._fast = True
        self._pending = received
        self._owed = b""  # pongs to send

    @property
    def direct(self) -> bool:
        """Whether frames are still unmasked here (False once wsproto reads every byte)."""
        return self._fast

    def unwrap(self, data: bytes) -> bytes:
        """The payload of the whole binary frames in what was read so far plus ``data``.

        Keeps an incomplete frame for the next call; answers pings (``take_owed``); on any
        other kind of frame hands it and the rest to wsproto (``direct`` turns False and
        ``receive`` takes over).
        """
        self._pending = self._pending + data if self._pending else data
        return self._take_fast_frames()

    def take_owed(self) -> bytes:
        """Frames owed to the client since the last call (pongs); the caller sends them."""
        owed, self._owed = self._owed, b""
        return owed

    def wrap(self, payload: bytes) -> bytes:
        """``payload`` as one binary message on the wire."""
        return server_binary_frame(payload)

    def _take_fast_frames(self) -> bytes:
        """The payload of the complete binary frames at the front of ``_pending`` (b"" if none).

        Leaves an incomplete one in ``_pending``; on anything else (another opcode, a fragment,
        a large or unusual frame) gives up the fast path and passes what is left to wsproto.
        """
        buf = self._pending
        chunks: list[bytes] = []
        while True:
            payloads, used, other = take_binary_frames(buf, masked=True)
            chunks += payloads
            buf = buf[used:]
            if not other:
                break  # an incomplete frame (under 64 KiB), or nothing: wait for more
            if buf[0] in _PING_OR_PONG and len(buf) > 1 and buf[1] & 0x80 and buf[1] & 0x7F <= 125:
                size = frame_size(buf)
                if size is None or size > len(buf):
                    break  # the rest of the ping is on its way
                self._ws.receive_data(buf[:size])  # a whole, valid control frame: one Ping or Pong
                buf = buf[size:]
                for event in self._ws.events():
                    if isinstance(event, Ping):
                        self._owed += self._ws.send(event.response())
                continue
            self._fast = False
            self._ws.receive_data(buf)
            buf = b""
            break
        self._pending = buf
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @property
    def open(self) -> bool:
        """Whether messages can still be sent."""
        return self._ws.state is ConnectionState.OPEN and not self.sent_close

    async def _write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> bytes:
        """The next payload bytes; b"" when the client has closed (or the connection dropped)."""
        while self._fast:
            if self._pending:
                data = self._take_fast_frames()
                if self._owed:
                    await self._write(self.take_owed())
                if data:
                    return data
                if not self._fast:
                    break
            received = await self.stream.receive()
            if not received:
                self._fast = False
                self._pending = b""
                self._ws.receive_data(None)
                break
            self._pending = self._pending + received if self._pending else received
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
        if self._ws.state is not ConnectionState.OPEN or self.sent_close:
            raise trio.ClosedResourceError("the WebSocket is closing")
        await self.stream.send_all(self.wrap(data))

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
            except (*CLIENT_ERRORS, trio.BusyResourceError):
                pass
            except Exception:  # wsproto refused (state changed meanwhile)
                pass

    async def linger(self) -> None:
        """After our close: discard what the client still sends until its Close (or EOF), briefly.

        Closing a socket with unread bytes in it resets the connection, and a reset can make
        the client lose our last message (an ErrorResponse behind its pipelined query).
        """
        if self._peer_closed:
            return
        # Our Close went out: end our side of the TCP connection too (the server closes
        # first, RFC 6455 7.1.1), so a client that answers our Close sees the end at once
        # instead of waiting for the reply's round trip (the JS driver's end() does).
        if not await half_close(self.stream.stream):
            return
        budget = _LINGER_BYTES
        with trio.move_on_after(_LINGER_SECONDS):
            while budget > 0 and self._ws.state is not ConnectionState.CLOSED:
                data = await self.stream.receive()
                if not data:
                    return
                budget -= len(data)
                try:
                    self._ws.receive_data(data)
                    for _event in self._ws.events():
                        pass
                except Exception:  # wsproto refused more input: the close is done either way
                    return


class ClientChannel(Protocol):
    """The client's byte stream: a WebSocket's binary payload, or a plain TCP connection.

    ``direct``, ``unwrap`` and ``wrap`` let the relay thread move the stream's bytes itself
    (``neon_proxy.relay_thread.DirectChannel``); ``receive`` and ``send`` are trio's way.
    """

    stream: ByteStream

    @property
    def direct(self) -> bool:
        """Whether bytes may still be moved without trio."""
        ...

    def unwrap(self, data: bytes) -> bytes:
        """The payload in bytes read from the client."""
        ...

    def wrap(self, payload: bytes) -> bytes:
        """The bytes to write to the client to deliver ``payload``."""
        ...

    def take_owed(self) -> bytes:
        """Frames owed to the client (pongs), for the relay thread to send."""
        ...

    async def receive(self) -> bytes:
        """The next bytes from the client; b"" once it is gone."""
        ...

    async def send(self, data: bytes) -> None:
        """Send bytes to the client (one WebSocket message)."""
        ...

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Say goodbye where the transport has a way to (a WebSocket Close)."""
        ...

    async def linger(self) -> None:
        """Read what the client still sends, briefly, so that closing is not a reset."""
        ...


class PlainChannel:
    """A client speaking Postgres over plain TCP to the proxy's port (its first byte is NUL, never HTTP)."""

    def __init__(self, stream: trio.abc.Stream, received: bytes) -> None:
        self.stream = ByteStream(stream)
        self._pending = received

    @property
    def direct(self) -> bool:
        """Always: the client's bytes are the Postgres stream itself."""
        return True

    def unwrap(self, data: bytes) -> bytes:
        """``data`` itself (nothing to unwrap)."""
        return data

    def wrap(self, payload: bytes) -> bytes:
        """``payload`` itself."""
        return payload

    def take_owed(self) -> bytes:
        """Nothing: plain TCP has no frames of its own."""
        return b""

    async def receive(self) -> bytes:
        """The next bytes from the client (first those read before the session began); b"" at EOF."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        return await self.stream.receive()

    async def send(self, data: bytes) -> None:
        """Write everything to the client."""
        await self.stream.send_all(data)

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Nothing to say: the server closes the stream."""

    async def linger(self) -> None:
        """Half-close, then discard what the client still sends until its EOF, briefly (see ServerWebSocket)."""
        stream = self.stream.stream
        if isinstance(stream, trio.SocketStream):
            await drain_before_close(stream)


def accept_token(key: str) -> str:
    """The Sec-WebSocket-Accept value for a Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _ACCEPT_GUID).digest()).decode("ascii")


def check_upgrade(method: bytes, headers: Mapping[str, str | None]) -> str:
    """The client's Sec-WebSocket-Key; RequestError for an upgrade we cannot accept."""
    if method != b"GET":
        raise RequestError(400, "a WebSocket upgrade must be a GET request")
    connection = [t.strip() for t in (headers.get("connection") or "").lower().split(",")]
    if "upgrade" not in connection:
        raise RequestError(400, "a WebSocket upgrade needs `Connection: Upgrade`")
    version = headers.get("sec-websocket-version")
    if version != "13":
        # RFC 6455 4.4: the refusal names the versions the server speaks.
        raise RequestError(
            426, "unsupported WebSocket version: only 13 is supported", headers=((b"sec-websocket-version", b"13"),)
        )
    key = headers.get("sec-websocket-key") or ""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except (binascii.Error, ValueError):
        raise RequestError(400, "invalid Sec-WebSocket-Key") from None
    return key


async def accept_upgrade(stream: trio.abc.Stream, key: str) -> None:
    """The 101 response that turns the connection into a WebSocket (no subprotocol, no extension)."""
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + accept_token(key).encode("ascii") + b"\r\n\r\n"
    )
    await stream.send_all(response)


async def send_quietly(ws: ClientChannel, data: bytes) -> None:
    """Send a last message to a client that may already be gone."""
    try:
        await ws.send(data)
    except (*CLIENT_ERRORS, trio.BusyResourceError):
        pass
