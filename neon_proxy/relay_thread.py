"""Moving the bytes of relayed sessions on one OS thread, outside trio's scheduler.

A session's steady state is: bytes in on one socket, the same bytes (unmasked, or framed)
out on the other. Through trio each chunk costs a task wake-up, an ``epoll_ctl`` to re-arm
its one-shot registration and a pass of trio's run loop: about twice the CPU of the relay
itself. Here one thread per endpoint keeps every attached session's two sockets in a
level-triggered epoll set, registered once, and moves each chunk with one ``read`` and one
``write``. The session's trio task only waits for the end and keeps the timers.

A side that speaks TLS (a wss client, an upstream reached with sslmode=require) comes too:
trio's SSLStream keeps its ``ssl.SSLObject`` between two memory buffers, and while the
session is on the thread the thread feeds and drains those buffers itself
(``TLSRecords``); back in trio, the SSLStream carries on from the same state.

A session leaves the thread (``RelayLink.why`` says why, and ``on_end`` tells its task)
when a side closes or fails, when a write would block (the rest goes through trio, then
the session comes back), when the client's WebSocket frames need more than the fast path
and its pings (close, text, fragments: its task carries on in trio with wsproto), when the
server stops and the upstream is idle, or when its task detaches it (idle timeout,
shutdown, cancellation). The thread exits a second after its last session is gone.
"""

from __future__ import annotations

import logging
import os
import select
import ssl
import threading
import time
from typing import Callable, Protocol

__all__ = ["RelayThread", "RelayLink", "DirectChannel", "TLSRecords", "READ_SIZE"]

logger = logging.getLogger("neon_proxy")

READ_SIZE = 65536
_LINGER_SECONDS = 1.0  # an empty thread waits this long for a new session before it exits
_READY_PREFIX = b"Z\x00\x00\x00\x05"


def _side(client: bool) -> str:
    """The name of a session's side, as ``RelayLink.why`` gives it."""
    return "client" if client else "upstream"


class DirectChannel(Protocol):
    """The client side of a session as the relay thread sees it."""

    @property
    def direct(self) -> bool:
        """Whether bytes may still be moved without trio (False once wsproto has taken over)."""
        ...

    def unwrap(self, data: bytes) -> bytes:
        """The payload in bytes read from the client (b"" until a frame is complete)."""
        ...

    def wrap(self, payload: bytes) -> bytes:
        """The bytes to write to the client to deliver ``payload``."""
        ...

    def take_owed(self) -> bytes:
        """What the channel must send the client by itself (a pong), since the last call."""
        ...


