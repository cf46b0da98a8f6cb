"""neon_sync.Pool against a real PostgreSQL: limits under threads, lending, eviction, failures."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from neon_proto.errors import InterfaceError, OperationalError
from neon_proto.sqlstate import DivisionByZero
from neon_sync import Client, Pool, PoolTimeout
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def pool(pg: EmbeddedPostgres) -> Iterator[Pool]:
    with Pool(pg.dsn(), max_size=3, sslmode="disable", timeout=10) as p:
        yield p


@pytest.fixture
def admin(pg: EmbeddedPostgres) -> Iterator[Client]:
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


def pid_of(client: Client) -> int:
    pid = client.backend_pid
    assert pid is not None
    return pid


def terminate(admin: Client, pid: int) -> None:
    assert admin.query("SELECT pg_terminate_backend($1::int) AS done", [pid]).rows == [{"done": True}]
    deadline = time.monotonic() + 5
    while admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int", [pid]).rows[0]["n"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)


# ---------------------------------------------------------------- lending


def test_connection_lends_and_takes_back(pool: Pool) -> None:
    with pool.connection() as c:
        assert pool.size == 1 and pool.idle_count == 0
        first = pid_of(c)
    assert pool.idle_count == 1
    with pool.connection() as c:
        assert pid_of(c) == first
    assert pool.size == 1


def test_connections_are_opened_lazily(pool: Pool) -> None:
    assert pool.size == 0 and pool.idle_count == 0


def test_pool_query_runs_on_a_pooled_connection(pool: Pool) -> None:
    assert pool.query("SELECT $1::int AS n", [5]).rows == [{"n": 5}]
    assert pool.query("SELECT 1 AS a", array_mode=True).rows == [[1]]
    assert pool.size == 1 and pool.idle_count == 1


def test_client_options_reach_the_connections(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, sslmode="disable", array_mode=True, application_name="pooled") as p:
        assert p.query("SHOW application_name").rows == [["pooled"]]


def test_max_size_is_honoured_under_threads(pool: Pool) -> None:
    lock = threading.Lock()
    active = 0
    most = 0
    pids: set[int] = set()
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal active, most
        try:
            for _ in range(3):
                with pool.connection() as c:
                    with lock:
                        active += 1
                        most = max(most, active)
                        pids.add(pid_of(c))
                    c.query("SELECT pg_sleep(0.02)")
                    with lock:
                        active -= 1
                    assert pool.size <= 3
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert most == 3
    assert len(pids) == 3
    assert pool.size == 3 and pool.idle_count == 3


def test_waiting_thread_gets_the_returned_connection(pool: Pool) -> None:
    held = [pool.acquire() for _ in range(3)]
    got: list[Client] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=5)))
    waiter.start()
    time.sleep(0.1)
    assert not got
    pool.release(held[0])
    waiter.join()
    assert got == [held[0]]
    for c in held[1:] + got:
        pool.release(c)


def test_pool_timeout_when_all_connections_are_lent(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, sslmode="disable") as p:
        with p.connection():
            started = time.monotonic()
            with pytest.raises(PoolTimeout) as info:
                p.acquire(timeout=0.3)
            assert 0.25 <= time.monotonic() - started < 2
            assert isinstance(info.value, OperationalError)


def test_pool_default_acquire_timeout(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, sslmode="disable", timeout=0.2) as p:
        with p.connection():
            with pytest.raises(PoolTimeout):
                p.acquire()


def test_max_size_must_be_positive(pg: EmbeddedPostgres) -> None:
    with pytest.raises(InterfaceError):
        Pool(pg.dsn(), max_size=0)


def test_failed_connect_gives_the_slot_back(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn("scram_user", password="wrong"), max_size=1, sslmode="disable") as p:
        for _ in range(2):
            with pytest.raises(OperationalError):
                p.acquire(timeout=1)
        assert p.size == 0


# ---------------------------------------------------------------- giving back


def test_transaction_left_open_is_rolled_back_on_return(pool: Pool, admin: Client) -> None:
    table = f"pool_{uuid.uuid4().hex[:8]}"
    admin.query(f"CREATE TABLE {table} (n int)")
    with pool.connection() as c:
        pid = pid_of(c)
        c.query("BEGIN")
        c.query(f"INSERT INTO {table} VALUES (1)")
    with pool.connection() as c:
        assert pid_of(c) == pid
        assert c.transaction_status == "I"
        assert c.query(f"SELECT count(*) AS n FROM {table}").rows == [{"n": 0}]


def test_failed_transaction_is_rolled_back_on_return(pool: Pool) -> None:
    with pool.connection() as c:
        pid = pid_of(c)
        c.query("BEGIN")
        with pytest.raises(DivisionByZero):
            c.query("SELECT 1/0")
        assert c.transaction_status == "E"
    with pool.connection() as c:
        assert pid_of(c) == pid
        assert c.transaction_status == "I"
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_error_inside_the_block_still_returns_the_connection(pool: Pool) -> None:
    with pytest.raises(KeyError):
        with pool.connection():
            raise KeyError("app error")
    assert pool.idle_count == 1


def test_closed_connection_is_discarded_on_return(pool: Pool) -> None:
    with pool.connection() as c:
        first = pid_of(c)
        c.close()
    assert pool.size == 0
    with pool.connection() as c:
        assert pid_of(c) != first


# ---------------------------------------------------------------- broken connections


def test_backend_killed_mid_query_is_never_lent_again(pool: Pool, admin: Client) -> None:
    with pool.connection() as c:
        pid = pid_of(c)
        killer = threading.Timer(0.3, lambda: admin.query("SELECT pg_terminate_backend($1::int)", [pid]))
        killer.start()
        try:
            with pytest.raises(OperationalError):
                c.query("SELECT pg_sleep(5)")
        finally:
            killer.join()
        assert c.closed
    assert pool.size == 0
    with pool.connection() as c:
        assert pid_of(c) != pid
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_backend_killed_while_idle_in_the_pool_is_not_lent(pool: Pool, admin: Client) -> None:
    with pool.connection() as c:
        pid = pid_of(c)
    terminate(admin, pid)
    with pool.connection() as c:
        assert pid_of(c) != pid
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]
    assert pool.size == 1


# ---------------------------------------------------------------- idle timeout and close


def test_idle_connection_older_than_idle_timeout_is_replaced(pg: EmbeddedPostgres, admin: Client) -> None:
    with Pool(pg.dsn(), max_size=2, sslmode="disable", max_idle=0.2) as p:
        with p.connection() as c:
            old = pid_of(c)
        with p.connection() as c:
            assert pid_of(c) == old  # still fresh
        time.sleep(0.3)
        with p.connection() as c:
            assert pid_of(c) != old
        assert p.size == 1
        deadline = time.monotonic() + 5
        while admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int", [old]).rows[0]["n"]:
            assert time.monotonic() < deadline, "the expired connection was not closed"
            time.sleep(0.01)


def test_no_idle_timeout_keeps_connections(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, sslmode="disable", max_idle=None) as p:
        with p.connection() as c:
            old = pid_of(c)
        time.sleep(0.05)
        with p.connection() as c:
            assert pid_of(c) == old


def test_close_closes_idle_connections_and_refuses_new_loans(pg: EmbeddedPostgres) -> None:
    p = Pool(pg.dsn(), max_size=2, sslmode="disable")
    with p.connection() as c:
        pass
    p.close()
    assert c.closed
    assert p.idle_count == 0 and p.size == 0
    with pytest.raises(InterfaceError):
        p.acquire()
    p.close()  # twice is fine


def test_connection_lent_during_close_is_closed_on_return(pg: EmbeddedPostgres) -> None:
    p = Pool(pg.dsn(), max_size=2, sslmode="disable")
    c = p.acquire()
    p.close()
    assert not c.closed
    assert c.query("SELECT 1 AS one").rows == [{"one": 1}]
    p.release(c)
    assert c.closed
    assert p.size == 0


def test_close_wakes_waiting_threads(pg: EmbeddedPostgres) -> None:
    p = Pool(pg.dsn(), max_size=1, sslmode="disable")
    held = p.acquire()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            p.acquire(timeout=10)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    p.close()
    waiter.join(5)
    assert time.monotonic() - started < 2
    assert len(outcome) == 1 and isinstance(outcome[0], InterfaceError)
    p.release(held)


# ---------------------------------------------------------------- server restart


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, to restart."""
    with EmbeddedPostgres(tls=False) as server:
        yield server


