"""Connection-pool bookkeeping without I/O, threads or clocks: the part every pool shares.

A binding (the blocking ``neon_sync.Pool``, an async pool) owns the connections, the locks and
the clock; ``PoolBook`` decides. An acquirer asks ``next_step(now)`` and gets ``Lend`` (an idle
connection), ``Open`` (a slot reserved: open one and report ``opened`` or ``open_failed``) or
``Wait`` (until something is given back, or until ``Wait.until`` when reconnecting backs off).
Connections go back with ``give_back``; ``expired(now)`` hands out the idle ones past
``max_idle`` (above ``min_size``) or ``max_lifetime`` for the binding to close; ``to_open(now)``
says how many the binding's background worker should open to reach ``min_size``. Every time is
a number the caller passes (seconds on a monotonic clock).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Generic, Mapping, TypeVar

import attrs

from neon_proto.errors import ConnectionClosed, InterfaceError, OperationalError

__all__ = [
    "RETRY_SQLSTATES",
    "worth_retrying",
    "RESET_STATEMENTS",
    "RESET_SQL",
    "PoolEntry",
    "PoolStats",
    "PoolBook",
    "Lend",
    "Open",
    "Wait",
    "CONFIGURE_LEFT_TRANSACTION",
    "pool_book",
    "connect_keywords",
    "BookedPool",
]

RESET_STATEMENTS = (
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "DEALLOCATE ALL",
    "UNLISTEN *",
    "SELECT pg_advisory_unlock_all()",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
)
"""What puts a session back in a fresh state before a pooled connection is reused (Neon's
proxy runs the same, after a ROLLBACK when a transaction is open). Unlike ``DISCARD ALL`` it
may run inside a transaction block's aftermath and in one simple query."""

RESET_SQL = "; ".join(RESET_STATEMENTS)
"""``RESET_STATEMENTS`` as one simple query (one round trip)."""

C = TypeVar("C")


@attrs.define(eq=False)
class PoolEntry(Generic[C]):
    """A connection the pool owns, with the times the bookkeeping needs."""

    connection: C
    created_at: float
    returned_at: float
    generation: int


@attrs.frozen
class Lend(Generic[C]):
    """Lend this idle connection (after the binding's checks; ``discard`` it if they fail)."""

    entry: PoolEntry[C]


@attrs.frozen
class Open:
    """A slot is reserved: open a connection, then call ``opened`` or ``open_failed``."""


@attrs.frozen
class Wait:
    """Nothing to lend and no slot: wait for a give-back, or until ``until`` when it is not None."""

    until: float | None


@attrs.frozen
class PoolStats:
    """A snapshot of a pool: sizes now, counters since it was made."""

    min_size: int
    max_size: int
    size: int  #: connections open (idle or lent) or being opened
    idle: int
    lent: int
    opening: int
    waiting: int  #: acquirers waiting now
    requests: int  #: acquires that got a connection
    requests_waited: int  #: of those, how many had to wait
    wait_seconds: float  #: total time acquirers waited
    timeouts: int  #: acquires that gave up (PoolTimeout)
    connections_opened: int
    connection_errors: int  #: failed attempts to open one
    connections_discarded: int  #: closed as broken, expired, drained or failed checks
    returned_bad: int  #: given back in a transaction, mid-operation or closed


