"""neon_sync.Pool against a real PostgreSQL: sizes, lifetimes, hooks, rotating passwords, drain,
reconnection after the server goes away, stats, and typos."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from neon_proto.errors import InterfaceError, OperationalError
from neon_sync import Client, Pool, PoolTimeout
from neon_sync.embedded import EmbeddedPostgres
from neon_sync.pool import check_connection, reset_session


def pid_of(client: Client) -> int:
    pid = client.backend_pid
    assert pid is not None
    return pid


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def admin(pg: EmbeddedPostgres) -> Iterator[Client]:
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


def backend_alive(admin: Client, pid: int) -> bool:
    return bool(admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1::int", [pid]).rows[0]["n"])


# ---------------------------------------------------------------- sizes


def test_min_size_connections_are_opened_in_the_background(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), min_size=2, max_size=4, sslmode="disable") as pool:
        pool.wait(10)
        assert pool.size == 2 and pool.idle_count == 2
        with pool.connection(), pool.connection(), pool.connection():
            assert pool.size == 3


def test_min_size_is_topped_up_after_a_connection_is_lost(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), min_size=2, sslmode="disable") as pool:
        pool.wait(10)
        with pool.connection() as c:
            c.close()
        wait_for(lambda: pool.idle_count == 2)


def test_max_idle_closes_surplus_connections_but_keeps_min_size(pg: EmbeddedPostgres, admin: Client) -> None:
    with Pool(pg.dsn(), min_size=1, max_size=3, max_idle=0.2, sslmode="disable") as pool:
        with pool.connection() as a, pool.connection() as b, pool.connection() as c:
            pids = {pid_of(a), pid_of(b), pid_of(c)}
        assert pool.size == 3
        wait_for(lambda: pool.size == 1)  # the worker trims without anyone acquiring
        assert sum(backend_alive(admin, pid) for pid in pids) == 1


def test_max_lifetime_replaces_old_connections(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, max_lifetime=0.2, sslmode="disable") as pool:
        with pool.connection() as c:
            first = pid_of(c)
        time.sleep(0.25)
        with pool.connection() as c:
            assert pid_of(c) != first


def test_a_connection_past_max_lifetime_is_closed_when_given_back(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, max_lifetime=0.1, sslmode="disable") as pool:
        with pool.connection() as c:
            time.sleep(0.15)
        assert c.closed and pool.size == 0


def test_timeout_raises_a_clear_pool_timeout(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, timeout=0.2, sslmode="disable", name="orders") as pool:
        with pool.connection():
            with pytest.raises(PoolTimeout, match=r"pool orders: no connection could be lent within 0\.2 s \(size 1, max_size=1\)"):
                pool.acquire()
        assert pool.stats().timeouts == 1


# ---------------------------------------------------------------- hooks


def test_configure_runs_once_on_each_new_connection(pg: EmbeddedPostgres) -> None:
    seen: list[int] = []

    def configure(client: Client) -> None:
        client.query("SET application_name = 'configured'")
        seen.append(pid_of(client))

    with Pool(pg.dsn(), max_size=2, configure=configure, sslmode="disable") as pool:
        for _ in range(3):
            with pool.connection() as c:
                assert c.query("SHOW application_name", array_mode=True).rows == [["configured"]]
        with pool.connection(), pool.connection():
            pass
    assert len(seen) == 2 and len(set(seen)) == 2


def test_configure_that_leaves_a_transaction_open_is_an_error(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, configure=lambda c: c.query("BEGIN"), sslmode="disable") as pool:
        with pytest.raises(InterfaceError, match="configure"):
            pool.acquire()
        assert pool.size == 0


def test_check_runs_before_each_loan_and_a_failing_one_is_discarded(pg: EmbeddedPostgres) -> None:
    checked: list[int] = []
    fail = False

    def check(client: Client) -> None:
        checked.append(pid_of(client))
        if fail:
            raise OperationalError("not this one")

    with Pool(pg.dsn(), max_size=1, check=check, sslmode="disable") as pool:
        with pool.connection() as c:  # new: nothing to check
            first = pid_of(c)
        assert checked == []
        with pool.connection() as c:
            assert pid_of(c) == first
        assert checked == [first]
        fail = True
        with pool.connection() as c:
            assert pid_of(c) != first
        assert pool.stats().connections_discarded == 1


def test_builtin_check_finds_a_backend_that_was_terminated(pg: EmbeddedPostgres, admin: Client) -> None:
    with Pool(pg.dsn(), max_size=1, check=check_connection, sslmode="disable") as pool:
        with pool.connection() as c:
            first = pid_of(c)
        admin.query("SELECT pg_terminate_backend($1::int)", [first])
        wait_for(lambda: not backend_alive(admin, first))
        with pool.connection() as c:
            assert pid_of(c) != first
            assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_builtin_reset_discards_session_state(pg: EmbeddedPostgres, admin: Client) -> None:
    lock_key = 424242
    with Pool(pg.dsn(), max_size=1, reset=reset_session, sslmode="disable") as pool:
        with pool.connection() as c:
            pid = pid_of(c)
            c.query("SET search_path = nowhere")
            c.query("CREATE TEMP TABLE scratch (n int)")
            c.query("PREPARE stmt AS SELECT 1")
            c.query("LISTEN somewhere")
            c.query("SELECT pg_advisory_lock($1)", [lock_key])
            c.query("SET ROLE scram_user")
        with pool.connection() as c:
            assert pid_of(c) == pid  # the same session, cleaned
            assert c.query("SHOW search_path", array_mode=True).rows == [['"$user", public']]
            assert c.query("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'scratch'").rows == [{"n": 0}]
            assert c.query("SELECT count(*) AS n FROM pg_prepared_statements").rows == [{"n": 0}]
            assert c.query("SELECT count(*) AS n FROM pg_listening_channels()").rows == [{"n": 0}]
            assert c.query("SELECT current_user AS u").rows == [{"u": "postgres"}]
        locks = admin.query("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = $1::int", [pid])
        assert locks.rows == [{"n": 0}]


def test_a_failing_reset_discards_the_connection(pg: EmbeddedPostgres) -> None:
    def reset(client: Client) -> None:
        raise OperationalError("cannot reset")

    with Pool(pg.dsn(), max_size=1, reset=reset, sslmode="disable") as pool:
        with pool.connection() as c:
            pass
        assert c.closed and pool.size == 0
        assert pool.stats().returned_bad == 1


def test_returned_inside_a_transaction_is_rolled_back_then_reset(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, reset=reset_session, sslmode="disable") as pool:
        with pool.connection() as c:
            c.query("BEGIN")
            c.query("SET LOCAL statement_timeout = 1234")
            c.query("SET work_mem = '7MB'")
        with pool.connection() as c2:
            assert c2 is c and c2.transaction_status == "I"
            assert c2.query("SHOW work_mem", array_mode=True).rows == [["4MB"]]
        assert pool.stats().returned_bad == 1


def test_giving_back_a_foreign_connection_is_an_error(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, sslmode="disable") as pool, Client(pg.dsn(), sslmode="disable") as other:
        with pytest.raises(InterfaceError):
            pool.release(other)
        c = pool.acquire()
        pool.release(c)
        with pytest.raises(InterfaceError):
            pool.release(c)  # twice


# ---------------------------------------------------------------- credentials that rotate


def test_a_rotating_password_is_fetched_for_each_new_connection(pg: EmbeddedPostgres, admin: Client) -> None:
    role = f"rot_{uuid.uuid4().hex[:8]}"
    token = {"value": "first-token"}
    admin.query(f"CREATE ROLE {role} LOGIN PASSWORD 'first-token'")
    calls: list[str] = []

    def fresh_credentials() -> dict[str, str]:
        calls.append(token["value"])
        return {"password": token["value"]}

    try:
        with Pool(pg.dsn(role, password="stale"), max_size=2, connect_options=fresh_credentials, sslmode="disable") as pool:
            with pool.connection() as c:
                assert c.query("SELECT current_user AS u").rows == [{"u": role}]
            admin.query(f"ALTER ROLE {role} PASSWORD 'second-token'")
            token["value"] = "second-token"
            pool.drain()
            with pool.connection() as c:
                assert c.query("SELECT 1 AS one").rows == [{"one": 1}]
            assert calls == ["first-token", "second-token"]
            assert "second-token" not in repr(pool)
    finally:
        admin.query(f"DROP ROLE {role}")


def test_connect_options_callable_is_called_for_each_new_connection(pg: EmbeddedPostgres) -> None:
    names = iter(["app-1", "app-2"])
    with Pool(pg.dsn(), max_size=2, connect_options=lambda: {"application_name": next(names)}, sslmode="disable") as pool:
        with pool.connection() as a, pool.connection() as b:
            got = {a.query("SHOW application_name", array_mode=True).rows[0][0], b.query("SHOW application_name", array_mode=True).rows[0][0]}
    assert got == {"app-1", "app-2"}


# ---------------------------------------------------------------- drain


def test_drain_replaces_idle_and_lent_connections(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=2, sslmode="disable") as pool:
        with pool.connection() as a, pool.connection() as b:
            pass
        lent = pool.acquire()
        idle = a if lent is b else b
        old = {pid_of(idle), pid_of(lent)}
        pool.drain()
        assert idle.closed and not lent.closed
        assert lent.query("SELECT 1 AS one").rows == [{"one": 1}]  # the borrower keeps it until it is done
        pool.release(lent)
        assert lent.closed
        with pool.connection() as c:
            assert pid_of(c) not in old


# ---------------------------------------------------------------- the server goes away


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tls=False) as server:
        yield server


def test_pool_reconnects_with_backoff_when_the_server_comes_back(own_pg: EmbeddedPostgres) -> None:
    with Pool(own_pg.dsn(), min_size=1, max_size=2, sslmode="disable", reconnect_backoff=(0.02, 0.2)) as pool:
        pool.wait(10)
        with pool.connection() as c:
            old = pid_of(c)
        own_pg.shutdown()
        with pytest.raises(PoolTimeout, match="last connection error"):
            pool.acquire(timeout=0.5)
        errors_while_down = pool.stats().connection_errors
        assert 2 <= errors_while_down < 60  # tried again, but backing off rather than spinning
        restarter = threading.Timer(0.3, own_pg.start)
        restarter.start()
        try:
            with pool.connection(timeout=20) as c:
                assert pid_of(c) != old
                assert c.query("SELECT 1 AS one").rows == [{"one": 1}]
        finally:
            restarter.join()
        wait_for(lambda: pool.idle_count >= 1)
        stats = pool.stats()
        assert stats.connection_errors > errors_while_down and stats.connections_opened >= 2


def test_wrong_password_is_not_retried(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn("scram_user", password="wrong"), max_size=1, sslmode="disable") as pool:
        started = time.monotonic()
        with pytest.raises(OperationalError) as info:
            pool.acquire(timeout=10)
        assert not isinstance(info.value, PoolTimeout) and info.value.sqlstate == "28P01"
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------- stats and typos


def test_stats_count_requests_waits_and_connections(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn(), max_size=1, sslmode="disable") as pool:
        held = pool.acquire()
        threading.Timer(0.1, pool.release, [held]).start()
        with pool.connection(timeout=5):
            stats = pool.stats()
            assert (stats.size, stats.lent, stats.idle, stats.max_size) == (1, 1, 0, 1)
        stats = pool.stats()
        assert stats.requests == 2 and stats.requests_waited == 1 and stats.wait_seconds >= 0.05
        assert stats.connections_opened == 1 and stats.timeouts == 0


def test_misspelt_pool_keyword_is_a_type_error(pg: EmbeddedPostgres) -> None:
    with pytest.raises(TypeError, match="'max_sise'.*'max_size'"):
        Pool(pg.dsn(), max_sise=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'min_szie'.*'min_size'"):
        Pool(pg.dsn(), min_szie=3)  # type: ignore[call-arg]


def test_bad_limits_are_refused(pg: EmbeddedPostgres) -> None:
    with pytest.raises(InterfaceError, match="min_size"):
        Pool(pg.dsn(), min_size=5, max_size=2)
    with pytest.raises(InterfaceError, match="max_idle"):
        Pool(pg.dsn(), max_idle=0)


def test_a_pool_dropped_without_close_closes_its_connections_and_its_worker(pg: EmbeddedPostgres) -> None:
    import gc

    pool = Pool(pg.dsn(), min_size=1, sslmode="disable")
    pool.wait(10)
    worker = pool._worker
    assert worker is not None and worker.is_alive()
    with pool.connection() as client:
        pass
    del pool
    gc.collect()
    worker.join(5)
    assert not worker.is_alive()
    assert client.closed


def test_the_worker_backs_off_from_a_wrong_password(pg: EmbeddedPostgres) -> None:
    with Pool(pg.dsn("scram_user", password="wrong"), min_size=1, sslmode="disable") as pool:
        time.sleep(0.5)
        errors = pool.stats().connection_errors
        assert 2 <= errors <= 8  # about 0, 0.05, 0.15, 0.35 s: not a tight loop
        with pytest.raises(PoolTimeout, match="last connection error.*password authentication failed"):
            pool.wait(0.2)


@pytest.mark.slow
def test_an_acquire_does_not_wait_on_a_silent_server_past_its_timeout() -> None:
    import socket

    with socket.socket() as silent:  # accepts TCP connections, never answers the startup
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with Pool(f"postgresql://u:pw@127.0.0.1:{port}/db", max_size=1, sslmode="disable", max_idle=None, max_lifetime=None) as pool:
            started = time.monotonic()
            with pytest.raises(PoolTimeout, match="timed out"):
                pool.acquire(timeout=2)
            assert time.monotonic() - started < 4


def test_max_waiting_refuses_at_once_when_the_queue_is_full(pg: EmbeddedPostgres) -> None:
    from neon_sync.pool import TooManyRequests

    with Pool(pg.dsn(), max_size=1, max_waiting=1, sslmode="disable") as pool:
        held = pool.acquire()
        waiter = threading.Thread(target=lambda: pool.release(pool.acquire(timeout=5)))
        waiter.start()
        wait_for(lambda: pool.stats().waiting == 1)
        started = time.monotonic()
        with pytest.raises(TooManyRequests, match="1 requests are already waiting"):
            pool.acquire(timeout=5)
        assert time.monotonic() - started < 1
        pool.release(held)
        waiter.join(5)
        assert not waiter.is_alive() and pool.stats().requests == 2


@pytest.mark.slow
def test_threads_through_a_server_restart_leave_the_pool_consistent(own_pg: EmbeddedPostgres) -> None:
    """Queries fail while the server is away, then work again; no slot is lost or lent twice."""
    with Pool(own_pg.dsn(), min_size=2, max_size=4, sslmode="disable", reconnect_backoff=(0.02, 0.2)) as pool:
        pool.wait(10)
        stop = threading.Event()
        ok_after_restart = [0]
        restarted = threading.Event()
        lent_twice: list[int] = []
        in_use: set[int] = set()
        lock = threading.Lock()

        def work() -> None:
            while not stop.is_set():
                try:
                    with pool.connection(timeout=10) as c:
                        with lock:
                            if id(c) in in_use:
                                lent_twice.append(id(c))
                            in_use.add(id(c))
                        try:
                            c.query("SELECT pg_sleep(0.005)")
                            if restarted.is_set():
                                with lock:
                                    ok_after_restart[0] += 1
                        finally:
                            with lock:
                                in_use.discard(id(c))
                except OperationalError:
                    pass  # the server went away under this query, or no connection yet

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        own_pg.restart()
        restarted.set()
        wait_for(lambda: ok_after_restart[0] >= 20, timeout=20)
        stop.set()
        for t in threads:
            t.join(15)
        assert not any(t.is_alive() for t in threads)
        assert lent_twice == []
        stats = pool.stats()
        assert stats.lent == 0 and stats.opening == 0 and stats.size == stats.idle <= 4
        assert stats.connections_discarded >= 2  # the connections the restart broke
        with pool.connection() as c:
            assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_an_interrupted_check_or_reset_frees_the_slot(pg: EmbeddedPostgres) -> None:
    def interrupt(client: Client) -> None:
        raise KeyboardInterrupt

    with Pool(pg.dsn(), max_size=1, reset=interrupt, sslmode="disable") as pool:
        with pytest.raises(KeyboardInterrupt):
            with pool.connection():
                pass
        assert pool.size == 0
    with Pool(pg.dsn(), max_size=1, check=interrupt, sslmode="disable") as pool:
        with pool.connection():
            pass
        with pytest.raises(KeyboardInterrupt):
            pool.acquire()
        assert pool.size == 0
        with pool.connection(timeout=5):  # a new connection: nothing to check
            pass
