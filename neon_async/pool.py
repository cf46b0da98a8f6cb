"""``Pool``: connections lent to tasks one at a time, for any event loop.

The decisions (what to lend, open, expire, when to try again) are ``neon_proto.pooling.PoolBook``'s,
shared with ``neon_sync.Pool``; this module does the async I/O around them. Waiters are served
first come, first served: a connection given back goes straight to the task that has waited
longest, and a freed slot wakes it. No background task: ``min_size`` connections are opened by
``open()`` (or ``async with``), and retiring old or idle connections and health checks happen
when a connection is lent or given back. A connection is never lent in an unknown state: one
given back in the middle of an operation is closed, one in a transaction is rolled back (or
closed if that fails), one idle for ``check_after`` seconds is checked first.
"""

from __future__ import annotations

import logging
from collections import deque
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Mapping, Sequence, TypeVar, Unpack

from neon_async.backend import Backend, Event
from neon_async.client import CLIENT_KEYWORDS, Client, ClientKeywords
from neon_async.client import connect_options as resolve_options
from neon_proto.errors import ConnectionClosed, Error, InterfaceError, OperationalError
from neon_proto.pooling import (
    worth_retrying,
    CONFIGURE_LEFT_TRANSACTION,
    RESET_SQL,
    BookedPool,
    Lend,
    Open,
    PoolEntry,
    PoolStats,
    connect_keywords,
    pool_book,
)
from neon_proto.results import Result

__all__ = ["Pool", "PoolTimeout", "PoolStats", "check_connection", "reset_session"]

logger = logging.getLogger("neon_async.pool")

C = TypeVar("C", bound=Client)

ClientHook = Callable[[Any], Awaitable[None]]

_POOL_KEYWORDS = frozenset(
    {"min_size", "max_size", "max_lifetime", "max_idle", "timeout", "check", "check_after", "configure", "reset",
     "connect_options", "name", "reconnect_backoff"}
)  # fmt: skip


class PoolTimeout(OperationalError):
    """No connection could be lent within the acquire timeout."""


async def check_connection(client: Client) -> None:
    """A ``check`` for ``Pool``: one round trip (an empty query); raises if the server is gone."""
    await client.run(client.session.simple_query(""))


async def reset_session(client: Client) -> None:
    """A ``reset`` for ``Pool``: discard session state as Neon's proxy does (settings, temp
    tables, prepared statements, cursors, LISTEN, advisory locks, role), in one round trip."""
    await client.run(client.session.simple_query(RESET_SQL))
    client.session.forget_prepared_statements()


class _Waiter(Generic[C]):
    __slots__ = ("event", "entry", "woken")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.entry: PoolEntry[C] | None = None  # handed over by a release
        self.woken = False  # something changed: look again


