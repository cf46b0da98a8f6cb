"""What the shared async code needs from an event loop: the backend protocol.

``neon_async`` holds every async orchestration step once (connect, run an operation,
cancel and drain, pool bookkeeping, HTTP exchanges); ``neon_trio._backend`` and
``neon_asyncio._backend`` each implement this small protocol for their loop, in the manner
of anyio's backends. Nothing about Postgres lives behind it.
"""

from __future__ import annotations

import ssl
from typing import AsyncContextManager, Awaitable, Protocol

__all__ = ["Backend", "Stream", "Sink", "Scope", "Event"]


class Sink(Protocol):
    """Where bytes read during a large send go (a sans-IO machine's ``receive_data``)."""

    def receive_data(self, data: bytes) -> None: ...


class Stream(Protocol):
    """A connected byte stream (TCP or Unix socket, optionally under TLS)."""

    closed: bool
    server_certificate: bytes | None

    @property
    def parked(self) -> int:
        """How many times the stream waited for the event loop (each wait a trio schedule
        point): an operation during which it did not change still owes its caller one."""
        ...

    @property
    def is_tls(self) -> bool: ...

    def receive(self) -> Awaitable[bytes]:
        """Bytes from the peer, b"" at EOF; raises ConnectionClosed when the stream breaks.

        A cancellation while waiting loses no data. (An awaitable rather than a coroutine
        function, so a stream may hand out a bare future.)"""
        ...

    def send_nowait(self, data: bytes) -> int:
        """Hand as much of ``data`` to the stream as it takes at once, without waiting, and
        return how many bytes that was; ``send`` takes the rest (0: all of it)."""
        ...

    async def send(self, data: bytes | memoryview, sink: Sink | None = None) -> None:
        """Send all of ``data``. A message is never cut in half: a cancellation, if it is
        delivered here at all, comes after every byte was handed to the loop; a send that
        cannot complete closes the stream and raises ConnectionClosed."""
        ...

    def receive_nowait(self) -> bytes | None:
        """Bytes that already arrived (b"" at EOF), or None when nothing is waiting."""
        ...

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        """Wrap the stream in TLS (OperationalError when the handshake fails)."""
        ...

    async def aclose(self) -> None:
        """Close at once, without waiting for the peer; safe to call twice."""
        ...


class Scope(Protocol):
    """What a timeout or shielded section tells afterwards."""

    @property
    def expired(self) -> bool:
        """Whether the deadline passed (and cut the section short)."""
        ...


class Event(Protocol):
    """A one-shot event of the loop (trio.Event, asyncio.Event)."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


class Backend(Protocol):
    """One event loop's primitives, as the shared async implementation uses them."""

    name: str
    cancelled: type[BaseException]
    """The exception a cancellation arrives as (trio.Cancelled, asyncio.CancelledError)."""
    checkpoints: bool
    """Whether the loop's rules make every async call a checkpoint (trio). Without them
    (asyncio) ``checkpoint``, ``checkpoint_if_cancelled`` and ``schedule_point`` do nothing,
    and a hot path may skip calling them."""

    async def open_stream(self, host: str, port: int) -> Stream:
        """A TCP stream with Nagle off, or a Unix socket when ``host`` is a path."""
        ...

    def time(self) -> float:
        """The loop's clock, in seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def checkpoint(self) -> None:
        """Where the loop's rules want one (trio: every async call), let other tasks run and
        take a pending cancellation; for calls whose result needs no I/O."""
        ...

    async def checkpoint_if_cancelled(self) -> None:
        """Raise a pending cancellation; otherwise return at once."""
        ...

    async def schedule_point(self) -> None:
        """Let other tasks run without taking a cancellation (trio: the second half of a
        checkpoint, for a call whose I/O found every byte already there)."""
        ...

    def timeout(self, seconds: float | None) -> AsyncContextManager[Scope]:
        """Cancel the body after ``seconds`` (None: never) and carry on after the block."""
        ...

    def shielded(self, seconds: float) -> AsyncContextManager[Scope]:
        """A section the caller's cancellation does not interrupt, for at most ``seconds``.

        Where the loop cannot shield (asyncio), a second cancellation still interrupts it;
        the caller then closes what it was protecting."""
        ...

    def event(self) -> Event: ...
