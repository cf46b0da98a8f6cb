"""neon_sync over TCP against psycopg 3, asyncpg and pg8000, in one run on one server.

Run ``.venv/bin/python bench/bench_tcp.py [--quick] [--profile select|fetch]``.

Each case runs every driver once per repetition, round-robin with a rotating start, so that
machine noise falls on all drivers alike; the tables report medians and ratios to psycopg.
A delaying relay (bench/relay.py) then counts each driver's round trips. The results are
printed and written to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import asyncpg
import pg8000
import pg8000.native
import psycopg

import neon_sync
from neon_sync import dbapi as neon_dbapi
from neon_sync.client import Client
from neon_sync.embedded import EmbeddedPostgres

HERE = os.path.dirname(os.path.abspath(__file__))
ROLE = "scram_user"
PSYCOPG = "psycopg"

FETCH_SQL = "SELECT a, b, c, d, e, f, g, h, i FROM bench_fetch"
INSERT_TABLE = "bench_insert"
FETCH_COLUMNS = "int4, int8, text, float8, numeric, timestamptz, bool, uuid, jsonb"


@dataclass(frozen=True)
class Sizes:
    connect_ops: int
    selects: int
    fetch_rows: int
    insert_rows: int
    pipeline: int
    reps: int
    connect_reps: int
    rtt_rows: int
    rtt_reps: int
    rtt_delay: float


FULL = Sizes(connect_ops=25, selects=5000, fetch_rows=100_000, insert_rows=10_000, pipeline=5000,
             reps=7, connect_reps=5, rtt_rows=100, rtt_reps=3, rtt_delay=0.020)
QUICK = Sizes(connect_ops=8, selects=1000, fetch_rows=20_000, insert_rows=2_000, pipeline=1000,
              reps=3, connect_reps=3, rtt_rows=100, rtt_reps=1, rtt_delay=0.010)


@dataclass(frozen=True)
class Target:
    """Where a driver connects: the server directly or the relay in front of it."""

    host: str
    port: int
    user: str
    password: str
    database: str = "postgres"

    @property
    def dsn(self) -> str:
        return (f"host={self.host} port={self.port} user={self.user} password={self.password} "
                f"dbname={self.database} sslmode=disable")


# ---------------------------------------------------------------------------------- drivers


class Driver:
    """One driver (or one way of using a driver) behind the operations the cases time."""

    name = ""
    cases: frozenset[str] = frozenset()
    pipelined = True  # False: pipeline() runs the statements one by one

    def __init__(self, target: Target) -> None:
        self.target = target

    # Every driver implements the operations of its ``cases`` and of the round-trip pass.
    def open(self) -> None: raise NotImplementedError
    def close(self) -> None: raise NotImplementedError
    def connect_cycle(self) -> None: raise NotImplementedError
    def query_one(self, i: int) -> Any: raise NotImplementedError
    def select_loop(self, n: int) -> Any: raise NotImplementedError
    def fetch(self) -> int: raise NotImplementedError
    def executemany(self, rows: list[tuple[int, str, float]]) -> None: raise NotImplementedError
    def pipeline(self, n: int) -> list[Any]: raise NotImplementedError
    def backend_pid(self) -> int: raise NotImplementedError

    # Transaction handling around executemany; nothing to do for drivers that commit by themselves.
    def before_executemany(self) -> None: pass
    def commit(self) -> None: pass
    def after_executemany(self) -> None: pass


class NeonClient(Driver):
    name = "neon_sync"
    binary = False
    cases = frozenset({"connect", "select", "fetch", "executemany", "pipeline"})

    def _client(self) -> Client:
        return Client(self.target.dsn, binary=self.binary, array_mode=True)

    def open(self) -> None:
        self.client = self._client().connect()

    def close(self) -> None:
        self.client.close()

    def connect_cycle(self) -> None:
        client = self._client().connect()
        client.query("SELECT 1")
        client.close()

    def query_one(self, i: int) -> Any:
        return self.client.query("SELECT $1::int", [i]).rows[0][0]

    def select_loop(self, n: int) -> Any:
        query = self.client.query
        value = None
        for i in range(n):
            value = query("SELECT $1::int", [i]).rows[0][0]
        return value

    def fetch(self) -> int:
        return len(self.client.query(FETCH_SQL, []).rows)

    def backend_pid(self) -> int:
        return int(self.client.query("SELECT pg_backend_pid()").rows[0][0])

    def executemany(self, rows: list[tuple[int, str, float]]) -> None:
        self.client.execute_many(f"INSERT INTO {INSERT_TABLE} VALUES ($1, $2, $3)", rows)

    def pipeline(self, n: int) -> list[Any]:
        pipe = self.client.pipeline()
        for i in range(n):
            pipe.add("SELECT $1::int", [i])
        return [r.rows[0][0] for r in pipe.run()]  # type: ignore[union-attr]


class NeonClientBinary(NeonClient):
    name = "neon_sync binary"
    binary = True


class NeonClientPrepared(NeonClient):
    """Named prepared statements (opt-in cache), as psycopg does after 5 runs of a query."""

    name = "neon_sync prepared"
    cases = frozenset({"select", "pipeline"})

    def _client(self) -> Client:
        return Client(self.target.dsn, array_mode=True, prepared_statement_cache_size=100)


class NeonDBAPI(Driver):
    """neon_sync's PEP 249 layer, default (non-autocommit) mode: executemany then commit."""

    name = "neon_sync dbapi"
    cases = frozenset({"executemany"})
    pipelined = False

    def open(self) -> None:
        self.conn = neon_dbapi.connect(self.target.dsn)

    def close(self) -> None:
        self.conn.close()

    def query_one(self, i: int) -> Any:
        cur = self.conn.cursor()
        cur.execute("SELECT %s::int", (i,))
        return cur.fetchone()[0]  # type: ignore[index]

    def before_executemany(self) -> None:
        self.conn.commit()  # start idle, as an application's executemany usually does

    def executemany(self, rows: list[tuple[int, str, float]]) -> None:
        self.conn.cursor().executemany(f"INSERT INTO {INSERT_TABLE} VALUES (%s, %s, %s)", rows)

    def commit(self) -> None:
        self.conn.commit()

    def pipeline(self, n: int) -> list[Any]:
        return [self.query_one(i) for i in range(n)]


