"""The asyncio backend of ``neon_async``: a small Protocol for streams, ``asyncio.timeout``
for deadlines. Works under the default loop and uvloop.

asyncio cannot shield a section from a second cancellation of the same task; a "shielded"
drain is a section run after the first cancellation was caught, bounded by its own timeout.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from neon_async.backend import Sink, Stream
from neon_proto.errors import ConnectionClosed, OperationalError

__all__ = ["AsyncioBackend", "ASYNCIO"]

_PAUSE_AT = 4 * 1024 * 1024  # stop reading from the socket while this much waits unread


class _StreamProtocol(asyncio.Protocol):
    """Bytes from the loop straight into the future of a waiting ``receive``, or else into a
    list of chunks that the next ``receive`` takes whole (one chunk as it came, without a
    copy); write flow control."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.loop = asyncio.get_running_loop()
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reader: asyncio.Future[bytes] | None = None
        self.drainer: asyncio.Future[None] | None = None
        self.paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        if reader is not None:
            self.reader = None
            if not reader.done():  # (a cancelled receive leaves the bytes for the next one)
                reader.set_result(data)
                return
        self.chunks.append(data)
        self.size += len(data)
        if self.size > _PAUSE_AT and not self.paused and self.drainer is None:
            self.paused = True
            self.transport.pause_reading()

    def take(self) -> bytes:
        """Every byte received and not taken yet."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.size = 0
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        return data

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        drainer, self.drainer = self.drainer, None
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def pause_writing(self) -> None:
        self.drainer = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drainer, self.drainer = self.drainer, None
        if drainer is not None and not drainer.done():
            drainer.set_result(None)

    def _wake(self) -> None:
        """At EOF or a lost connection, answer a waiting ``receive``."""
        reader, self.reader = self.reader, None
        if reader is not None and not reader.done():
            if self.error is not None:
                reader.set_exception(lost(self.error))
            else:
                reader.set_result(b"")


def lost(cause: BaseException) -> ConnectionClosed:
    return ConnectionClosed(f"the connection to the server was lost: {cause}")


class AsyncioStream:
    """``neon_async.backend.Stream`` over an asyncio transport (plain or TLS)."""

    def __init__(self, transport: Any, protocol: _StreamProtocol) -> None:
        self.transport = transport
        self.protocol = protocol
        self.closed = False
        self.server_certificate: bytes | None = None
        self.is_tls = False
        self.parked = 0

    @property
    def socket(self) -> socket.socket | None:
        sock: socket.socket | None = self.transport.get_extra_info("socket")
        return sock

    def receive(self) -> asyncio.Future[bytes]:
        proto = self.protocol
        answer: asyncio.Future[bytes] = proto.loop.create_future()
        if proto.chunks:
            answer.set_result(proto.take())
        elif not proto.eof:
            proto.reader = answer  # data_received fills it
            self.parked += 1
        elif proto.error is not None:
            self.closed = True
            raise lost(proto.error)
        else:
            answer.set_result(b"")
        return answer

    def receive_nowait(self) -> bytes | None:
        proto = self.protocol
        if proto.chunks:
            return proto.take()
        return b"" if proto.eof else None

    def send_nowait(self, data: bytes) -> int:
        if self.closed or self.protocol.drainer is not None or self.transport.is_closing():
            return 0
        self.transport.write(data)
        return len(data)

    async def send(self, data: bytes | memoryview, sink: Sink | None = None) -> None:
        # write() takes every byte at once: a cancellation while draining cuts nothing.
        if self.closed or self.transport.is_closing():
            raise ConnectionClosed("the connection to the server was lost")
        self.transport.write(data)
        drainer = self.protocol.drainer
        if drainer is not None:
            self.parked += 1
            await asyncio.shield(drainer)
            if self.protocol.error is not None:
                raise lost(self.protocol.error)

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.transport = await loop.start_tls(self.transport, self.protocol, ctx, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError as exc:
            await self.aclose()
            raise OperationalError(f"TLS certificate verification failed: {exc.verify_message}") from exc
        except (ssl.SSLError, OSError) as exc:
            await self.aclose()
            raise OperationalError(f"TLS handshake failed: {exc}") from exc
        self.is_tls = True
        sslobj = self.transport.get_extra_info("ssl_object")
        self.server_certificate = sslobj.getpeercert(binary_form=True) if sslobj is not None else None

    async def aclose(self) -> None:
        self.closed = True
        try:
            self.transport.abort()
        except AttributeError:
            # CPython 3.11's selector transport, reset by the peer in the middle of a write,
            # may already have run connection_lost and dropped its loop: it is closed anyway.
            pass


class _Timeout:
    """``asyncio.timeout`` that swallows its own expiry and tells it as ``expired``."""

    __slots__ = ("_timeout", "expired")

    def __init__(self, seconds: float | None) -> None:
        self._timeout = asyncio.timeout(seconds)
        self.expired = False

    async def __aenter__(self) -> _Timeout:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        try:
            await self._timeout.__aexit__(*exc)
        except TimeoutError:
            self.expired = True
            return True
        return False


class AsyncioBackend:
    """``neon_async.backend.Backend`` for asyncio."""

    name = "asyncio"
    cancelled: type[BaseException] = asyncio.CancelledError
    checkpoints = False

    async def open_stream(self, host: str, port: int) -> Stream:
        loop = asyncio.get_running_loop()
        try:
            if host.startswith("/"):
                transport, protocol = await loop.create_unix_connection(_StreamProtocol, f"{host}/.s.PGSQL.{port}")
            else:
                transport, protocol = await loop.create_connection(_StreamProtocol, host, port)
        except OSError as exc:
            raise OperationalError(f"could not connect to {host}:{port}: {exc.strerror or exc}") from exc
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(transport, protocol)

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def checkpoint(self) -> None:
        pass  # trio's rule that every call yields is not asyncio's: no extra loop pass here

    async def checkpoint_if_cancelled(self) -> None:
        pass  # asyncio delivers a pending cancellation at the next real wait

    async def schedule_point(self) -> None:
        pass  # no such rule in asyncio

    def timeout(self, seconds: float | None) -> _Timeout:
        return _Timeout(seconds)

    def shielded(self, seconds: float) -> _Timeout:
        return _Timeout(seconds)

    def event(self) -> asyncio.Event:
        return asyncio.Event()


ASYNCIO = AsyncioBackend()
