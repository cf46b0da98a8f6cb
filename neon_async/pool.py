"""``Pool``: connections lent to tasks one at a time, for any event loop.

Waiters are served first come, first served: a connection given back goes straight to the
task that has waited longest, and a freed slot wakes it to open one. No background task:
``min_size`` connections are opened by ``open()`` (or ``async with``), and everything else
(retiring old or idle connections, health checks) happens when a connection is lent or
given back. A connection is never lent in an unknown state: one given back in the middle of
an operation is closed, one in a transaction is rolled back (or closed if that fails), one
idle for ``check_after`` seconds is pinged first.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Sequence, TypeVar, Unpack

from neon_async.backend import Backend, Event
from neon_async.client import CLIENT_KEYWORDS, Client, ClientKeywords, connect_options
from neon_proto.errors import Error, InterfaceError, OperationalError
from neon_proto.results import Result

__all__ = ["Pool", "PoolTimeout"]

logger = logging.getLogger("neon_async.pool")

C = TypeVar("C", bound=Client)

CheckFunction = Callable[[Any], Awaitable[None]]


class PoolTimeout(OperationalError):
    """No connection became free within the acquire timeout."""


async def ping(client: Client) -> None:
    """The built-in health check: one empty query, one round trip."""
    await client.run(client.session.simple_query(""))


async def discard_session_state(client: Client) -> None:
    """The built-in reset: what a session set up (settings, temp tables, prepared
    statements, LISTEN, advisory locks) is dropped, as Neon's proxy does between clients."""
    await client.run(client.session.simple_query("DISCARD ALL"))
    client.session.forget_prepared_statements()


class _Waiter:
    __slots__ = ("event", "client", "slot")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.client: Any = None
        self.slot = False


class _Idle(Generic[C]):
    __slots__ = ("client", "created", "since")

    def __init__(self, client: C, created: float, since: float) -> None:
        self.client = client
        self.created = created
        self.since = since


