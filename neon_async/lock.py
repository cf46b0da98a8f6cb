"""``TurnLock``: one operation at a time on a connection, taken without an await when free.

The event loops' own locks are coroutines even when uncontended; a client takes its lock
once per query, so this one has a synchronous ``try_acquire`` and falls back to waiting on a
backend ``Event`` only when another task holds it. Waiters are served first come, first
served, and the lock is handed to the next waiter directly on release, so a task arriving
later cannot barge in ahead of them.
"""

from __future__ import annotations

from collections import deque

from neon_async.backend import Backend, Event

__all__ = ["TurnLock"]


class TurnLock:
    """A FIFO mutex for tasks of one event loop (trio or asyncio)."""

    __slots__ = ("_backend", "_held", "_waiters")

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._held = False
        self._waiters: deque[Event] = deque()

    def locked(self) -> bool:
        """Whether a task holds the lock."""
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock if it is free and nobody waits for it; never waits."""
        if self._held or self._waiters:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        """Take the lock, waiting in line while another task holds it."""
        if self.try_acquire():
            return
        handed = self._backend.event()
        self._waiters.append(handed)
        try:
            await handed.wait()
        except BaseException:
            if handed.is_set():
                self.release()  # handed over just as we were cancelled: pass it on
            else:
                self._waiters.remove(handed)
            raise

    def release(self) -> None:
        """Give the lock to the longest waiter, or free it."""
        if self._waiters:
            self._waiters.popleft().set()  # still held: ownership moves to that waiter
        else:
            self._held = False
