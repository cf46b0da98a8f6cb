"""A scripted Postgres server for tests of what clients do when a server misbehaves on purpose.

It speaks real wire bytes (startup, ReadyForQuery, the messages a scenario sends) and
nothing more: the normal paths are tested against the real Postgres, this only plays the
attacker. Every connection ends by itself after ``give_up_after`` seconds, so a client
that would wait forever makes its test fail instead of hang.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Callable

__all__ = ["HostileServer", "Scenario", "message", "row_description", "ready"]

SSL_REQUEST = 80877103
CANCEL_REQUEST = 80877102


def message(code: bytes, body: bytes = b"") -> bytes:
    return code + struct.pack("!i", len(body) + 4) + body


def row_description(*names: str, oid: int = 23) -> bytes:
    body = struct.pack("!h", len(names))
    for name in names:
        body += name.encode() + b"\0" + struct.pack("!ihihih", 0, 0, oid, 4, -1, 0)
    return message(b"T", body)


def ready(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


Scenario = Callable[[socket.socket, bytes], None]
"""Called with the socket and the first frontend message of a query flight (``Q``/``P``...)."""


class HostileServer:
    """Accepts connections on 127.0.0.1; answers startup, then plays ``scenario`` for each query."""

    def __init__(self, scenario: Scenario, *, cancel_closes: bool = True, give_up_after: float = 8.0) -> None:
        self.scenario = scenario
        self.cancel_closes = cancel_closes
        self.give_up_after = give_up_after
        self.cancels = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def dsn(self) -> str:
        return f"postgresql://mallory@127.0.0.1:{self.port}/db?sslmode=disable"

    def wait(self, seconds: float) -> None:
        """Hold the connection, saying nothing (until the server stops or gives up)."""
        self._stop.wait(min(seconds, self.give_up_after))

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(self.give_up_after)
        try:
            with sock:
                while True:
                    length, code = struct.unpack("!ii", _recv_exactly(sock, 8))
                    rest = _recv_exactly(sock, length - 8)
                    if code == SSL_REQUEST:
                        sock.sendall(b"N")
                        continue
                    if code == CANCEL_REQUEST:
                        self.cancels += 1
                        if not self.cancel_closes:
                            self.wait(self.give_up_after)
                        return
                    del rest
                    break
                sock.sendall(
                    message(b"R", struct.pack("!i", 0))
                    + message(b"K", struct.pack("!ii", 4242, 777))
                    + message(b"S", b"client_encoding\0UTF8\0")
                    + message(b"S", b"server_version\x0015.0\0")
                    + ready()
                )
                while True:
                    head = _recv_exactly(sock, 5)
                    body = _recv_exactly(sock, struct.unpack("!i", head[1:])[0] - 4)
                    if head[:1] == b"X":
                        return
                    if head[:1] in (b"Q", b"S"):  # a simple query, or the Sync ending an extended one
                        self.scenario(sock, head + body)
        except (OSError, ConnectionError, struct.error):
            return