class Pool(Generic[C]):
    """Up to ``max_size`` connections, lent one at a time and taken back.

    ``acquire_timeout`` bounds the wait for a connection (``PoolTimeout``); ``min_size`` are
    opened by ``open()``; connections older than ``max_lifetime`` or idle longer than
    ``max_idle`` seconds are closed when next looked at; a connection idle for
    ``check_after`` seconds is checked with ``check`` (a ping by default) before it is lent.
    ``reset`` (off by default; True for ``DISCARD ALL``, or an async function) runs when a
    connection comes back; ``configure`` (an async function) runs on each new connection.
    Other keyword arguments are the ``Client``'s.
    """

    client_class: type[C]

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_size: int = 0,
        max_size: int = 10,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 300.0,
        acquire_timeout: float = 30.0,
        check_after: float | None = 5.0,
        check: CheckFunction | None = ping,
        reset: bool | CheckFunction = False,
        configure: CheckFunction | None = None,
        **client_options: Unpack[ClientKeywords],
    ) -> None:
        if max_size < 1:
            raise InterfaceError("max_size must be at least 1")
        if not 0 <= min_size <= max_size:
            raise InterfaceError("min_size must be between 0 and max_size")
        # Parse now: a misspelt option or a bad DSN fails here, not at the first acquire.
        connection_options = {k: v for k, v in client_options.items() if k not in CLIENT_KEYWORDS}
        self.options = connect_options(dsn, connection_options, caller="Pool")
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.acquire_timeout = acquire_timeout
        self.check_after = check_after
        self.check = check
        self.reset: CheckFunction | None = discard_session_state if reset is True else (reset or None)
        self.configure = configure
        self._options: dict[str, Any] = dict(client_options)
        self._backend: Backend = self.client_class.backend
        self._idle: deque[_Idle[C]] = deque()
        self._created: dict[int, float] = {}
        self._waiters: deque[_Waiter] = deque()
        self._size = 0  # connections lent or idle, plus those being opened
        self._closed = False
        self._stats = dict.fromkeys(
            (
                "requests_num",
                "requests_queued",
                "requests_wait_ms",
                "requests_errors",
                "connections_num",
                "connections_errors",
                "connections_lost",
                "returns_bad",
            ),
            0,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__module__.split('.')[0]}.Pool size={self._size} idle={len(self._idle)} max={self.max_size}>"

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._size

    @property
    def idle_count(self) -> int:
        """Connections waiting to be lent."""
        return len(self._idle)

    def stats(self) -> dict[str, int]:
        """Counters in psycopg_pool's names: pool_min/max/size/available, requests_waiting,
        requests_num/queued/wait_ms/errors, connections_num/errors/lost, returns_bad."""
        return {
            "pool_min": self.min_size,
            "pool_max": self.max_size,
            "pool_size": self._size,
            "pool_available": len(self._idle),
            "requests_waiting": len(self._waiters),
            **self._stats,
        }

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open ``min_size`` connections now (a failure here is raised)."""
        while self._size < self.min_size:
            self._size += 1
            try:
                client = await self._new_client()
            except BaseException:
                self._size -= 1
                raise
            self._idle.append(_Idle(client, self._created[id(client)], self._backend.time()))

    async def close(self) -> None:
        """Close the idle connections and refuse new loans; lent ones close when given back."""
        self._closed = True
        while self._idle:
            await self._discard(self._idle.pop().client)
        while self._waiters:
            self._waiters.popleft().event.set()

    async def __aenter__(self) -> Pool[C]:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ lending

    async def acquire(self, timeout: float | None = None) -> C:
        """Lend a connection; give it back with ``release``. Waits up to ``timeout`` seconds
        (default ``acquire_timeout``), then raises PoolTimeout."""
        backend = self._backend
        await backend.checkpoint()  # before anything is taken: a cancellation here loses nothing
        wait = self.acquire_timeout if timeout is None else timeout
        start = backend.time()
        self._stats["requests_num"] += 1
        queued = False
        while True:
            if self._closed:
                raise InterfaceError("the pool is closed")
            if not self._waiters or queued:
                client = await self._take_idle()
                if client is not None:
                    self._note_wait(start, queued)
                    return client
                if self._size < self.max_size:
                    self._size += 1
                    try:
                        client = await self._new_client()
                    except BaseException:
                        self._size -= 1
                        self._wake_for_slot()
                        raise
                    self._note_wait(start, queued)
                    return client
            remaining = start + wait - backend.time()
            if remaining <= 0:
                self._stats["requests_errors"] += 1
                raise PoolTimeout(f"no connection became free within {wait:g} s (max_size={self.max_size})")
            if not queued:
                self._stats["requests_queued"] += 1
                queued = True
            waiter = _Waiter(backend.event())
            self._waiters.append(waiter)
            try:
                async with backend.timeout(remaining):
                    await waiter.event.wait()
            except BaseException:
                self._forget(waiter)
                raise
            if waiter.client is not None:
                self._note_wait(start, queued)
                client = waiter.client
                assert isinstance(client, self.client_class)
                return client
            if waiter in self._waiters:  # timed out: the loop tries once more, then gives up
                self._waiters.remove(waiter)

    def _note_wait(self, start: float, queued: bool) -> None:
        if queued:
            self._stats["requests_wait_ms"] += int((self._backend.time() - start) * 1000)

    def _forget(self, waiter: _Waiter) -> None:
        """A waiter that stops waiting passes on what it was given."""
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass
        if waiter.client is not None:
            client, waiter.client = waiter.client, None
            self._give(client)
        elif waiter.slot:
            self._wake_for_slot()

    def _wake_for_slot(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.slot = True
            waiter.event.set()

    def _give(self, client: C) -> None:
        """Hand a good connection to the longest waiter, or keep it idle."""
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.client = client
            waiter.event.set()
        else:
            self._idle.append(_Idle(client, self._created.get(id(client), 0.0), self._backend.time()))

    async def _new_client(self) -> C:
        try:
            client = await self.client_class(self.dsn, **self._options).connect()
            if self.configure is not None:
                try:
                    await self.configure(client)
                except BaseException:
                    await client.close()
                    raise
        except Error:
            self._stats["connections_errors"] += 1
            raise
        self._stats["connections_num"] += 1
        self._created[id(client)] = self._backend.time()
        return client

    async def _take_idle(self) -> C | None:
        """The most recently used idle connection that is still good, or None."""
        backend = self._backend
        while self._idle:
            entry = self._idle.pop()
            client = entry.client
            now = backend.time()
            if self._expired(entry.created, now) or (
                self.max_idle is not None and now - entry.since > self.max_idle
            ):
                await self._discard(client)
                continue
            if not client.poll():  # the server ended it while it sat idle
                self._stats["connections_lost"] += 1
                await self._discard(client)
                continue
            due = self.check is not None and self.check_after is not None and now - entry.since >= self.check_after
            if due or client.has_unread_bytes():
                try:
                    await (self.check or ping)(client)
                except Error as exc:
                    logger.info("discarding a pooled connection that failed its check: %s", exc)
                    self._stats["connections_lost"] += 1
                    await self._discard(client)
                    continue
            return client
        return None

    def _expired(self, created: float, now: float) -> bool:
        return self.max_lifetime is not None and now - created > self.max_lifetime

    async def release(self, client: C) -> None:
        """Take a connection back: rolled back (and reset, if configured) before it is lent
        again; a broken one, or one that cannot be brought back to idle, is closed."""
        async with self._backend.shielded(client.cancel_timeout):
            if not await self._restore(client):
                self._stats["returns_bad"] += 1
                await self._discard(client)
                return
        if self._closed or self._expired(self._created.get(id(client), 0.0), self._backend.time()):
            await self._discard(client)
            return
        self._give(client)
        await self._backend.checkpoint()

    async def _restore(self, client: C) -> bool:
        """Bring a returned connection to a clean idle state; False if it cannot be."""
        if client.closed:
            return False
        if not client.session.idle:
            # Given back in the middle of an operation (an unfinished COPY, say): what is left
            # in the stream would reach the next borrower.
            return False
        try:
            if client.transaction_status != "I":
                await client.query("ROLLBACK")
            if self.reset is not None:
                await self.reset(client)
        except Error as exc:
            logger.info("discarding a connection that could not be reset: %s", exc)
            return False
        return not client.closed

    async def _discard(self, client: C) -> None:
        self._created.pop(id(client), None)
        self._size -= 1
        try:
            async with self._backend.shielded(1.0):
                await client.close()
        finally:
            self._wake_for_slot()

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[C]:
        """``async with pool.connection() as client:`` lend a Client for the block."""
        client = await self.acquire(timeout)
        try:
            yield client
        finally:
            await self.release(client)

    async def query(self, text: str, params: Sequence[Any] | None = None, **options: Any) -> Result:
        """Run one query on a pooled connection."""
        async with self.connection() as client:
            return await client.query(text, params, **options)
