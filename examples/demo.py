"""A short tour of the driver. With no DATABASE_URL it starts its own throwaway Postgres.

    ./dev demo                      # embedded Postgres, nothing else needed
    DATABASE_URL=postgresql://... ./dev demo
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack

from neon_sync import Client, Pool, connect

log = logging.getLogger("demo")


def show(title: str, value: object) -> None:
    sys.stdout.write(f"{title:<42} {value}\n")


def tcp_tour(dsn: str) -> None:
    with Client(dsn) as client:
        client.query("DROP TABLE IF EXISTS demo_posts")
        client.query("CREATE TABLE demo_posts (id serial PRIMARY KEY, title text NOT NULL, score numeric, tags text[])")
        client.execute_many(
            "INSERT INTO demo_posts (title, score, tags) VALUES ($1, $2, $3)",
            [("Hello, Postgres", 4.5, ["intro"]), ("Pipelines", 5, ["perf", "tcp"]), ("Types", None, [])],
        )
        result = client.query("SELECT id, title, score, tags FROM demo_posts WHERE id >= $1 ORDER BY id", [1])
        show("Client.query (dict rows):", result.rows[0])
        show("command / row_count:", (result.command, result.row_count))
        with client.pipeline() as pipe:
            a = pipe.add("SELECT count(*) AS n FROM demo_posts")
            b = pipe.add("SELECT max(score) AS best FROM demo_posts")
        show("pipeline, one round trip:", (a.outcome().rows, b.outcome().rows))
    with connect(dsn) as conn:
        cur = conn.cursor()
        cur.execute("SELECT title FROM demo_posts WHERE %(tag)s = ANY(tags)", {"tag": "perf"})
        show("DB-API cursor (pyformat):", cur.fetchall())
    with Pool(dsn, max_size=2) as pool:
        show("Pool.query:", pool.query("SELECT version() AS v").rows[0]["v"][:40])


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    dsn = os.environ.get("DATABASE_URL")
    with ExitStack() as stack:
        if not dsn:
            from neon_sync.embedded import EmbeddedPostgres

            pg = stack.enter_context(EmbeddedPostgres(tls=False))
            dsn = pg.dsn()
            show("started a throwaway Postgres on port", pg.port)
        tcp_tour(dsn)


if __name__ == "__main__":
    main()
