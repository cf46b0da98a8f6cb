"""A short tour of the driver: SQL over HTTP through neon_proxy, then TCP.

    ./dev demo        # starts a throwaway Postgres and neon_proxy in front of it

To run it against a database of your own, set DATABASE_URL (a postgresql:// URI) and, for
the HTTP part, NEON_FETCH_ENDPOINT (e.g. https://api.<region>.neon.tech/sql, or the URL a
`python -m neon_proxy dev` printed).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack

from neon_sync import Client, Pool, connect, neon


def show(title: str, value: object) -> None:
    sys.stdout.write(f"{title:<40} {value}\n")


def http_tour(database_url: str, fetch_endpoint: str | None) -> None:
    """neon(): one HTTP request per query, or per batch run as one transaction."""
    sql = neon(database_url, fetch_endpoint=fetch_endpoint)
    sql("DROP TABLE IF EXISTS demo_posts")
    sql("CREATE TABLE demo_posts (id serial PRIMARY KEY, title text NOT NULL, score numeric, tags text[])")
    loaded = sql.transaction(
        [
            sql.query("INSERT INTO demo_posts (title, score, tags) VALUES ($1, $2, $3)", [title, score, tags])
            for title, score, tags in [
                ("Hello, Postgres", 4.5, ["intro"]),
                ("Pipelines", 5, ["perf", "tcp"]),
                ("SQL over HTTP", 4.9, ["http", "serverless"]),
            ]
        ]
    )
    show("loaded in one transaction (1 request):", f"{len(loaded)} inserts")
    rows = sql("SELECT id, title, score, tags FROM demo_posts WHERE score > $1 ORDER BY id", [4.6])
    show("neon() rows (dicts):", rows)
    show("array_mode=True:", sql("SELECT id, title FROM demo_posts ORDER BY id LIMIT $1", [1], array_mode=True))
    full = sql("SELECT count(*) AS n FROM demo_posts", full_results=True)
    show("full_results=True:", (full.command, full.row_count, full.rows, [f.name for f in full.fields]))
    counts = sql.transaction(
        lambda s: [s.query("SELECT count(*) AS n FROM demo_posts"), s.query("SELECT max(score) AS best FROM demo_posts")],
        isolation_level="RepeatableRead",
        read_only=True,
    )
    show("read-only RepeatableRead batch:", counts)
    try:
        sql.transaction(
            [
                sql.query("INSERT INTO demo_posts (title) VALUES ($1)", ["will be rolled back"]),
                sql.query("INSERT INTO demo_posts (title) VALUES (NULL)"),
            ]
        )
    except Exception as exc:  # the whole batch rolls back
        show("failed batch rolled back:", f"{type(exc).__name__} [{getattr(exc, 'sqlstate', None)}] {exc}")
    show("rows after the failed batch:", sql("SELECT count(*) AS n FROM demo_posts")[0]["n"])
    sql.close()


def tcp_tour(dsn: str) -> None:
    """Client, pipelines, DB-API and Pool over the Postgres wire protocol."""
    with Client(dsn) as client:
        result = client.query("SELECT id, title, score FROM demo_posts WHERE id = $1", [1])
        show("Client.query over TCP:", result.rows)
        pipe = client.pipeline()
        a = pipe.add("SELECT count(*) AS n FROM demo_posts")
        b = pipe.add("SELECT 1/0 AS broken")
        c = pipe.add("SELECT now() > $1::timestamptz AS later", ["2000-01-01"])
        outcomes = pipe.run()
        show("pipeline: 3 queries, 1 round trip:", [type(o).__name__ for o in outcomes])
        show("  results:", (a.outcome().rows, c.outcome().rows, b.error.sqlstate if b.error else None))
    with connect(dsn) as conn:
        cur = conn.cursor()
        cur.execute("SELECT title FROM demo_posts WHERE %(tag)s = ANY(tags)", {"tag": "perf"})
        show("DB-API cursor (pyformat):", cur.fetchall())
    with Pool(dsn, max_size=2) as pool:
        show("Pool.query:", pool.query("SELECT current_setting('server_version') AS v").rows[0]["v"])


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    database_url = os.environ.get("DATABASE_URL")
    fetch_endpoint = os.environ.get("NEON_FETCH_ENDPOINT")
    with ExitStack() as stack:
        if not database_url:
            from neon_proxy.testing import DevStack

            stack_ = stack.enter_context(DevStack())
            database_url = stack_.database_url()
            fetch_endpoint = stack_.url
            direct_dsn = stack_.pg.dsn()
            show("started Postgres on port", stack_.pg.port)
            show("started neon_proxy at", fetch_endpoint)
        else:
            direct_dsn = database_url
        http_tour(database_url, fetch_endpoint)
        tcp_tour(direct_dsn)


if __name__ == "__main__":
    main()