def test_server_restart_gives_the_old_client_a_clear_error(own_pg: EmbeddedPostgres) -> None:
    client = Client(own_pg.dsn(), sslmode="disable").connect()
    own_pg.restart()
    with pytest.raises(OperationalError) as info:
        client.query("SELECT 1")
    assert "terminat" in str(info.value) or "closed" in str(info.value)
    assert client.closed
    with Client(own_pg.dsn(), sslmode="disable") as fresh:
        assert fresh.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_pool_recovers_after_a_server_restart(own_pg: EmbeddedPostgres) -> None:
    with Pool(own_pg.dsn(), max_size=2, sslmode="disable") as p:
        with p.connection() as a, p.connection() as b:
            old = {pid_of(a), pid_of(b)}
        assert p.idle_count == 2
        own_pg.restart()
        with p.connection() as c:
            assert pid_of(c) not in old
            assert c.query("SELECT 1 AS one").rows == [{"one": 1}]
        assert p.size == 1


def test_connection_returned_in_the_middle_of_an_operation_is_discarded(pool: Pool) -> None:
    with pool.connection() as c:
        chunks = c.copy_to("COPY (SELECT g FROM generate_series(1, 100000) g) TO STDOUT")
        next(chunks)  # the COPY is still streaming when the block ends
        pid = pid_of(c)
    with pool.connection() as c:
        assert pid_of(c) != pid
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]
    chunks.close()
