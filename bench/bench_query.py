"""neon_query: what the typed builder costs, side by side in one run.

Run ``.venv/bin/python bench/bench_query.py [--quick]`` (needs the bench extra for SQLAlchemy).
It measures:

* build + compile of one select with two joins, five conditions, ordering and a limit:
  neon_query against SQLAlchemy Core compiling the same statement for PostgreSQL, uncached
  (a new statement object compiled each time, as a query built per request is);
* a primary-key lookup over TCP against its own Postgres: ``Database(client).one(select(users)
  .where(users.id.eq(k)))`` against ``client.query()`` with the same SQL written by hand, both
  returning a dict; rounds are interleaved so the machine's noise hits both alike, and both
  make one round trip (one Parse/Bind/Execute/Sync);
* mypy --strict on a module of 200 typical queries (tests/query/typical_queries.py), cold
  (empty cache) and warm.

Tables over tests/query/models.py (generated from tests/query/schema.sql). Results are printed
and written to bench/RESULTS_QUERY.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from neon_query import Database, and_, or_, select  # noqa: E402
from tests.query.models import counters, posts, users  # noqa: E402


def build_neon_query(i: int) -> Any:
    return (
        select(posts.id, posts.title, users.email, counters.outer.hits)
        .join(users, users.id.eq(posts.author_id))
        .left_join(counters, counters.name.eq(posts.title))
        .where(
            posts.score.ge(i),
            users.mood.eq("happy"),
            or_(users.name.is_null(), users.name.like("A%")),
            posts.published_on.is_not_null(),
            and_(posts.rating.lt(4.5), posts.title.ne("x")),
        )
        .order_by(posts.score.desc(), posts.id)
        .limit(20)
        .compile()
    )


def sqlalchemy_builder() -> tuple[Callable[[int], Any], str]:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    md = sa.MetaData()
    mood = postgresql.ENUM("happy", "sad", "so-so", name="mood", create_type=False)
    t_users = sa.Table(
        "users", md, sa.Column("id", sa.BigInteger, primary_key=True), sa.Column("email", sa.Text),
        sa.Column("name", sa.Text), sa.Column("mood", mood),
    )
    t_posts = sa.Table(
        "posts", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("author_id", sa.BigInteger),
        sa.Column("title", sa.Text), sa.Column("score", sa.Integer), sa.Column("rating", sa.Float),
        sa.Column("published_on", sa.Date),
    )
    t_counters = sa.Table("counters", md, sa.Column("name", sa.Text, primary_key=True), sa.Column("hits", sa.Integer))
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]

    def build(i: int) -> Any:
        stmt = (
            sa.select(t_posts.c.id, t_posts.c.title, t_users.c.email, t_counters.c.hits)
            .select_from(
                t_posts.join(t_users, t_users.c.id == t_posts.c.author_id).outerjoin(
                    t_counters, t_counters.c.name == t_posts.c.title
                )
            )
            .where(
                t_posts.c.score >= i,
                t_users.c.mood == "happy",
                sa.or_(t_users.c.name.is_(None), t_users.c.name.like("A%")),
                t_posts.c.published_on.is_not(None),
                sa.and_(t_posts.c.rating < 4.5, t_posts.c.title != "x"),
            )
            .order_by(t_posts.c.score.desc(), t_posts.c.id)
            .limit(20)
        )
        compiled = stmt.compile(dialect=dialect)
        return str(compiled), compiled.params

    return build, sa.__version__


def per_call(fn: Callable[[int], Any], n: int) -> float:
    """Best of five runs of n calls: seconds per call."""
    best = float("inf")
    for _ in range(5):
        gc.collect()
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def bench_compile(n: int) -> list[str]:
    sa_build, sa_version = sqlalchemy_builder()
    ours = per_call(build_neon_query, n)
    theirs = per_call(sa_build, max(n // 10, 50))
    ours_sql = build_neon_query(3)
    return [
        "## Build + compile: a select with two joins, five conditions, ordering and a limit",
        "",
        "| builder | µs per statement | relative |",
        "|---|---:|---:|",
        f"| neon_query | {ours * 1e6:.1f} | 1.00 |",
        f"| SQLAlchemy {sa_version} Core, uncached compile (postgresql dialect) | {theirs * 1e6:.1f} | {theirs / ours:.2f}x |",
        "",
        f"neon_query is **{theirs / ours:.1f}x** faster (target: at least 5x). Its SQL ({len(ours_sql.params)} parameters):",
        "",
        "```text",
        ours_sql.sql,
        "```",
        "",
    ]


def bench_pk_lookup(rounds: int, per_round: int) -> list[str]:
    from neon_sync import Client
    from neon_sync.embedded import EmbeddedPostgres

    with EmbeddedPostgres() as pg:
        with Client(pg.dsn()) as setup:
            with open(os.path.join(ROOT, "tests", "query", "schema.sql")) as f:
                setup.query(f.read())
            setup.query(
                "INSERT INTO users (email, name) SELECT 'u' || g || '@example.com', 'n' || g FROM generate_series(1, 1000) g"
            )
        with Client(pg.dsn()) as client:
            db = Database(client)
            sql = select(users).where(users.id.eq(1)).compile().sql

            def builder(i: int) -> Any:
                return db.one(select(users).where(users.id.eq(1 + i % 1000)))

            def builder_shortcut(i: int) -> Any:
                return db.maybe_one(users.find_one({"id": 1 + i % 1000}))

            def hand_written(i: int) -> Any:
                return client.query(sql, [1 + i % 1000]).rows[0]

            assert builder(5) == hand_written(5)
            fns = {"hand": hand_written, "builder": builder, "shortcut": builder_shortcut}
            wall: dict[str, list[int]] = {name: [] for name in fns}
            cpu: dict[str, list[float]] = {name: [] for name in fns}
            clock = time.perf_counter_ns
            for _ in range(rounds):
                for i in range(per_round):  # call by call, interleaved: noise hits all three alike
                    for name, fn in fns.items():
                        start = clock()
                        fn(i)
                        wall[name].append(clock() - start)
                for name, fn in fns.items():  # the client's own CPU, without the wait for the server
                    start_cpu = time.process_time()
                    for i in range(per_round):
                        fn(i)
                    cpu[name].append((time.process_time() - start_cpu) / per_round)
    wall_us = {name: statistics.median(v) / 1000 for name, v in wall.items()}
    cpu_us = {name: statistics.median(v) * 1e6 for name, v in cpu.items()}
    build_only = per_call(lambda i: select(users).where(users.id.eq(i)).compile(), 20000) * 1e6

    def row(label: str, name: str) -> str:
        if name == "hand":
            return f"| {label} | {wall_us[name]:.1f} | | {cpu_us[name]:.1f} | |"
        return (
            f"| {label} | {wall_us[name]:.1f} | {100 * (wall_us[name] / wall_us['hand'] - 1):+.1f}% |"
            f" {cpu_us[name]:.1f} | {cpu_us[name] - cpu_us['hand']:+.1f} µs |"
        )

    return [
        "## Primary-key lookup over TCP (loopback), one round trip each",
        "",
        "| how | wall µs (median call) | overhead | client CPU µs per lookup | CPU added |",
        "|---|---:|---:|---:|---:|",
        row("`client.query(sql, [k])` with the SQL written by hand", "hand"),
        row("`db.one(select(users).where(users.id.eq(k)))`", "builder"),
        row('`db.maybe_one(users.find_one({"id": k}))`', "shortcut"),
        "",
        f"Target: at most +10%. {rounds} rounds of {per_round} calls of each, interleaved call by call;"
        f" the statement selects all 12 columns of users (the Row TypedDict) and returns one dict either way."
        f" Building and compiling the lookup alone takes {build_only:.1f} µs. On loopback a round trip is"
        f" about {wall_us['hand']:.0f} µs, so that is the worst case: over a real network (or HTTP) the"
        f" same few µs are a far smaller share.",
        "",
    ]


def bench_mypy() -> list[str]:
    from tests.query.typical_queries import typical_queries_module

    work = tempfile.mkdtemp(prefix="neon_query_mypy_")
    try:
        module = os.path.join(work, "typical_200.py")
        with open(module, "w") as f:
            f.write(typical_queries_module(200))
        cache = os.path.join(work, "cache")
        env = {**os.environ, "MYPYPATH": ROOT}
        results = []
        for label in ("cold (empty cache: also checks neon_query, neon_sync, typeshed)", "warm (cache kept)"):
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "mypy", "--strict", "--cache-dir", cache, module],
                capture_output=True, text=True, env=env, cwd=ROOT,
            )
            elapsed = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"mypy failed on the typical queries: {proc.stdout[-2000:]}")
            results.append((label, elapsed))
        version = subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True, text=True).stdout.strip()
        lines = ["## mypy --strict on a module of 200 typical queries", "", f"{version}", "", "| run | seconds |", "|---|---:|"]
        lines += [f"| {label} | {seconds:.2f} |" for label, seconds in results]
        lines += ["", "Target: under 10 s. The module cycles through 11 kinds of query (selects with joins and"
                  " aggregates, shortcuts, inserts with ON CONFLICT, updates with RETURNING, subqueries).", ""]
        return lines
    finally:
        shutil.rmtree(work, ignore_errors=True)


def load_note() -> str:
    try:
        load1, _, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {load1:.2f} on {os.cpu_count()} cores when the run ended (the machine is shared)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    args = parser.parse_args()
    n = 500 if args.quick else 5000
    rounds, per_round = (2, 300) if args.quick else (10, 2000)
    lines = [
        "# neon_query benchmarks",
        "",
        f"`python bench/bench_query.py{' --quick' if args.quick else ''}`; Python {platform.python_version()},"
        f" {platform.machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    lines += bench_compile(n)
    lines += bench_pk_lookup(rounds, per_round)
    lines += bench_mypy()
    lines += [f"Noise: {load_note()}.", ""]
    text = "\n".join(lines)
    sys.stdout.write(text)
    if not args.quick:
        with open(os.path.join(HERE, "RESULTS_QUERY.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