class Psycopg(Driver):
    """psycopg 3 (C implementation), binary results; autocommit except around executemany."""

    name = PSYCOPG
    cases = frozenset({"connect", "select", "fetch", "executemany", "pipeline"})

    def open(self) -> None:
        self.conn = psycopg.connect(self.target.dsn, autocommit=True)
        self.cur = self.conn.cursor(binary=True)

    def close(self) -> None:
        self.conn.close()

    def connect_cycle(self) -> None:
        conn = psycopg.connect(self.target.dsn, autocommit=True)
        conn.execute("SELECT 1").fetchone()
        conn.close()

    def query_one(self, i: int) -> Any:
        self.cur.execute("SELECT %s::int", (i,))
        return self.cur.fetchone()[0]  # type: ignore[index]

    def select_loop(self, n: int) -> Any:
        cur = self.cur
        value = None
        for i in range(n):
            cur.execute("SELECT %s::int", (i,))
            value = cur.fetchone()[0]  # type: ignore[index]
        return value

    def fetch(self) -> int:
        self.cur.execute(FETCH_SQL)
        return len(self.cur.fetchall())

    def backend_pid(self) -> int:
        return self.conn.info.backend_pid

    def before_executemany(self) -> None:
        self.conn.autocommit = False

    def executemany(self, rows: list[tuple[int, str, float]]) -> None:
        self.cur.executemany(f"INSERT INTO {INSERT_TABLE} VALUES (%s, %s, %s)", rows)

    def commit(self) -> None:
        self.conn.commit()

    def after_executemany(self) -> None:
        self.conn.autocommit = True

    def pipeline(self, n: int) -> list[Any]:
        conn = self.conn
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (i,), binary=True) for i in range(n)]
        return [c.fetchone()[0] for c in cursors]  # type: ignore[index]


class PsycopgUnprepared(Psycopg):
    """psycopg with ``prepare_threshold=None``: unnamed statements, like neon_sync's default."""

    name = "psycopg unprepared"
    cases = frozenset({"select"})

    def open(self) -> None:
        super().open()
        self.conn.prepare_threshold = None


