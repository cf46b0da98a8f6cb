"""The blocking I/O under neon_sync: open a socket (TLS as libpq does it) and drive operations.

``run`` is the whole binding in one loop: send what an operation yields, feed it what the
socket returns. Nothing about the protocol lives here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import selectors
import socket
import ssl
import time
from typing import Any, Callable, Generator, TypeVar

from neon_proto.connect import CloseStream, ConnectStep, Link, OpenStream, ReceiveBytes, SendBytes, StartTLS
from neon_proto.conninfo import ConnectionParams
from neon_proto.deadlines import QueryDeadline
from neon_proto.errors import ConnectionClosed, Error, OperationalError
from neon_proto.frontend import FrontendConnection
from neon_proto.plan import PlanSteps
from neon_proto.session import Op
from neon_proto.tls import make_ssl_context
from neon_sync.config_files import read_config_file

__all__ = [
    "Transport",
    "run",
    "establish",
    "open_socket",
    "open_socket_to",
    "make_ssl_context",
    "is_ip_address",
    "read_config_file",
]

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
    """A connected socket (plain or TLS) with the receive-size policy of the binding.

    With a ``link`` (a WebSocket, maybe TLS inside it) Postgres bytes go through it; with
    ``coalesce_writes`` the writes of one operation that come before its first read leave
    as one WebSocket message.
    """

    def __init__(self, sock: socket.socket, link: Link | None = None, *, coalesce_writes: bool = True) -> None:
        self.sock = sock
        self.link = link
        self.coalesce_writes = coalesce_writes
        self.server_certificate: bytes | None = None
        self._recv_size = 65536
        self._pending: list[bytes] = []
        self._pending_size = 0
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

    def _recv_raw(self) -> bytes:
        size = self._recv_size
        data = self.sock.recv(size)
        if len(data) == size and size < 1048576:
            self._recv_size = size * 2
        return data

    def recv(self) -> bytes:
        """Bytes from the peer; b"" on EOF. Grows the read size while reads come back full."""
        link = self.link
        if link is None:
            return self._recv_raw()
        if self._pending:
            self.flush()
        while True:
            data = link.read()
            if data is not None:
                return data
            link.receive_data(self._recv_raw())
            owed = link.data_to_send()
            if owed:
                self.sock.sendall(owed)

    def send(self, data: bytes, conn: FrontendConnection | None = None) -> None:
        """Send everything; for large writes, keep reading so neither side's buffer deadlocks."""
        link = self.link
        if link is not None:
            if self.coalesce_writes:
                self._pending.append(data)
                self._pending_size += len(data)
                if self._pending_size >= _SMALL_SEND:
                    self.flush(conn)
                return
            data = link.send(data)
        self._send_wire(data, conn)

    def flush(self, conn: FrontendConnection | None = None) -> None:
        """Write the coalesced Postgres bytes as one WebSocket message."""
        if not self._pending:
            return
        assert self.link is not None
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._pending_size = 0
        self._send_wire(self.link.send(data), conn)

    def _deliver(self, raw: bytes, conn: FrontendConnection) -> None:
        """Bytes read while sending: through the link (if any) into the machine."""
        link = self.link
        if link is None:
            conn.receive_data(raw)
            return
        link.receive_data(raw)
        owed = link.data_to_send()
        if owed:
            self.sock.sendall(owed)
        data = link.read()
        if data is not None:
            conn.receive_data(data)

    def _send_wire(self, data: bytes, conn: FrontendConnection | None) -> None:
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
                            self._deliver(chunk, conn)
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
        link = self.link
        if link is not None:
            self.flush()
            data = link.read()
            if data is not None:
                return data
        sock = self.sock
        timeout = sock.gettimeout()
        sock.settimeout(0.0)
        try:
            raw = sock.recv(self._recv_size)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        finally:
            sock.settimeout(timeout)
        if link is None:
            return raw
        link.receive_data(raw)
        owed = link.data_to_send()
        if owed:
            sock.sendall(owed)
        return link.read()

    def close(self) -> None:
        """Close the socket (after the WebSocket close frame, if any); safe to call twice."""
        if self.closed:
            return
        self.closed = True
        link = self.link
        if link is not None:
            try:
                self.sock.settimeout(0.5)
                self.flush()
                goodbye = link.close()
                if goodbye:
                    self.sock.sendall(goodbye)
            except (OSError, Error):
                pass
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


