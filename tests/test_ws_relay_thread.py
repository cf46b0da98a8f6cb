"""The proxy's two ways of relaying a session's bytes: its relay thread (the default) and trio tasks.

Every behaviour of a relayed session holds on both: big answers to a slow reader, big COPY
input, frames split across reads, idle timeout, shutdown, a client vanishing mid-query.
A third variant runs the thread with TLS on both sides (a wss client, an upstream reached
over TLS): the thread works trio's TLS record layer itself.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import psycopg
import pytest
from wsproto.events import BytesMessage

from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.session import Session
from neon_proxy.config import ProxyConfig
from neon_proxy.testing import DevStack
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres
from tests.ws_testclient import WsClient, drive, events_until

pytestmark = pytest.mark.slow


def _config(thread: bool, tls_from: EmbeddedPostgres | None = None) -> ProxyConfig:
    """A proxy relaying on the thread or in trio; with ``tls_from``, serving wss with that server's certificate."""
    tls = {"tls_cert": tls_from.server_cert_path, "tls_key": tls_from.server_key_path} if tls_from else {}
    return ProxyConfig(listen_port=0, shutdown_timeout=5.0, ws_idle_timeout=1.0, ws_relay_thread=thread, **tls)


@pytest.fixture(scope="module", params=["thread", "trio", "thread-tls"])
def stack(request: pytest.FixtureRequest, pg: EmbeddedPostgres) -> Iterator[DevStack]:
    tls = request.param == "thread-tls"
    config = _config(request.param != "trio", pg if tls else None)
    with DevStack(postgres=pg, config=config, upstream_tls=tls) as running:
        yield running


def _uses_tls(stack: DevStack) -> bool:
    return stack.server.config.tls_cert is not None


def _client_tls(stack: DevStack) -> ssl.SSLContext | None:
    """A context trusting the test CA when the proxy serves wss."""
    return ssl.create_default_context(cafile=stack.pg.ca_cert_path) if _uses_tls(stack) else None


def _login(stack: DevStack, application_name: str = "relay-paths") -> tuple[WsClient, Session]:
    pg = stack.pg
    ws = _connect(stack)
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


def test_big_copy_in(stack: DevStack) -> None:
    pg = stack.pg
    table = f"relay_copy_{uuid.uuid4().hex[:8]}"
    line = "x" * 200
    thread = stack.server.websocket.relay_thread
    if _uses_tls(stack):  # over wss, encrypted on both hops
        wss = {"transport": "websocket", "ws_proxy": f"127.0.0.1:{stack.port}/v2", "sslrootcert": pg.ca_cert_path}
        with Client(pg.dsn("scram_user"), **wss) as client:
            client.query(f"CREATE TEMP TABLE {table} (n int, t text)")
            assert thread is not None and _wait_until(lambda: thread.sessions >= 1)
            assert client.copy_from(f"COPY {table} FROM STDIN", (f"{n}\t{line}\n" for n in range(40000))) == 40000
            rows = client.query(f"SELECT count(*) AS c, sum(n) AS s, min(t) = max(t) AS same FROM {table}").rows
            assert rows == [{"c": 40000, "s": 799980000, "same": True}]
        return
    dsn = f"host=127.0.0.1 port={stack.port} user=scram_user password={pg.role('scram_user').password} dbname=postgres sslmode=disable"
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


def test_a_ping_is_answered_and_the_session_stays_on_the_thread(stack: DevStack) -> None:
    thread = stack.server.websocket.relay_thread
    assert thread is None or _wait_until(lambda: thread.sessions == 0)  # earlier tests' sessions are gone
    ws, session = _login(stack)
    assert _query(ws, session, "SELECT 1") == [[1]]
    assert thread is None or _wait_until(lambda: thread.sessions == 1)
    assert ws.ping(b"still there?") == b"still there?"
    assert _query(ws, session, "SELECT 2") == [[2]]
    assert ws.ping(b"") == b""
    assert thread is None or thread.sessions == 1
    ws.close()


def test_a_big_frame_moves_the_session_to_trio(stack: DevStack) -> None:
    thread = stack.server.websocket.relay_thread
    assert thread is None or _wait_until(lambda: thread.sessions == 0)
    ws, session = _login(stack)
    assert thread is None or _wait_until(lambda: thread.sessions == 1)
    literal = "y" * 100_000  # one message of more than 64 KiB: its frame is wsproto's to read
    assert _query(ws, session, f"SELECT length('{literal}')") == [[100_000]]
    assert ws.ping(b"in trio") == b"in trio"
    assert _query(ws, session, "SELECT 'on'") == [["on"]]
    assert thread is None or thread.sessions == 0  # this session left the thread for good
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


@pytest.mark.parametrize("variant", ["thread", "trio", "thread-tls"])
def test_shutdown_closes_idle_sessions_and_finishes_running_queries(pg: EmbeddedPostgres, variant: str) -> None:
    tls = variant == "thread-tls"
    config = attrs.evolve(_config(variant != "trio", pg if tls else None), shutdown_timeout=30.0, ws_idle_timeout=600.0)
    running = DevStack(postgres=pg, config=config, upstream_tls=tls).start()
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