class Asyncpg(Driver):
    """asyncpg; each timed operation is one coroutine run on a loop created once."""

    name = "asyncpg"
    cases = frozenset({"connect", "select", "fetch", "executemany", "pipeline"})
    pipelined = False  # probed at start: asyncio.gather on one connection is refused
    loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if Asyncpg.loop is None:
            Asyncpg.loop = asyncio.new_event_loop()
        self.run = Asyncpg.loop.run_until_complete

    def _connect(self) -> Any:
        t = self.target
        return asyncpg.connect(host=t.host, port=t.port, user=t.user, password=t.password,
                               database=t.database, ssl=False)

    def open(self) -> None:
        self.conn = self.run(self._connect())

    def close(self) -> None:
        self.run(self.conn.close())

    def connect_cycle(self) -> None:
        async def cycle() -> None:
            conn = await self._connect()
            await conn.fetchval("SELECT 1")
            await conn.close()
        self.run(cycle())

    def query_one(self, i: int) -> Any:
        return self.run(self.conn.fetchval("SELECT $1::int", i))

    def select_loop(self, n: int) -> Any:
        async def loop() -> Any:
            fetchval = self.conn.fetchval
            value = None
            for i in range(n):
                value = await fetchval("SELECT $1::int", i)
            return value
        return self.run(loop())

    def fetch(self) -> int:
        return len(self.run(self.conn.fetch(FETCH_SQL)))

    def backend_pid(self) -> int:
        return int(self.conn.get_server_pid())

    def executemany(self, rows: list[tuple[int, str, float]]) -> None:
        self.run(self.conn.executemany(f"INSERT INTO {INSERT_TABLE} VALUES ($1, $2, $3)", rows))

    def pipeline(self, n: int) -> list[Any]:
        async def sequential() -> list[Any]:
            fetchval = self.conn.fetchval
            return [await fetchval("SELECT $1::int", i) for i in range(n)]
        return self.run(sequential())

    def probe_gather(self) -> str:
        """What asyncio.gather of fetchval on one connection does (on a throwaway connection)."""
        async def probe() -> str:
            conn = await self._connect()
            try:
                out = await asyncio.gather(*[conn.fetchval("SELECT $1::int", i) for i in range(4)],
                                           return_exceptions=True)
            finally:
                await conn.close()
            errors = [o for o in out if isinstance(o, BaseException)]
            if errors:
                return f"{type(errors[0]).__name__}: {errors[0]}"
            return ""
        return self.run(probe())


class Pg8000(Driver):
    """pg8000's native API: ``conn.run``; executemany is a run per row inside a transaction."""

    name = "pg8000"
    cases = frozenset({"connect", "select", "fetch", "executemany", "pipeline"})
    pipelined = False

    def _connect(self) -> Any:
        t = self.target
        return pg8000.native.Connection(t.user, host=t.host, port=t.port, password=t.password,
                                        database=t.database)

    def open(self) -> None:
        self.conn = self._connect()

    def close(self) -> None:
        self.conn.close()

    def connect_cycle(self) -> None:
        conn = self._connect()
        conn.run("SELECT 1")
        conn.close()

    def query_one(self, i: int) -> Any:
        return self.conn.run("SELECT :v::int", v=i)[0][0]

    def select_loop(self, n: int) -> Any:
        run = self.conn.run
        value = None
        for i in range(n):
            value = run("SELECT :v::int", v=i)[0][0]
        return value

    def fetch(self) -> int:
        return len(self.conn.run(FETCH_SQL))

    def backend_pid(self) -> int:
        return int(self.conn.run("SELECT pg_backend_pid()")[0][0])

    def executemany(self, rows: list[tuple[int, str, float]]) -> None:
        run = self.conn.run
        run("START TRANSACTION")
        sql = f"INSERT INTO {INSERT_TABLE} VALUES (:a, :b, :c)"
        for a, b, c in rows:
            run(sql, a=a, b=b, c=c)

    def commit(self) -> None:
        self.conn.run("COMMIT")

    def pipeline(self, n: int) -> list[Any]:
        run = self.conn.run
        return [run("SELECT :v::int", v=i)[0][0] for i in range(n)]


DRIVERS: list[type[Driver]] = [
    Psycopg, PsycopgUnprepared, NeonClient, NeonClientBinary, NeonClientPrepared, NeonDBAPI, Asyncpg, Pg8000,
]


# ---------------------------------------------------------------------------------- timing


@dataclass
class Measurement:
    case: str
    driver: str
    seconds: list[float] = field(default_factory=list)
    count: int = 0  # operations or rows per repetition
    load: float = 0.0  # 1-minute load average when the case ended

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


SELECT_SLICES = 10


class OneCPU:
    """Pin this process and the drivers' server backends to one CPU, and unpin them after.

    On a small VM the scheduler places each client/backend pair on its own: a pair that
    lands on two CPUs pays an idle-vCPU wake-up (tens of µs) on every round trip, a pair on
    one CPU does not, and which pair gets which is luck. Pinned, every driver's round trip
    costs what its client and the server spend on it.
    """

    def __init__(self, drivers: list[Driver]) -> None:
        self.pids = [0] + [d.backend_pid() for d in drivers]
        self.everywhere = os.sched_getaffinity(0)
        self.cpu = max(self.everywhere)

    def __enter__(self) -> "OneCPU":
        for pid in self.pids:
            os.sched_setaffinity(pid, {self.cpu})
        return self

    def __exit__(self, *exc: Any) -> None:
        for pid in self.pids:
            try:
                os.sched_setaffinity(pid, self.everywhere)
            except OSError:
                pass


def rotated(items: Sequence[Any], k: int) -> list[Any]:
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


class Admin:
    """Setup statements (tables, truncation) through a separate psycopg connection."""

    def __init__(self, target: Target) -> None:
        self.conn = psycopg.connect(target.dsn, autocommit=True)

    def execute(self, sql: str) -> Any:
        return self.conn.execute(sql)

    def truncate(self) -> None:
        self.conn.execute(f"TRUNCATE {INSERT_TABLE}")

    def inserted(self) -> int:
        return int(self.conn.execute(f"SELECT count(*) FROM {INSERT_TABLE}").fetchone()[0])  # type: ignore[index]


