"""The Postgres wire protocol inside a WebSocket, client side, on wsproto; sans-IO.

``WebSocketTunnel`` sits between a byte stream (a TCP or TLS socket to the proxy) and the
Postgres frontend machine: ``start()`` gives the upgrade request, ``receive_data(raw)`` takes
what the socket read, ``read()`` gives the Postgres bytes carried so far, ``send(pg_bytes)`` gives
the frame bytes to write, ``data_to_send()`` what the tunnel itself must answer (pongs, the
close handshake). WebSocket messages and Postgres messages are independent: one WebSocket
message may hold half a Postgres message or ten of them, and each ``send()`` is one message
(the JS driver's ``coalesceWrites``).

A text frame is a protocol error (the Neon proxy treats it as fatal too); pings are answered;
a Close ends the Postgres stream (EOF) after the close handshake is answered.

wsproto runs the WebSocket: the upgrade, pings, the close handshake, fragmented messages
and the verdict on any malformed frame. The frames that carry the Postgres bytes (final
binary frames under 64 KiB, nearly all of them) are read and written by neon_proto.ws_frames
instead of going through wsproto's event machine, which would cost more CPU per query than
the rest of the client; a control frame, or a binary frame of 64 KiB or more, is handed to
wsproto whole and the tunnel carries on, and after any other kind of frame (a fragment, a
text frame, extension bits) every later byte goes to wsproto.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WSLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WSRemoteProtocolError

from neon_proto.errors import LocalProtocolError, OperationalError, RemoteProtocolError
from neon_proto.options import WebSocketTarget
from neon_proto.ws_frames import client_binary_frame, frame_size, take_binary_frames

__all__ = ["WebSocketTunnel", "WebSocketRejected"]

logger = logging.getLogger("neon_proto.websocket")

_MAX_REJECT_BODY = 4096
_MASK_KEYS_PER_DRAW = 128


class WebSocketRejected(OperationalError):
    """The proxy answered the upgrade with an HTTP error (a wrong address, a refused endpoint)."""

    def __init__(self, message: str, status_code: int, body: bytes) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class WebSocketTunnel:
    """A client WebSocket carrying an opaque byte stream (here, Postgres).

    States: ``start()`` -> handshaking -> open (``handshake_complete``) -> closed (``eof``).
    ``max_buffer`` bounds the Postgres bytes held between ``receive_data`` and ``read``: the
    binding reads after every receive, so only a caller that never reads can reach it.
    """

    def __init__(
        self, target: WebSocketTarget, *, extra_headers: list[tuple[bytes, bytes]] | None = None,
        max_buffer: int = 64 * 1024 * 1024,
    ) -> None:  # fmt: skip
        self.target = target
        self.max_buffer = max_buffer
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._extra_headers = list(extra_headers or [])
        self._incoming: list[bytes] = []
        self._incoming_size = 0
        self._outgoing: list[bytes] = []
        self._started = False
        self._head_tail = b""  # the last bytes of the upgrade response read so far
        self._frames = b""  # an incomplete frame, waiting for the rest
        self._fast = True  # False once a frame only wsproto can follow came (a fragment...)
        self._to_wsproto = 0  # bytes still to hand wsproto of the frame it is reading
        self._mask_keys = b""  # random bytes for the masks of frames to come, used once each
        self._error: Exception | None = None
        self._reject: tuple[int, bytearray] | None = None
        self.handshake_complete = False
        self.eof = False
        #: The close code and reason the server sent, if it closed the WebSocket.
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        state = "eof" if self.eof else ("open" if self.handshake_complete else "handshaking")
        return f"<WebSocketTunnel {self.target.url} {state}>"

    @property
    def frames_through_wsproto(self) -> bool:
        """Whether every frame now goes through wsproto (after a fragment, a text frame...)."""
        return not self._fast

    # ------------------------------------------------------------------ handshake

    def start(self) -> bytes:
        """The HTTP upgrade request (no subprotocol, as the JS driver sends)."""
        if self._started:
            raise LocalProtocolError("the WebSocket upgrade was already sent")
        self._started = True
        target = self.target
        default_port = 443 if target.secure else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        if target.port != default_port:
            host = f"{host}:{target.port}"
        return self._ws.send(Request(host=host, target=target.resource, extra_headers=self._extra_headers))

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket (``b""``: the socket closed)."""
        if self._error is not None:
            raise self._error
        if not self._started:
            raise LocalProtocolError("start() the upgrade before receiving data")
        if self.eof:
            if data:
                logger.debug("ignoring %d bytes after the WebSocket closed", len(data))
            return
        try:
            if not data:
                if self._ws.state is ConnectionState.CONNECTING or self._reject is not None:
                    self._fail(self._handshake_eof_error())
                self._frames = b""  # a frame cut short by the end: wsproto reports 1006
                self._wsproto(None)
            elif not self.handshake_complete:
                self._receive_upgrade(data)
            elif self._fast:
                self._receive_frames(data)
            else:
                self._wsproto(data)
        except WSRemoteProtocolError as exc:
            self._fail(RemoteProtocolError(f"bad WebSocket upgrade response from {self.target.url}: {exc}"))
        if not data and not self.eof:
            self.eof = True

    def _wsproto(self, data: bytes | None) -> None:
        ws = self._ws
        ws.receive_data(data)
        for event in ws.events():
            self._handle(event)
            if self._error is not None:
                return

    def _receive_upgrade(self, data: bytes) -> None:
        """Feed wsproto the upgrade response and no further: the frames behind it are ours."""
        probe = self._head_tail + data
        end = probe.find(b"\r\n\r\n")
        if end < 0 or self._reject is not None:
            self._head_tail = probe[-3:]
            self._wsproto(data)
            return
        cut = end + 4 - len(self._head_tail)
        self._wsproto(data[:cut])
        rest = data[cut:]
        if not rest or self.eof:
            return
        if self.handshake_complete:
            self._receive_frames(rest)
        else:  # a refusal's body, or an upgrade wsproto has yet to finish: all of it is wsproto's
            self._fast = False
            self._wsproto(rest)

    def _receive_frames(self, data: bytes) -> None:
        """Whole binary frames straight to the Postgres bytes; every other frame to wsproto."""
        buf = self._frames + data if self._frames else data
        self._frames = b""
        while buf:
            if self._to_wsproto:
                n = min(self._to_wsproto, len(buf))
                self._to_wsproto -= n
                self._wsproto(buf[:n])
                buf = buf[n:]
                if self.eof:
                    return
                continue
            payloads, used, other = take_binary_frames(buf, masked=False)
            if payloads:
                for payload in payloads:
                    self._deliver(payload)
                buf = buf[used:]
            if not other:
                break
            first = buf[0]
            if first & 0xF0 == 0x80 and first & 0x0F in (0x2, 0x8, 0x9, 0xA):
                # A final frame wsproto reads whole (a ping, a close, a long binary frame): hand
                # it over and carry on after it; wsproto holds nothing once it has read it.
                size = frame_size(buf)
                if size is None:
                    break
                self._to_wsproto = size
                continue
            # A fragment, a text frame, extension bits: wsproto from here on.
            self._fast = False
            self._wsproto(buf)
            return
        self._frames = buf

    def _handshake_eof_error(self) -> OperationalError:
        if self._reject is not None:
            status, body = self._reject
            return self._rejected(status, bytes(body))
        return OperationalError(f"the WebSocket proxy at {self.target.url} closed the connection during the upgrade")

    def _handle(self, event: Any) -> None:
        cls = type(event)
        if cls is BytesMessage:
            self._deliver(bytes(event.data))
        elif cls is TextMessage:
            self._close_with(1003, "text frames are not part of this protocol")
            self._fail(
                RemoteProtocolError("the WebSocket peer sent a text frame; Postgres travels in binary frames"),
                after_data=True,
            )
        elif cls is Ping:
            self._outgoing.append(self._ws.send(event.response()))
        elif cls is CloseConnection:
            self.close_code = event.code
            self.close_reason = event.reason
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                self._outgoing.append(self._ws.send(event.response()))
            elif self._ws.state is ConnectionState.OPEN:
                # wsproto reports a bad frame as a Close it made up: answer it, then fail.
                self._close_with(1002, "protocol error")
                self._fail(RemoteProtocolError(f"bad WebSocket frame from the proxy: {event.reason}"), after_data=True)
            self.eof = True
        elif cls is AcceptConnection:
            self.handshake_complete = True
        elif cls is RejectConnection:
            self._reject = (event.status_code, bytearray())
            if not event.has_body:
                self._fail(self._rejected(event.status_code, b""))
        elif cls is RejectData:
            assert self._reject is not None
            status, body = self._reject
            body += event.data[: max(0, _MAX_REJECT_BODY - len(body))]
            if event.body_finished:
                self._fail(self._rejected(status, bytes(body)))
        # Pong: nothing to do (we send no pings).

    def _deliver(self, payload: bytes) -> None:
        """Keep Postgres bytes for ``read()``, within ``max_buffer``."""
        if payload:
            self._incoming.append(payload)
            self._incoming_size += len(payload)
            if self._incoming_size > self.max_buffer:
                self._fail(LocalProtocolError("more than max_buffer bytes received without read()"))

    def _rejected(self, status: int, body: bytes) -> WebSocketRejected:
        text = body.decode("utf-8", "replace").strip()
        detail = f": {text}" if text else ""
        return WebSocketRejected(
            f"the WebSocket proxy at {self.target.url} refused the upgrade with HTTP {status}{detail}", status, body
        )

    def _close_with(self, code: int, reason: str) -> None:
        try:
            self._outgoing.append(self._ws.send(CloseConnection(code=code, reason=reason)))
        except WSLocalProtocolError:
            pass

    def _fail(self, error: Exception, *, after_data: bool = False) -> None:
        """End the tunnel with ``error``: raised now, or, ``after_data``, once the Postgres
        bytes that came before the fault have been read (they may say why the proxy failed)."""
        self._error = error
        self.eof = True
        if not (after_data and self._incoming):
            raise error

    # ------------------------------------------------------------------ output

    def read(self) -> bytes | None:
        """The Postgres bytes received so far; ``None`` if none yet, ``b""`` once the stream ended."""
        if self._incoming:
            data = self._incoming[0] if len(self._incoming) == 1 else b"".join(self._incoming)
            self._incoming.clear()
            self._incoming_size = 0
            return data
        if self._error is not None:
            raise self._error
        return b"" if self.eof else None

    def data_to_send(self) -> bytes:
        """Frames the tunnel owes the peer (pongs, the close handshake); send them."""
        if not self._outgoing:
            return b""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return data

    def send(self, data: bytes | bytearray | memoryview) -> bytes:
        """One binary WebSocket message carrying ``data``: the bytes to write to the socket."""
        if self._error is not None:
            raise self._error
        if not self.handshake_complete:
            raise LocalProtocolError("the WebSocket is not open yet")
        if self._ws.state is ConnectionState.OPEN:
            keys = self._mask_keys
            if not keys:
                # RFC 6455 5.3: a fresh key from a strong source for every frame; one draw of
                # os.urandom serves the next 128 frames instead of a system call per frame.
                keys = os.urandom(_MASK_KEYS_PER_DRAW * 4)
            self._mask_keys = keys[4:]
            return client_binary_frame(data, keys[:4])
        try:
            return self._ws.send(Message(data=bytes(data)))
        except WSLocalProtocolError as exc:
            raise OperationalError(f"the WebSocket is closed: {exc}") from None

    def close(self, code: int = 1000) -> bytes:
        """Start the close handshake (or answer the peer's): the bytes to write before closing."""
        pending = self.data_to_send()
        try:
            if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                pending += self._ws.send(CloseConnection(code=code))
        except WSLocalProtocolError:
            pass
        self.eof = True
        return pending
