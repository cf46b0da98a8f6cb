"""run_in_transaction: real serialization failures from two connections are retried; others are not."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from neon_proto.errors import IntegrityError, OperationalError
from neon_query import Database, RepeatableRead, Serializable, Tx, insert, run_in_transaction, select, update
from neon_sync import Client, Pool, connect
from neon_sync.embedded import EmbeddedPostgres
from tests.query.fixtures import client, query_db, ws_client  # noqa: F401 - fixtures
from tests.query.models import counters

pytestmark = pytest.mark.slow


@pytest.fixture
def other(pg: EmbeddedPostgres, query_db: str) -> Iterator[Client]:
    """A second connection, to commit conflicting changes in the middle of a transaction."""
    c = Client(pg.dsn(database=query_db)).connect()
    yield c
    c.close()


def increment_with_interference(other: Client, interfere_on: set[int]) -> tuple[list[int], Callable[[Tx[RepeatableRead]], int]]:
    attempts: list[int] = []

    def bump(tx: Tx[RepeatableRead]) -> int:
        attempts.append(tx.attempt)
        hits = tx.one(select(counters.hits).where(counters.name.eq("a")).scalars())  # takes the snapshot
        if tx.attempt in interfere_on:
            other.query("UPDATE counters SET hits = hits + 10 WHERE name = 'a'")  # commits meanwhile
        tx.execute(update(counters).set({"hits": hits + 1}).where(counters.name.eq("a")))
        return hits + 1

    return attempts, bump


def test_a_serialization_failure_is_retried_and_succeeds(client: Client, other: Client) -> None:
    db = Database(client)
    db.execute(insert(counters).values({"name": "a", "hits": 0}))
    attempts, bump = increment_with_interference(other, {1})
    result = run_in_transaction(client, bump, backoff_base=0.001)
    assert attempts == [1, 2]
    assert result == 11  # the retry saw the other connection's +10
    assert db.one(select(counters.hits).where(counters.name.eq("a")).scalars()) == 11
    assert client.transaction_status == "I"


def test_a_serialization_failure_over_websocket_is_retried(ws_client: Client, client: Client, other: Client) -> None:
    Database(client).execute(insert(counters).values({"name": "a", "hits": 0}))
    attempts, bump = increment_with_interference(other, {1})
    assert run_in_transaction(ws_client, bump, isolation=RepeatableRead, backoff_base=0.001) == 11
    assert attempts == [1, 2]


def test_retries_are_bounded_and_the_last_error_propagates(client: Client, other: Client) -> None:
    Database(client).execute(insert(counters).values({"name": "a", "hits": 0}))
    attempts, bump = increment_with_interference(other, {1, 2, 3})
    with pytest.raises(OperationalError) as info:
        run_in_transaction(client, bump, isolation=RepeatableRead, max_attempts=3, backoff_base=0.001)
    assert info.value.sqlstate == "40001"
    assert attempts == [1, 2, 3]
    assert Database(client).one(select(counters.hits).scalars()) == 30  # only the other connection's updates
    assert client.transaction_status == "I"


def test_other_errors_roll_back_at_once(client: Client) -> None:
    calls: list[int] = []

    def twice(tx: Tx[Serializable]) -> None:
        calls.append(tx.attempt)
        tx.execute(insert(counters).values({"name": "dup"}))
        tx.execute(insert(counters).values({"name": "dup"}))

    with pytest.raises(IntegrityError):
        run_in_transaction(client, twice)
    assert calls == [1]
    assert Database(client).one(counters.count()) == 0


def test_over_a_pool_and_a_dbapi_connection(pg: EmbeddedPostgres, query_db: str, client: Client) -> None:
    with Pool(pg.dsn(database=query_db), max_size=1) as pool:
        made = run_in_transaction(pool, lambda tx: tx.one(counters.insert({"name": "p"}))["name"])
        assert made == "p"
    conn = connect(pg.dsn(database=query_db), autocommit=True)
    try:
        n = run_in_transaction(conn, lambda tx: tx.one(counters.count()), read_only=True)
        assert n == 1
    finally:
        conn.close()


def test_refuses_a_connection_already_in_a_transaction(client: Client) -> None:
    from neon_proto.errors import ProgrammingError

    client.query("BEGIN")
    with pytest.raises(ProgrammingError, match="already in a transaction"):
        run_in_transaction(client, lambda tx: None)
    client.query("ROLLBACK")


def test_a_real_deadlock_is_retried(client: Client, other: Client) -> None:
    db = Database(client)
    db.execute(insert(counters).values([{"name": "a"}, {"name": "b"}]))
    client.query("SET deadlock_timeout = '20ms'")  # this side detects the deadlock and is chosen as victim
    other.query("SET deadlock_timeout = '10s'")
    locked_b = threading.Event()
    finished: list[str] = []

    def other_side() -> None:
        other.query("BEGIN")
        other.query("UPDATE counters SET hits = hits + 1 WHERE name = 'b'")
        locked_b.set()
        other.query("UPDATE counters SET hits = hits + 1 WHERE name = 'a'")  # waits for the first attempt's lock
        other.query("COMMIT")
        finished.append("other")

    thread = threading.Thread(target=other_side)
    attempts: list[int] = []

    def both(tx: Tx[RepeatableRead]) -> None:
        attempts.append(tx.attempt)
        if tx.attempt > 1:
            thread.join(10)  # the other side commits first: this attempt's snapshot sees it
        tx.execute(update(counters).set({"hits": 10}).where(counters.name.eq("a")))
        if tx.attempt == 1:
            thread.start()
            assert locked_b.wait(10)
            time.sleep(0.05)  # let the other side queue for row a
        tx.execute(update(counters).set({"hits": 10}).where(counters.name.eq("b")))

    run_in_transaction(client, both, isolation=RepeatableRead, backoff_base=0.001)
    thread.join(10)
    assert attempts == [1, 2] and finished == ["other"]
    assert db.all(select(counters.name, counters.hits).order_by(counters.name)) == [("a", 10), ("b", 10)]
