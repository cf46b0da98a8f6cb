"""``Pool``: a thread-safe pool of ``Client`` connections, in the manner of psycopg_pool.

The decisions (what to lend, open, expire, when to retry) are ``neon_proto.pooling.PoolBook``'s;
this module does the I/O around them: connecting, checking, resetting, closing, and one
background thread that keeps ``min_size`` connections open and closes expired ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence, Unpack

import attrs

from neon_proto.errors import InterfaceError, OperationalError
from neon_proto.options import ConnectOptions, resolve_connect_options
from neon_proto.pooling import (
    worth_retrying,
    CONFIGURE_LEFT_TRANSACTION,
    RESET_SQL,
    BookedPool,
    Lend,
    Open,
    PoolBook,
    PoolEntry,
    PoolStats,
    Wait,
    connect_keywords,
    pool_book,
)
from neon_proto.results import Result
from neon_sync._io import read_config_file
from neon_sync.client import CLIENT_KEYWORDS, Client, ClientKeywords
from neon_sync.http import NeonHTTP

__all__ = ["Pool", "PoolTimeout", "TooManyRequests", "PoolStats", "check_connection", "reset_session"]

logger = logging.getLogger("neon_sync.pool")

ClientHook = Callable[[Client], None]

_POOL_KEYWORDS = frozenset({
    "min_size", "max_size", "max_lifetime", "max_idle", "timeout", "check", "configure", "reset",
    "connect_options", "name", "reconnect_backoff", "max_waiting",
})  # fmt: skip


class PoolTimeout(OperationalError):
    """No connection could be lent within the acquire timeout."""


class TooManyRequests(OperationalError):
    """``max_waiting`` acquirers are already waiting: refused at once rather than queued."""


def check_connection(client: Client) -> None:
    """A ``check`` for ``Pool``: one round trip (an empty query); raises if the server is gone."""
    client.simple_query("")


def reset_session(client: Client) -> None:
    """A ``reset`` for ``Pool``: discard session state as Neon's proxy does (settings, temp
    tables, prepared statements, cursors, LISTEN, advisory locks, role), in one round trip."""
    client.simple_query(RESET_SQL)


@attrs.define
class _WorkerSignal:
    """Set under the pool's lock when the worker should look again before sleeping."""

    pending: bool = False


def _maintain(pool_ref: "weakref.ref[Pool]", book: PoolBook[Client], worker_cond: threading.Condition, signal: _WorkerSignal) -> None:
    """The maintenance thread. Holds the pool only while working, so a dropped pool is collected."""
    while True:
        pool = pool_ref()
        if pool is None:
            return
        with worker_cond:
            if book.closed:
                break
            now = time.monotonic()
            busy = signal.pending or book.to_open_now(now) or book.has_expired(now)
            signal.pending = False
            if not busy:
                deadline = book.next_deadline(now)
                del pool  # not kept alive by a sleeping worker
                worker_cond.wait(None if deadline is None else max(0.001, deadline - now))
                continue
        pool._maintain_once()
        del pool
    _abandon(book, worker_cond, worker_cond)


def _abandon(book: PoolBook[Client], cond: threading.Condition, worker_cond: threading.Condition) -> None:
    """Close a pool's idle connections and wake its worker (close(), or the pool was collected)."""
    with cond:
        gone = book.close()
        cond.notify_all()
        worker_cond.notify_all()
    for entry in gone:
        entry.connection.close()


