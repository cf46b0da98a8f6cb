"""The trio stream under neon_trio: a connected socket stream, TLS as libpq does it.

Sends are shielded from cancellation so that a message is never half written; a
cancellation can therefore only land while we wait for the server, where the operation can
be resumed (see ``neon_async.client`` for how a cancelled query is drained).

On a plain socket (POSIX), bytes the kernel can take or give at once are written and read
directly, without the extra pass through trio's scheduler that its socket methods make
after an immediate success; only a full buffer or an empty one waits through trio.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from typing import TYPE_CHECKING

import trio

from neon_proto.errors import ConnectionClosed, OperationalError

if TYPE_CHECKING:
    from neon_async.backend import Sink

__all__ = ["TrioTransport", "open_stream", "SEND_GRACE", "stream_socket", "direct_fd"]

logger = logging.getLogger("neon_trio")

_SMALL_SEND = 256 * 1024
_MAX_RECEIVE = 1024 * 1024

SEND_GRACE = 10.0
"""Seconds a shielded send may outlive the caller's deadline before the connection is dropped."""

_POSIX = os.name == "posix"


def stream_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket under a plain or TLS socket stream (None for other streams)."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    return stream.socket if isinstance(stream, trio.SocketStream) else None


def direct_fd(stream: trio.abc.Stream) -> int | None:
    """The descriptor to ``os.read``/``os.write`` for a plain socket stream, else None.

    Only plain sockets qualify (TLS needs its stream), and only on POSIX, where a socket is
    a file descriptor like any other; trio keeps it non-blocking.
    """
    if not _POSIX or not isinstance(stream, trio.SocketStream):
        return None
    fd = stream.socket.fileno()
    return fd if fd >= 0 else None


class TrioTransport:
    """A connected trio stream (plain or TLS) with the receive-size policy of the binding."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream: trio.abc.Stream = stream
        self.server_certificate: bytes | None = None
        self._recv_size = 65536
        self.closed = False
        self._released = False
        self._fd = direct_fd(stream)
        self.parked = 0

    @property
    def is_tls(self) -> bool:
        """Whether the transport is encrypted."""
        return isinstance(self.stream, trio.SSLStream)

    @property
    def socket(self) -> trio.socket.SocketType | None:
        """The socket under the stream (under TLS too); None for a stream without one."""
        return stream_socket(self.stream)

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        """Wrap the stream in TLS and keep the server certificate for channel binding."""
        tls = trio.SSLStream(self.stream, ctx, server_hostname=server_hostname)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLCertVerificationError):
                raise OperationalError(f"TLS certificate verification failed: {cause.verify_message}") from exc
            raise OperationalError(f"TLS handshake failed: {cause or exc}") from exc
        self.stream = tls
        self._fd = None
        cert = tls.getpeercert(binary_form=True)
        self.server_certificate = cert if isinstance(cert, bytes) else None

    async def receive(self) -> bytes:
        """Bytes from the peer; b"" on EOF. Grows the read size while reads come back full."""
        size = self._recv_size
        fd = self._fd
        try:
            if fd is not None and not self.closed:
                while True:
                    try:
                        data: bytes | bytearray = os.read(fd, size)
                        break
                    except BlockingIOError:
                        self.parked += 1
                        await trio.lowlevel.wait_readable(fd)
            else:
                self.parked += 1
                data = await self.stream.receive_some(size)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = True
            raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc
        if len(data) == size and size < _MAX_RECEIVE:
            self._recv_size = size * 2
        return bytes(data)

    def receive_nowait(self) -> bytes | None:
        """Bytes that already arrived (b"" at EOF), or None when nothing is waiting (or this
        cannot be known without waiting: under TLS)."""
        fd = self._fd
        if fd is None or self.closed:
            return None
        try:
            return os.read(fd, self._recv_size)
        except BlockingIOError:
            return None
        except OSError:
            self.closed = True
            return b""

    def send_nowait(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes at once on a plain socket (0 under TLS, or on an error,
        which ``send`` then reports)."""
        fd = self._fd
        if fd is None or self.closed:
            return 0
        try:
            return os.write(fd, data)
        except OSError:
            return 0

    async def send(self, data: bytes | memoryview, conn: Sink | None = None) -> None:
        """Send everything, shielded from cancellation so no message is ever cut in half.

        The shield lasts at most SEND_GRACE seconds past the caller's deadline; a send that
        cannot finish by then leaves the stream in an unknown state, so the transport is
        closed. Large writes keep reading (into ``conn``) so neither side's buffer deadlocks.
        """
        written = self.send_nowait(data)
        if written == len(data):
            return  # the kernel took it all: nothing could be cut in half
        if written:
            data = memoryview(data)[written:]
        self.parked += 1
        deadline = trio.current_effective_deadline()  # -inf when already cancelled
        with trio.CancelScope(shield=True) as scope:
            if deadline != math.inf:
                scope.deadline = max(deadline, trio.current_time()) + SEND_GRACE
            try:
                if len(data) <= _SMALL_SEND or conn is None:
                    await self.stream.send_all(data)
                else:
                    await self._send_while_reading(data, conn)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                await self.aclose()
                raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc
        if scope.cancelled_caught:
            await self.aclose()
            raise ConnectionClosed("timed out sending to the server; the connection was closed")

    async def _send_while_reading(self, data: bytes | memoryview, conn: Sink) -> None:
        async def read() -> None:
            try:
                while True:
                    chunk = await self.stream.receive_some(self._recv_size)
                    conn.receive_data(bytes(chunk))
                    if not chunk:
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return  # the send reports the broken stream

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await self.stream.send_all(data)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # One task failed (the send, when the peer stopped reading): raise its error as is.
            raise group.exceptions[0] from None

    async def aclose(self) -> None:
        """Close the stream without waiting for the peer; safe to call twice."""
        self.closed = True
        self._fd = None
        if self._released:
            return
        self._released = True
        stream = self.stream
        if isinstance(stream, trio.SSLStream):
            # A TLS close_notify could block on a dead peer: close the socket underneath.
            stream = stream.transport_stream
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


async def open_stream(host: str, port: int) -> trio.abc.Stream:
    """A connected TCP (or Unix-domain, when ``host`` is a directory) stream, with Nagle off."""
    try:
        if host.startswith("/"):
            return await trio.open_unix_socket(f"{host}/.s.PGSQL.{port}")
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise OperationalError(f"could not connect to {host}:{port}: {exc.strerror or exc}") from exc