def create_tables(admin: Admin, fetch_rows: int) -> None:
    admin.execute("DROP TABLE IF EXISTS bench_fetch")
    admin.execute(
        "CREATE TABLE bench_fetch (a int4, b int8, c text, d float8, e numeric, f timestamptz, "
        "g bool, h uuid, i jsonb)"
    )
    admin.execute(
        "INSERT INTO bench_fetch SELECT n, n::int8 * 1000003, 'row number ' || n || ' of the fetch table', "
        "n * 1.25, (n * 3.14159)::numeric(14, 5), timestamptz '2024-01-01 00:00:00+00' + n * interval '1 second', "
        "n % 2 = 0, md5(n::text)::uuid, jsonb_build_object('id', n, 'tag', 'tag' || (n % 100), 'ok', true) "
        f"FROM generate_series(1, {fetch_rows}) AS n"
    )
    admin.execute("VACUUM ANALYZE bench_fetch")
    admin.execute(f"DROP TABLE IF EXISTS {INSERT_TABLE}")
    admin.execute(f"CREATE TABLE {INSERT_TABLE} (a int, b text, c float8)")


def insert_rows(n: int) -> list[tuple[int, str, float]]:
    return [(i, f"row {i}", i * 0.5) for i in range(n)]


def check(ok: bool, what: str) -> None:
    if not ok:
        raise SystemExit(f"sanity check failed: {what}")


def warm_up(drivers: list[Driver], admin: Admin, sizes: Sizes) -> None:
    """One untimed pass of every operation, checking each driver's answers."""
    rows = insert_rows(50)
    for d in drivers:
        if "select" in d.cases:
            check(d.select_loop(50) == 49, f"{d.name} select")
        if "fetch" in d.cases:
            check(d.fetch() == sizes.fetch_rows, f"{d.name} fetch")
        if "pipeline" in d.cases:
            check(d.pipeline(50) == list(range(50)), f"{d.name} pipeline")
        if "executemany" in d.cases:
            admin.truncate()
            d.before_executemany()
            d.executemany(rows)
            d.commit()
            d.after_executemany()
            check(admin.inserted() == 50, f"{d.name} executemany")
    admin.truncate()


def run_cases(drivers: list[Driver], admin: Admin, sizes: Sizes, log: Callable[[str], None]) -> list[Measurement]:
    out: list[Measurement] = []

    def case(name: str, reps: int, count: int, op: Callable[[Driver], Callable[[], Any]],
             before: Callable[[Driver], None] | None = None, after: Callable[[Driver], None] | None = None,
             slices: int = 1, members_of: str | None = None) -> None:
        """Time ``op`` for every driver; a repetition may be cut into interleaved slices.

        With slices, each driver's repetition is the sum of its slices, and the drivers take
        turns slice by slice, so a burst of noise from elsewhere hits all of them.
        """
        members = [d for d in drivers if (members_of or name) in d.cases]
        results = {d.name: Measurement(name, d.name, count=count) for d in members}
        begun = time.perf_counter()
        for rep in range(reps):
            total = dict.fromkeys(results, 0.0)
            for piece in range(slices):
                for d in rotated(members, rep + piece):
                    if before is not None:
                        before(d)
                    seconds, _ = timed(op(d))
                    if after is not None:
                        after(d)
                    total[d.name] += seconds
            for driver_name, seconds in total.items():
                results[driver_name].seconds.append(seconds)
        load = os.getloadavg()[0]
        for m in results.values():
            m.load = load
        out.extend(results.values())
        log(f"  {name}: {time.perf_counter() - begun:.1f} s, load average {load:.2f}")

    case("connect", sizes.connect_reps, sizes.connect_ops, lambda d: d.connect_cycle, slices=sizes.connect_ops)
    slice_size = sizes.selects // SELECT_SLICES
    case("select", sizes.reps, slice_size * SELECT_SLICES, lambda d: lambda: d.select_loop(slice_size),
         slices=SELECT_SLICES)
    try:
        pinning = OneCPU([d for d in drivers if "select" in d.cases])
    except (OSError, AttributeError) as exc:
        log(f"  select on one CPU: skipped, cannot pin ({exc})")
    else:
        with pinning:
            case("select one CPU", sizes.reps, slice_size * SELECT_SLICES,
                 lambda d: lambda: d.select_loop(slice_size), slices=SELECT_SLICES,
                 members_of="select")
    case("fetch", sizes.reps, sizes.fetch_rows, lambda d: d.fetch)

    rows = insert_rows(sizes.insert_rows)

    def insert_before(d: Driver) -> None:
        admin.truncate()
        d.before_executemany()

    def insert_after(d: Driver) -> None:
        d.after_executemany()
        check(admin.inserted() == sizes.insert_rows, f"{d.name} executemany row count")

    def insert(d: Driver) -> Callable[[], None]:
        def unit() -> None:
            d.executemany(rows)
            d.commit()
        return unit

    case("executemany", sizes.reps, sizes.insert_rows, insert, insert_before, insert_after)
    case("pipeline", sizes.reps, sizes.pipeline, lambda d: lambda: d.pipeline(sizes.pipeline))
    admin.truncate()
    return out