class Pool(BookedPool[Client]):
    """Up to ``max_size`` connections (at least ``min_size`` kept open), lent one thread at a time.

    - ``timeout``: how long ``acquire`` waits (``PoolTimeout`` after it, naming the last
      connection error if the server could not be reached); ``max_waiting`` (0: no limit)
      refuses a new acquire with ``TooManyRequests`` when that many already wait.
    - ``max_lifetime`` / ``max_idle``: connections older, or idle longer (above ``min_size``),
      are closed and replaced as needed.
    - ``check(client)``: run before each loan of an idle connection (``check_connection`` pings);
      one that fails is discarded. A connection the server closed is never lent.
    - ``configure(client)``: run once on each new connection. ``reset(client)``: run on each
      return (``reset_session`` discards session state); a failure discards the connection.
    - ``connect_options()``, when given, is called for each new connection and its keywords
      override the fixed ones: rotating tokens are ``connect_options=lambda: {"password": token()}``.
    - A connection given back inside a transaction is rolled back; one given back in the middle
      of an operation, or that cannot be rolled back, is closed. Never lent as it was.
    - When the server goes away, new connections are tried again with backoff until the
      acquire's timeout.

    Other keyword arguments are ``Client``'s (``sslmode``, ``application_name``, ...); a
    misspelt one is a TypeError.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_size: int = 0,
        max_size: int = 10,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        timeout: float = 30.0,
        max_waiting: int = 0,
        check: ClientHook | None = None,
        configure: ClientHook | None = None,
        reset: ClientHook | None = None,
        connect_options: Callable[[], Mapping[str, Any]] | None = None,
        name: str | None = None,
        reconnect_backoff: tuple[float, float] = (0.05, 2.0),
        **client_options: Unpack[ClientKeywords],
    ) -> None:
        # Checked now, so a misspelt keyword fails here and not at the first acquire().
        self.options = self._check_options(dsn, client_options)
        self._connect_timeout = self.options.params.connect_timeout
        self._fetch: NeonHTTP | None = None  # Pool.query over HTTP with pool_query_via_fetch
        self._book: PoolBook[Client] = pool_book(
            min_size=min_size, max_size=max_size, max_lifetime=max_lifetime, max_idle=max_idle,
            reconnect_backoff=reconnect_backoff,
        )  # fmt: skip
        if timeout < 0:
            raise InterfaceError(f"timeout must not be negative, not {timeout}")
        self.dsn = dsn
        self.name = name or f"pool-{id(self):x}"
        self.timeout = timeout
        self.max_waiting = max_waiting
        self._check = check
        self._configure = configure
        self._reset = reset
        self._connect_options = connect_options
        self._options: dict[str, Any] = dict(client_options)
        self._entries: dict[int, PoolEntry[Client]] = {}  # id(client) -> its entry, while lent
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # acquirers wait on it
        self._worker_cond = threading.Condition(lock)  # the maintenance thread waits on it
        self._last_error: BaseException | None = None
        self._signal = _WorkerSignal()
        self._worker: threading.Thread | None = None
        if min_size > 0 or max_idle is not None or max_lifetime is not None:
            self._worker = threading.Thread(
                target=_maintain, args=(weakref.ref(self), self._book, self._worker_cond, self._signal),
                name=f"{self.name}-worker", daemon=True,
            )  # fmt: skip
            self._worker.start()
        # A pool dropped without close(): its idle connections close and its worker ends.
        self._finalizer = weakref.finalize(self, _abandon, self._book, self._cond, self._worker_cond)

    def stats(self) -> PoolStats:
        """Sizes now and counters since the pool was made."""
        with self._cond:
            return self._book.stats()

    # ---------------------------------------------------------------- opening connections

    @staticmethod
    def _check_options(dsn: str | None, options: Mapping[str, Any]) -> ConnectOptions:
        """Raise for a bad keyword or connection string now, not at the first acquire."""
        connection = {k: v for k, v in options.items() if k not in CLIENT_KEYWORDS}
        return resolve_connect_options(
            dsn, connection, env=os.environ, caller="Pool", also_valid=CLIENT_KEYWORDS | _POOL_KEYWORDS,
            read_file=read_config_file,
        )  # fmt: skip

    def _open_client(self, deadline: float | None = None) -> Client:
        options = connect_keywords(self._options, self._connect_options)
        if deadline is not None:
            # An acquire does not wait on a connect attempt longer than its own timeout.
            remaining = max(deadline - time.monotonic(), 0.001)
            given = self._connect_timeout
            options = {**options, "connect_timeout": remaining if given is None else min(given, remaining)}
        client = Client(self.dsn, **options).connect(wait=True)
        if self._configure is not None:
            try:
                self._configure(client)
            except BaseException:
                client.close()
                raise
            if client.transaction_status != "I":
                client.close()
                raise InterfaceError(CONFIGURE_LEFT_TRANSACTION)
        return client

    def wait(self, timeout: float = 30.0) -> None:
        """Block until ``min_size`` connections are open; PoolTimeout otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wake_worker()
        while True:  # polls: a notification meant for an acquirer must not be taken here
            with self._cond:
                stats = self._book.stats()
            if stats.idle + stats.lent >= stats.min_size:
                return
            if time.monotonic() >= deadline:
                raise PoolTimeout(self._timeout_message(f"{stats.min_size} connections were not open", timeout))
            time.sleep(0.01)

    # ---------------------------------------------------------------- lending

    def acquire(self, timeout: float | None = None) -> Client:
        """Lend a connection; give it back with ``release`` (or use ``connection()``)."""
        wait = self.timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + wait
        book = self._book
        waited = False
        while True:
            with self._cond:
                if book.closed:
                    raise InterfaceError("the pool is closed")
                now = time.monotonic()
                expired = book.expired(now)
                step = book.next_step(now)
                if isinstance(step, Wait):
                    remaining = deadline - now
                    if remaining <= 0:
                        book.record_timeout(now - started)
                        self._cond.notify()  # pass on a wake-up this waiter may have taken
                        raise PoolTimeout(self._timeout_message("no connection could be lent", wait)) from self._last_error
                    if not waited and self.max_waiting and book.waiting >= self.max_waiting:
                        raise TooManyRequests(f"pool {self.name}: {book.waiting} requests are already waiting (max_waiting)")
                    book.waiting += 1
                    waited = True
                    try:
                        until = remaining if step.until is None else min(remaining, max(0.0, step.until - now))
                        self._cond.wait(until)
                    finally:
                        book.waiting -= 1
            self._close_all(expired)
            if isinstance(step, Wait):
                continue
            if isinstance(step, Lend):
                client = self._vet(step.entry)
                if client is None:
                    continue
                entry = step.entry
            else:
                assert isinstance(step, Open)
                opened = self._try_open(lend=True, deadline=deadline)
                if opened is None:
                    continue
                entry = opened
            with self._cond:
                self._entries[id(entry.connection)] = entry
                book.record_request(time.monotonic() - started if waited else 0.0)
            return entry.connection

    def _vet(self, entry: PoolEntry[Client]) -> Client | None:
        """The idle connection if it is alive and passes ``check``; else it is closed (None)."""
        client = entry.connection
        ok = False
        try:
            alive = client.poll()  # no round trip: did the server end it while it sat idle?
            if alive and self._check is not None:
                self._check(client)
                alive = not client.closed and client.transaction_status == "I"
            ok = alive
        except Exception as exc:  # noqa: BLE001 - any failure means: do not lend it
            logger.info("pool %s: a connection failed its check (%s); discarding it", self.name, exc)
            ok = False
        finally:
            if not ok:  # also when interrupted (KeyboardInterrupt): the slot is freed
                self._forget(entry)
        return client if ok else None

    def _forget(self, entry: PoolEntry[Client], *, bad_return: bool = False) -> None:
        """Close a lent connection that will not be lent again and free its slot."""
        with self._cond:
            self._book.discard(entry, bad_return=bad_return)
            self._cond.notify()  # a slot is free: one waiter may open a connection
            self._wake_worker()
        entry.connection.close()

    def _try_open(self, *, lend: bool, deadline: float | None = None) -> PoolEntry[Client] | None:
        """Fill a reserved slot. A server that is away backs off (None); other errors raise
        (and back off too, so that a wrong password is not tried in a tight loop)."""
        try:
            client = self._open_client(deadline)
        except BaseException as exc:
            retry = worth_retrying(exc)
            with self._cond:
                self._book.open_failed(time.monotonic(), retry=isinstance(exc, Exception))
                self._last_error = exc
                self._cond.notify_all()
                self._wake_worker()
            if not retry:
                raise
            logger.info("pool %s: could not connect (%s); trying again after a pause", self.name, exc)
            return None
        with self._cond:
            self._last_error = None
            entry = self._book.opened(client, time.monotonic(), lend=lend)
            if not lend:
                self._cond.notify()  # one more idle connection: one waiter takes it
        return entry

    def _timeout_message(self, what: str, wait: float) -> str:
        book = self._book
        message = f"pool {self.name}: {what} within {wait:g} s (size {book.size}, max_size={book.max_size})"
        if self._last_error is not None:
            message += f"; last connection error: {self._last_error}"
        return message

    # ---------------------------------------------------------------- giving back

    def release(self, client: Client) -> None:
        """Take a connection back: rolled back and reset if needed, or closed if it cannot be."""
        with self._cond:
            entry = self._entries.pop(id(client), None)
        if entry is None:
            raise InterfaceError("this connection was not lent by this pool (or was given back already)")
        try:
            self._take_back(entry)
        except BaseException:
            self._forget(entry, bad_return=True)  # interrupted while repairing it: never lend it
            raise

    def _take_back(self, entry: PoolEntry[Client]) -> None:
        client = entry.connection
        usable = not client.closed
        repaired = False
        if usable and not client.session.idle:
            # Given back in the middle of an operation (an unfinished COPY, say): what is left
            # in the stream would reach the next borrower.
            usable = False
        elif usable and client.transaction_status != "I":
            repaired = True
            try:
                client.simple_query("ROLLBACK")
                usable = not client.closed
            except Exception:  # noqa: BLE001 - then it is closed below
                logger.info("pool %s: discarding a connection that could not be rolled back", self.name)
                usable = False
        if usable and self._reset is not None:
            try:
                self._reset(client)
                if client.transaction_status != "I":
                    raise InterfaceError("reset() left the connection inside a transaction")
                usable = not client.closed
            except Exception as exc:  # noqa: BLE001
                logger.info("pool %s: reset failed (%s); discarding the connection", self.name, exc)
                usable = False
        with self._cond:
            if not usable:
                self._book.discard(entry, bad_return=True)
                self._wake_worker()
                kept = False
            else:
                if repaired:
                    self._book.note_bad_return()
                kept = self._book.give_back(entry, time.monotonic())
            # One connection (or slot) came back: one waiter. Waking them all would have every
            # waiter but one go back to sleep; a waiter that loses the race to a newcomer waits again.
            self._cond.notify()
        if not kept:
            client.close()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Client]:
        """Lend a Client for the ``with`` block, then take it back."""
        client = self.acquire(timeout)
        try:
            yield client
        finally:
            self.release(client)

    def query(self, text: str, params: Sequence[Any] | None = None, **options: Any) -> Result:
        """Run one query on a pooled connection (over HTTP with ``pool_query_via_fetch``)."""
        if self.options.transport.pool_query_via_fetch:
            return self._http()(text, params, full_results=True, **options)
        with self.connection() as client:
            return client.query(text, params, **options)

    def _http(self) -> NeonHTTP:
        """The HTTP query function Pool.query uses with ``pool_query_via_fetch`` (made once)."""
        with self._cond:
            if self._fetch is None:
                transport = self.options.transport
                self._fetch = NeonHTTP(
                    self.options.params,
                    fetch_endpoint=transport.fetch_endpoint,
                    array_mode=bool(self._options.get("array_mode", False)),
                )
            return self._fetch

    # ---------------------------------------------------------------- maintenance

    def _maintain_once(self) -> None:
        """The worker's work, when there is some: close expired, open up to ``min_size``."""
        with self._cond:
            now = time.monotonic()
            expired = self._book.expired(now)
            wanted = self._book.to_open(now)
        self._close_all(expired)
        for _ in range(wanted):
            try:
                self._try_open(lend=False)
            except BaseException as exc:  # noqa: BLE001 - acquirers report it; keep the pool alive
                logger.warning("pool %s: cannot open a connection: %s", self.name, exc)

    def _wake_worker(self) -> None:
        """Under the lock: let the worker look again (a slot freed below min_size, a drain, close)."""
        self._signal.pending = True
        self._worker_cond.notify()

    def _close_all(self, entries: Sequence[PoolEntry[Client]]) -> None:
        for entry in entries:
            entry.connection.close()

    def drain(self) -> None:
        """Replace every connection: idle ones close now, lent ones when given back (after a
        failover, a password change or a schema change that cached statements would miss)."""
        with self._cond:
            gone = self._book.drain()
            self._wake_worker()
            self._cond.notify_all()
        self._close_all(gone)

    def close(self) -> None:
        """Close every idle connection and refuse new loans; lent ones close when given back."""
        with self._cond:
            gone = self._book.close() if not self._book.closed else []
            self._cond.notify_all()
            self._wake_worker()
            if self._fetch is not None:
                self._fetch.close()
        self._close_all(gone)
        self._finalizer.detach()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(5)

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