def open_socket(params: ConnectionParams, timeout: float | None) -> socket.socket:
    """A connected TCP (or Unix-domain) socket to the server, with Nagle off."""
    return open_socket_to(params.host, params.port, timeout)


def open_socket_to(host: str, port: int, timeout: float | None) -> socket.socket:
    """A connected TCP socket (a Unix-domain one when ``host`` is a directory), with Nagle off."""
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
    query_deadline: QueryDeadline | None = None,
    on_timeout: Callable[[float], None] | None = None,
) -> T:
    """Drive an operation to completion over a blocking socket.

    With a ``deadline`` (time.monotonic) a timeout raises OperationalError and the
    connection is closed. With a ``query_deadline`` instead, ``on_timeout(abandon_at)`` is
    called when its timeout passes (to cancel the query, by ``abandon_at``), the operation
    runs on for the grace period, and past it the connection is closed and
    ``ConnectionClosed`` raised (``neon_proto.deadlines``).
    """
    if query_deadline is not None:
        deadline = query_deadline.wake_at
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
                    if query_deadline is not None and query_deadline.expire() == "cancel":
                        if on_timeout is not None:
                            try:
                                on_timeout(query_deadline.abandon_at)
                            except Error as exc:
                                logger.warning("could not send the cancel request: %s", exc)
                        deadline = query_deadline.wake_at
                        continue
                    transport.close()
                    conn.receive_data(b"")
                    if query_deadline is not None:
                        raise query_deadline.abandon_error() from None
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
        if transport._pending:
            transport.flush(conn)
        return stop.value  # type: ignore[no-any-return]
    except Error:
        raise
    except Exception:
        transport.close()
        raise
    finally:
        if restore_timeout and not transport.closed:
            transport.sock.settimeout(previous_timeout)



def establish(
    plan: Generator[ConnectStep, Any, T], *, deadline: float | None = None
) -> tuple[socket.socket | None, T]:
    """Perform a connect (or cancel) plan of ``neon_proto.connect`` on blocking sockets.

    Returns the open socket (None once the plan closed it) and the plan's result. A failed
    step is thrown into the plan, which may try again or explain.
    """
    sock: socket.socket | None = None
    steps = PlanSteps(plan)
    where = ""
    try:
        for step in steps:
            if isinstance(step, CloseStream):  # never refused, even past the deadline
                if sock is not None:
                    sock.close()
                    sock = None
                continue
            try:
                remaining = None
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise socket.timeout()
                if isinstance(step, ReceiveBytes):
                    assert sock is not None
                    sock.settimeout(remaining)
                    steps.answer(sock.recv(65536))
                elif isinstance(step, SendBytes):
                    assert sock is not None
                    sock.settimeout(remaining)
                    sock.sendall(step.data)
                elif isinstance(step, OpenStream):
                    where = f"{step.host}:{step.port}"
                    sock = open_socket_to(step.host, step.port, remaining)
                elif isinstance(step, StartTLS):
                    assert sock is not None
                    transport = Transport(sock)
                    transport.start_tls(step.context, step.server_hostname)
                    sock = transport.sock
                    steps.answer(transport.server_certificate)
            except socket.timeout:
                steps.fail(OperationalError(f"connection to {where} timed out"))
            except Error as exc:
                steps.fail(exc)
            except OSError as exc:
                steps.fail(ConnectionClosed(f"the connection to {where} was lost: {exc.strerror or exc}"))
        return sock, steps.result
    except BaseException:
        if sock is not None:
            sock.close()
        raise
