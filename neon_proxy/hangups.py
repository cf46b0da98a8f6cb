"""Noticing that the peer of a socket hung up, for many sockets at once, from one task.

The proxy must notice a client that goes away while its query runs (to cancel the query),
and an upstream server that closes an idle pooled connection. A trio task per socket
costs a task start, a cancel scope and a wake-up per request; here one task waits on a
private epoll set instead, and a socket is registered once for as long as it is watched
(a client connection for its life, an upstream connection until it is closed).

Only hang-ups count (``EPOLLRDHUP``, ``EPOLLHUP``, ``EPOLLERR``): bytes that arrive (a
pipelined request, a notice) stay in the socket for whoever reads it next. Where epoll is
missing (not Linux) ``watch`` returns False and the caller watches with a task of its own.
"""

from __future__ import annotations

import logging
import select
from typing import Callable

import trio

__all__ = ["HangupWatcher"]

logger = logging.getLogger("neon_proxy")

_EPOLLRDHUP: int | None = getattr(select, "EPOLLRDHUP", None)


class HangupWatcher:
    """Calls ``callback()`` once when the peer of a watched socket hangs up.

    ``run()`` must be running for ``watch`` to accept sockets. A callback runs in the
    watcher's task and must not block; the socket is no longer watched when it runs.
    Unwatch a socket when done with it, before or after closing it (the kernel forgets a
    closed descriptor by itself; this table is kept by socket, not by descriptor number).
    """

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None
        self._callbacks: dict[int, tuple[trio.socket.SocketType, Callable[[], None]]] = {}
        self._fds: dict[trio.socket.SocketType, int] = {}

    def __repr__(self) -> str:
        return f"<HangupWatcher {'running' if self._epoll is not None else 'stopped'} watching={len(self._callbacks)}>"

    @property
    def running(self) -> bool:
        """Whether ``watch`` accepts sockets."""
        return self._epoll is not None

    def watch(self, sock: trio.socket.SocketType, callback: Callable[[], None]) -> bool:
        """Start watching ``sock``; False if this watcher cannot (not running, no epoll)."""
        epoll = self._epoll
        if epoll is None or _EPOLLRDHUP is None:
            return False
        fd = sock.fileno()
        if fd < 0:
            return False
        stale = self._callbacks.get(fd)
        if stale is not None and stale[0] is not sock:
            self._fds.pop(stale[0], None)  # closed without unwatch; its number is reused
        try:
            epoll.register(fd, _EPOLLRDHUP)
        except FileExistsError:
            epoll.modify(fd, _EPOLLRDHUP)
        self._callbacks[fd] = (sock, callback)
        self._fds[sock] = fd
        return True

    def unwatch(self, sock: trio.socket.SocketType) -> None:
        """Stop watching ``sock`` (nothing happens if it is not watched)."""
        fd = self._fds.pop(sock, None)
        if fd is None:
            return
        entry = self._callbacks.get(fd)
        if entry is None or entry[0] is not sock:
            return
        del self._callbacks[fd]
        if self._epoll is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass  # closed already (or its number reused by a socket not watched)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled (returns at once, not running, where epoll is missing)."""
        if _EPOLLRDHUP is None or not hasattr(select, "epoll"):
            task_status.started()
            return
        epoll = select.epoll()
        self._epoll = epoll
        try:
            task_status.started()
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _flags in epoll.poll(0):
                    entry = self._callbacks.pop(fd, None)
                    try:
                        epoll.unregister(fd)
                    except OSError:
                        pass
                    if entry is not None:
                        self._fds.pop(entry[0], None)
                        try:
                            entry[1]()
                        except Exception:
                            logger.exception("a hang-up callback failed")
        finally:
            self._epoll = None
            self._callbacks.clear()
            self._fds.clear()
            epoll.close()
