"""The blocking I/O under neon_sync: open a socket (TLS as libpq does it) and drive operations.

``run`` is the whole binding in one loop: send what an operation yields, feed it what the
socket returns. Nothing about the protocol lives here.
"""

from __future__ import annotations

import ipaddress
import logging
import selectors
import socket
import ssl
import time
from typing import Callable, TypeVar

from neon_proto.conninfo import ConnectionParams
from neon_proto.errors import ConnectionClosed, Error, OperationalError
from neon_proto.frontend import FrontendConnection
from neon_proto.session import Op
from neon_proto.tls import make_ssl_context

__all__ = ["Transport", "run", "open_socket", "make_ssl_context", "is_ip_address"]

logger = logging.getLogger("neon_sync")

T = TypeVar("T")

_SMALL_SEND = 256 * 1024


def is_ip_address(host: str) -> bool:
    """Whether ``host`` is an IP literal (no SNI is sent for those)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class Transport:
    """A connected socket (plain or TLS) with the receive-size policy of the binding."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.server_certificate: bytes | None = None
        self._recv_size = 65536
        self.closed = False

    def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        """Wrap the socket in TLS and keep the server certificate for channel binding."""
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError as exc:
            raise OperationalError(f"TLS certificate verification failed: {exc.verify_message}") from exc
        except (ssl.SSLError, OSError) as exc:
            raise OperationalError(f"TLS handshake failed: {exc}") from exc
        assert isinstance(self.sock, ssl.SSLSocket)
        self.server_certificate = self.sock.getpeercert(binary_form=True)

    @property
    def is_tls(self) -> bool:
        """Whether the transport is encrypted."""
        return isinstance(self.sock, ssl.SSLSocket)

    def recv(self) -> bytes:
        """Bytes from the peer; b"" on EOF. Grows the read size while reads come back full."""
        size = self._recv_size
        data = self.sock.recv(size)
        if len(data) == size and size < 1048576:
            self._recv_size = size * 2
        return data

    def send(self, data: bytes, conn: FrontendConnection | None = None) -> None:
        """Send everything; for large writes, keep reading so neither side's buffer deadlocks."""
        if len(data) <= _SMALL_SEND or conn is None:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        sock = self.sock
        timeout = sock.gettimeout()
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        try:
            while view:
                ready = sel.select(timeout)
                if not ready:
                    raise socket.timeout()
                for _key, mask in ready:
                    if mask & selectors.EVENT_READ:
                        try:
                            chunk = sock.recv(self._recv_size)
                        except ssl.SSLWantReadError:
                            chunk = None
                        if chunk is not None:
                            conn.receive_data(chunk)
                            if not chunk:
                                raise ConnectionClosed("the server closed the connection while we were sending")
                    if mask & selectors.EVENT_WRITE and view:
                        try:
                            n = sock.send(view[:_SMALL_SEND])
                        except (ssl.SSLWantWriteError, BlockingIOError):
                            n = 0
                        view = view[n:]
        finally:
            sel.close()

    def recv_nowait(self) -> bytes | None:
        """Bytes the peer already sent, b"" on EOF, or None when nothing is waiting; never blocks."""
        sock = self.sock
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            return sock.recv(self._recv_size)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        finally:
            sock.settimeout(timeout)

    def close(self) -> None:
        """Close the socket; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


def open_socket(params: ConnectionParams, timeout: float | None) -> socket.socket:
    """A connected TCP (or Unix-domain) socket to the server, with Nagle off."""
    host, port = params.host, params.port
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except socket.timeout as exc:
        raise OperationalError(f"connection to {host}:{port} timed out") from exc
    except OSError as exc:
        raise OperationalError(f"could not connect to {host}:{port}: {exc.strerror or exc}") from exc
    sock.settimeout(timeout)
    return sock


def run(
    op: Op[T],
    transport: Transport,
    conn: FrontendConnection,
    *,
    deadline: float | None = None,
    on_timeout: Callable[[], None] | None = None,
) -> T:
    """Drive an operation to completion over a blocking socket.

    With a ``deadline`` (time.monotonic), ``on_timeout`` is called once when it passes (to
    cancel the query) and the operation runs on to its end; without ``on_timeout`` a
    timeout raises OperationalError and the connection is closed.
    """
    # The deadline is applied as a socket timeout: put the caller's back afterwards, or
    # it would cut short the next operation.
    restore_timeout = deadline is not None
    previous_timeout = transport.sock.gettimeout() if restore_timeout else None
    try:
        # The operation's first step builds its messages: an error there (a parameter no
        # dumper accepts) comes before anything was sent, and the connection stays usable.
        out = op.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    try:
        while True:
            if out is None:
                try:
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise socket.timeout()
                        transport.sock.settimeout(remaining)
                    data = transport.recv()
                except socket.timeout:
                    if on_timeout is not None:
                        on_timeout()
                        on_timeout = None
                        deadline = None
                        transport.sock.settimeout(None)
                        continue
                    transport.close()
                    conn.receive_data(b"")
                    raise OperationalError("timed out waiting for the server") from None
                except OSError as exc:
                    transport.close()
                    raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc
                out = op.send(data)
            else:
                if out:
                    try:
                        transport.send(out, conn)
                    except OSError as exc:
                        transport.close()
                        raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc
                out = op.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    except Error:
        raise
    except Exception:
        transport.close()
        raise
    finally:
        if restore_timeout and not transport.closed:
            transport.sock.settimeout(previous_timeout)