# ---------------------------------------------------------------------------------- round trips

RTT_OPS = ("connect", "first query", "warm query", "executemany", "executemany + commit", "pipeline")


def start_relay(port: int, delay: float, lifetime: float) -> tuple[subprocess.Popen[str], int]:
    """bench/relay.py in its own process, so its threads do not share our GIL."""
    process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "relay.py"), str(port), "--delay-ms", str(delay * 1000),
         "--lifetime", str(lifetime)],
        stdout=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "relaying 127.0.0.1:PORT -> ..."
    if not line.startswith("relaying"):
        process.kill()
        raise SystemExit(f"the relay did not start: {line!r}")
    return process, int(line.split()[1].split(":")[1])


def rtt_pass(cls: type[Driver], target: Target, admin: Admin, rows: list[tuple[int, str, float]]) -> dict[str, float]:
    """One pass of the round-trip operations for one driver; seconds per operation."""
    d = cls(target)
    times: dict[str, float] = {}
    times["connect"], _ = timed(d.open)
    try:
        times["first query"], _ = timed(lambda: d.query_one(1))
        times["warm query"], _ = timed(lambda: d.query_one(2))
        admin.truncate()
        d.before_executemany()
        times["executemany"], _ = timed(lambda: d.executemany(rows))
        commit, _ = timed(d.commit)
        times["executemany + commit"] = times["executemany"] + commit
        d.after_executemany()
        times["pipeline"], _ = timed(lambda: d.pipeline(len(rows)))
    finally:
        d.close()
    return times


