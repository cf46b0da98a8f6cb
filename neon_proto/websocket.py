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
"""

from __future__ import annotations

import logging
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

__all__ = ["WebSocketTunnel", "WebSocketRejected"]

logger = logging.getLogger("neon_proto.websocket")

_MAX_REJECT_BODY = 4096


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
        ws = self._ws
        try:
            if not data:
                if ws.state is ConnectionState.CONNECTING or self._reject is not None:
                    self._fail(self._handshake_eof_error())
                ws.receive_data(None)
            else:
                ws.receive_data(data)
            for event in ws.events():
                self._handle(event)
        except WSRemoteProtocolError as exc:
            self._fail(RemoteProtocolError(f"bad WebSocket upgrade response from {self.target.url}: {exc}"))
        if not data and not self.eof:
            self.eof = True

    def _handshake_eof_error(self) -> OperationalError:
        if self._reject is not None:
            status, body = self._reject
            return self._rejected(status, bytes(body))
        return OperationalError(f"the WebSocket proxy at {self.target.url} closed the connection during the upgrade")

    def _handle(self, event: Any) -> None:
        cls = type(event)
        if cls is BytesMessage:
            payload = event.data
            if payload:
                self._incoming.append(bytes(payload))
                self._incoming_size += len(payload)
                if self._incoming_size > self.max_buffer:
                    self._fail(LocalProtocolError("more than max_buffer bytes received without read()"))
        elif cls is TextMessage:
            self._close_with(1003, "text frames are not part of this protocol")
            self._fail(RemoteProtocolError("the WebSocket peer sent a text frame; Postgres travels in binary frames"))
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
                self._fail(RemoteProtocolError(f"bad WebSocket frame from the proxy: {event.reason}"))
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

    def _fail(self, error: Exception) -> None:
        self._error = error
        self.eof = True
        raise error

    # ------------------------------------------------------------------ output

    def read(self) -> bytes | None:
        """The Postgres bytes received so far; ``None`` if none yet, ``b""`` once the stream ended."""
        if self._incoming:
            data = self._incoming[0] if len(self._incoming) == 1 else b"".join(self._incoming)
            self._incoming.clear()
            self._incoming_size = 0
            return data
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
