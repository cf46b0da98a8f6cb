"""A blocking WebSocket client for tests: wsproto framing plus neon_proto's frontend machine.

Byte-level on purpose: tests send exactly the frames and Postgres messages they mean to,
including broken ones, and read what the proxy answers.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from neon_proto.session import Op, Session


class Rejected(Exception):
    """The proxy answered the upgrade with an HTTP error."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status} {body!r}")
        self.status = status
        self.body = body


class WsClient:
    """One WebSocket to the proxy; ``send`` writes a binary message, ``receive`` returns payload bytes."""

    def __init__(
        self,
        port: int,
        target: str = "/v2?address=localhost:5432",
        *,
        host: str = "localhost",
        timeout: float = 20.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = tls.wrap_socket(sock, server_hostname=host) if tls is not None else sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.pongs: list[bytes] = []
        self._want_pong = False
        self._pending: list[bytes] = []
        self.sock.sendall(self.ws.send(Request(host=host, target=target)))
        status: int | None = None
        body = b""
        while True:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise Rejected(status, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        assert status is not None
                        raise Rejected(status, body)
                elif isinstance(event, Message):
                    self._pending.append(bytes(event.data) if isinstance(event, BytesMessage) else event.data.encode())
            if not data:
                raise Rejected(status or 0, body)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def send_fragments(self, *parts: bytes) -> None:
        """One binary message in several frames (a fragmented message)."""
        frames = b"".join(
            self.ws.send(BytesMessage(data=part, message_finished=i == len(parts) - 1)) for i, part in enumerate(parts)
        )
        self.sock.sendall(frames)

    def ping(self, payload: bytes) -> bytes:
        """Send a ping and return the pong's payload."""
        self.sock.sendall(self.ws.send(Ping(payload=payload)))
        self._want_pong = True
        try:
            while not self.pongs:
                if self.receive() == b"" and self.close_code is not None:
                    raise AssertionError("closed before the pong")
        finally:
            self._want_pong = False
        return self.pongs.pop(0)

    def send_text(self, text: str) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=text)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> bytes:
        """Payload bytes (b"" once the proxy closed; ``close_code`` says how)."""
        while True:
            while self._pending:
                data = self._pending.pop(0)
                if data:
                    return data
            if self.pongs and self._want_pong:
                return b""
            if self.close_code is not None:
                return b""
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                if self.close_code is None:
                    self.close_code = 1006
                return b""
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    self._pending.append(bytes(event.data))
                elif isinstance(event, TextMessage):
                    self._pending.append(event.data.encode())
                elif isinstance(event, Ping):
                    self.sock.sendall(self.ws.send(event.response()))
                elif isinstance(event, Pong):
                    self.pongs.append(bytes(event.payload))
                    self._pending.append(b"")  # wake the reader; ignored by receive()
                elif isinstance(event, CloseConnection):
                    self.close_code, self.close_reason = event.code, event.reason
                    try:
                        self.sock.sendall(self.ws.send(event.response()))
                    except Exception:
                        pass

    def close(self) -> None:
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:
            pass
        self.sock.close()

    def drop(self) -> None:
        """Vanish: close the TCP connection without a WebSocket close."""
        self.sock.close()


def drive(op: Op[Any], ws: WsClient) -> Any:
    """Run a neon_proto session operation over the WebSocket."""
    out = op.send(None)
    try:
        while True:
            if out is None:
                out = op.send(ws.receive())
            else:
                if out:
                    ws.send(out)
                out = op.send(None)
    except StopIteration as stop:
        return stop.value


def events_until(conn: FrontendConnection, ws: WsClient, until: type, *, limit: int = 10000) -> list[Any]:
    """Events up to and including the first of type ``until`` (or the end of the stream)."""
    seen: list[Any] = []
    for _ in range(limit):
        event = conn.next_event()
        if event is NEED_DATA:
            conn.receive_data(ws.receive())
            continue
        seen.append(event)
        if isinstance(event, until) or event is ev.END_OF_STREAM:
            return seen
    raise AssertionError("too many events")


def pipelined_login(ws: WsClient, user: str, password: str, database: str, first_query: str | None = None) -> tuple[Session, list[Any]]:
    """StartupMessage, PasswordMessage and (optionally) a first Query in one message, as the JS driver sends them."""
    session = Session()
    conn = session.conn
    flight = conn.send_startup({"user": user, "database": database, "client_encoding": "UTF8"})
    flight += msg.password_message(password)
    if first_query is not None:
        flight += msg.query_message(first_query)
    ws.send(flight)
    seen = events_until(conn, ws, ev.ReadyForQuery)
    if conn.state is State.READY and first_query is not None:
        conn.expect_ready(1)
        seen += events_until(conn, ws, ev.ReadyForQuery)
    return session, seen