class Pool(BookedPool[C]):
    """Up to ``max_size`` connections (``min_size`` opened by ``open()``), lent one task at a time.

    - ``timeout``: how long ``acquire`` waits (``PoolTimeout`` after it, naming the last
      connection error if the server could not be reached; it is tried again with backoff).
    - ``max_lifetime`` / ``max_idle``: connections older, or idle longer (above ``min_size``),
      are closed when next looked at.
    - ``check_after``: a connection idle that long is checked before it is lent, with ``check``
      (an async function; ``check_connection`` pings, the default). A connection whose server
      sent something while it sat idle (a FATAL) is checked at once; one it closed is never lent.
    - ``configure(client)`` runs on each new connection, ``reset(client)`` on each return
      (``reset_session`` discards session state; off by default, as in psycopg_pool).
    - ``connect_options()``, when given, is called for each new connection; its keywords
      override the fixed ones (rotating tokens: ``lambda: {"password": token()}``).

    Other keyword arguments are the ``Client``'s; a misspelt one is a TypeError.
    """

    client_class: type[C]

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_size: int = 0,
        max_size: int = 10,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        timeout: float = 30.0,
        check: ClientHook | None = check_connection,
        check_after: float | None = 5.0,
        configure: ClientHook | None = None,
        reset: ClientHook | None = None,
        connect_options: Callable[[], Mapping[str, Any]] | None = None,
        name: str | None = None,
        reconnect_backoff: tuple[float, float] = (0.05, 2.0),
        **client_options: Unpack[ClientKeywords],
    ) -> None:
        # Checked now, so a misspelt keyword fails here and not at the first acquire().
        options = {k: v for k, v in client_options.items() if k not in CLIENT_KEYWORDS}
        self.options = resolve_options(dsn, options, caller="Pool", also_valid=CLIENT_KEYWORDS | _POOL_KEYWORDS)
        self._book = pool_book(
            min_size=min_size, max_size=max_size, max_lifetime=max_lifetime, max_idle=max_idle,
            reconnect_backoff=reconnect_backoff,
        )  # fmt: skip
        self.dsn = dsn
        self.name = name or f"pool-{id(self):x}"
        self.timeout = timeout
        self.check = check
        self.check_after = check_after
        self.configure = configure
        self.reset = reset
        self._connect_options = connect_options
        self._options: dict[str, Any] = dict(client_options)
        self._backend: Backend = self.client_class.backend
        self._lent: dict[int, PoolEntry[C]] = {}
        self._waiters: deque[_Waiter[C]] = deque()
        self._last_error: BaseException | None = None
        self._closing: list[C] = []  # retired where no await was possible; closed at the next one

    def stats(self) -> PoolStats:
        """Sizes now and counters since the pool was made."""
        return self._book.stats()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Open ``min_size`` connections now (a failure here is raised)."""
        book = self._book
        for _ in range(book.to_open(self._backend.time())):
            try:
                client = await self._new_client()
            except BaseException:
                book.open_failed(self._backend.time(), retry=False)
                raise
            book.opened(client, self._backend.time(), lend=False)

    async def close(self) -> None:
        """Close the idle connections and refuse new loans; lent ones close when given back."""
        gone = self._book.close()
        while self._waiters:
            self._wake_first()
        for entry in gone:
            await self._close(entry.connection)

    async def __aenter__(self) -> Pool[C]:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ lending

    async def acquire(self, timeout: float | None = None) -> C:
        """Lend a connection; give it back with ``release`` (or use ``connection()``)."""
        return await self._acquire(timeout, owes_schedule_point=True)

    async def _acquire(self, timeout: float | None, *, owes_schedule_point: bool) -> C:
        """``acquire``; without ``owes_schedule_point`` the caller's next call (a query) gives
        other tasks their turn, so a connection that was at hand is lent without one."""
        backend = self._backend
        await backend.checkpoint_if_cancelled()  # before anything is taken: a cancellation here loses nothing
        client, took_turn = await self._take(timeout)
        if owes_schedule_point and not took_turn:
            await backend.schedule_point()  # cancel-shielded: the connection is never lost here
        return client

    async def _take(self, timeout: float | None) -> tuple[C, bool]:
        """A connection to lend, and whether other tasks had their turn meanwhile."""
        backend = self._backend
        book = self._book
        took_turn = False
        wait = self.timeout if timeout is None else timeout
        started = backend.time()
        deadline = started + wait
        queued = False
        while True:
            if book.closed:
                raise InterfaceError("the pool is closed")
            now = backend.time()
            self._closing.extend(entry.connection for entry in book.expired(now))
            await self._close_retired()
            step = book.next_step(now) if (queued or not self._waiters) else None
            if isinstance(step, Lend):
                client = await self._vet(step.entry)
                if client is not None:
                    return self._lend(step.entry, started, queued), took_turn
                took_turn = True  # closing the bad one
                continue
            if isinstance(step, Open):
                took_turn = True  # connecting waits for the server
                entry = await self._fill_slot(deadline)
                if entry is not None:
                    return self._lend(entry, started, queued), took_turn
                continue
            remaining = deadline - now
            if remaining <= 0:
                book.record_timeout(now - started)
                message = f"pool {self.name}: no connection could be lent within {wait:g} s (max_size={book.max_size})"
                if self._last_error is not None:
                    message += f"; the last connection attempt failed: {self._last_error}"
                raise PoolTimeout(message) from self._last_error
            until = remaining if step is None or step.until is None else min(remaining, max(0.0, step.until - now))
            queued = True
            took_turn = True
            entry = await self._wait(until)
            if entry is not None:
                return self._lend(entry, started, queued), took_turn

    async def _wait(self, seconds: float) -> PoolEntry[C] | None:
        """Wait in line; a release may hand over its connection directly."""
        waiter: _Waiter[C] = _Waiter(self._backend.event())
        self._waiters.append(waiter)
        self._book.waiting += 1
        try:
            async with self._backend.timeout(seconds):
                await waiter.event.wait()
        except BaseException:
            self._leave(waiter)
            raise
        finally:
            self._book.waiting -= 1
        entry, waiter.entry = waiter.entry, None
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        return entry

    def _leave(self, waiter: _Waiter[C]) -> None:
        """A waiter that stops waiting passes on what it was given."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        entry, waiter.entry = waiter.entry, None
        if entry is not None:
            self._hand_over(entry)
        elif waiter.woken:
            self._wake_first()

    def _wake_first(self) -> None:
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.woken = True
            waiter.event.set()

    def _hand_over(self, entry: PoolEntry[C]) -> None:
        """A good connection goes to the longest waiter, or back to the idle ones."""
        book = self._book
        if not book.give_back(entry, self._backend.time()):
            self._closing.append(entry.connection)
            self._wake_first()
            return
        if self._waiters:
            step = book.next_step(self._backend.time())
            assert isinstance(step, Lend)
            waiter = self._waiters.popleft()
            waiter.entry = step.entry
            waiter.event.set()

    def _lend(self, entry: PoolEntry[C], started: float, queued: bool) -> C:
        self._lent[id(entry.connection)] = entry
        # A loop's clock may be coarse (uvloop's ticks in milliseconds): a wait counts even if it read 0.
        self._book.record_request(max(self._backend.time() - started, 1e-9) if queued else 0.0)
        return entry.connection

    async def _vet(self, entry: PoolEntry[C]) -> C | None:
        """The idle connection if it is alive (and passes its check when due); else it is closed."""
        client = entry.connection
        ok = client.poll()  # no round trip: did the server end it while it sat idle?
        idle_for = self._backend.time() - entry.returned_at
        due = self.check_after is not None and idle_for >= self.check_after
        if ok and (due or client.has_unread_bytes()):
            try:
                await (self.check or check_connection)(client)
                ok = not client.closed and client.transaction_status == "I"
            except Error as exc:
                logger.info("pool %s: a connection failed its check (%s); discarding it", self.name, exc)
                ok = False
        if ok:
            return client
        self._book.discard(entry)
        self._wake_first()
        await self._close(client)
        return None

    async def _fill_slot(self, deadline: float) -> PoolEntry[C] | None:
        """Open a connection for a reserved slot. A server that is away backs off (None); a
        wrong password or database is raised at once."""
        book = self._book
        try:
            client = await self._new_client()
        except BaseException as exc:
            retry = worth_retrying(exc)
            book.open_failed(self._backend.time(), retry=retry)
            self._wake_first()
            if not retry:
                raise
            self._last_error = exc
            logger.info("pool %s: could not connect (%s); trying again", self.name, exc)
            return None
        self._last_error = None
        return book.opened(client, self._backend.time(), lend=True)

    async def _new_client(self) -> C:
        client = self.client_class(self.dsn, **connect_keywords(self._options, self._connect_options))
        await client.connect(wait=True)
        if self.configure is not None:
            try:
                await self.configure(client)
                if client.transaction_status != "I":
                    raise InterfaceError(CONFIGURE_LEFT_TRANSACTION)
            except BaseException:
                await self._close(client)
                raise
        return client

    async def release(self, client: C) -> None:
        """Take a connection back: rolled back (and reset, if configured) before it is lent
        again; a broken one, or one that cannot be brought back to idle, is closed."""
        await self._give_back(client)
        await self._backend.checkpoint()

    async def _give_back(self, client: C) -> None:
        """``release`` without its checkpoint (for a caller whose query just had one)."""
        entry = self._lent.pop(id(client), None)
        if entry is None:
            raise InterfaceError("this connection was not lent by this pool")
        if self.reset is None and not client.closed and client.session.idle and client.transaction_status == "I":
            good = True  # clean already: nothing to send, so no shielded section
        else:
            async with self._backend.shielded(client.cancel_timeout):
                good = await self._restore(client)
        if not good:
            self._book.discard(entry, bad_return=True)
            self._wake_first()
            await self._close(client)
            return
        self._hand_over(entry)
        await self._close_retired()

    async def _close_retired(self) -> None:
        while self._closing:
            await self._close(self._closing.pop())

    async def _restore(self, client: C) -> bool:
        """Bring a returned connection to a clean idle state; False if it cannot be."""
        if client.closed or not client.session.idle:
            # Given back in the middle of an operation (an unfinished COPY, say): what is left
            # in the stream would reach the next borrower.
            return False
        try:
            if client.transaction_status != "I":
                self._book.note_bad_return()
                await client.query("ROLLBACK")
            if self.reset is not None:
                await self.reset(client)
        except Error as exc:
            logger.info("pool %s: discarding a connection that could not be reset: %s", self.name, exc)
            return False
        return not client.closed and client.transaction_status == "I"

    async def _close(self, client: C) -> None:
        async with self._backend.shielded(1.0):
            try:
                await client.close()
            except ConnectionClosed:
                pass

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
        # The query is this call's checkpoint: acquiring and giving back add none of their own.
        client = await self._acquire(None, owes_schedule_point=False)
        try:
            return await client.query(text, params, **options)
        finally:
            await self._give_back(client)

