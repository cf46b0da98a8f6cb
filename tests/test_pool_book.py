"""neon_proto.pooling.PoolBook: the pool's decisions with no I/O, on a clock the test moves."""

from __future__ import annotations

import pytest

from neon_proto.pooling import RESET_SQL, Lend, Open, PoolBook, Wait


def test_opens_up_to_max_size_then_waits() -> None:
    book: PoolBook[str] = PoolBook(max_size=2)
    assert book.next_step(0) == Open()
    book.opened("a", 0)
    assert book.next_step(0) == Open()
    book.opened("b", 0)
    assert book.next_step(0) == Wait(None)
    assert book.stats().lent == 2


def test_lends_the_most_recently_returned_first() -> None:
    book: PoolBook[str] = PoolBook(max_size=2)
    book.next_step(0)
    a = book.opened("a", 0)
    book.next_step(0)
    b = book.opened("b", 0)
    assert book.give_back(a, 1) and book.give_back(b, 2)
    step = book.next_step(3)
    assert isinstance(step, Lend) and step.entry is b


def test_failed_opens_back_off_exponentially_up_to_the_cap_and_reset_on_success() -> None:
    book: PoolBook[str] = PoolBook(max_size=1, backoff_initial=0.1, backoff_max=0.3)
    retry_times = []
    now = 0.0
    for _ in range(4):
        assert book.next_step(now) == Open()
        retry_at = book.open_failed(now)
        assert retry_at is not None
        assert book.next_step(now) == Wait(retry_at)
        retry_times.append(round(retry_at - now, 3))
        now = retry_at
    assert retry_times == [0.1, 0.2, 0.3, 0.3]
    assert book.next_step(now) == Open()
    book.opened("a", now)
    assert book.retry_at is None and book.stats().connection_errors == 4


def test_a_failure_not_worth_retrying_does_not_back_off() -> None:
    book: PoolBook[str] = PoolBook(max_size=1)
    book.next_step(0)
    assert book.open_failed(0, retry=False) is None
    assert book.next_step(0) == Open()


def test_max_idle_trims_only_above_min_size_oldest_first() -> None:
    book: PoolBook[str] = PoolBook(min_size=1, max_size=3, max_idle=10, max_lifetime=None)
    entries = []
    for name in "abc":
        book.next_step(0)
        entries.append(book.opened(name, 0))
    for t, entry in enumerate(entries):
        book.give_back(entry, t)
    assert book.expired(9) == []
    assert [e.connection for e in book.expired(11.5)] == ["a", "b"]
    assert book.size == 1 and book.expired(100) == []


def test_max_lifetime_retires_idle_and_returned_connections() -> None:
    book: PoolBook[str] = PoolBook(max_size=2, max_lifetime=5, max_idle=None)
    book.next_step(0)
    a = book.opened("a", 0)
    assert not book.give_back(a, 6)  # too old to keep
    assert book.size == 0


def test_to_open_reaches_min_size_and_probes_one_at_a_time_after_failures() -> None:
    book: PoolBook[str] = PoolBook(min_size=3, max_size=5)
    assert book.to_open(0) == 3
    book.open_failed(0)
    book.open_failed(0)
    book.opened("a", 0, lend=False)
    assert book.size == 1 and book.idle_count == 1
    assert book.to_open(0) == 2
    book.open_failed(0)
    book.open_failed(0)
    assert book.to_open(0) == 0  # backing off
    assert book.to_open(book.retry_at or 0) == 1


def test_drain_retires_idle_now_and_lent_on_return() -> None:
    book: PoolBook[str] = PoolBook(max_size=2)
    book.next_step(0)
    a = book.opened("a", 0)
    book.next_step(0)
    b = book.opened("b", 0)
    book.give_back(a, 0)
    assert [e.connection for e in book.drain()] == ["a"]
    assert not book.give_back(b, 0)
    assert book.size == 0


def test_close_hands_out_idle_connections_and_refuses_loans() -> None:
    book: PoolBook[str] = PoolBook(max_size=1)
    book.next_step(0)
    book.give_back(book.opened("a", 0), 0)
    assert [e.connection for e in book.close()] == ["a"]
    with pytest.raises(ValueError):
        book.next_step(0)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_size"):
        PoolBook(max_size=0)
    with pytest.raises(ValueError, match="min_size"):
        PoolBook(min_size=3, max_size=2)


def test_reset_sql_is_the_proxy_sequence() -> None:
    assert RESET_SQL.split("; ") == [
        "CLOSE ALL", "SET SESSION AUTHORIZATION DEFAULT", "RESET ALL", "DEALLOCATE ALL", "UNLISTEN *",
        "SELECT pg_advisory_unlock_all()", "DISCARD TEMP", "DISCARD SEQUENCES",
    ]  # fmt: skip


def test_a_connection_kept_for_min_size_expires_once_another_is_opened() -> None:
    book: PoolBook[str] = PoolBook(min_size=1, max_size=2, max_idle=10, max_lifetime=None)
    assert book.to_open(0) == 1
    a = book.opened("a", 0, lend=False)
    assert book.expired(20) == []  # idle too long, but it is the min_size one
    step = book.next_step(20)
    assert isinstance(step, Lend) and step.entry is a
    assert book.next_step(20) == Open()
    b = book.opened("b", 20)
    book.give_back(a, 20)
    book.give_back(b, 21)
    assert book.expired(29) == []
    assert [e.connection for e in book.expired(30.5)] == ["a"]
    assert book.size == 1 and book.expired(1000) == []  # b is now the min_size one


def test_every_pool_retries_a_connect_that_a_restart_explains_and_not_a_wrong_login() -> None:
    from neon_proto.errors import ConnectionClosed, OperationalError, ProgrammingError, class_for_sqlstate
    from neon_proto.pooling import worth_retrying

    assert worth_retrying(ConnectionClosed("the connection to the server was lost"))
    assert worth_retrying(OperationalError("connection refused"))  # no SQLSTATE: the server is away
    assert worth_retrying(class_for_sqlstate("57P03")("the database system is starting up"))
    assert worth_retrying(class_for_sqlstate("53300")("too many connections"))
    assert not worth_retrying(class_for_sqlstate("28P01")("password authentication failed"))
    assert not worth_retrying(class_for_sqlstate("3D000")('database "x" does not exist'))
    assert not worth_retrying(ProgrammingError("not a connection problem"))
