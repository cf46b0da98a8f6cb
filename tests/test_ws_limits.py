"""WebSocket sessions count against the same upstream limits as the /sql pool (issue 11, item 3)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from neon_proto.errors import OperationalError
from neon_proto.session import Session
from neon_proxy.testing import ProxyThread
from neon_sync.embedded import EmbeddedPostgres
from tests.test_proxy import request
from tests.test_proxy_hardening import limited_proxy, run_concurrently
from tests.ws_testclient import Rejected, WsClient, drive

pytestmark = pytest.mark.slow


def _address(pg: EmbeddedPostgres) -> str:
    return f"/v2?address={pg.host}:{pg.port}"


def _login(proxy: ProxyThread, pg: EmbeddedPostgres, user: str) -> tuple[WsClient, Session]:
    ws = WsClient(proxy.port, _address(pg))
    session = Session()
    drive(session.startup({"user": user, "database": "postgres"}, pg.role(user).password or "x"), ws)
    return ws, session


def _select_one(ws: WsClient, session: Session) -> Any:
    return drive(session.simple_query("SELECT 1", mode="list"), ws)[-1].rows


def _server_now(pg: EmbeddedPostgres) -> Any:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def _backends(pg: EmbeddedPostgres, user: str, since: Any = None) -> int:
    """Client backends of ``user`` (started at ``since`` or later: the server is shared with
    other tests, whose closed connections may still be exiting)."""
    sql = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'"
    args: list[Any] = [user]
    if since is not None:
        sql += " AND backend_start >= %s"
        args.append(since)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def test_one_users_websocket_sessions_are_bounded_and_others_still_connect(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, pool_max_per_user=3, connect_timeout=1.0)
    server = f"{pg.host}:{pg.port}"
    started = _server_now(pg)
    opened: list[WsClient] = []
    try:
        for _ in range(3):
            ws, session = _login(proxy, pg, "md5_user")
            assert _select_one(ws, session) == [[1]]
            opened.append(ws)
        assert proxy.server.pool.user_size(server, "md5_user") == 3
        refused = WsClient(proxy.port, _address(pg))
        with pytest.raises(OperationalError) as info:
            drive(Session().startup({"user": "md5_user", "database": "postgres"}, pg.role("md5_user").password or ""), refused)
        assert info.value.sqlstate == "53300"
        assert 'too many connections for role "md5_user"' in str(info.value)
        assert refused.receive() == b"" and refused.close_code == 1000  # a clean WebSocket close
        refused.close()
        assert _backends(pg, "md5_user", since=started) == 3
        # Another user is not held back by md5_user's sessions.
        other, other_session = _login(proxy, pg, "trust_user")
        assert _select_one(other, other_session) == [[1]]
        other.close()
        # A closed session frees its place.
        opened.pop().close()
        deadline = time.monotonic() + 5
        while proxy.server.pool.user_size(server, "md5_user") > 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        ws, session = _login(proxy, pg, "md5_user")
        assert _select_one(ws, session) == [[1]]
        opened.append(ws)
    finally:
        for ws in opened:
            ws.close()
        proxy.stop()


def test_sql_requests_and_websocket_sessions_share_the_users_bound(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, pool_max_per_user=3, connect_timeout=5.0)
    server = f"{pg.host}:{pg.port}"
    base = f"postgresql://md5_user:{pg.role('md5_user').password}@{pg.host}:{pg.port}/postgres"
    peak = [0, 0]
    stop = threading.Event()
    started = _server_now(pg)

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proxy.server.pool.user_size(server, "md5_user"))
            peak[1] = max(peak[1], _backends(pg, "md5_user", since=started))
            time.sleep(0.02)

    opened: list[WsClient] = []
    watcher = threading.Thread(target=watch)
    try:
        for _ in range(2):
            ws, session = _login(proxy, pg, "md5_user")
            opened.append(ws)
        watcher.start()
        calls = [
            lambda i=i: request(
                proxy.port,
                {"query": "SELECT pg_sleep(0.1)"},
                headers={"Neon-Connection-String": f"{base}?options=-c%20application_name%3Dkey{i}"},
            ).status
            for i in range(6)
        ]
        # Two sessions hold two of the user's three places: the requests share the third.
        assert run_concurrently(calls) == [200] * 6
        stop.set()
        watcher.join()
        assert peak[0] == 3, "the user's sessions and requests went past (or never reached) its bound"
        assert peak[1] <= 4  # a backend closed to make room may linger an instant
        # The pool keeps an idle connection of the user; new sessions close it to make room.
        for ws in opened:
            ws.close()
        opened.clear()
        for _ in range(3):
            ws, session = _login(proxy, pg, "md5_user")
            assert _select_one(ws, session) == [[1]]
            opened.append(ws)
        assert proxy.server.pool.user_size(server, "md5_user") == 3
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        for ws in opened:
            ws.close()
        proxy.stop()


def test_relay_sessions_count_against_the_servers_limit(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, ws_relay=True, upstream_max_connections=2, connect_timeout=1.0)
    server = f"{pg.host}:{pg.port}"
    opened: list[WsClient] = []
    try:
        opened = [WsClient(proxy.port, _address(pg)) for _ in range(2)]
        assert proxy.server.pool.server_size(server) == 2
        with pytest.raises(Rejected) as info:
            WsClient(proxy.port, _address(pg))
        assert info.value.status == 503
        assert b"too many connections" in info.value.body
        opened.pop().close()
        deadline = time.monotonic() + 5
        while proxy.server.pool.server_size(server) > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        opened.append(WsClient(proxy.port, _address(pg)))
        assert proxy.server.pool.server_size(server) == 2
    finally:
        for ws in opened:
            ws.close()
        proxy.stop()


def test_a_session_waits_for_the_users_place_held_by_a_request(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, pool_max_per_user=1, connect_timeout=5.0)
    server = f"{pg.host}:{pg.port}"
    url = f"postgresql://md5_user:{pg.role('md5_user').password}@{pg.host}:{pg.port}/postgres"
    statuses: list[int] = []
    running = threading.Thread(
        target=lambda: statuses.append(
            request(proxy.port, {"query": "SELECT pg_sleep(0.5)"}, headers={"Neon-Connection-String": url}).status
        )
    )
    ws: WsClient | None = None
    try:
        running.start()
        deadline = time.monotonic() + 5
        while proxy.server.pool.user_size(server, "md5_user") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proxy.server.pool.user_size(server, "md5_user") == 1
        # The request's connection, released, is closed for the waiting session rather than kept idle.
        ws, session = _login(proxy, pg, "md5_user")
        running.join(10)
        assert statuses == [200]
        assert _select_one(ws, session) == [[1]]
        assert proxy.server.pool.user_size(server, "md5_user") == 1
        assert proxy.server.pool.idle_count == 0
    finally:
        running.join(10)
        if ws is not None:
            ws.close()
        proxy.stop()
