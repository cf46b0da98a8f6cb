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
    dialect = postgresql.dialect()

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
            times: dict[str, list[float]] = {"hand": [], "builder": [], "shortcut": []}
            for _ in range(rounds):  # interleaved: noise hits all three alike
                for name, fn in (("hand", hand_written), ("builder", builder), ("shortcut", builder_shortcut)):
                    gc.collect()
                    start = time.perf_counter()
                    for i in range(per_round):
                        fn(i)
                    times[name].append((time.perf_counter() - start) / per_round)
    hand = statistics.median(times["hand"])
    built = statistics.median(times["builder"])
    short = statistics.median(times["shortcut"])
    return [
        "## Primary-key lookup over TCP (loopback), one round trip each",
        "",
        "| how | µs per lookup (median of rounds) | overhead |",
        "|---|---:|---:|",
        f"| `client.query(sql, [k])` with the SQL written by hand | {hand * 1e6:.1f} | |",
        f"| `db.one(select(users).where(users.id.eq(k)))` | {built * 1e6:.1f} | {100 * (built / hand - 1):+.1f}% |",
        f"| `db.maybe_one(users.find_one({{\"id\": k}}))` (adds LIMIT 1) | {short * 1e6:.1f} | {100 * (short / hand - 1):+.1f}% |",
        "",
        f"Target: at most +10%. {rounds} interleaved rounds of {per_round} lookups; the statement selects all"
        f" 12 columns of users (as the Row TypedDict) and returns one dict either way.",
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
    rounds, per_round = (3, 200) if args.quick else (15, 1000)
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