def _connect(stack: DevStack) -> WsClient:
    return WsClient(stack.port, f"/v2?address=localhost:{stack.pg.port}", tls=_client_tls(stack))


def _login_messages(stack: DevStack, application_name: str) -> list[bytes]:
    """Startup and password, to send before the proxy asks (as the JS driver's pipelined connect)."""
    parameters = {"user": "scram_user", "database": "postgres", "application_name": application_name}
    return [msg.startup_message(parameters), msg.password_message(stack.pg.role("scram_user").password)]


def _backend_messages(ws: WsClient, ready_count: int) -> list[tuple[bytes, bytes]]:
    """The server's messages (type, body) up to its ``ready_count``-th ReadyForQuery."""
    buffer = b""
    found: list[tuple[bytes, bytes]] = []
    while sum(1 for kind, _ in found if kind == b"Z") < ready_count:
        data = ws.receive()
        assert data, f"the stream ended after {found[-3:]!r}"
        buffer += data
        while len(buffer) >= 5:
            size = int.from_bytes(buffer[1:5], "big")
            if len(buffer) < 1 + size:
                break
            found.append((buffer[:1], buffer[5 : 1 + size]))
            buffer = buffer[1 + size :]
    return found


def test_a_first_flight_bigger_than_one_read_arrives_whole(stack: DevStack) -> None:
    # Startup, password and six queries of 40 KB each leave in one write, before the proxy
    # has asked for anything: it reads part of that for the login, and the rest (still in
    # the socket, or in the TLS buffers on a wss) must reach Postgres once the relay starts.
    ws = _connect(stack)
    messages = _login_messages(stack, "relay-flight")
    messages += [msg.query_message(f"SELECT length('{'z' * 40_000}') + {i}") for i in range(6)]
    ws.send_raw(b"".join(ws.ws.send(BytesMessage(data=m)) for m in messages))
    found = _backend_messages(ws, 7)
    assert [kind for kind, _ in found if kind == b"E"] == []
    values = [int(body[6:]) for kind, body in found if kind == b"D"]  # one int4 column: count, length, value
    assert values == [40_000 + i for i in range(6)]
    ws.send(msg.query_message("SELECT 'still here'"))
    assert [body for kind, body in _backend_messages(ws, 1) if kind == b"D"] == [b"\x00\x01\x00\x00\x00\x0astill here"]
    ws.close()


@pytest.mark.parametrize("stack", ["thread-tls"], indirect=True)
def test_bytes_that_are_not_tls_end_that_session_only(stack: DevStack) -> None:
    name = f"relay-garbage-{uuid.uuid4().hex[:8]}"
    ws, session = _login(stack, name)
    assert _query(ws, session, "SELECT 1") == [[1]]
    os.write(ws.sock.fileno(), b"\x17\x03\x03\x00\x05hello")  # an application-data record no key opens
    try:  # the proxy drops the session: its end, or a TLS error, reaches the client
        ended = ws.receive() == b""
    except (ssl.SSLError, OSError):
        ended = True
    assert ended
    assert _wait_until(lambda: _backends(stack.pg, name) == 0)
    other, session = _login(stack)
    assert _query(other, session, "SELECT 'others go on'") == [["others go on"]]
    other.close()


def test_a_query_read_with_the_login_is_not_left_behind(stack: DevStack) -> None:
    # Login and query leave in two writes (two TLS records on a wss) but one TCP segment
    # (TCP_CORK), so the proxy reads them together and the login uses only the first: the
    # query waits in the proxy's buffers, and no more bytes will come to announce it.
    ws = _connect(stack)
    login = _login_messages(stack, "relay-corked")
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    ws.send_raw(b"".join(ws.ws.send(BytesMessage(data=m)) for m in login))
    ws.send(msg.query_message("SELECT 'read with the login'"))
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    found = _backend_messages(ws, 2)
    assert [body for kind, body in found if kind == b"D"] == [b"\x00\x01\x00\x00\x00\x13read with the login"]
    ws.close()


def test_concurrent_sessions_keep_their_own_bytes(stack: DevStack) -> None:
    # Sixteen sessions at once on the one thread (or in trio), each checking every answer.
    pg = stack.pg
    options: dict[str, Any] = {"transport": "websocket", "ws_proxy": f"127.0.0.1:{stack.port}/v2"}
    if _uses_tls(stack):
        options["sslrootcert"] = pg.ca_cert_path
    else:
        options["use_secure_websocket"] = False
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with Client(pg.dsn("scram_user"), **options) as client:
                for i in range(150):
                    value = f"{n}:{i}:" + "v" * (i * 37 % 3000)
                    assert client.query("SELECT $1::text AS v", [value]).rows == [{"v": value}]
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(120)
    assert not any(t.is_alive() for t in workers)
    assert failures == []
