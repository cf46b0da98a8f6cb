"""The proxy's two ways of relaying a session's bytes: its relay thread (the default) and trio tasks.

Every behaviour of a relayed session holds on both: big answers to a slow reader, big COPY
input, frames split across reads, idle timeout, shutdown, a client vanishing mid-query.
The thread needs plain sockets on both sides, so these proxies reach Postgres without TLS;
tests/test_ws_proxy.py's auth-mode proxy has a TLS upstream and relays in trio, its
relay-mode proxy on the thread.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from wsproto.events import BytesMessage

from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.session import Session
from neon_proxy.config import ProxyConfig
from neon_proxy.testing import DevStack
from neon_sync.embedded import EmbeddedPostgres
from tests.ws_testclient import WsClient, drive, events_until

pytestmark = pytest.mark.slow


def _config(thread: bool) -> ProxyConfig:
    return ProxyConfig(listen_port=0, shutdown_timeout=5.0, ws_idle_timeout=1.0, ws_relay_thread=thread)


@pytest.fixture(scope="module", params=["thread", "trio"])
def stack(request: pytest.FixtureRequest, pg: EmbeddedPostgres) -> Iterator[DevStack]:
    with DevStack(postgres=pg, config=_config(request.param == "thread"), upstream_tls=False) as running:
        yield running


def _login(stack: DevStack, application_name: str = "relay-paths") -> tuple[WsClient, Session]:
    pg = stack.pg
    ws = WsClient(stack.port, f"/v2?address=localhost:{pg.port}")
    session = Session()
    params = {"user": "scram_user", "database": "postgres", "application_name": application_name}
    drive(session.startup(params, pg.role("scram_user").password), ws)
    return ws, session


def _query(ws: WsClient, session: Session, sql: str) -> Any:
    return drive(session.simple_query(sql, mode="list"), ws)[-1].rows


def _wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _backends(pg: EmbeddedPostgres, application_name: str, active: bool = False) -> int:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        row = conn.execute(sql + (" AND state = 'active'" if active else ""), (application_name,)).fetchone()
    return int(row[0]) if row else 0


def test_sessions_ride_the_thread_which_exits_once_unused(pg: EmbeddedPostgres) -> None:
    with DevStack(postgres=pg, config=_config(True), upstream_tls=False) as running:
        thread = running.server.websocket.relay_thread
        assert thread is not None
        ws, session = _login(running)
        assert _query(ws, session, "SELECT 1") == [[1]]
        assert thread.running and _wait_until(lambda: thread.sessions == 1)
        ws.close()
        assert _wait_until(lambda: thread.sessions == 0)
        assert _wait_until(lambda: not thread.running, timeout=5)  # a second after its last session
        ws, session = _login(running)  # and comes back for the next one
        assert _query(ws, session, "SELECT 2") == [[2]] and _wait_until(lambda: thread.sessions == 1)
        ws.close()


def test_trio_relay_option_leaves_the_thread_out(pg: EmbeddedPostgres) -> None:
    with DevStack(postgres=pg, config=_config(False), upstream_tls=False) as running:
        assert running.server.websocket.relay_thread is None
        ws, session = _login(running)
        assert _query(ws, session, "SELECT 'trio'") == [["trio"]]
        ws.close()


def test_big_answer_to_a_slow_reader_arrives_whole(stack: DevStack) -> None:
    ws, session = _login(stack)
    conn = session.conn
    ws.send(conn.send_query("SELECT i, repeat('x', 1000) FROM generate_series(1, 20000) AS i"))
    conn.expect_ready(1)
    time.sleep(0.3)  # read nothing meanwhile: the socket buffers fill and the relay must wait
    rows: list[Any] = []
    for event in events_until(conn, ws, ev.ReadyForQuery, limit=100000):
        if isinstance(event, ev.DataRows):
            rows.extend(event.rows)
    assert len(rows) == 20000
    assert [int(r[0]) for r in rows] == list(range(1, 20001)) and all(r[1] == b"x" * 1000 for r in rows)
    thread = stack.server.websocket.relay_thread
    if thread is not None:
        assert thread.stalls > 0  # the thread handed the rest to trio, then took the session back
    ws.send(conn.send_query("SELECT 'after'"))
    conn.expect_ready(1)
    assert [e.rows for e in events_until(conn, ws, ev.ReadyForQuery) if isinstance(e, ev.DataRows)] == [[[b"after"]]]
    ws.close()


def test_big_copy_in_through_the_tcp_endpoint(stack: DevStack) -> None:
    pg = stack.pg
    dsn = f"host=127.0.0.1 port={stack.port} user=scram_user password={pg.role('scram_user').password} dbname=postgres sslmode=disable"
    table = f"relay_copy_{uuid.uuid4().hex[:8]}"
    line = "x" * 200
    thread = stack.server.websocket.relay_thread
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TEMP TABLE {table} (n int, t text)")
        assert thread is None or _wait_until(lambda: thread.sessions >= 1)  # plain TCP sessions ride it too
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for n in range(40000):  # about 8 MB
                copy.write(f"{n}\t{line}\n")
        assert conn.execute(f"SELECT count(*), sum(n), min(t) = max(t) FROM {table}").fetchone() == (40000, 799980000, True)


def test_a_frame_split_across_reads_is_put_together(stack: DevStack) -> None:
    ws, session = _login(stack)
    frame = ws.ws.send(BytesMessage(data=msg.query_message("SELECT 'joined'")))
    session.conn.expect_ready(1)
    ws.send_raw(frame[:3])
    time.sleep(0.05)
    ws.send_raw(frame[3:9])
    time.sleep(0.05)
    ws.send_raw(frame[9:])
    rows = [e for e in events_until(session.conn, ws, ev.ReadyForQuery) if isinstance(e, ev.DataRows)]
    assert rows[0].rows == [[b"joined"]]
    ws.close()


def test_a_big_frame_or_a_ping_goes_on_in_trio(stack: DevStack) -> None:
    thread = stack.server.websocket.relay_thread
    assert thread is None or _wait_until(lambda: thread.sessions == 0)  # earlier tests' sessions are gone
    ws, session = _login(stack)
    assert thread is None or _wait_until(lambda: thread.sessions == 1)
    literal = "y" * 100_000  # one message of more than 64 KiB: its frame is wsproto's to read
    assert _query(ws, session, f"SELECT length('{literal}')") == [[100_000]]
    assert ws.ping(b"still there?") == b"still there?"
    assert _query(ws, session, "SELECT 'on'") == [["on"]]
    assert thread is None or thread.sessions == 0  # this session left the thread for good
    ws.close()


def test_a_ping_alone_moves_the_session_to_trio(stack: DevStack) -> None:
    ws, session = _login(stack)
    assert _query(ws, session, "SELECT 1") == [[1]]
    assert ws.ping(b"ping") == b"ping"
    assert _query(ws, session, "SELECT 2") == [[2]]
    ws.close()


def test_idle_timeout_but_not_during_a_long_query(stack: DevStack) -> None:
    ws, session = _login(stack)
    assert _query(ws, session, "SELECT pg_sleep(1.3), 'slow'") == [["", "slow"]]
    started = time.monotonic()
    assert ws.receive() == b""
    assert ws.close_code == 1001 and ws.close_reason == "idle timeout"
    assert 0.5 < time.monotonic() - started < 5
    ws.close()


def test_client_vanishing_mid_query_cancels_it(stack: DevStack) -> None:
    name = f"relay-vanish-{uuid.uuid4().hex[:8]}"
    ws, session = _login(stack, name)
    ws.send(session.conn.send_query("SELECT pg_sleep(60)"))
    assert _wait_until(lambda: _backends(stack.pg, name, active=True) == 1)
    ws.drop()
    assert _wait_until(lambda: _backends(stack.pg, name) == 0)
    assert _wait_until(lambda: stack.server.websocket.active == 0)


def test_terminate_ends_the_session_without_a_cancel(stack: DevStack) -> None:
    name = f"relay-bye-{uuid.uuid4().hex[:8]}"
    ws, session = _login(stack, name)
    assert _query(ws, session, "SELECT 1") == [[1]]
    ws.send(session.terminate())
    assert ws.receive() == b""
    assert _wait_until(lambda: _backends(stack.pg, name) == 0)
    ws.close()


@pytest.mark.parametrize("thread", [True, False], ids=["thread", "trio"])
def test_shutdown_closes_idle_sessions_and_finishes_running_queries(pg: EmbeddedPostgres, thread: bool) -> None:
    config = ProxyConfig(listen_port=0, shutdown_timeout=30.0, ws_relay_thread=thread)
    running = DevStack(postgres=pg, config=config, upstream_tls=False).start()
    try:
        idle_ws, idle = _login(running)
        assert _query(idle_ws, idle, "SELECT 1") == [[1]]
        busy_ws, busy = _login(running)
        busy_ws.send(busy.conn.send_query("SELECT pg_sleep(0.8), 'finished'"))
        busy.conn.expect_ready(1)
        time.sleep(0.2)
        assert running.proxy is not None
        stopper = threading.Thread(target=running.proxy.stop)
        stopper.start()
        assert idle_ws.receive() == b"" and idle_ws.close_code == 1001
        rows = [e for e in events_until(busy.conn, busy_ws, ev.ReadyForQuery) if isinstance(e, ev.DataRows)]
        assert rows[0].rows == [[b"", b"finished"]]
        assert busy_ws.receive() == b"" and busy_ws.close_code == 1001
        stopper.join(10)
        assert not stopper.is_alive()
        idle_ws.close()
        busy_ws.close()
    finally:
        running.stop()


def test_trio_relay_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from neon_proxy.__main__ import build_parser, config_from_args

    upstream = ["--upstream", "postgres://db:5432"]
    assert config_from_args(build_parser().parse_args(upstream)).ws_relay_thread
    assert not config_from_args(build_parser().parse_args(upstream + ["--ws-trio-relay"])).ws_relay_thread
    monkeypatch.setenv("NEON_PROXY_WS_TRIO_RELAY", "1")
    assert not config_from_args(build_parser().parse_args(upstream)).ws_relay_thread


def test_a_failure_on_the_thread_costs_that_session_only(pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    from neon_proxy.client_channel import ServerWebSocket

    unwrap = ServerWebSocket.unwrap

    def failing_unwrap(self: ServerWebSocket, data: bytes) -> bytes:
        payload = unwrap(self, data)
        if b"boom" in payload:
            raise RuntimeError("a bug in the relay's framing")
        return payload

    with DevStack(postgres=pg, config=_config(True), upstream_tls=False) as running:
        thread = running.server.websocket.relay_thread
        assert thread is not None
        doomed, doomed_session = _login(running)
        other, other_session = _login(running)
        assert _wait_until(lambda: thread.sessions == 2)
        monkeypatch.setattr(ServerWebSocket, "unwrap", failing_unwrap)
        doomed.send(doomed_session.conn.send_query("SELECT 'boom'"))
        assert doomed.receive() == b""  # closed, not left hanging
        assert _query(other, other_session, "SELECT 'unharmed'") == [["unharmed"]]
        assert thread.sessions == 1
        doomed.close()
        other.close()


def test_relay_mode_sessions_end_at_the_shutdown_deadline(pg: EmbeddedPostgres) -> None:
    """Relay mode cannot see idleness: its sessions, on the thread, are cut at the deadline."""
    config = ProxyConfig(listen_port=0, shutdown_timeout=0.5, ws_relay=True)
    running = DevStack(postgres=pg, config=config, upstream_tls=False).start()
    try:
        thread = running.server.websocket.relay_thread
        assert thread is not None
        name = f"relay-deadline-{uuid.uuid4().hex[:8]}"
        ws = WsClient(running.port, f"/v2?address={pg.host}:{pg.port}")
        session = Session()
        drive(session.startup({"user": "scram_user", "database": "postgres", "application_name": name},
                              pg.role("scram_user").password), ws)
        assert _query(ws, session, "SELECT 'relayed'") == [["relayed"]]
        assert _wait_until(lambda: thread.sessions == 1)
        started = time.monotonic()
        assert running.proxy is not None
        running.proxy.stop()
        assert ws.receive() == b"" and time.monotonic() - started < 5
        assert thread.sessions == 0
        assert _wait_until(lambda: _backends(pg, name) == 0)
        ws.close()
    finally:
        running.stop()