def _check_limits(min_size: int, max_size: int, max_lifetime: float | None, max_idle: float | None) -> None:
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, not {max_size}")
    if not 0 <= min_size <= max_size:
        raise ValueError(f"min_size must be between 0 and max_size ({max_size}), not {min_size}")
    for name, value in (("max_lifetime", max_lifetime), ("max_idle", max_idle)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive or None, not {value}")


class PoolBook(Generic[C]):
    """Who holds which connection, what to open or close, and when to try again.

    Idle connections are lent most recently used first, so that surplus ones age out through
    ``max_idle``. After a failed open the next attempt waits: ``backoff_initial`` seconds,
    doubling up to ``backoff_max``; a success resets it.
    """

    def __init__(
        self,
        *,
        min_size: int = 0,
        max_size: int = 10,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        _check_limits(min_size, max_size, max_lifetime, max_idle)
        self.min_size = min_size
        self.max_size = max_size
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._idle: deque[PoolEntry[C]] = deque()
        self._lent: set[PoolEntry[C]] = set()
        self._opening = 0
        self._generation = 0
        self._failures = 0
        self._retry_at: float | None = None
        self._check_expiry_at = float("inf")  # no idle connection can expire before then
        self.closed = False
        self.waiting = 0
        # counters for stats()
        self._requests = 0
        self._requests_waited = 0
        self._wait_seconds = 0.0
        self._timeouts = 0
        self._opened = 0
        self._open_errors = 0
        self._discarded = 0
        self._returned_bad = 0

    # ---------------------------------------------------------------- sizes

    @property
    def size(self) -> int:
        """Connections idle, lent or being opened."""
        return len(self._idle) + len(self._lent) + self._opening

    @property
    def idle_count(self) -> int:
        """Connections waiting to be lent."""
        return len(self._idle)

    @property
    def retry_at(self) -> float | None:
        """When the next attempt to open may start after failures, or None."""
        return self._retry_at

    # ---------------------------------------------------------------- acquiring

    def next_step(self, now: float) -> Lend[C] | Open | Wait:
        """What an acquirer does next. ``Lend`` counts the entry as lent; ``Open`` reserves a slot."""
        if self.closed:
            raise ValueError("the pool is closed")
        if self._idle:
            entry = self._idle.pop()
            self._lent.add(entry)
            return Lend(entry)
        if self.size < self.max_size:
            if self._retry_at is not None and now < self._retry_at:
                return Wait(self._retry_at)
            self._opening += 1
            return Open()
        return Wait(None)

    def opened(self, connection: C, now: float, *, lend: bool = True) -> PoolEntry[C]:
        """A reserved slot now holds ``connection``: lent to the opener, or idle with ``lend=False``."""
        self._opening -= 1
        self._opened += 1
        self._failures = 0
        self._retry_at = None
        entry = PoolEntry(connection, created_at=now, returned_at=now, generation=self._generation)
        if lend:
            self._lent.add(entry)
        else:
            self._idle.append(entry)
        self._check_expiry_at = float("-inf")  # one more open: idle ones may now be surplus
        return entry

    def open_failed(self, now: float, *, retry: bool = True) -> float | None:
        """A reserved slot could not be filled; frees it. With ``retry`` the next attempt backs
        off: returns when it may start."""
        self._opening -= 1
        self._open_errors += 1
        if not retry:
            return None
        delay = min(self.backoff_max, self.backoff_initial * (2**self._failures))
        self._failures += 1
        self._retry_at = now + delay
        return self._retry_at

    def record_request(self, waited: float) -> None:
        """An acquire got a connection after ``waited`` seconds."""
        self._requests += 1
        if waited > 0:
            self._requests_waited += 1
            self._wait_seconds += waited

    def record_timeout(self, waited: float) -> None:
        """An acquire gave up after ``waited`` seconds."""
        self._timeouts += 1
        self._wait_seconds += waited

    # ---------------------------------------------------------------- giving back

    def usable(self, entry: PoolEntry[C], now: float) -> bool:
        """Whether ``entry`` may still be lent: not drained, not past ``max_lifetime``."""
        if entry.generation != self._generation:
            return False
        return self.max_lifetime is None or now - entry.created_at < self.max_lifetime

    def give_back(self, entry: PoolEntry[C], now: float) -> bool:
        """Keep a returned, healthy connection; False when it must be closed instead (slot freed)."""
        self._lent.discard(entry)
        if self.closed or not self.usable(entry, now):
            self._discarded += 1
            return False
        entry.returned_at = now
        self._idle.append(entry)
        self._check_expiry_at = min(self._check_expiry_at, self._expiry_of(entry, surplus=True))
        return True

    def discard(self, entry: PoolEntry[C], *, bad_return: bool = False) -> None:
        """Forget a lent connection that the binding closes (broken, failed a check, returned bad)."""
        self._lent.discard(entry)
        self._discarded += 1
        if bad_return:
            self._returned_bad += 1

    def note_bad_return(self) -> None:
        """A connection came back needing repair (rolled back, say) but was kept."""
        self._returned_bad += 1

    # ---------------------------------------------------------------- housekeeping

    def _expiry_of(self, entry: PoolEntry[C], *, surplus: bool) -> float:
        """When an idle entry expires: its lifetime's end, or its idle limit if it is surplus."""
        end = float("inf") if self.max_lifetime is None else entry.created_at + self.max_lifetime
        if surplus and self.max_idle is not None:
            end = min(end, entry.returned_at + self.max_idle)
        return end

    def expired(self, now: float) -> list[PoolEntry[C]]:
        """Idle connections to close now (their slots are freed): drained, too old, or idle too
        long while more than ``min_size`` are open. Cheap when nothing can have expired."""
        if now < self._check_expiry_at:
            return []
        keep: deque[PoolEntry[C]] = deque()
        gone: list[PoolEntry[C]] = []
        # Oldest returns first: those are the surplus that max_idle trims.
        for entry in self._idle:
            surplus = self.size - len(gone) > self.min_size
            idle_too_long = self.max_idle is not None and now - entry.returned_at >= self.max_idle
            if not self.usable(entry, now) or (surplus and idle_too_long):
                gone.append(entry)
            else:
                keep.append(entry)
        self._idle = keep
        self._discarded += len(gone)
        # Kept entries idle too long are not surplus (min_size): only their lifetime counts.
        surplus = self.size > self.min_size
        self._check_expiry_at = min((self._expiry_of(e, surplus=surplus) for e in keep), default=float("inf"))
        return gone

    def next_deadline(self, now: float) -> float | None:
        """The earliest time ``expired`` or ``to_open`` may have something new to say."""
        times: list[float] = []
        for entry in self._idle:
            if self.max_idle is not None:
                times.append(entry.returned_at + self.max_idle)
            if self.max_lifetime is not None:
                times.append(entry.created_at + self.max_lifetime)
        if self._retry_at is not None and self.size < self.min_size:
            times.append(self._retry_at)
        return min(times) if times else None

    def has_expired(self, now: float) -> bool:
        """Whether ``expired(now)`` would hand out anything (without doing it)."""
        if now < self._check_expiry_at:
            return False
        surplus = self.size - self.min_size
        for entry in self._idle:
            if not self.usable(entry, now):
                return True
            if surplus > 0 and self.max_idle is not None and now - entry.returned_at >= self.max_idle:
                return True
        return False

    def to_open_now(self, now: float) -> bool:
        """Whether ``to_open(now)`` would reserve anything (without doing it)."""
        if self.closed or (self._retry_at is not None and now < self._retry_at):
            return False
        return self.size < self.min_size

    def to_open(self, now: float) -> int:
        """Slots to reserve now to reach ``min_size`` (each to be reported like an ``Open``)."""
        if self.closed or (self._retry_at is not None and now < self._retry_at):
            return 0
        wanted = max(0, self.min_size - self.size)
        if self._retry_at is not None:
            wanted = min(wanted, 1)  # after failures, one probe at a time
        self._opening += wanted
        return wanted

    def drain(self) -> list[PoolEntry[C]]:
        """Retire every connection: idle ones are returned to close now, lent ones close when given back."""
        self._generation += 1
        self._check_expiry_at = float("-inf")
        return self.expired(float("-inf"))

    def close(self) -> list[PoolEntry[C]]:
        """Refuse new loans; the idle connections to close now."""
        self.closed = True
        gone = list(self._idle)
        self._idle.clear()
        self._discarded += len(gone)
        return gone

    def stats(self) -> PoolStats:
        """Sizes and counters."""
        return PoolStats(
            min_size=self.min_size,
            max_size=self.max_size,
            size=self.size,
            idle=len(self._idle),
            lent=len(self._lent),
            opening=self._opening,
            waiting=self.waiting,
            requests=self._requests,
            requests_waited=self._requests_waited,
            wait_seconds=self._wait_seconds,
            timeouts=self._timeouts,
            connections_opened=self._opened,
            connection_errors=self._open_errors,
            connections_discarded=self._discarded,
            returned_bad=self._returned_bad,
        )


CONFIGURE_LEFT_TRANSACTION = "configure() left the connection inside a transaction: commit or roll back in it"
"""The error when a pool's ``configure`` hook does not end the transaction it opened."""


def pool_book(
    *,
    min_size: int,
    max_size: int,
    max_lifetime: float | None,
    max_idle: float | None,
    reconnect_backoff: tuple[float, float],
) -> PoolBook[C]:
    """The book of a pool made with these keywords; a bad limit is the caller's InterfaceError."""
    try:
        return PoolBook(
            min_size=min_size, max_size=max_size, max_lifetime=max_lifetime, max_idle=max_idle,
            backoff_initial=reconnect_backoff[0], backoff_max=reconnect_backoff[1],
        )  # fmt: skip
    except ValueError as exc:
        raise InterfaceError(str(exc)) from None


def connect_keywords(fixed: Mapping[str, Any], connect_options: Callable[[], Mapping[str, Any]] | None) -> dict[str, Any]:
    """The keywords for one new connection: the pool's, overridden by ``connect_options()``."""
    if connect_options is None:
        return dict(fixed)
    return {**fixed, **connect_options()}


class BookedPool(Generic[C]):
    """What a pool says about itself, read from its ``PoolBook``: sizes, state, repr."""

    name: str
    _book: PoolBook[C]

    def __repr__(self) -> str:
        book = self._book
        module = type(self).__module__.split(".")[0]
        return f"<{module}.Pool {self.name} size={book.size} idle={book.idle_count} max={book.max_size}>"

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._book.size

    @property
    def idle_count(self) -> int:
        """Connections waiting to be lent."""
        return self._book.idle_count

    @property
    def min_size(self) -> int:
        """Connections kept open even when idle."""
        return self._book.min_size

    @property
    def max_size(self) -> int:
        """The most connections open at once."""
        return self._book.max_size

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._book.closed


RETRY_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300", "08000", "08001", "08003", "08004", "08006"})
"""Connect failures a server restart or a moment's crowding explains: worth another try."""


def worth_retrying(exc: BaseException) -> bool:
    """Whether a failed connect may succeed soon (a server restarting, briefly full) rather
    than never (a wrong password, a database that does not exist): every pool decides so."""
    if isinstance(exc, ConnectionClosed):
        return True
    if isinstance(exc, OperationalError):
        sqlstate = getattr(exc, "sqlstate", None)
        return sqlstate is None or sqlstate in RETRY_SQLSTATES
    return False
