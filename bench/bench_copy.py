"""COPY throughput and streaming memory: neon_sync against psycopg 3 (and asyncpg), one run, one server.

Run ``.venv/bin/python bench/bench_copy.py [--rows N] [--reps R]`` (defaults: 2,000,000 rows, 5 reps).

* COPY out: ``COPY bench_copy TO STDOUT`` of N rows (int8, text, timestamptz), every byte read.
* COPY in, raw: the same bytes sent back in 64 KiB blocks (``copy.write``).
* COPY in, rows: N/4 Python tuples through ``copy.write_row`` (asyncpg: ``copy_records_to_table``,
  which is binary and so not the same work; shown for reference).
* Streaming: iterate over N rows of a query, each method in a fresh subprocess; reported are the
  wall time and the peak RSS growth (VmHWM at the end minus VmRSS once connected), which sees C
  allocations too.

Throughput cases run every driver once per repetition, round-robin with a rotating start, so
that machine noise falls on all alike; medians and ratios to psycopg are reported. Results are
printed and written to bench/RESULTS_COPY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import asyncpg
import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from neon_sync import Client, dbapi  # noqa: E402
from neon_sync.embedded import EmbeddedPostgres  # noqa: E402

TABLE = "bench_copy"
TARGET = "bench_copy_in"
STREAM_SQL = (
    "SELECT g::int8 AS id, 'row number ' || g AS name, "
    "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' AS at FROM generate_series(1, {n}) g"
)
BLOCK = 65536


# ---------------------------------------------------------------- COPY cases


def neon_copy_out(dsn: str) -> int:
    with Client(dsn) as client, client.copy(f"COPY {TABLE} TO STDOUT") as copy:
        return sum(len(chunk) for chunk in copy)


def psycopg_copy_out(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor().copy(f"COPY {TABLE} TO STDOUT") as copy:
        return sum(len(chunk) for chunk in copy)


def asyncpg_copy_out(dsn: str) -> int:
    async def go() -> int:
        conn = await asyncpg.connect(dsn)
        total = 0

        async def sink(chunk: bytes) -> None:
            nonlocal total
            total += len(chunk)

        try:
            await conn.copy_from_table(TABLE, output=sink)
        finally:
            await conn.close()
        return total

    return asyncio.run(go())


def neon_copy_in_raw(dsn: str, blocks: list[bytes]) -> int:
    with Client(dsn) as client:
        client.query(f"TRUNCATE {TARGET}")
        with client.copy(f"COPY {TARGET} FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)
        return copy.rowcount


def psycopg_copy_in_raw(dsn: str, blocks: list[bytes]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TARGET}")
        cur = conn.cursor()
        with cur.copy(f"COPY {TARGET} FROM STDIN") as copy:
            for block in blocks:
                copy.write(block)
        return cur.rowcount


def asyncpg_copy_in_raw(dsn: str, blocks: list[bytes]) -> int:
    async def go() -> int:
        conn = await asyncpg.connect(dsn)

        async def source() -> Any:
            for block in blocks:
                yield block

        try:
            await conn.execute(f"TRUNCATE {TARGET}")
            status = await conn.copy_to_table(TARGET, source=source())
        finally:
            await conn.close()
        return int(status.split()[-1])

    return asyncio.run(go())


def neon_copy_in_rows(dsn: str, rows: list[tuple[Any, ...]]) -> int:
    with Client(dsn) as client:
        client.query(f"TRUNCATE {TARGET}")
        with client.copy(f"COPY {TARGET} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return copy.rowcount


def psycopg_copy_in_rows(dsn: str, rows: list[tuple[Any, ...]]) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TARGET}")
        cur = conn.cursor()
        with cur.copy(f"COPY {TARGET} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return cur.rowcount


def asyncpg_copy_in_rows(dsn: str, rows: list[tuple[Any, ...]]) -> int:
    async def go() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"TRUNCATE {TARGET}")
            status = await conn.copy_records_to_table(TARGET, records=rows)
        finally:
            await conn.close()
        return int(status.split()[-1])

    return asyncio.run(go())


def interleaved(cases: dict[str, Callable[[], int]], reps: int) -> dict[str, list[float]]:
    """Each case once per repetition, the starting case rotating; wall seconds per case."""
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    counts: dict[str, int] = {}
    for rep in range(reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            start = time.perf_counter()
            counts[name] = cases[name]()
            times[name].append(time.perf_counter() - start)
    if len(set(counts.values())) != 1:
        raise SystemExit(f"the drivers disagree on what they copied: {counts}")
    return times


# ---------------------------------------------------------------- streaming memory, one subprocess each


def _rss_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def stream_child(method: str, dsn: str, rows: int) -> dict[str, float]:
    """Runs in the subprocess: connect, note RSS, iterate, report time and peak growth."""
    sql = STREAM_SQL.format(n=rows)
    count = 0
    if method.startswith("neon"):
        conn = dbapi.connect(dsn)
        client = conn.client
    else:
        pconn = psycopg.connect(dsn)
    baseline = _rss_kib("VmRSS")
    start = time.perf_counter()
    if method == "neon Client.stream":
        for _row in client.stream(sql, mode="tuple"):
            count += 1
    elif method == "neon cursor.stream":
        for _row in conn.cursor().stream(sql):
            count += 1
    elif method == "neon named cursor":
        cur = conn.cursor(name="bench")
        cur.execute(sql)
        for _row in cur:
            count += 1
    elif method == "neon fetchmany (client-side cursor)":
        cur = conn.cursor()
        cur.execute(sql)
        while batch := cur.fetchmany(2000):
            count += len(batch)
    elif method == "psycopg named cursor":
        pcur = pconn.cursor(name="bench")
        pcur.execute(sql)
        for _row in pcur:
            count += 1
    elif method == "psycopg cursor.stream":
        for _row in pconn.cursor().stream(sql):
            count += 1
    else:
        raise SystemExit(f"unknown method {method!r}")
    elapsed = time.perf_counter() - start
    peak = _rss_kib("VmHWM")
    assert count == rows, (method, count)
    return {"seconds": elapsed, "growth_mib": (peak - baseline) / 1024}


STREAM_METHODS = [
    "neon Client.stream",
    "neon cursor.stream",
    "neon named cursor",
    "psycopg named cursor",
    "psycopg cursor.stream",
    "neon fetchmany (client-side cursor)",
]


def run_stream(method: str, dsn: str, rows: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--stream-child", method, "--dsn", dsn, "--rows", str(rows)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------- report


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="COPY throughput and streaming memory, neon_sync vs psycopg")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--stream-reps", type=int, default=2)
    parser.add_argument("--stream-child", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS_COPY.md alone")
    args = parser.parse_args(argv)
    if args.stream_child:
        print(json.dumps(stream_child(args.stream_child, args.dsn, args.rows)))
        return

    n = args.rows
    load_before = os.getloadavg()
    with EmbeddedPostgres() as pg:
        dsn = pg.dsn(sslmode="disable")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {TABLE} AS " + STREAM_SQL.format(n=n))
            conn.execute(f"CREATE UNLOGGED TABLE {TARGET} (LIKE {TABLE})")
            conn.execute(f"VACUUM ANALYZE {TABLE}")
        with Client(dsn) as client:
            data = b"".join(client.copy_to(f"COPY {TABLE} TO STDOUT"))
        blocks = [data[i : i + BLOCK] for i in range(0, len(data), BLOCK)]
        row_count = n // 4
        epoch = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        rows = [(i, f"row number {i}", epoch + datetime.timedelta(seconds=i)) for i in range(1, row_count + 1)]

        print(f"COPY out, {n} rows, {len(data) / 1e6:.1f} MB ...", flush=True)
        out_times = interleaved(
            {"neon_sync": lambda: neon_copy_out(dsn), "psycopg": lambda: psycopg_copy_out(dsn),
             "asyncpg": lambda: asyncpg_copy_out(dsn)},
            args.reps,
        )
        print("COPY in, raw blocks ...", flush=True)
        in_raw_times = interleaved(
            {"neon_sync": lambda: neon_copy_in_raw(dsn, blocks), "psycopg": lambda: psycopg_copy_in_raw(dsn, blocks),
             "asyncpg": lambda: asyncpg_copy_in_raw(dsn, blocks)},
            args.reps,
        )
        print(f"COPY in, {row_count} rows through write_row ...", flush=True)
        in_rows_times = interleaved(
            {"neon_sync": lambda: neon_copy_in_rows(dsn, rows), "psycopg": lambda: psycopg_copy_in_rows(dsn, rows),
             "asyncpg": lambda: asyncpg_copy_in_rows(dsn, rows)},
            args.reps,
        )
        del rows, blocks, data

        print(f"streaming {n} rows, one subprocess per run ...", flush=True)
        stream_results: dict[str, list[dict[str, float]]] = {m: [] for m in STREAM_METHODS}
        for rep in range(args.stream_reps):
            order = STREAM_METHODS[rep % len(STREAM_METHODS) :] + STREAM_METHODS[: rep % len(STREAM_METHODS)]
            for method in order:
                stream_results[method].append(run_stream(method, dsn, n))
                print(f"  {method}: {stream_results[method][-1]}", flush=True)
    load_after = os.getloadavg()

    lines = [
        "# COPY and streaming: neon_sync vs psycopg 3 (and asyncpg)",
        "",
        f"`bench/bench_copy.py --rows {n} --reps {args.reps}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Python {platform.python_version()}, psycopg {psycopg.__version__} ({psycopg.pq.__impl__}),"
        f" asyncpg {asyncpg.__version__}; EmbeddedPostgres on loopback TCP, no TLS, fsync off.",
        f"Machine: {os.cpu_count()} cores shared with other developers; load average {load_before[0]:.1f} before,"
        f" {load_after[0]:.1f} after: expect noise, read the ratios rather than the seconds.",
        "",
        f"## COPY throughput (median of {args.reps} interleaved repetitions, wall seconds)",
        "",
        "| case | neon_sync | psycopg | asyncpg | neon / psycopg |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, times in (
        (f"COPY out, {n:,} rows", out_times),
        (f"COPY in, {n:,} rows as raw 64 KiB blocks", in_raw_times),
        (f"COPY in, {row_count:,} rows through write_row (asyncpg: binary records)", in_rows_times),
    ):
        neon, pg3, apg = (median(times[k]) for k in ("neon_sync", "psycopg", "asyncpg"))
        lines.append(f"| {label} | {neon:.2f} | {pg3:.2f} | {apg:.2f} | {neon / pg3:.2f} |")
    lines += [
        "",
        "Min/max per case (neon_sync; psycopg): "
        + "; ".join(
            f"{name} {min(t['neon_sync']):.2f}-{max(t['neon_sync']):.2f}; {min(t['psycopg']):.2f}-{max(t['psycopg']):.2f}"
            for name, t in (("out", out_times), ("in raw", in_raw_times), ("in rows", in_rows_times))
        ),
        "",
        f"## Streaming {n:,} rows of (int8, text, timestamptz) (median of {args.stream_reps} runs, each in a fresh process)",
        "",
        "Peak memory growth = VmHWM at the end minus VmRSS once connected (C allocations included).",
        "",
        "| method | seconds | peak RSS growth (MiB) |",
        "| --- | ---: | ---: |",
    ]
    for method in STREAM_METHODS:
        results = stream_results[method]
        lines.append(
            f"| {method} | {median([r['seconds'] for r in results]):.2f} |"
            f" {median([r['growth_mib'] for r in results]):.1f} |"
        )
    lines += [
        "",
        "neon_sync's `Client.stream` / `cursor.stream` read an unnamed portal 2,000 rows per Execute"
        " (PortalSuspended), the named cursor FETCHes `itersize` = 2,000 rows; psycopg's named cursor"
        " uses its default itersize (100) and `cursor.stream` its single-row mode.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        with open(os.path.join(HERE, "RESULTS_COPY.md"), "w", encoding="utf-8") as out:
            out.write(report)


if __name__ == "__main__":
    main()