class TLSRecords:
    """The record layer of a TLS connection past its handshake, worked by the relay thread.

    ``open`` takes what was read from the socket and gives the plaintext of the whole records
    so far; ``seal`` gives the records to write for some plaintext; ``owed`` what TLS itself
    must send (the answer to a key update). Only one thread works it at a time: trio's
    SSLStream, which holds the same objects, is left alone while the session is on the thread.
    """

    __slots__ = ("_ssl", "_incoming", "_outgoing")

    def __init__(self, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing

    def __repr__(self) -> str:
        return f"<TLSRecords {self._ssl.version()} buffered={self.buffered}>"

    @property
    def buffered(self) -> bool:
        """Whether records or plaintext already wait inside (read before the thread took over)."""
        return self._incoming.pending > 0 or self._ssl.pending() > 0

    def open(self, raw: bytes) -> bytes:
        """The plaintext of the whole records in ``raw`` and what came before it.

        ssl.SSLZeroReturnError: the peer ended TLS (close_notify); another ssl.SSLError: a
        broken record.
        """
        if raw:
            self._incoming.write(raw)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._ssl.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not self._incoming.pending and not self._ssl.pending():
                break  # nothing left to open: skip the read that would only say so
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def owed(self) -> bytes:
        """Records TLS itself must send now (b"" mostly)."""
        return self._outgoing.read() if self._outgoing.pending else b""

    def seal(self, plain: bytes) -> bytes:
        """The records that carry ``plain`` (after any owed). ssl.SSLError if TLS cannot send now
        (a renegotiation under way: the session ends)."""
        self._ssl.write(plain)
        return self._outgoing.read()


class RelayLink:
    """One session's sockets and what its relay saw, shared by its trio task and the thread.

    ``upstream_idle`` (a chunk from the upstream ended in ReadyForQuery, no client bytes
    since), ``client_tail`` (the client's last five bytes, to recognise a Terminate) and
    ``last_activity`` (``time.monotonic()`` of the last chunk either way) are kept in both
    places the session can be relayed from.
    """

    __slots__ = (
        "client_fd", "upstream_fd", "client_tls", "upstream_tls", "channel", "sees_postgres", "upstream_idle",
        "client_tail", "last_activity", "stop_when_idle", "why", "unsent", "unsent_to_client", "on_end", "attached",
    )  # fmt: skip

    def __init__(self, channel: DirectChannel, client_fd: int | None, upstream_fd: int | None, sees_postgres: bool) -> None:
        self.channel = channel
        self.client_fd = client_fd
        self.upstream_fd = upstream_fd
        #: The record layer of a side that speaks TLS (its fd is then the socket under it).
        self.client_tls: TLSRecords | None = None
        self.upstream_tls: TLSRecords | None = None
        self.sees_postgres = sees_postgres
        self.upstream_idle = True
        self.client_tail = b""
        self.last_activity = time.monotonic()
        self.stop_when_idle = False
        self.why = ""
        self.unsent = b""
        self.unsent_to_client = False
        self.on_end: Callable[[], None] | None = None
        self.attached = False

    def __repr__(self) -> str:
        return f"<RelayLink fds={self.client_fd},{self.upstream_fd} attached={self.attached} why={self.why!r}>"

    def saw_client_bytes(self, payload: bytes) -> None:
        """Note bytes on their way to the upstream: a query may be running now."""
        self.upstream_idle = False
        self.client_tail = payload[-5:] if len(payload) >= 5 else self.client_tail[len(payload) :] + payload

    def saw_upstream_bytes(self, data: bytes) -> bool:
        """Note bytes on their way to the client; whether they end a query (ReadyForQuery last)."""
        if self.sees_postgres and len(data) >= 6 and data[-6:-1] == _READY_PREFIX:
            self.upstream_idle = True
            return True
        return False


class RelayThread:
    """The thread that carries attached sessions (started on demand, gone when unused)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None
        self._by_fd: dict[int, tuple[RelayLink, bool]] = {}
        self.stalls = 0
        """How many times a write would have blocked and a session went through trio for it."""

    def __repr__(self) -> str:
        return f"<RelayThread {'running' if self._thread is not None else 'stopped'} fds={len(self._by_fd)}>"

    @property
    def running(self) -> bool:
        """Whether the thread is alive (it exits a second after its last session left)."""
        return self._thread is not None

    @property
    def sessions(self) -> int:
        """How many sessions the thread carries now."""
        return len(self._by_fd) // 2

    @staticmethod
    def available() -> bool:
        """Whether this platform has what the thread needs (epoll)."""
        return hasattr(select, "epoll")

    def attach(self, link: RelayLink, on_end: Callable[[], None]) -> None:
        """Start carrying ``link``'s session; ``on_end()`` is called (from the thread) once it leaves."""
        assert link.client_fd is not None and link.upstream_fd is not None
        with self.lock:
            if self._thread is None:
                self._epoll = select.epoll()
                self._thread = threading.Thread(target=self._run, args=(self._epoll,), name="neon_proxy relay", daemon=True)
                self._thread.start()
            epoll = self._epoll
            assert epoll is not None
            link.why = ""
            link.on_end = on_end
            link.attached = True
            self._by_fd[link.client_fd] = (link, True)
            self._by_fd[link.upstream_fd] = (link, False)
            epoll.register(link.client_fd, select.EPOLLIN)
            epoll.register(link.upstream_fd, select.EPOLLIN)
            # Records read before the thread took over raise no epoll event: open them now.
            for tls, fd, from_client in ((link.client_tls, link.client_fd, True),
                                         (link.upstream_tls, link.upstream_fd, False)):  # fmt: skip
                if tls is not None and tls.buffered and link.attached:
                    self._carry_guarded(link, fd, from_client, b"")

    def detach(self, link: RelayLink, why: str) -> bool:
        """Stop carrying ``link`` with ``why``; False if it had left already (``link.why`` says why).

        Once this returns, the thread no longer touches the session's sockets.
        """
        with self.lock:
            if not link.attached:
                return False
            self._forget(link, why)
            return True

    def _forget(self, link: RelayLink, why: str) -> None:
        link.attached = False
        link.why = why
        epoll = self._epoll
        for fd in (link.client_fd, link.upstream_fd):
            assert fd is not None
            self._by_fd.pop(fd, None)
            if epoll is not None:
                try:
                    epoll.unregister(fd)
                except OSError:
                    pass

    def _leave(self, link: RelayLink, why: str) -> None:
        """The thread lets a session go and tells its task."""
        self._forget(link, why)
        on_end = link.on_end
        link.on_end = None
        if on_end is not None:
            try:
                on_end()
            except Exception:  # the trio run is gone: nobody waits for this session any more
                logger.debug("a relayed session's task could not be told it ended", exc_info=True)

    def _run(self, epoll: select.epoll) -> None:
        by_fd = self._by_fd
        lock = self.lock
        while True:
            events = epoll.poll(_LINGER_SECONDS)
            with lock:
                if not events and not by_fd:
                    self._thread = None
                    self._epoll = None
                    epoll.close()
                    return
                for fd, _flags in events:
                    entry = by_fd.get(fd)
                    if entry is not None:
                        self._carry_guarded(entry[0], fd, entry[1])

    def _carry_guarded(self, link: RelayLink, fd: int, from_client: bool, read: bytes | None = None) -> None:
        try:
            self._carry(link, fd, from_client, read)
        except Exception:  # a bug must cost one session, not every session on the thread
            logger.exception("the relay thread failed on a session; closing it")
            if link.attached:
                self._leave(link, "upstream")

    def _carry(self, link: RelayLink, fd: int, from_client: bool, read: bytes | None = None) -> None:
        """Move what ``fd`` has (or ``read``, already taken from it) to the other side."""
        if read is None:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._leave(link, _side(from_client))
                return
        else:
            data = read
        tls = link.client_tls if from_client else link.upstream_tls
        if tls is not None:
            try:
                data = tls.open(data)
            except ssl.SSLError as exc:
                if not isinstance(exc, ssl.SSLZeroReturnError):
                    logger.info("TLS failed on a relayed session's %s side: %s", _side(from_client), exc)
                self._leave(link, _side(from_client))
                return
            owed = tls.owed()
            if owed and not self._write_raw(link, owed, to_client=from_client):
                return
            if not data:
                return  # part of a record: the rest is still on its way
        link.last_activity = time.monotonic()
        channel = link.channel
        if from_client:
            payload = channel.unwrap(data)
            owed = channel.take_owed()
            if owed and not self._write(link, owed, to_client=True):
                return
            if payload:
                link.saw_client_bytes(payload)
                if not self._write(link, payload, to_client=False):
                    return
            if not channel.direct:
                self._leave(link, "frames")
        else:
            ready = link.saw_upstream_bytes(data)
            if not self._write(link, channel.wrap(data), to_client=True):
                return
            if ready and link.stop_when_idle:
                self._leave(link, "shutdown")

    def _write(self, link: RelayLink, data: bytes, to_client: bool) -> bool:
        tls = link.client_tls if to_client else link.upstream_tls
        if tls is not None:
            try:
                data = tls.seal(data)
            except ssl.SSLError as exc:
                logger.info("TLS failed on a relayed session's %s side: %s", _side(to_client), exc)
                self._leave(link, _side(to_client))
                return False
        return self._write_raw(link, data, to_client)

    def _write_raw(self, link: RelayLink, data: bytes, to_client: bool) -> bool:
        """Write ``data`` as it is; on a full socket keep the rest in ``link.unsent`` and leave."""
        fd = link.client_fd if to_client else link.upstream_fd
        assert fd is not None
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except OSError:
            self._leave(link, _side(to_client))
            return False
        if written < len(data):
            link.unsent = data[written:]
            link.unsent_to_client = to_client
            self.stalls += 1
            self._leave(link, "blocked")
            return False
        return True
