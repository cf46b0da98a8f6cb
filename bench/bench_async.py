"""neon_trio and neon_asyncio beside asyncpg, psycopg's AsyncConnection and neon_sync, in one run.

Run ``.venv/bin/python bench/bench_async.py [--quick]`` (needs the bench extra: asyncpg,
psycopg-pool, uvloop). Cases: ``SELECT $1::int`` n times on one connection (as the OS
schedules it, and with the client and its server backend pinned to one CPU), the 100,000-row
fetch of bench_tcp.py, and 1,000 queries from 50 concurrent tasks through a pool of 10.
Each repetition runs every driver once, round-robin with a rotating start, each on a fresh
event loop; the tables report medians. Results go to bench/RESULTS_ASYNC.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import asyncpg
import psycopg
import psycopg_pool
import trio
import uvloop

import neon_asyncio
import neon_sync
import neon_trio
from bench_tcp import FETCH_SQL, OneCPU, Target, create_tables, rotated, start_relay
from neon_sync.embedded import EmbeddedPostgres

HERE = os.path.dirname(os.path.abspath(__file__))
ROLE = "scram_user"


@dataclass(frozen=True)
class Sizes:
    selects: int
    fetch_rows: int
    pool_queries: int
    pool_tasks: int
    pool_size: int
    reps: int


FULL = Sizes(selects=5000, fetch_rows=100_000, pool_queries=1000, pool_tasks=50, pool_size=10, reps=5)
QUICK = Sizes(selects=1000, fetch_rows=20_000, pool_queries=500, pool_tasks=50, pool_size=10, reps=2)

CASES = ("select", "select pinned", "fetch", "fetch again", "pool")
FETCH_CASES = ("fetch", "fetch again")
# "fetch again": the same fetch run a second time on the connection, every driver with its
# statement cache on (asyncpg and psycopg prepare, the neon drivers get
# prepared_statement_cache_size=100) and every driver parsing jsonb into Python objects
# (asyncpg through a json.loads codec): the same work on each side.
STATEMENT_CACHE = 100


class Pinned:
    """OneCPU for one backend pid (bench_tcp's pinning, for a driver asked on its own loop)."""

    def __init__(self, pid: int) -> None:
        self._pin = OneCPU([])
        self._pin.pids = [0, pid]

    def __enter__(self) -> None:
        self._pin.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._pin.__exit__(*exc)


# ---------------------------------------------------------------- the drivers' bodies
# Each returns the seconds its timed part took.


async def neon_async_case(mod: Any, target: Target, case: str, sizes: Sizes, spawn: Callable[..., Awaitable[None]]) -> float:
    if case == "pool":
        async with mod.Pool(target.dsn, max_size=sizes.pool_size, min_size=sizes.pool_size, array_mode=True) as pool:
            per_task = sizes.pool_queries // sizes.pool_tasks

            async def worker() -> None:
                for i in range(per_task):
                    assert (await pool.query("SELECT $1::int", [i])).rows[0][0] == i

            started = time.perf_counter()
            await spawn(worker, sizes.pool_tasks)
            return time.perf_counter() - started
    cache = STATEMENT_CACHE if case == "fetch again" else 0
    async with await mod.Client(target.dsn, array_mode=True, prepared_statement_cache_size=cache).connect(wait=True) as client:
        if case in FETCH_CASES:
            if case == "fetch again":
                await client.query(FETCH_SQL, [])
            started = time.perf_counter()
            assert len((await client.query(FETCH_SQL, [])).rows) == sizes.fetch_rows
            return time.perf_counter() - started
        pid = client.backend_pid
        query = client.query
        with Pinned(pid) if case == "select pinned" else _nothing():
            started = time.perf_counter()
            for i in range(sizes.selects):
                (await query("SELECT $1::int", [i])).rows[0][0]
            return time.perf_counter() - started


async def asyncpg_case(target: Target, case: str, sizes: Sizes) -> float:
    kwargs = dict(host=target.host, port=target.port, user=target.user, password=target.password,
                  database=target.database, ssl=False)
    if case == "pool":
        async with asyncpg.create_pool(min_size=sizes.pool_size, max_size=sizes.pool_size, **kwargs) as pool:
            per_task = sizes.pool_queries // sizes.pool_tasks

            async def worker() -> None:
                for i in range(per_task):
                    assert await pool.fetchval("SELECT $1::int", i) == i

            started = time.perf_counter()
            await _gather(worker, sizes.pool_tasks)
            return time.perf_counter() - started
    conn = await asyncpg.connect(**kwargs)
    try:
        if case in FETCH_CASES:
            if case == "fetch again":
                for name in ("json", "jsonb"):
                    await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
                await conn.fetch(FETCH_SQL)
            started = time.perf_counter()
            assert len(await conn.fetch(FETCH_SQL)) == sizes.fetch_rows
            return time.perf_counter() - started
        with Pinned(conn.get_server_pid()) if case == "select pinned" else _nothing():
            started = time.perf_counter()
            for i in range(sizes.selects):
                await conn.fetchval("SELECT $1::int", i)
            return time.perf_counter() - started
    finally:
        await conn.close()


async def psycopg_case(target: Target, case: str, sizes: Sizes) -> float:
    if case == "pool":
        async with psycopg_pool.AsyncConnectionPool(
            target.dsn, min_size=sizes.pool_size, max_size=sizes.pool_size, kwargs={"autocommit": True}, open=False
        ) as pool:
            await pool.wait()
            per_task = sizes.pool_queries // sizes.pool_tasks

            async def worker() -> None:
                for i in range(per_task):
                    async with pool.connection() as conn:
                        cur = await conn.execute("SELECT %s::int", [i])
                        assert (await cur.fetchone())[0] == i  # type: ignore[index]

            started = time.perf_counter()
            await _gather(worker, sizes.pool_tasks)
            return time.perf_counter() - started
    async with await psycopg.AsyncConnection.connect(target.dsn, autocommit=True) as conn:
        cur = conn.cursor(binary=True)
        if case in FETCH_CASES:
            prepare = True if case == "fetch again" else None
            if prepare:
                await cur.execute(FETCH_SQL, prepare=True)
                await cur.fetchall()
            started = time.perf_counter()
            await cur.execute(FETCH_SQL, prepare=prepare)
            assert len(await cur.fetchall()) == sizes.fetch_rows
            return time.perf_counter() - started
        with Pinned(conn.info.backend_pid) if case == "select pinned" else _nothing():
            started = time.perf_counter()
            for i in range(sizes.selects):
                await cur.execute("SELECT %s::int", [i])
                await cur.fetchone()
            return time.perf_counter() - started


def neon_sync_case(target: Target, case: str, sizes: Sizes) -> float:
    if case == "pool":
        with neon_sync.Pool(target.dsn, max_size=sizes.pool_size, array_mode=True) as pool:
            per_task = sizes.pool_queries // sizes.pool_tasks

            def worker() -> None:
                for i in range(per_task):
                    assert pool.query("SELECT $1::int", [i]).rows[0][0] == i

            threads = [threading.Thread(target=worker) for _ in range(sizes.pool_tasks)]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.perf_counter() - started
    cache = STATEMENT_CACHE if case == "fetch again" else 0
    with neon_sync.Client(target.dsn, array_mode=True, prepared_statement_cache_size=cache) as client:
        if case in FETCH_CASES:
            if case == "fetch again":
                client.query(FETCH_SQL, [])
            started = time.perf_counter()
            assert len(client.query(FETCH_SQL, []).rows) == sizes.fetch_rows
            return time.perf_counter() - started
        pid = client.backend_pid
        assert pid is not None
        with Pinned(pid) if case == "select pinned" else _nothing():
            started = time.perf_counter()
            for i in range(sizes.selects):
                client.query("SELECT $1::int", [i]).rows[0][0]
            return time.perf_counter() - started


class _nothing:
    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        pass


async def _gather(worker: Callable[[], Awaitable[None]], n: int) -> None:
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(worker())  # type: ignore[arg-type]


async def _nursery(worker: Callable[[], Awaitable[None]], n: int) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(worker)


DRIVERS: dict[str, Callable[[Target, str, Sizes], float]] = {
    "neon_trio": lambda t, c, s: trio.run(neon_async_case, neon_trio, t, c, s, _nursery),
    "neon_asyncio": lambda t, c, s: asyncio.run(neon_async_case(neon_asyncio, t, c, s, _gather)),
    "neon_asyncio uvloop": lambda t, c, s: uvloop.run(neon_async_case(neon_asyncio, t, c, s, _gather)),
    "asyncpg": lambda t, c, s: asyncio.run(asyncpg_case(t, c, s)),
    "asyncpg uvloop": lambda t, c, s: uvloop.run(asyncpg_case(t, c, s)),
    "psycopg async": lambda t, c, s: asyncio.run(psycopg_case(t, c, s)),
    "neon_sync": neon_sync_case,
}


# ---------------------------------------------------------------- round trips


async def _rtt_neon(mod: Any, target: Target, pipeline: Any = "auto", wait: bool = False) -> list[float]:
    marks = [time.perf_counter()]
    client = await mod.Client(target.dsn, pipeline_connect=pipeline).connect(wait=wait)
    marks.append(time.perf_counter())
    for i in range(2):
        await client.query("SELECT $1::int", [i])
        marks.append(time.perf_counter())
    await client.close()
    return marks


async def _rtt_asyncpg(target: Target) -> list[float]:
    marks = [time.perf_counter()]
    conn = await asyncpg.connect(host=target.host, port=target.port, user=target.user, password=target.password,
                                 database=target.database, ssl=False)
    marks.append(time.perf_counter())
    for i in range(2):
        await conn.fetchval("SELECT $1::int", i)
        marks.append(time.perf_counter())
    await conn.close()
    return marks


async def _rtt_psycopg(target: Target) -> list[float]:
    marks = [time.perf_counter()]
    conn = await psycopg.AsyncConnection.connect(target.dsn, autocommit=True)
    marks.append(time.perf_counter())
    for i in range(2):
        await conn.execute("SELECT %s::int", [i])
        marks.append(time.perf_counter())
    await conn.close()
    return marks


def _rtt_neon_sync(target: Target, wait: bool = False) -> list[float]:
    marks = [time.perf_counter()]
    client = neon_sync.Client(target.dsn).connect(wait=wait)
    marks.append(time.perf_counter())
    for i in range(2):
        client.query("SELECT $1::int", [i])
        marks.append(time.perf_counter())
    client.close()
    return marks


RTT_DRIVERS: dict[str, Callable[[Target], list[float]]] = {
    "neon_trio": lambda t: trio.run(_rtt_neon, neon_trio, t),
    "neon_asyncio": lambda t: asyncio.run(_rtt_neon(neon_asyncio, t)),
    "neon_asyncio uvloop": lambda t: uvloop.run(_rtt_neon(neon_asyncio, t)),
    "neon_trio connect(wait=True)": lambda t: trio.run(_rtt_neon, neon_trio, t, "auto", True),
    "neon_asyncio pipeline_connect=False": lambda t: asyncio.run(_rtt_neon(neon_asyncio, t, False)),
    "neon_sync": _rtt_neon_sync,
    "neon_sync connect(wait=True)": lambda t: _rtt_neon_sync(t, True),
    "asyncpg": lambda t: asyncio.run(_rtt_asyncpg(t)),
    "psycopg async": lambda t: asyncio.run(_rtt_psycopg(t)),
}
RTT_OPS = ("connect", "first query", "warm query")


def count_round_trips(direct: Target, relayed: Target, delay: float, passes: int = 3) -> dict[str, dict[str, float]]:
    """Round trips per operation: (time through the relay - time direct) / (2 x delay), minimum of passes."""
    out: dict[str, dict[str, float]] = {}
    for name, run in RTT_DRIVERS.items():
        best: dict[str, list[float]] = {op: [] for op in RTT_OPS}
        for target in (direct, relayed):
            spans = [run(target) for _ in range(passes)]
            for k, op in enumerate(RTT_OPS):
                best[op].append(min(m[k + 1] - m[k] for m in spans))
        out[name] = {op: (relay - plain) / (2 * delay) for op, (plain, relay) in best.items()}
    return out


# ---------------------------------------------------------------- measuring and reporting


def measure(
    target: Target, sizes: Sizes, log: Callable[[str], None], cases: Sequence[str] = CASES
) -> dict[str, dict[str, list[float]]]:
    names = list(DRIVERS)
    times: dict[str, dict[str, list[float]]] = {case: {n: [] for n in names} for case in cases}
    for name in names:  # warm up: imports, codecs, the server's caches
        for case in cases:
            DRIVERS[name](target, case, Sizes(50, sizes.fetch_rows, 100, 10, sizes.pool_size, 1))
    for rep in range(sizes.reps):
        for case in cases:
            for name in rotated(names, rep):
                times[case][name].append(DRIVERS[name](target, case, sizes))
        log(f"repetition {rep + 1}/{sizes.reps} done")
    return times


def per_unit(case: str, seconds: float, sizes: Sizes) -> float:
    if case.startswith("select"):
        return seconds / sizes.selects * 1e6  # µs/query
    if case in FETCH_CASES:
        return sizes.fetch_rows / seconds  # rows/s
    return sizes.pool_queries / seconds  # queries/s


UNITS = {"select": "µs/query", "select pinned": "µs/query", "fetch": "rows/s", "fetch again": "rows/s",
         "pool": "queries/s"}
LABELS = {
    "select": "SELECT $1::int, one connection",
    "select pinned": "SELECT $1::int, client and backend pinned to one CPU",
    "fetch": "fetch rows (9 columns, bench_tcp's table), first run, each driver's defaults",
    "fetch again": "fetch rows again, statement cached, jsonb parsed by all",
    "pool": "pooled: 50 tasks, pool of 10",
}


def report(
    times: dict[str, dict[str, list[float]]], sizes: Sizes, info: list[str], rtt: dict[str, dict[str, float]], delay: float
) -> str:
    names = list(DRIVERS)
    cases = [c for c in CASES if c in times]
    medians = {c: {n: per_unit(c, statistics.median(times[c][n]), sizes) for n in names} for c in cases}
    lines = ["# Async drivers: benchmark results", "", "Generated by `bench/bench_async.py`; do not edit by hand.", ""]
    lines += [f"- {line}" for line in info]
    lines += ["", "## Medians (ratio to asyncpg on the default loop in brackets)", ""]
    lines.append("| case | unit | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---:|" * len(names))
    for case in cases:
        n = sizes.selects if case.startswith("select") else (sizes.fetch_rows if case in FETCH_CASES else sizes.pool_queries)
        base = medians[case]["asyncpg"]
        cells = []
        for name in names:
            value = medians[case][name]
            ratio = (value / base) if base else float("nan")
            shown = f"{value:,.0f}" if value >= 100 else f"{value:.1f}"
            cells.append(f"{shown} ({ratio:.2f}x)")
        lines.append(f"| {LABELS[case]} (n={n:,}) | {UNITS[case]} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets", "",
              "'met' is computed from the medians. 'per repetition' is the range of the same ratio taken repetition by "
              "repetition (the drivers ran side by side in each); 'best vs best' compares each driver's fastest "
              "repetition, closest to what a quiet machine would show.", "",
              "| target | measured (medians) | per repetition | best vs best | met |", "|---|---|---|---|---|"]

    def ratios(case: str, a: str, b: str, rate: bool) -> list[float]:
        pairs = zip(times[case][a], times[case][b])
        return [(tb / ta) if rate else (ta / tb) for ta, tb in pairs]

    for variant in ("neon_trio", "neon_asyncio", "neon_asyncio uvloop"):
        for case in ("select", "select pinned"):
            if case not in times:
                continue
            r = ratios(case, variant, "neon_sync", rate=False)
            med = statistics.median(r)
            best = min(times[case][variant]) / min(times[case]["neon_sync"])
            lines.append(f"| {variant} per query within 1.3x neon_sync ({case}) | {med:.2f}x neon_sync's time | "
                         f"{min(r):.2f}–{max(r):.2f} | {best:.2f} | {'yes' if med <= 1.3 else '**no**'} |")
    for variant, base in (("neon_trio", "asyncpg"), ("neon_asyncio", "asyncpg"), ("neon_asyncio uvloop", "asyncpg uvloop")):
        for case, what in (("fetch", "100k fetch at least"), ("fetch again", "100k fetch again at least"),
                           ("pool", "pooled workload ahead of")):
            if case not in times:
                continue
            r = ratios(case, variant, base, rate=True)
            med = statistics.median(r)
            best = min(times[case][base]) / min(times[case][variant])
            ok = med >= 1.0 if case in FETCH_CASES else med > 1.0
            lines.append(f"| {variant} {what} {base}'s rate ({case}) | {med:.2f}x {base}'s rate | "
                         f"{min(r):.2f}–{max(r):.2f} | {best:.2f} | {'yes' if ok else '**no**'} |")
    lines += ["", "## Round trips", "",
              f"Through `bench/relay.py` delaying each direction {delay * 1000:g} ms; round trips = (time through the relay "
              "- time direct) / (2 x delay), minimum of 3 passes. Role `scram_user` (SCRAM-SHA-256), no TLS. "
              "A pipelined connect (the neon drivers' default over TCP with a password) returns once its last flight "
              "is written, so the login's last round trip is shared with the first query: compare connect + first "
              "query.", "",
              "| driver | " + " | ".join(RTT_OPS) + " |", "|---|" + "---:|" * len(RTT_OPS)]
    for name, counts in rtt.items():
        lines.append(f"| {name} | " + " | ".join(f"{counts[op]:.1f}" for op in RTT_OPS) + " |")
    lines += ["", "## Notes", "",
              "- neon drivers run with `array_mode=True` (rows as lists); psycopg uses a binary cursor in autocommit and "
              "prepares a statement after 5 executions (its default), asyncpg prepares every statement (its default) and "
              "returns jsonb as `str`; the neon drivers send unnamed statements (no statement cache) and decode jsonb.",
              "- fetch (first run): a new connection runs the fetch once, each driver as configured by default: asyncpg "
              "prepares it (a round trip, then binary results) and leaves jsonb as `str`; the neon drivers run it "
              "unnamed, in text, and parse jsonb. fetch again: the same connection runs it a second time with every "
              f"driver's statement cache on (neon `prepared_statement_cache_size={STATEMENT_CACHE}`, psycopg "
              "`prepare=True`) and every driver parsing jsonb (asyncpg through `set_type_codec(..., decoder=json.loads)`): "
              "the neon drivers then bind the fixed-width columns (int4, int8, float8, timestamptz, bool, uuid) in "
              "binary and keep text for text, numeric and jsonb.",
              "- pool: neon_trio/neon_asyncio `await pool.query(...)`; asyncpg `pool.fetchval`; psycopg_pool "
              "`async with pool.connection()` + execute + fetchone; neon_sync `Pool.query` from 50 threads. Pools are "
              "filled before the clock starts (min_size = max_size = 10; neon_sync's pool opens lazily).",
              "- Each measurement runs on a fresh event loop (connect and teardown are not timed).",
              ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="neon_trio / neon_asyncio vs asyncpg, psycopg async, neon_sync")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes")
    parser.add_argument("--output", help="where to write the report (default bench/RESULTS_ASYNC.md)")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    parser.add_argument("--cases", help=f"comma-separated subset of {', '.join(CASES)} (targets need all)")
    parser.add_argument("--no-rtt", action="store_true", help="skip the round-trip table")
    args = parser.parse_args(argv)
    cases = tuple(c.strip() for c in args.cases.split(",")) if args.cases else CASES
    output = args.output or os.path.join(HERE, "RESULTS_ASYNC-quick.md" if args.quick else "RESULTS_ASYNC.md")
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    with EmbeddedPostgres(tls=False) as pg:
        role = pg.role(ROLE)
        assert role.password is not None
        target = Target("127.0.0.1", pg.port, ROLE, role.password)
        admin = psycopg.connect(target.dsn, autocommit=True)
        create_tables(admin, sizes.fetch_rows)  # type: ignore[arg-type]
        server_version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        log(f"PostgreSQL on port {pg.port}, {sizes.fetch_rows:,} rows loaded")
        times = measure(target, sizes, log, cases)
        delay = 0.020
        rtt: dict[str, dict[str, float]] = {}
        if not args.no_rtt:
            relay, relay_port = start_relay(pg.port, delay, lifetime=300)
            try:
                rtt = count_round_trips(target, Target("127.0.0.1", relay_port, ROLE, role.password), delay)
            finally:
                relay.kill()
                relay.wait()
            log("round trips counted")
        admin.close()
    info = [
        f"**date (UTC)**: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}",
        f"**machine**: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, shared with other "
        f"developers' work (load average {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at the end)",
        f"**python**: {platform.python_implementation()} {platform.python_version()}; trio {trio.__version__}, "
        f"uvloop {uvloop.__version__}",
        f"**drivers**: asyncpg {asyncpg.__version__}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), "
        f"psycopg_pool {psycopg_pool.__version__}",
        f"**PostgreSQL**: {server_version} (EmbeddedPostgres, loopback TCP, no TLS)",
        f"**mode**: {'quick' if args.quick else 'full'}: {sizes.reps} repetitions, round-robin with a rotating start; medians",
    ]
    text = report(times, sizes, info, rtt, delay)
    print(text)
    if args.no_write:
        return
    with open(output, "w", encoding="utf-8") as f:
        f.write(text)
    log(f"wrote {os.path.relpath(output)}")


if __name__ == "__main__":
    main()