def count_round_trips(direct: Target, relayed: Target, admin: Admin, sizes: Sizes,
                      log: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """(time through the relay - time direct) / (2 * delay), from the minimum of each over the passes.

    The minimum, because noise only ever adds time; the passes are interleaved like the cases.
    """
    rows = insert_rows(sizes.rtt_rows)
    classes = [c for c in DRIVERS if c not in (NeonClientBinary, NeonClientPrepared, PsycopgUnprepared)]
    samples: dict[tuple[str, str, str], list[float]] = {}
    for rep in range(sizes.rtt_reps):
        for cls in rotated(classes, rep):
            for where, target in (("direct", direct), ("relay", relayed)):
                for op, seconds in rtt_pass(cls, target, admin, rows).items():
                    samples.setdefault((cls.name, op, where), []).append(seconds)
        log(f"  round trips: pass {rep + 1}/{sizes.rtt_reps} done")
    admin.truncate()
    out: dict[str, dict[str, float]] = {}
    for cls in classes:
        out[cls.name] = {
            op: (min(samples[(cls.name, op, "relay")]) - min(samples[(cls.name, op, "direct")])) / (2 * sizes.rtt_delay)
            for op in RTT_OPS
        }
    return out


# ---------------------------------------------------------------------------------- report

CASES = {
    # name: (title, unit, per-op time (True) or rate (False))
    "connect": ("connect + SELECT 1 + close", "ms/op", True),
    "select": ("SELECT $1::int, one connection", "µs/query", True),
    "select one CPU": ("SELECT $1::int, client and server pinned to one CPU", "µs/query", True),
    "fetch": (f"fetch rows ({FETCH_COLUMNS})", "rows/s", False),
    "executemany": ("executemany INSERT (int, text, float8) + commit", "rows/s", False),
    "pipeline": ("pipelined SELECT $1::int", "µs/stmt", True),
}


def value_of(m: Measurement) -> float:
    _title, unit, per_op = CASES[m.case]
    if unit == "ms/op":
        return m.median / m.count * 1e3
    if per_op:
        return m.median / m.count * 1e6
    return m.count / m.median


def fmt(value: float, unit: str) -> str:
    if unit == "rows/s":
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


@dataclass
class TargetCheck:
    text: str
    subject: str
    value: str
    spread: str
    best: str
    met: bool


def compare(by_key: dict[tuple[str, str], Measurement], case: str, subject: str,
            other: str) -> tuple[float, str, str]:
    """subject vs other on one case: time ratio for per-op cases, rate ratio for rows/s.

    Returns the ratio of medians, the range of the per-repetition ratios (the repetitions
    ran side by side, so they pair) and the ratio of the best repetitions (noise only adds
    time, so the minimums are closest to each driver's own cost on a quiet machine).
    """
    a, b = by_key[(case, subject)], by_key[(case, other)]
    per_op = CASES[case][2]
    if per_op:
        ratio, best = a.median / b.median, min(a.seconds) / min(b.seconds)
        paired = [x / y for x, y in zip(a.seconds, b.seconds)]
    else:
        ratio, best = b.median / a.median, min(b.seconds) / min(a.seconds)
        paired = [y / x for x, y in zip(a.seconds, b.seconds)]
    return ratio, f"{min(paired):.2f}–{max(paired):.2f}", f"{best:.2f}"


def evaluate(by_key: dict[tuple[str, str], Measurement], names: list[str]) -> list[TargetCheck]:
    checks: list[TargetCheck] = []
    neon_query = [n for n in ("neon_sync", "neon_sync binary") if n in names]
    neon_select = neon_query + [n for n in ("neon_sync prepared",) if n in names]
    for case, where in (("select one CPU", "pinned to one CPU"), ("select", "unpinned")):
        if (case, PSYCOPG) not in by_key:
            continue
        for n in neon_select:
            ratio, spread, best = compare(by_key, case, n, PSYCOPG)
            checks.append(TargetCheck(f"SELECT $1::int no slower than 1.3x psycopg ({where})", n,
                                      f"{ratio:.2f}x psycopg's time", spread, best, ratio <= 1.3))
        if "neon_sync" in names and (case, "psycopg unprepared") in by_key:
            ratio, spread, best = compare(by_key, case, "neon_sync", "psycopg unprepared")
            checks.append(TargetCheck(f"(like for like) unnamed statements vs psycopg unprepared ({where})",
                                      "neon_sync", f"{ratio:.2f}x psycopg unprepared's time", spread, best,
                                      ratio <= 1.3))
    for n in neon_query:
        ratio, spread, best = compare(by_key, "fetch", n, PSYCOPG)
        checks.append(TargetCheck("row fetch at least psycopg's rate", n, f"{ratio:.2f}x psycopg's rate",
                                  spread, best, ratio >= 1.0))
        ratio, spread, best = compare(by_key, "fetch", n, "pg8000")
        checks.append(TargetCheck("row fetch at least 3x pg8000's rate", n, f"{ratio:.2f}x pg8000's rate",
                                  spread, best, ratio >= 3.0))
    for n, label in (("neon_sync", "Client.execute_many"), ("neon_sync dbapi", "cursor.executemany")):
        ratio, spread, best = compare(by_key, "executemany", n, PSYCOPG)
        checks.append(TargetCheck("executemany at least psycopg's rate", f"{n} ({label})",
                                  f"{ratio:.2f}x psycopg's rate", spread, best, ratio >= 1.0))
    return checks


def machine_info(admin: Admin, load_before: tuple[float, float, float]) -> list[tuple[str, str]]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    server = admin.execute("SHOW server_version").fetchone()[0]
    try:
        git = ["git", "-C", os.path.dirname(HERE)]
        rev = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", "neon_proto",
                                "neon_sync"], capture_output=True, text=True, check=True).stdout.strip()
        code = f"commit {rev}" + (" plus uncommitted changes to neon_proto/neon_sync" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        code = "unknown (not a git checkout)"
    return [
        ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("machine", f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}"),
        ("load average", f"{load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end (1 min; "
                         "other work on the machine shares its CPUs with the server and the drivers)"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("code", code),
        ("PostgreSQL", f"{server} (EmbeddedPostgres, loopback TCP, no TLS, fsync off)"),
        ("drivers", f"neon_sync {getattr(neon_sync, '__version__', 'dev')}, psycopg {psycopg.__version__} "
                    f"({psycopg.pq.__impl__} impl, libpq {psycopg.pq.version()}), asyncpg {asyncpg.__version__}, "
                    f"pg8000 {pg8000.__version__}"),
    ]


OTHER_RESULTS = (
    "The other transports and bindings have their own tables: [RESULTS_ASYNC.md](RESULTS_ASYNC.md) "
    "(neon_trio and neon_asyncio beside asyncpg and psycopg async: per query, the 100,000-row fetch, the "
    "pooled workload, round trips), [RESULTS_WS.md](RESULTS_WS.md) (WebSockets through neon_proxy, pipelined "
    "connects and their round trips), [RESULTS_HTTP.md](RESULTS_HTTP.md), [RESULTS_POOL.md](RESULTS_POOL.md), "
    "[RESULTS_COPY.md](RESULTS_COPY.md), [RESULTS_QUERY.md](RESULTS_QUERY.md), [RESULTS_SOAK.md](RESULTS_SOAK.md)."
)


def report(measurements: list[Measurement], rtt: dict[str, dict[str, float]], info: list[tuple[str, str]],
           sizes: Sizes, quick: bool, gather_probe: str) -> str:
    names = [cls.name for cls in DRIVERS]
    values = {(m.case, m.driver): value_of(m) for m in measurements}
    by_key = {(m.case, m.driver): m for m in measurements}
    lines: list[str] = []
    add = lines.append
    add("# neon_sync over TCP: benchmark results")
    add("")
    add(f"Generated by `bench/bench_tcp.py{' --quick' if quick else ''}`; do not edit by hand.")
    add("")
    for label, text in info:
        add(f"- **{label}**: {text}")
    add(f"- **mode**: {'quick' if quick else 'full'}: {sizes.reps} repetitions "
        f"({sizes.connect_reps} x {sizes.connect_ops} connects), drivers interleaved round-robin "
        "with a rotating start; medians")
    add("")
    add(OTHER_RESULTS)
    add("")
    add("## Throughput (medians; ratio to psycopg in brackets)")
    add("")
    add("For ms/op, µs/query and µs/stmt lower is better and the ratio is time / psycopg's time; "
        "for rows/s higher is better and the ratio is rate / psycopg's rate.")
    add("")
    add("| case | unit | " + " | ".join(names) + " |")
    add("|---|---|" + "---:|" * len(names))
    sizes_of = {"connect": sizes.connect_ops, "select": sizes.selects, "select one CPU": sizes.selects,
                "fetch": sizes.fetch_rows,
                "executemany": sizes.insert_rows, "pipeline": sizes.pipeline}
    for case, (title, unit, _per_op) in CASES.items():
        if (case, PSYCOPG) not in by_key:
            continue
        cells: list[str] = []
        base = values.get((case, PSYCOPG))
        for n in names:
            v = values.get((case, n))
            if v is None:
                cells.append("—")
                continue
            cell = f"{fmt(v, unit)} ({v / base:.2f}x)" if base else fmt(v, unit)
            if case == "pipeline" and not next(c for c in DRIVERS if c.name == n).pipelined:
                cell += " seq."
            cells.append(cell)
        add(f"| {title} (n={sizes_of[case]:,}) | {unit} | " + " | ".join(cells) + " |")
    add("")
    add("Notes:")
    add("- neon_sync runs with `array_mode=True` (rows as lists, like the others' tuples/records); "
        "`neon_sync binary` is `Client(binary=True)` (binary result format). psycopg uses binary "
        "cursors (`cursor(binary=True)`) and is in autocommit except around executemany.")
    add("- executemany is one unit of work that leaves the rows committed: neon_sync "
        "`Client.execute_many` (atomic, one Sync); neon_sync dbapi `cursor.executemany` + `commit()`; "
        "psycopg `cursor.executemany` + `commit()` (non-autocommit); asyncpg `executemany` (atomic); "
        "pg8000 `START TRANSACTION`, one `conn.run` per row, `COMMIT`. The table is truncated between runs.")
    add("- pipeline: neon_sync `Client.pipeline()` (one Sync per statement), psycopg `conn.pipeline()`. "
        "`seq.` marks drivers without a pipeline, measured running the statements one after the other: "
        "pg8000 has none; asyncpg queues nothing on one connection "
        f"(`asyncio.gather` of `fetchval` on one connection: {gather_probe or 'worked'}).")
    add("- SELECT runs twice: as the OS schedules it, and with this process and the drivers' server "
        "backends pinned to one CPU. On a small VM a client/backend pair split over two CPUs pays an "
        "idle-vCPU wake-up on every round trip and a pair on one CPU does not; which driver's pair gets "
        "split is luck, and it can change a driver's unpinned time several-fold. Pinned, a query costs "
        "what the client and the server spend on it.")
    add("- fetch decodes every column, except that asyncpg returns jsonb as `str` "
        "(no JSON codec by default) where the others parse it.")
    add("")
    add("## Targets")
    add("")
    add("'met' is computed from the medians above. 'per repetition' is the range of the same ratio "
        "taken repetition by repetition (the drivers ran side by side in each); 'best vs best' compares "
        "each driver's fastest repetition, closest to what a quiet machine would show.")
    add("")
    add("| target | neon_sync variant | measured (medians) | per repetition | best vs best | met |")
    add("|---|---|---|---|---|---|")
    for c in evaluate(by_key, names):
        add(f"| {c.text} | {c.subject} | {c.value} | {c.spread} | {c.best} | {'yes' if c.met else '**no**'} |")
    add("")
    add("## Round trips")
    add("")
    add(f"Through `bench/relay.py` delaying each direction {sizes.rtt_delay * 1000:g} ms: round trips = "
        f"(time through the relay − time direct) / (2 × {sizes.rtt_delay * 1000:g} ms), from the minimum "
        f"of {sizes.rtt_reps} interleaved pass(es). The TCP handshake with the relay is local, so connect "
        f"counts protocol round trips only (role `{ROLE}`, SCRAM-SHA-256, no TLS). executemany and the "
        f"pipeline use {sizes.rtt_rows} rows/statements; 'first query' is the first `SELECT $1::int` on "
        "a new connection, 'warm query' the second.")
    add("")
    add("| driver | " + " | ".join(RTT_OPS) + " |")
    add("|---|" + "---:|" * len(RTT_OPS))
    for n, ops in rtt.items():
        cells = []
        for op in RTT_OPS:
            cell = f"{ops[op]:.1f}"
            if op == "pipeline" and not next(c for c in DRIVERS if c.name == n).pipelined:
                cell += " seq."
            cells.append(cell)
        add(f"| {n} | " + " | ".join(cells) + " |")
    add("")
    add("neon_sync dbapi's 'pipeline' is a loop of `cursor.execute` (PEP 249 has no pipeline).")
    add("")
    add("## Spread (seconds per repetition: min / median / max)")
    add("")
    add("With the 1-minute load average when the case ended (this process and the server add "
        "about 1 while they run).")
    add("")
    add("| case | load | " + " | ".join(names) + " |")
    add("|---|---:|" + "---:|" * len(names))
    for case in CASES:
        if (case, PSYCOPG) not in by_key:
            continue
        cells = [f"{by_key[(case, PSYCOPG)].load:.2f}"]
        for n in names:
            m = by_key.get((case, n))
            cells.append("—" if m is None else
                         f"{min(m.seconds):.3f} / {m.median:.3f} / {max(m.seconds):.3f}")
        add(f"| {case} | " + " | ".join(cells) + " |")
    add("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- profiling


def profile(case: str, target: Target, sizes: Sizes, binary: bool, profiler: str) -> None:
    """Profile one neon_sync case (not part of the timed run): pyinstrument's sampled call
    tree, or cProfile's functions by own time (exact counts, but it inflates small calls)."""
    d: NeonClient = (NeonClientBinary if binary else NeonClient)(target)
    d.open()
    try:
        op = (lambda: d.select_loop(sizes.selects)) if case == "select" else d.fetch
        op()
        print(f"\n### {profiler}: neon_sync {'binary' if binary else 'text'}, {case}\n")
        if profiler == "pyinstrument":
            import pyinstrument

            sampler = pyinstrument.Profiler(interval=0.0002)
            sampler.start()
            for _ in range(3):
                op()
            sampler.stop()
            print(sampler.output_text(unicode=True, color=False, show_all=False))
        else:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            op()
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    finally:
        d.close()


# ---------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="neon_sync vs psycopg, asyncpg, pg8000 over TCP")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, smaller sizes (< 60 s)")
    parser.add_argument("--profile", choices=["select", "fetch"],
                        help="only profile neon_sync on one case (text and binary) and exit")
    parser.add_argument("--profiler", choices=["pyinstrument", "cprofile"], default="pyinstrument",
                        help="for --profile (pyinstrument: `pip install pyinstrument`)")
    parser.add_argument("--output", help="where to write the report (default bench/RESULTS.md, "
                        "bench/RESULTS-quick.md with --quick)")
    args = parser.parse_args(argv)
    if args.output is None:
        args.output = os.path.join(HERE, "RESULTS-quick.md" if args.quick else "RESULTS.md")
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.1f}s] {message}", file=sys.stderr, flush=True)

    load_before = os.getloadavg()
    with EmbeddedPostgres(tls=False) as pg:
        role = pg.role(ROLE)
        assert role.password is not None
        direct = Target("127.0.0.1", pg.port, ROLE, role.password)
        admin = Admin(direct)
        create_tables(admin, sizes.fetch_rows)
        log(f"PostgreSQL on port {pg.port}, {sizes.fetch_rows:,} rows loaded")
        if args.profile:
            for binary in (False, True):
                profile(args.profile, direct, sizes, binary, args.profiler)
            return

        drivers = [cls(direct) for cls in DRIVERS]
        for d in drivers:
            d.open()
        gather_probe = Asyncpg(direct).probe_gather()
        warm_up(drivers, admin, sizes)
        log("warmed up; timing")
        measurements = run_cases(drivers, admin, sizes, log)
        for d in drivers:
            d.close()

        relay, relay_port = start_relay(pg.port, sizes.rtt_delay, lifetime=600)
        try:
            relayed = Target("127.0.0.1", relay_port, ROLE, role.password)
            rtt = count_round_trips(direct, relayed, admin, sizes, log)
        finally:
            relay.kill()
            relay.wait()
        text = report(measurements, rtt, machine_info(admin, load_before), sizes, args.quick, gather_probe)
        admin.conn.close()
    print(text)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    log(f"wrote {os.path.relpath(args.output)}")
    if Asyncpg.loop is not None:
        Asyncpg.loop.close()


if __name__ == "__main__":
    main()
