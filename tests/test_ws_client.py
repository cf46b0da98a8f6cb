"""neon_sync over WebSocket through neon_proxy, and pipelined connects over TCP, against the real Postgres."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from neon_proto.auth import auth_method_memory, scram_key_cache
from neon_proto.errors import OperationalError, QueryCanceled
from neon_proto.sqlstate import InvalidCatalogName, InvalidPassword
from neon_proto.startup import AuthPipelineMismatch
from neon_sync import Client, Pool, connect, neon_config
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    """Each test starts without learned authentication methods (they are process-wide)."""
    auth_method_memory.clear()
    neon_config.reset()
    yield
    auth_method_memory.clear()
    neon_config.reset()


def ws_options(proxy: Any) -> dict[str, Any]:
    return {"transport": "websocket", "ws_proxy": proxy.server.ws_proxy, "use_secure_websocket": False}


def ws_client(proxy: Any, user: str | None = None, password: str | None = None, database: str = "postgres", **kw: Any) -> Client:
    return Client(proxy.database_url(user, password, database), **ws_options(proxy), **kw)


# ---------------------------------------------------------------- queries, transactions, notifications, COPY


def test_queries_over_websocket(proxy: Any) -> None:
    with ws_client(proxy) as c:
        assert c.transport_name == "websocket"
        assert c.connect_pipeline == "password"  # the JS driver's default: password with the StartupMessage
        assert c.query("SELECT $1::int AS n", [42]).rows == [{"n": 42}]
        assert c.query("SELECT 'a' AS x; SELECT 'b' AS x").rows == [{"x": "b"}]
        many = c.query("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 50000) g")
        assert len(many.rows) == 50000 and many.rows[-1]["g"] == 50000
        assert c.backend_pid is not None  # the proxy's key, not the upstream's
        assert c.server_parameters["server_encoding"] == "UTF8"


def test_auto_transport_picks_websocket_when_a_ws_proxy_is_configured(proxy: Any) -> None:
    neon_config.ws_proxy = proxy.server.ws_proxy
    neon_config.use_secure_websocket = False
    with Client(proxy.database_url()) as c:
        assert c.transport_name == "websocket"
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_transactions_and_savepoints_over_websocket(proxy: Any) -> None:
    table = f"ws_tx_{uuid.uuid4().hex[:8]}"
    with ws_client(proxy) as c:
        c.query(f"CREATE TEMP TABLE {table} (v int)")
        c.query("BEGIN")
        assert c.transaction_status == "T"
        c.query(f"INSERT INTO {table} VALUES (1)")
        c.query("SAVEPOINT s1")
        c.query(f"INSERT INTO {table} VALUES (2)")
        with pytest.raises(Exception):
            c.query("SELECT 1/0")
        assert c.transaction_status == "E"
        c.query("ROLLBACK TO SAVEPOINT s1")
        c.query(f"INSERT INTO {table} VALUES (3)")
        c.query("COMMIT")
        assert c.transaction_status == "I"
        assert [r["v"] for r in c.query(f"SELECT v FROM {table} ORDER BY v").rows] == [1, 3]


def test_listen_notify_over_websocket(proxy: Any) -> None:
    channel = f"ws_chan_{uuid.uuid4().hex[:8]}"
    with ws_client(proxy) as listener, ws_client(proxy) as sender:
        listener.listen(channel)
        sender.notify(channel, "hello over ws")
        note = listener.wait_notification(timeout=10)
        assert note is not None
        assert (note.channel, note.payload) == (channel, "hello over ws")
        assert listener.wait_notification(timeout=0.2) is None


def test_copy_both_ways_over_websocket(proxy: Any) -> None:
    with ws_client(proxy) as c:
        c.query("CREATE TEMP TABLE ws_copy (id int, v text)")
        lines = "".join(f"{i}\tvalue {i}\n" for i in range(20000))
        assert c.copy_from("COPY ws_copy FROM STDIN", lines) == 20000
        out = b"".join(c.copy_to("COPY (SELECT * FROM ws_copy ORDER BY id) TO STDOUT"))
        assert out.decode() == lines
        assert c.query("SELECT count(*) AS n FROM ws_copy").rows == [{"n": 20000}]


def test_cancel_over_websocket(proxy: Any) -> None:
    with ws_client(proxy) as c:
        c.query("SELECT 1")
        with pytest.raises(QueryCanceled):
            c.query("SELECT pg_sleep(30)", timeout=0.5)
        assert c.query("SELECT 2 AS n").rows == [{"n": 2}]


def test_pool_over_websocket_under_concurrent_use(proxy: Any) -> None:
    errors: list[BaseException] = []
    with Pool(proxy.database_url(), max_size=4, **ws_options(proxy)) as pool:

        def work(worker: int) -> None:
            try:
                for i in range(25):
                    n = worker * 100 + i
                    assert pool.query("SELECT $1::int AS n", [n]).rows == [{"n": n}]
                with pool.connection() as c:
                    c.query("BEGIN")
                    c.query("SELECT pg_advisory_xact_lock($1)", [worker])
                    c.query("COMMIT")
            except BaseException as exc:  # collected for the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert pool.size <= 4
        with pool.connection() as c:
            assert c.transport_name == "websocket"


def test_dbapi_connect_over_websocket(proxy: Any) -> None:
    conn = connect(proxy.database_url(), **ws_options(proxy))
    try:
        cur = conn.cursor()
        cur.execute("SELECT %(a)s::int + 1", {"a": 41})
        assert cur.fetchone() == (42,)
        conn.commit()
    finally:
        conn.close()


# ---------------------------------------------------------------- failed logins: the same error, pipelined or not


def test_bad_password_over_websocket_pipelined_and_not(proxy: Any) -> None:
    pipelined = ws_client(proxy, "scram_user", "wrong-password").connect()  # returns before the server answers
    with pytest.raises(InvalidPassword) as late:
        pipelined.query("SELECT 1")
    assert pipelined.closed
    with pytest.raises(InvalidPassword) as early:
        ws_client(proxy, "scram_user", "wrong-password", pipeline_connect=False).connect()
    assert late.value.sqlstate == early.value.sqlstate == "28P01"
    assert "wrong-password" not in str(late.value) and "wrong-password" not in repr(pipelined)


def test_unknown_database_over_websocket_pipelined_and_not(proxy: Any) -> None:
    pipelined = ws_client(proxy, database="no_such_db_ws").connect()
    with pytest.raises(InvalidCatalogName):
        pipelined.query("SELECT 1")
    with pytest.raises(InvalidCatalogName):
        ws_client(proxy, database="no_such_db_ws", pipeline_connect=False).connect()
    with pytest.raises(InvalidCatalogName):
        ws_client(proxy, database="no_such_db_ws").connect(wait=True)


def test_every_upstream_auth_method_over_websocket(proxy: Any) -> None:
    for user in ("trust_user", "cleartext_user", "md5_user", "scram_user"):
        with ws_client(proxy, user) as c:
            assert c.query("SELECT current_user AS u").rows == [{"u": user}]


def test_no_proxy_listening_is_a_clear_error(proxy: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = Client(proxy.database_url(), transport="websocket", ws_proxy=f"127.0.0.1:{port}/v2", use_secure_websocket=False)
    with pytest.raises(OperationalError, match=str(port)):
        client.connect()
    assert client.closed


# ---------------------------------------------------------------- pipelined connect over TCP


def test_pipelined_tcp_connect_for_every_auth_method(pg: EmbeddedPostgres) -> None:
    """The first connect guesses SCRAM; a server that asks otherwise costs one retry, and
    the next connect sends what that server asks."""
    expected = {
        "scram_user": ("scram", "scram"),
        "cleartext_user": ("password", "password"),  # loopback: cleartext may travel
        "md5_user": (False, False),  # the salt comes from the server: nothing to pipeline
        "trust_user": ("startup", "startup"),  # the server asks nothing
    }
    for user, (first, second) in expected.items():
        for attempt in (first, second):
            with Client(pg.dsn(user), sslmode="disable") as c:
                assert c.query("SELECT current_user AS u").rows == [{"u": user}]
                assert c.connect_pipeline == attempt, user


def test_pipelined_scram_over_tls_uses_channel_binding(pg: EmbeddedPostgres) -> None:
    assert pg.ca_cert_path is not None
    with Client(pg.dsn("scram_user"), sslmode="verify-full", sslrootcert=pg.ca_cert_path) as c:
        assert c.connect_pipeline == "scram"
        assert c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").rows == [{"ssl": True}]
    with Client(pg.dsn("scram_user"), sslmode="require", channel_binding="require") as c:
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_bad_password_and_unknown_database_over_tcp_pipelined_and_not(pg: EmbeddedPostgres) -> None:
    for pipeline in ("scram", False):
        client = Client(pg.dsn("scram_user", password="nope"), sslmode="disable", pipeline_connect=pipeline)
        with pytest.raises(InvalidPassword):
            client.connect().query("SELECT 1")
        client = Client(pg.dsn("scram_user", database="no_such_db_tcp"), sslmode="disable", pipeline_connect=pipeline)
        with pytest.raises(InvalidCatalogName):
            client.connect().query("SELECT 1")


def test_a_reconnect_skips_pbkdf2(pg: EmbeddedPostgres) -> None:
    scram_key_cache.clear()
    with Client(pg.dsn("scram_user"), sslmode="disable") as c:
        c.query("SELECT 1")
    misses, hits = scram_key_cache.misses, scram_key_cache.hits
    with Client(pg.dsn("scram_user"), sslmode="disable") as c:
        c.query("SELECT 1")
    assert scram_key_cache.misses == misses
    assert scram_key_cache.hits == hits + 1


def test_pipeline_password_in_clear_to_a_remote_host_waits_for_the_server(caplog: pytest.LogCaptureFixture) -> None:
    from neon_proto.connect import choose_pipeline
    from neon_proto.options import resolve_connect_options

    options = resolve_connect_options("postgres://u:pw@db.example.com/d", {"pipeline_connect": "password"})
    chosen = choose_pipeline(options.transport, options.params, learned=None, encrypted=False, loopback=False)
    assert chosen is False
    assert choose_pipeline(options.transport, options.params, learned=None, encrypted=True, loopback=False) == "password"


# ---------------------------------------------------------------- relay mode: Postgres's own TLS and auth inside the tunnel


@pytest.fixture(scope="module")
def relay(pg: EmbeddedPostgres) -> Iterator[Any]:
    from neon_proxy.config import ProxyConfig
    from neon_proxy.testing import DevStack

    with DevStack(postgres=pg, config=ProxyConfig(listen_port=0, ws_relay=True, shutdown_timeout=5.0)) as stack:
        yield stack


def relay_client(relay: Any, pg: EmbeddedPostgres, user: str = "scram_user", **kw: Any) -> Client:
    return Client(pg.dsn(user), ws_proxy=relay.server.ws_proxy, use_secure_websocket=False, **kw)


def test_tls_inside_the_tunnel_through_a_relay(relay: Any, pg: EmbeddedPostgres) -> None:
    assert pg.ca_cert_path is not None
    with relay_client(
        relay, pg, force_disable_pg_ssl=False, sslmode="verify-full", sslrootcert=pg.ca_cert_path,
        pipeline_connect="scram",
    ) as c:  # fmt: skip
        assert c.transport_name == "websocket"
        assert c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").rows == [{"ssl": True}]
        assert c.query("SELECT $1::text AS t", ["through TLS in a WebSocket"]).rows == [{"t": "through TLS in a WebSocket"}]


def test_a_relay_to_a_scram_server_teaches_the_next_connect(relay: Any, pg: EmbeddedPostgres) -> None:
    """Cleartext pipelining guessed wrong (Postgres itself asks SCRAM through a relay): the first
    query says so clearly, and the next connect pipelines SCRAM instead."""
    first = relay_client(relay, pg).connect()
    assert first.connect_pipeline == "password"
    with pytest.raises(AuthPipelineMismatch, match="SCRAM"):
        first.query("SELECT 1")
    with relay_client(relay, pg) as second:
        assert second.connect_pipeline == "scram"
        assert second.query("SELECT current_user AS u").rows == [{"u": "scram_user"}]


def test_pipeline_tls_against_postgres_is_a_clear_error(relay: Any, pg: EmbeddedPostgres) -> None:
    """PostgreSQL (since 14.1) refuses bytes sent before its 'S': pipeline_tls is for relays
    and servers that accept it, and against Postgres itself the error says what to change."""
    assert pg.ca_cert_path is not None
    client = relay_client(
        relay, pg, force_disable_pg_ssl=False, pipeline_tls=True, sslmode="verify-full",
        sslrootcert=pg.ca_cert_path, connect_timeout=3,
    )  # fmt: skip
    with pytest.raises(OperationalError, match="pipeline_tls=False|timed out"):
        client.connect()
    assert client.closed


def test_an_address_outside_the_relay_allowlist_is_refused(relay: Any) -> None:
    from neon_proto.websocket import WebSocketRejected

    client = Client(
        "postgres://u:pw@10.1.2.3:5432/db", ws_proxy=relay.server.ws_proxy, use_secure_websocket=False
    )
    with pytest.raises(WebSocketRejected) as info:
        client.connect()
    assert info.value.status_code == 400
    assert "refused the upgrade with HTTP 400" in str(info.value)


# ---------------------------------------------------------------- Pool.query over HTTP


def test_pool_query_via_fetch_goes_over_http(proxy: Any) -> None:
    with Pool(proxy.database_url(), pool_query_via_fetch=True, fetch_endpoint=proxy.url) as pool:
        result = pool.query("SELECT $1::int AS n, 'x' AS s", [7])
        assert result.rows == [{"n": 7, "s": "x"}]
        assert pool.size == 0  # no Postgres connection was opened for it
        with pool.connection() as client:  # sessions still get a connection
            assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_pool_query_via_fetch_from_neon_config(proxy: Any) -> None:
    neon_config.pool_query_via_fetch = True
    neon_config.fetch_endpoint = proxy.url
    with Pool(proxy.database_url()) as pool:
        assert pool.query("SELECT 2 AS n", array_mode=True).rows == [[2]]
        assert pool.size == 0


# ---------------------------------------------------------------- README


def test_the_readme_websocket_section_runs(pg: EmbeddedPostgres, proxy: Any) -> None:
    """Every ```python block of README's "## WebSockets" section, as a script (the README runner's
    environment: DATABASE_URL, NEON_FETCH_ENDPOINT, NEON_WS_PROXY)."""
    import os
    import pathlib
    import re
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text(encoding="utf-8")
    start = text.index("## WebSockets")
    section = text[start : text.index("\n## ", start + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) >= 3
    env = dict(
        os.environ,
        DATABASE_URL=pg.dsn(),
        NEON_FETCH_ENDPOINT=proxy.url,
        NEON_WS_PROXY=proxy.server.ws_proxy,
        PYTHONPATH=str(root),
    )
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
