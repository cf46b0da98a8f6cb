"""The async driver of ``neon_proto.connect``'s plans, and the stream a plan's ``Link`` makes.

``establish`` is the async counterpart of ``neon_sync._io.establish``: it performs each step
of a connect (or cancel) plan on the backend's streams (open, TLS, send, receive, close) and
throws a failed step back into the plan. Every protocol decision (sslmode, the WebSocket
upgrade, TLS inside the tunnel, pipelining, retries) stays in the plan.

``LinkStream`` carries Postgres bytes through the plan's ``Link`` (WebSocket framing, TLS
inside it) over the backend's stream, as ``neon_sync._io.Transport`` does for sockets; the
client above it cannot tell it from a socket.
"""

from __future__ import annotations

import ssl
from typing import Any, Generator, TypeVar

from neon_async.backend import Backend, Sink, Stream
from neon_proto.connect import CloseStream, ConnectStep, Link, OpenStream, ReceiveBytes, SendBytes, StartTLS
from neon_proto.errors import Error, InterfaceError
from neon_proto.plan import PlanSteps

__all__ = ["establish", "LinkStream", "StreamOver"]

T = TypeVar("T")

_SMALL_SEND = 256 * 1024


async def establish(backend: Backend, plan: Generator[ConnectStep, Any, T]) -> tuple[Stream | None, T]:
    """Perform a plan of ``neon_proto.connect`` on ``backend``'s streams.

    Returns the open stream (None once the plan closed it) and the plan's result. A step
    that fails with the driver's own error is thrown into the plan, which may try again or
    explain. A cancellation (or any other exception) closes the plan and the stream: a
    cancelled connect leaves nothing open. Deadlines are the caller's (``backend.timeout``).
    """
    stream: Stream | None = None
    steps = PlanSteps(plan)
    try:
        for step in steps:
            try:
                if isinstance(step, ReceiveBytes):
                    assert stream is not None
                    steps.answer(await stream.receive())
                elif isinstance(step, SendBytes):
                    assert stream is not None
                    await stream.send(step.data)
                elif isinstance(step, OpenStream):
                    stream = await backend.open_stream(step.host, step.port)
                elif isinstance(step, StartTLS):
                    assert stream is not None
                    await stream.start_tls(step.context, step.server_hostname)
                    steps.answer(stream.server_certificate)
                elif isinstance(step, CloseStream):
                    if stream is not None:
                        await stream.aclose()
                        stream = None
            except Error as exc:
                steps.fail(exc)
        return stream, steps.result
    except BaseException:
        steps.close()
        if stream is not None:
            await stream.aclose()
        raise


class _LinkSink:
    """Bytes read during a large send: through the link, then into the machine."""

    def __init__(self, link: Link, sink: Sink) -> None:
        self.link = link
        self.sink = sink

    def receive_data(self, data: bytes) -> None:
        self.link.receive_data(data)
        plain = self.link.read()  # what the link owes the peer waits for the next receive
        if plain is not None:
            self.sink.receive_data(plain)


class StreamOver:
    """A stream built over another one, whose state (closed, waits) is the inner stream's."""

    inner: Stream

    @property
    def closed(self) -> bool:
        return self.inner.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self.inner.closed = value

    @property
    def parked(self) -> int:
        return self.inner.parked


class LinkStream(StreamOver):
    """Postgres bytes through a ``Link`` (WebSocket, maybe TLS inside it) over ``inner``.

    With ``coalesce_writes`` the writes that come before the next read leave as one
    WebSocket message (the JS driver's coalesceWrites); ``unsent`` bytes of a pipelined
    connect start that buffer, so they leave with the first query.
    """

    def __init__(self, inner: Stream, link: Link, *, coalesce_writes: bool = True, unsent: bytes = b"") -> None:
        self.inner = inner
        self.link = link
        self.coalesce_writes = coalesce_writes
        self.server_certificate: bytes | None = link.tls.server_certificate if link.tls is not None else None
        self._pending: list[bytes] = [unsent] if unsent else []
        self._pending_size = len(unsent)

    def __repr__(self) -> str:
        return f"<LinkStream {self.link!r}>"

    @property
    def is_tls(self) -> bool:
        """Whether the socket carries TLS (wss, or Postgres TLS inside the tunnel)."""
        return self.inner.is_tls or self.link.tls is not None

    @property
    def socket(self) -> Any:
        return getattr(self.inner, "socket", None)

    async def receive(self) -> bytes:
        if self._pending:
            await self.flush()
        link = self.link
        while True:
            data = link.read()
            if data is not None:
                return data
            link.receive_data(await self.inner.receive())
            owed = link.data_to_send()
            if owed and not self.inner.closed:
                await self.inner.send(owed)

    def receive_nowait(self) -> bytes | None:
        link = self.link
        data = link.read()
        if data is not None:
            return data
        raw = self.inner.receive_nowait()
        if raw is None:
            return None
        link.receive_data(raw)
        return link.read()

    def send_nowait(self, data: bytes) -> int:
        return 0  # framing and coalescing happen in send

    async def send(self, data: bytes | memoryview, sink: Sink | None = None) -> None:
        if self.coalesce_writes:
            self._pending.append(bytes(data))
            self._pending_size += len(data)
            if self._pending_size >= _SMALL_SEND:
                await self.flush(sink)
            return
        await self._send_wire(self.link.send(bytes(data)), sink)

    async def flush(self, sink: Sink | None = None) -> None:
        """Write the coalesced Postgres bytes as one WebSocket message."""
        if not self._pending:
            return
        pending = self._pending
        data = b"".join(pending) if len(pending) > 1 else pending[0]
        # Taken before the write: a cancellation after it never sends the bytes twice.
        self._pending = []
        self._pending_size = 0
        await self._send_wire(self.link.send(data), sink)

    async def _send_wire(self, data: bytes, sink: Sink | None) -> None:
        await self.inner.send(data, _LinkSink(self.link, sink) if sink is not None else None)

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        raise InterfaceError("TLS inside the WebSocket is set up by the connect plan, not afterwards")

    async def aclose(self) -> None:
        """Send what is pending and the WebSocket close frame (best effort), then close."""
        try:
            if not self.inner.closed:
                await self.flush()
                goodbye = self.link.close()
                if goodbye:
                    await self.inner.send(goodbye)
        except Error:
            pass
        finally:
            await self.inner.aclose()
