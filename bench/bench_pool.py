"""neon_sync.Pool against psycopg_pool.ConnectionPool, in one run on one server.

Run ``.venv/bin/python bench/bench_pool.py [--quick]`` (needs ``pip install psycopg-pool``).

Cases, each run for both pools per repetition in alternating order (medians reported):
- lend and give back an idle connection (no query): the pool's own overhead;
- lend, ``SELECT 1``, give back;
- the same with a check before each loan (one more round trip) and with a session reset on
  return (ours: ``reset_session``, Neon's discard sequence; psycopg_pool: a ``reset`` callback
  running the same SQL);
- 8 threads sharing 4 connections, ``SELECT 1`` each: throughput under contention;
- reconnection: how long after the server comes back the first loan succeeds.
Results go to bench/RESULTS_POOL.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import threading
import time
from typing import Any, Callable

import psycopg
import psycopg_pool

from neon_proto.pooling import RESET_SQL
from neon_sync import Client, Pool
from neon_sync.embedded import EmbeddedPostgres
from neon_sync.pool import check_connection, reset_session

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn: Callable[[], None], ops: int) -> float:
    """Microseconds per operation."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / ops * 1e6


def ours(dsn: str, **kw: Any) -> Pool:
    pool = Pool(dsn, min_size=kw.pop("min_size", 1), max_size=kw.pop("max_size", 1), sslmode="disable", **kw)
    pool.wait(30)
    return pool


def theirs(dsn: str, **kw: Any) -> psycopg_pool.ConnectionPool[Any]:
    pool = psycopg_pool.ConnectionPool(
        dsn + "?sslmode=disable", min_size=kw.pop("min_size", 1), max_size=kw.pop("max_size", 1), open=True,
        kwargs={"autocommit": True}, **kw,  # like a Client: no implicit BEGIN
    )
    pool.wait(30)
    return pool


def loop_ours(pool: Pool, n: int, query: bool) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            with pool.connection() as c:
                if query:
                    c.query("SELECT 1")

    return run


def loop_theirs(pool: psycopg_pool.ConnectionPool[Any], n: int, query: bool) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            with pool.connection() as c:
                if query:
                    c.execute("SELECT 1")

    return run


def threaded(run_one: Callable[[], None], threads: int) -> Callable[[], None]:
    def run() -> None:
        workers = [threading.Thread(target=run_one) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return run


def psycopg_reset(conn: psycopg.Connection[Any]) -> None:
    conn.execute(RESET_SQL)


def psycopg_check(conn: psycopg.Connection[Any]) -> None:
    psycopg_pool.ConnectionPool.check_connection(conn)


def reconnect_time(pg: EmbeddedPostgres) -> tuple[float, float]:
    """Seconds from the server accepting connections again to each pool's first successful loan."""
    results = []
    for make in (ours, theirs):
        pool: Any = make(pg.dsn(), **({"reconnect_backoff": (0.05, 2.0)} if make is ours else {}))
        pg.shutdown()
        time.sleep(0.5)
        pg.start()
        back = time.monotonic()
        while True:
            try:
                with pool.connection() as c:
                    (c.query if make is ours else c.execute)("SELECT 1")
                break
            except Exception:  # noqa: BLE001 - retried until it works
                time.sleep(0.01)
        results.append(time.monotonic() - back)
        pool.close()
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 500 if args.quick else 5000
    reps = 3 if args.quick else 7
    rows: list[tuple[str, float, float]] = []
    with EmbeddedPostgres(tls=False) as pg:
        dsn = pg.dsn()
        cases: list[tuple[str, dict[str, Any], dict[str, Any], bool, int, int]] = [
            ("lend + give back, no query", {}, {}, False, n, 1),
            ("lend + SELECT 1 + give back", {}, {}, True, n, 1),
            ("  with a check before each loan", {"check": check_connection}, {"check": psycopg_check}, True, n, 1),
            ("  with a session reset on return", {"reset": reset_session}, {"reset": psycopg_reset}, True, n, 1),
            ("8 threads, 4 connections, SELECT 1", {"max_size": 4, "min_size": 4}, {"max_size": 4, "min_size": 4}, True, n // 8, 8),
        ]
        for title, our_kw, their_kw, query, per_thread, threads in cases:
            a, b = ours(dsn, **our_kw), theirs(dsn, **their_kw)
            ops = per_thread * threads
            ours_t, theirs_t = [], []
            for rep in range(reps):
                run_a = threaded(loop_ours(a, per_thread, query), threads)
                run_b = threaded(loop_theirs(b, per_thread, query), threads)
                for which in ((0, 1) if rep % 2 == 0 else (1, 0)):
                    if which == 0:
                        ours_t.append(timed(run_a, ops))
                    else:
                        theirs_t.append(timed(run_b, ops))
            a.close()
            b.close()
            rows.append((title, statistics.median(ours_t), statistics.median(theirs_t)))
            print(f"{title:<40} neon_sync {rows[-1][1]:8.1f} µs   psycopg_pool {rows[-1][2]:8.1f} µs", flush=True)
        ours_back, theirs_back = reconnect_time(pg)
        print(f"first loan after the server returns: neon_sync {ours_back:.2f} s, psycopg_pool {theirs_back:.2f} s")
    load = os.getloadavg()
    lines = [
        "# Pool: neon_sync.Pool vs psycopg_pool.ConnectionPool",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"psycopg {psycopg.__version__} (C), psycopg_pool {psycopg_pool.__version__}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} (shared machine: other sessions were running). Median of {reps} "
        f"alternating repetitions, {n} operations each; `bench/bench_pool.py`. On a shared machine rows of one "
        "run can differ by more than their cases do (a query with a check measured below one without): read "
        "the ratios, each measured with both pools side by side, not the absolute times.",
        "",
        "| case | neon_sync.Pool | psycopg_pool | ratio |",
        "|---|---:|---:|---:|",
    ]
    for title, a_us, b_us in rows:
        lines.append(f"| {title.strip()} | {a_us:.1f} µs | {b_us:.1f} µs | {a_us / b_us:.2f}x |")
    lines += [
        "",
        f"First successful loan after a restarted server accepts connections again: neon_sync "
        f"{ours_back:.2f} s (backoff from 50 ms, doubling, cap 2 s), psycopg_pool {theirs_back:.2f} s.",
        "",
    ]
    with open(os.path.join(HERE, "RESULTS_POOL.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
