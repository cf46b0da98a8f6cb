"""Transactions that re-run on serialization failures and deadlocks.

``run_in_transaction(source, fn, isolation=Serializable)`` opens a transaction, calls
``fn(tx)`` and commits; when the server reports 40001 (serialization_failure) or 40P01
(deadlock_detected), anywhere up to and including COMMIT, it rolls back, waits a random
(jittered, growing) moment and calls ``fn`` again, a bounded number of times. It takes a
function because a ``with`` block cannot be re-run. The isolation level is part of the type
of ``tx``: a function written for ``Tx[RepeatableRead]`` accepts a serializable transaction,
not a read-committed one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from neon_proto.errors import Error, ProgrammingError
from neon_query.execute import Database

if TYPE_CHECKING:
    from neon_sync.client import Client
    from neon_sync.dbapi import Connection
    from neon_sync.pool import Pool

__all__ = [
    "ReadCommitted",
    "RepeatableRead",
    "Serializable",
    "Tx",
    "run_in_transaction",
    "RETRYABLE_SQLSTATES",
    "retry_delay",
]

logger = logging.getLogger("neon_query.transaction")

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""serialization_failure and deadlock_detected: the transaction may succeed if run again."""


class ReadCommitted:
    """READ COMMITTED: each statement sees what was committed before it began."""

    sql = "READ COMMITTED"


class RepeatableRead(ReadCommitted):
    """REPEATABLE READ: one snapshot for the whole transaction."""

    sql = "REPEATABLE READ"


class Serializable(RepeatableRead):
    """SERIALIZABLE: as if the transactions ran one after another."""

    sql = "SERIALIZABLE"


I = TypeVar("I", bound=ReadCommitted)  # noqa: E741
I_co = TypeVar("I_co", bound=ReadCommitted, covariant=True)
R = TypeVar("R")


class Tx(Database, Generic[I_co]):
    """An executor inside a transaction at isolation level ``I`` (or stronger)."""

    def __init__(self, client: Client, isolation: type[I_co], attempt: int) -> None:
        super().__init__(client)
        self.isolation = isolation
        self.attempt = attempt
        """1 on the first run, 2 on the first retry..."""

    def __repr__(self) -> str:
        return f"<neon_query.Tx {self.isolation.sql} attempt={self.attempt} over {self.source!r}>"


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt ``attempt``: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return random.uniform(0.0, min(cap, base * (2 ** (attempt - 1))))


def begin_statement(isolation: type[ReadCommitted], read_only: bool) -> str:
    """The BEGIN that opens each attempt."""
    return f"BEGIN ISOLATION LEVEL {isolation.sql}{' READ ONLY' if read_only else ''}"


def delay_before_retry(error: BaseException, attempt: int, max_attempts: int, base: float, cap: float) -> float | None:
    """How long to wait before attempt ``attempt + 1``, or None when ``error`` must propagate
    (not a serialization failure or deadlock, or no attempts left). Logs the retry."""
    sqlstate = getattr(error, "sqlstate", None) if isinstance(error, Error) else None
    if sqlstate not in RETRYABLE_SQLSTATES or attempt >= max_attempts:
        return None
    delay = retry_delay(attempt, base, cap)
    logger.info("transaction attempt %d failed with %s; retrying in %.3f s", attempt, sqlstate, delay)
    return delay


@contextmanager
def _lease(source: Client | Pool | Connection) -> Iterator[Client]:
    from neon_sync.client import Client
    from neon_sync.dbapi import Connection
    from neon_sync.pool import Pool

    if isinstance(source, Client):
        yield source
    elif isinstance(source, Pool):
        with source.connection() as client:
            yield client
    elif isinstance(source, Connection):
        yield source.client
    else:
        raise TypeError(
            f"run_in_transaction() takes a neon_sync Client, Pool or DB-API Connection, not {type(source).__name__}"
        )


@overload
def run_in_transaction(
    source: Client | Pool | Connection,
    fn: Callable[[Tx[Serializable]], R],
    *,
    max_attempts: int = 5,
    read_only: bool = False,
    backoff_base: float = 0.025,
    backoff_cap: float = 0.25,
) -> R: ...
@overload
def run_in_transaction(
    source: Client | Pool | Connection,
    fn: Callable[[Tx[I]], R],
    *,
    isolation: type[I],
    max_attempts: int = 5,
    read_only: bool = False,
    backoff_base: float = 0.025,
    backoff_cap: float = 0.25,
) -> R: ...
def run_in_transaction(
    source: Client | Pool | Connection,
    fn: Callable[[Tx[Any]], R],
    *,
    isolation: type[ReadCommitted] = Serializable,
    max_attempts: int = 5,
    read_only: bool = False,
    backoff_base: float = 0.025,
    backoff_cap: float = 0.25,
) -> R:
    """Run ``fn(tx)`` in a transaction (SERIALIZABLE unless ``isolation`` says otherwise) and
    commit; re-run it on 40001/40P01 up to ``max_attempts`` times in all, with jittered
    exponential backoff. Any other error rolls back and propagates at once.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    begin = begin_statement(isolation, read_only)
    attempt = 1
    while True:
        with _lease(source) as client:
            if client.transaction_status != "I":
                raise ProgrammingError("run_in_transaction() needs a connection that is not already in a transaction")
            client.query(begin)
            try:
                result = fn(Tx(client, isolation, attempt))
                client.query("COMMIT")
                return result
            except BaseException as e:
                if not client.closed and client.transaction_status != "I":
                    client.query("ROLLBACK")
                delay = delay_before_retry(e, attempt, max_attempts, backoff_base, backoff_cap)
                if delay is None:
                    raise
        time.sleep(delay)
        attempt += 1
