"""neon_proxy's WebSocket endpoint against the real Postgres, byte by byte (wsproto + FrontendConnection)."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.errors import OperationalError, ProgrammingError
from neon_proto.frontend import FrontendConnection, State
from neon_proto.session import Session
from neon_proxy.config import ProxyConfig
from neon_proxy.testing import DevStack, ProxyThread
from neon_sync.embedded import EmbeddedPostgres
from tests.ws_testclient import Rejected, WsClient, drive, events_until, pipelined_login

pytestmark = pytest.mark.slow


def _address(pg: EmbeddedPostgres) -> str:
    return f"/v2?address=localhost:{pg.port}"


def _login(proxy: DevStack, user: str = "scram_user", database: str = "postgres", password: str | None = None) -> tuple[WsClient, Session]:
    pg = proxy.pg
    ws = WsClient(proxy.port, _address(pg))
    session = Session()
    drive(session.startup({"user": user, "database": database}, password if password is not None else pg.role(user).password), ws)
    return ws, session


def _backend_pids(pg: EmbeddedPostgres, application_name: str) -> list[int]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application_name,)).fetchall()
    return [r[0] for r in rows]


def _wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# ---------------------------------------------------------------- auth mode


@pytest.mark.parametrize("user", ["scram_user", "md5_user", "cleartext_user", "trust_user", "postgres"])
def test_auth_mode_logs_in_with_every_upstream_method(proxy: DevStack, user: str) -> None:
    ws, session = _login(proxy, user)
    try:
        results = drive(session.simple_query("SELECT current_user AS u, 6 * 7 AS n", mode="list"), ws)
        assert results[-1].rows == [[user, 42]]
        assert session.conn.parameters["server_version"].startswith("15")
        assert session.conn.parameters["client_encoding"] == "UTF8"
    finally:
        ws.close()


def test_auth_mode_asks_for_a_cleartext_password(proxy: DevStack) -> None:
    pg = proxy.pg
    ws = WsClient(proxy.port, _address(pg))
    conn = FrontendConnection()
    ws.send(conn.send_startup({"user": "scram_user", "database": "postgres"}))
    assert events_until(conn, ws, ev.AuthenticationCleartextPassword) == [ev.AuthenticationCleartextPassword()]
    ws.send(conn.send_password(pg.role("scram_user").password or ""))
    seen = events_until(conn, ws, ev.ReadyForQuery)
    assert seen[0] == ev.AuthenticationOk()
    keys = [e for e in seen if isinstance(e, ev.BackendKeyData)]
    assert len(keys) == 1 and seen[-1] == ev.ReadyForQuery("I")
    ws.close()


def test_pipelined_flight_gives_the_first_query_result(proxy: DevStack) -> None:
    pg = proxy.pg
    ws = WsClient(proxy.port, _address(pg))
    session, seen = pipelined_login(ws, "scram_user", pg.role("scram_user").password or "", "postgres", "SELECT 'piped' AS v")
    kinds = [type(e).__name__ for e in seen]
    assert kinds[0] == "AuthenticationCleartextPassword" and kinds[1] == "AuthenticationOk"
    assert "RowDescription" in kinds and "DataRows" in kinds
    rows = [e for e in seen if isinstance(e, ev.DataRows)]
    assert rows[0].rows == [[b"piped"]]
    assert session.conn.state is State.READY
    ws.close()


def test_startup_settings_reach_the_upstream(proxy: DevStack) -> None:
    pg = proxy.pg
    for parameters, expected in [
        ({"application_name": "mine", "fallback_application_name": "fallback"}, "mine"),
        ({"fallback_application_name": "fallback"}, "fallback"),
    ]:
        ws = WsClient(proxy.port, _address(pg))
        session = Session()
        startup = {"user": "scram_user", "database": "postgres", "DateStyle": "SQL, DMY", **parameters}
        drive(session.startup(startup, pg.role("scram_user").password), ws)
        results = drive(session.simple_query("SHOW application_name; SHOW DateStyle", mode="list"), ws)
        assert [r.rows for r in results] == [[[expected]], [["SQL, DMY"]]]
        ws.close()


def test_backend_key_is_the_proxys_own(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    try:
        results = drive(session.simple_query("SELECT pg_backend_pid()", mode="list"), ws)
        upstream_pid = results[-1].rows[0][0]
        assert session.conn.process_id is not None and session.conn.process_id != upstream_pid
    finally:
        ws.close()


def test_bad_password_is_postgres_own_error(proxy: DevStack) -> None:
    pg = proxy.pg
    ws = WsClient(proxy.port, _address(pg))
    session = Session()
    with pytest.raises(OperationalError) as info:
        drive(session.startup({"user": "scram_user", "database": "postgres"}, "wrong"), ws)
    assert info.value.sqlstate == "28P01"
    assert 'password authentication failed for user "scram_user"' in str(info.value)
    assert ws.receive() == b""  # and the connection ends
    ws.close()


def test_unknown_database_is_postgres_own_error(proxy: DevStack) -> None:
    with pytest.raises(ProgrammingError) as info:
        _login(proxy, database="no_such_db_here")
    assert info.value.sqlstate == "3D000"
    assert 'database "no_such_db_here" does not exist' in str(info.value)


def test_pipelined_bad_password_fails_the_login_only(proxy: DevStack) -> None:
    ws = WsClient(proxy.port, _address(proxy.pg))
    _, seen = pipelined_login(ws, "md5_user", "wrong", "postgres", "SELECT 1")
    errors = [e for e in seen if isinstance(e, ev.ErrorResponse)]
    assert len(errors) == 1 and errors[0].fields["C"] == "28P01"
    assert seen[-1] is ev.END_OF_STREAM
    ws.close()


# ---------------------------------------------------------------- relay mode


@pytest.fixture(scope="module")
def relay_proxy(pg: EmbeddedPostgres) -> Iterator[DevStack]:
    with DevStack(postgres=pg, config=ProxyConfig(listen_port=0, shutdown_timeout=5.0, ws_relay=True)) as stack:
        yield stack


def test_password_endpoint_form() -> None:
    from neon_proxy.websocket import split_password_endpoint

    assert split_password_endpoint("endpoint=ep-1;secret") == ("ep-1", "secret")
    assert split_password_endpoint("endpoint=ep-1$sec;ret") == ("ep-1", "sec;ret")
    assert split_password_endpoint("plain;password") == (None, "plain;password")
    assert split_password_endpoint("endpoint=;x") == (None, "endpoint=;x")


def test_relay_mode_carries_the_protocol_with_the_clients_own_scram(relay_proxy: DevStack) -> None:
    pg = relay_proxy.pg
    ws = WsClient(relay_proxy.port, f"/v2?address={pg.host}:{pg.port}")
    session = Session()
    drive(session.startup({"user": "scram_user", "database": "postgres"}, pg.role("scram_user").password), ws)
    results = drive(session.simple_query("SELECT current_user", mode="list"), ws)
    assert results[-1].rows == [["scram_user"]]
    ws.send(session.terminate())
    ws.close()


def test_relay_mode_carries_tls_inside_the_tunnel_with_channel_binding(relay_proxy: DevStack) -> None:
    """SSLRequest, then TLS end to end with Postgres (neon_proto.tls.TLSTunnel), then SCRAM-SHA-256-PLUS."""
    from neon_proto.tls import TLSTunnel

    pg = relay_proxy.pg
    assert pg.ca_cert_path
    ws = WsClient(relay_proxy.port, f"/v2?address={pg.host}:{pg.port}")
    session = Session()
    assert drive(session.request_tls(), ws) is True
    tls = TLSTunnel(ssl.create_default_context(cafile=pg.ca_cert_path), server_hostname=pg.host)
    while True:
        out, done = tls.handshake()
        if out:
            ws.send(out)
        if done:
            break
        tls.receive_data(ws.receive())

    def drive_tls(op: Any) -> Any:
        out = op.send(None)
        try:
            while True:
                if out is None:
                    plain = tls.read()
                    while not plain:
                        tls.receive_data(ws.receive())
                        plain = tls.read()
                    out = op.send(plain)
                else:
                    if out:
                        ws.send(tls.send(out))
                    out = op.send(None)
        except StopIteration as stop:
            return stop.value

    password = pg.role("scram_user").password
    drive_tls(session.startup({"user": "scram_user", "database": "postgres"}, password, channel_binding="require",
                              server_certificate=tls.server_certificate))
    rows = drive_tls(session.simple_query("SELECT ssl, current_user FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                                          "WHERE pid = pg_backend_pid()", mode="list"))[-1].rows
    assert rows == [[True, "scram_user"]]
    ws.close()


def test_relay_mode_refuses_an_address_outside_the_allowlist(relay_proxy: DevStack) -> None:
    with pytest.raises(Rejected) as info:
        WsClient(relay_proxy.port, "/v2?address=example.com:5432")
    assert info.value.status == 400
    assert b"not allowed" in info.value.body
    with pytest.raises(Rejected) as info:
        WsClient(relay_proxy.port, f"/v2?address={relay_proxy.pg.host}:1")
    assert info.value.status == 400


def test_relay_mode_needs_an_address(relay_proxy: DevStack) -> None:
    with pytest.raises(Rejected) as info:
        WsClient(relay_proxy.port, "/v2")
    assert info.value.status == 400 and b"address" in info.value.body


def test_any_path_upgrades(proxy: DevStack) -> None:
    pg = proxy.pg
    ws = WsClient(proxy.port, f"/some/other/path?address=localhost:{pg.port}")
    session = Session()
    drive(session.startup({"user": "scram_user", "database": "postgres"}, pg.role("scram_user").password), ws)
    assert drive(session.simple_query("SELECT 1", mode="list"), ws)[-1].rows == [[1]]
    ws.close()


def test_sql_endpoint_still_served_beside_websocket(proxy: DevStack) -> None:
    from tests.test_proxy import Sql

    assert Sql(proxy).post({"query": "SELECT 1 AS one", "params": []}).json["rows"] == [["1"]]


# ---------------------------------------------------------------- framing and bad input


def _expect_fatal(ws: WsClient) -> ev.ErrorResponse:
    """The ErrorResponse the proxy sends before it closes a session that went wrong in startup."""
    conn = FrontendConnection()
    conn.send_startup({"user": "x"})  # only to put the machine where an ErrorResponse is expected
    seen = events_until(conn, ws, ev.ErrorResponse)
    error = seen[-1]
    assert isinstance(error, ev.ErrorResponse), seen
    assert error.fields["S"] == "FATAL"
    assert ws.receive() == b""
    return error


def _still_serving(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    assert drive(session.simple_query("SELECT 'alive'", mode="list"), ws)[-1].rows == [["alive"]]
    ws.close()


def test_garbage_bytes_get_a_protocol_error(proxy: DevStack) -> None:
    ws = WsClient(proxy.port, _address(proxy.pg))
    ws.send(b"hello, is this postgres?")
    error = _expect_fatal(ws)
    assert error.fields["C"] == "08P01" and "invalid length of startup packet" in error.fields["M"]
    ws.close()
    _still_serving(proxy)


def test_old_protocol_version_is_refused(proxy: DevStack) -> None:
    ws = WsClient(proxy.port, _address(proxy.pg))
    ws.send(struct.pack("!ii", 8, 2 << 16))
    error = _expect_fatal(ws)
    assert error.fields["C"] == "0A000" and "unsupported frontend protocol 2.0" in error.fields["M"]
    ws.close()


def test_ssl_request_is_answered_no(proxy: DevStack) -> None:
    ws = WsClient(proxy.port, _address(proxy.pg))
    session = Session()
    assert drive(session.request_tls(), ws) is False
    drive(session.startup({"user": "scram_user", "database": "postgres"}, proxy.pg.role("scram_user").password), ws)
    assert drive(session.simple_query("SELECT 1", mode="list"), ws)[-1].rows == [[1]]
    ws.close()


def test_text_frame_closes_the_connection(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    ws.send_text("SELECT 1")
    assert ws.receive() == b""
    assert ws.close_code == 1003 and "text frames" in (ws.close_reason or "")
    ws.close()
    _still_serving(proxy)


def test_text_frame_before_startup_closes_too(proxy: DevStack) -> None:
    ws = WsClient(proxy.port, _address(proxy.pg))
    ws.send_text("hi")
    assert ws.receive() == b"" and ws.close_code == 1003
    ws.close()


def test_invalid_framing_closes_with_a_protocol_error(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    ws.send_raw(b"\x82\x05hello")  # an unmasked frame: clients must mask theirs
    assert ws.receive() == b""
    assert ws.close_code == 1002 and "unmasked" in (ws.close_reason or "")
    ws.close()
    _still_serving(proxy)


def test_fragmented_messages_and_split_postgres_messages(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    query = msg.query_message("SELECT 'fragments' AS f")
    ws.send_fragments(query[:3], query[3:10], query[10:])
    conn = session.conn
    conn.expect_ready(1)
    seen = events_until(conn, ws, ev.ReadyForQuery)
    assert [e for e in seen if isinstance(e, ev.DataRows)][0].rows == [[b"fragments"]]
    # Ten queries in one message, then one query over ten messages.
    ws.send(b"".join(msg.query_message(f"SELECT {i}") for i in range(10)))
    conn.expect_ready(10)
    for _ in range(10):
        events_until(conn, ws, ev.ReadyForQuery)
    big = msg.query_message("SELECT 'split'")
    for i in range(0, len(big), 2):
        ws.send(big[i : i + 2])
    conn.expect_ready(1)
    assert [e for e in events_until(conn, ws, ev.ReadyForQuery) if isinstance(e, ev.DataRows)][0].rows == [[b"split"]]
    ws.close()


def test_ping_is_answered(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    assert ws.ping(b"are you there") == b"are you there"
    assert drive(session.simple_query("SELECT 1", mode="list"), ws)[-1].rows == [[1]]
    ws.close()


def test_truncated_upgrade_is_dropped_and_others_are_served(proxy: DevStack) -> None:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upg")
    sock.close()
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 426 ") or answer.startswith(b"HTTP/1.1 400 ")
    sock.close()
    _still_serving(proxy)


def test_upgrade_with_a_bad_key_is_refused(proxy: DevStack) -> None:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.sendall(
        b"GET /v2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n"
    )
    answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Sec-WebSocket-Key" in answer
    sock.close()


# ---------------------------------------------------------------- cancel, vanishing clients, leaks


def _login_as(proxy: DevStack, application_name: str, user: str = "scram_user") -> tuple[WsClient, Session]:
    pg = proxy.pg
    ws = WsClient(proxy.port, _address(pg))
    session = Session()
    params = {"user": user, "database": "postgres", "application_name": application_name}
    drive(session.startup(params, pg.role(user).password), ws)
    return ws, session


def _active_query(pg: EmbeddedPostgres, application_name: str) -> bool:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND state = 'active'", (application_name,)
        ).fetchone()
    return bool(row and row[0])


def test_cancel_request_on_a_second_websocket_cancels_the_query(proxy: DevStack) -> None:
    name = f"ws-cancel-{uuid.uuid4().hex[:8]}"
    ws, session = _login_as(proxy, name)
    conn = session.conn
    assert conn.process_id is not None and conn.secret_key is not None
    ws.send(conn.send_query("SELECT pg_sleep(30)"))
    assert _wait_until(lambda: _active_query(proxy.pg, name))
    # A wrong secret cancels nothing.
    other = WsClient(proxy.port, _address(proxy.pg))
    other.send(msg.cancel_request(conn.process_id, conn.secret_key ^ 1))
    assert other.receive() == b""
    other.close()
    time.sleep(0.3)
    assert _active_query(proxy.pg, name)
    started = time.monotonic()
    other = WsClient(proxy.port, _address(proxy.pg))
    other.send(msg.cancel_request(conn.process_id, conn.secret_key))
    assert other.receive() == b""
    other.close()
    seen = events_until(conn, ws, ev.ReadyForQuery)
    errors = [e for e in seen if isinstance(e, ev.ErrorResponse)]
    assert errors and errors[0].fields["C"] == "57014"
    assert time.monotonic() - started < 10
    assert drive(session.simple_query("SELECT 'after cancel'", mode="list"), ws)[-1].rows == [["after cancel"]]
    ws.close()


def test_cancel_request_over_plain_tcp_to_the_proxy_port(proxy: DevStack) -> None:
    name = f"ws-cancel-tcp-{uuid.uuid4().hex[:8]}"
    ws, session = _login_as(proxy, name)
    conn = session.conn
    ws.send(conn.send_query("SELECT pg_sleep(30)"))
    assert _wait_until(lambda: _active_query(proxy.pg, name))
    assert conn.process_id is not None and conn.secret_key is not None
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(msg.cancel_request(conn.process_id, conn.secret_key))
        assert sock.recv(16) == b""
    errors = [e for e in events_until(conn, ws, ev.ReadyForQuery) if isinstance(e, ev.ErrorResponse)]
    assert errors and errors[0].fields["C"] == "57014"
    ws.close()


def test_client_vanishing_mid_query_cancels_it_and_closes_the_backend(proxy: DevStack) -> None:
    name = f"ws-vanish-{uuid.uuid4().hex[:8]}"
    ws, session = _login_as(proxy, name)
    ws.send(session.conn.send_query("SELECT pg_sleep(60)"))
    assert _wait_until(lambda: _active_query(proxy.pg, name))
    ws.drop()
    # pg_sleep never notices a closed socket by itself: only the proxy's cancel ends it this soon.
    assert _wait_until(lambda: not _backend_pids(proxy.pg, name), timeout=10)
    _still_serving(proxy)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("ending", ["terminate", "close", "drop"])
def test_no_backend_outlives_its_websocket(proxy: DevStack, ending: str) -> None:
    # The proxy runs in this process: its descriptors are ours to count.
    _still_serving(proxy)
    fds = _open_fds()
    name = f"ws-leak-{ending}-{uuid.uuid4().hex[:8]}"
    sessions = [_login_as(proxy, name, user) for user in ("scram_user", "md5_user", "cleartext_user")]
    assert len(_backend_pids(proxy.pg, name)) == 3
    for ws, session in sessions:
        if ending == "terminate":
            ws.send(session.terminate())
            ws.close()
        elif ending == "close":
            ws.close()
        else:
            ws.drop()
    assert _wait_until(lambda: not _backend_pids(proxy.pg, name), timeout=10)
    assert _wait_until(lambda: proxy.server.websocket.active == 0, timeout=10)
    assert _wait_until(lambda: _open_fds() <= fds, timeout=10), (fds, _open_fds())


def test_plain_tcp_postgres_client_through_the_proxy_port(proxy: DevStack) -> None:
    """libpq (psycopg) on the proxy's port: auth mode over TCP, cancel included."""
    pg = proxy.pg
    dsn = f"host=127.0.0.1 port={proxy.port} user=md5_user password={pg.role('md5_user').password} dbname=postgres sslmode=disable"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("md5_user",)
        assert conn.info.backend_pid not in [r[0] for r in psycopg.connect(pg.dsn()).execute("SELECT pid FROM pg_stat_activity").fetchall()]
        # cancel_safe: the blocking PQcancel would hold the GIL the in-process proxy needs.
        timer = threading.Timer(0.5, conn.cancel_safe)
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        timer.join()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn.replace(pg.role("md5_user").password or "", "wrong"))


# ---------------------------------------------------------------- limits, timeouts, upstream down, wss


@pytest.fixture(scope="module")
def tight_proxy(pg: EmbeddedPostgres) -> Iterator[DevStack]:
    config = ProxyConfig(
        listen_port=0, shutdown_timeout=5.0, ws_handshake_timeout=0.5, ws_idle_timeout=1.0, ws_max_connections=2
    )
    with DevStack(postgres=pg, config=config) as stack:
        yield stack


def test_handshake_timeout(tight_proxy: DevStack) -> None:
    ws = WsClient(tight_proxy.port, _address(tight_proxy.pg))
    started = time.monotonic()
    error = _expect_fatal(ws)
    assert "timed out" in error.fields["M"] and time.monotonic() - started < 5
    ws.close()


def test_idle_timeout_closes_an_idle_session_but_not_a_long_query(tight_proxy: DevStack) -> None:
    ws, session = _login(tight_proxy)
    # A query running longer than the idle timeout is not idleness.
    assert drive(session.simple_query("SELECT pg_sleep(1.5), 'slow'", mode="list"), ws)[-1].rows == [["", "slow"]]
    started = time.monotonic()
    assert ws.receive() == b""
    assert ws.close_code == 1001 and ws.close_reason == "idle timeout"
    assert 0.5 < time.monotonic() - started < 5
    ws.close()


def test_connection_limit(tight_proxy: DevStack) -> None:
    first, _ = _login(tight_proxy)
    second, _ = _login(tight_proxy)
    with pytest.raises(Rejected) as info:
        WsClient(tight_proxy.port, _address(tight_proxy.pg))
    assert info.value.status == 503
    first.close()
    assert _wait_until(lambda: tight_proxy.server.websocket.active < 2)
    third, session = _login(tight_proxy)
    assert drive(session.simple_query("SELECT 3", mode="list"), third)[-1].rows == [[3]]
    second.close()
    third.close()


def test_upstream_down_gets_a_clear_error(pg: EmbeddedPostgres) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    config = ProxyConfig(listen_port=0, upstream=f"postgres://127.0.0.1:{dead_port}?sslmode=disable", connect_timeout=3)
    with ProxyThread(config) as proxy:
        ws = WsClient(proxy.port, f"/v2?address=localhost:{dead_port}")
        session = Session()
        with pytest.raises(OperationalError) as info:
            drive(session.startup({"user": "u", "database": "d"}, "pw"), ws)
        assert info.value.sqlstate == "08001"
        assert "could not connect to the database server" in str(info.value)
        ws.close()


def test_wss_with_tls_cert_and_key(pg: EmbeddedPostgres) -> None:
    assert pg.server_cert_path and pg.server_key_path and pg.ca_cert_path
    config = ProxyConfig(listen_port=0, shutdown_timeout=5.0, tls_cert=pg.server_cert_path, tls_key=pg.server_key_path)
    with DevStack(postgres=pg, config=config) as stack:
        context = ssl.create_default_context(cafile=pg.ca_cert_path)
        ws = WsClient(stack.port, _address(pg), tls=context)
        session = Session()
        drive(session.startup({"user": "scram_user", "database": "postgres"}, pg.role("scram_user").password), ws)
        assert drive(session.simple_query("SELECT 'over wss'", mode="list"), ws)[-1].rows == [["over wss"]]
        ws.close()


# ---------------------------------------------------------------- routing, upstream ends, shutdown


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_endpoint_table_routes_by_address_and_options(pg: EmbeddedPostgres) -> None:
    from neon_proxy.testing import upstream_url

    dead = f"postgres://127.0.0.1:{_dead_port()}?sslmode=disable"
    config = ProxyConfig(listen_port=0, upstream=upstream_url(pg), endpoints={"elsewhere": dead}, connect_timeout=3)
    with ProxyThread(config) as proxy:
        password = pg.role("scram_user").password
        assert password is not None
        for target, params, given in [
            ("/v2?address=elsewhere.example.com:5432", {}, password),
            ("/v2?address=localhost:5432", {"options": "endpoint=elsewhere"}, password),
            ("/v2?address=localhost:5432", {}, f"endpoint=elsewhere;{password}"),
        ]:
            ws = WsClient(proxy.port, target)
            with pytest.raises(OperationalError) as info:
                drive(Session().startup({"user": "scram_user", "database": "postgres", **params}, given), ws)
            assert info.value.sqlstate == "08001", target
            ws.close()
        # The password form routes and is then stripped: the upstream sees the real password.
        ws = WsClient(proxy.port, "/v2?address=localhost:5432")
        drive(Session().startup({"user": "scram_user", "database": "postgres"}, f"endpoint=main${password}"), ws)
        ws.close()
        ws = WsClient(proxy.port, "/v2?address=anything.example.com:5432")
        session = Session()
        drive(session.startup({"user": "scram_user", "database": "postgres", "options": "-c search_path=pg_catalog"}, password), ws)
        assert drive(session.simple_query("SHOW search_path", mode="list"), ws)[-1].rows == [["pg_catalog"]]
        ws.close()


def test_upstream_ending_the_session_reaches_the_client(proxy: DevStack) -> None:
    ws, session = _login(proxy)
    upstream_pid = drive(session.simple_query("SELECT pg_backend_pid()", mode="list"), ws)[-1].rows[0][0]
    with psycopg.connect(proxy.pg.dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (upstream_pid,))
    conn = session.conn
    seen = events_until(conn, ws, ev.ErrorResponse)
    assert isinstance(seen[-1], ev.ErrorResponse) and seen[-1].fields["C"] == "57P01"
    assert ws.receive() == b""
    ws.close()


def test_shutdown_closes_idle_sessions_and_lets_running_queries_finish(pg: EmbeddedPostgres) -> None:
    stack = DevStack(postgres=pg, config=ProxyConfig(listen_port=0, shutdown_timeout=30.0)).start()
    try:
        idle_ws, _ = _login(stack)
        busy_ws, busy = _login(stack)
        busy_ws.send(busy.conn.send_query("SELECT pg_sleep(1), 'finished'"))
        time.sleep(0.2)
        started = time.monotonic()
        assert stack.proxy is not None
        stopper = threading.Thread(target=stack.proxy.stop)
        stopper.start()
        assert idle_ws.receive() == b"" and idle_ws.close_code == 1001
        assert idle_ws.close_reason == "server shutting down"
        rows = [e for e in events_until(busy.conn, busy_ws, ev.ReadyForQuery) if isinstance(e, ev.DataRows)]
        assert rows[0].rows == [[b"", b"finished"]]
        assert busy_ws.receive() == b"" and busy_ws.close_code == 1001
        stopper.join(10)
        assert not stopper.is_alive() and time.monotonic() - started < 10
        idle_ws.close()
        busy_ws.close()
    finally:
        stack.stop()


# ---------------------------------------------------------------- neon_proto's client tunnel (branch ws-client)


class _TunnelClient:
    """neon_proto.websocket.WebSocketTunnel over a blocking socket: the sans-IO client the bindings use."""

    def __init__(self, port: int, resource: str) -> None:
        from neon_proto.options import WebSocketTarget
        from neon_proto.websocket import WebSocketTunnel

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.tunnel = WebSocketTunnel(WebSocketTarget(False, "127.0.0.1", port, resource))
        self.sock.sendall(self.tunnel.start())
        while not self.tunnel.handshake_complete:
            self.tunnel.receive_data(self.sock.recv(65536))

    def _receive(self) -> bytes:
        while True:
            data = self.tunnel.read()
            if data is not None:
                return data
            self.tunnel.receive_data(self.sock.recv(65536))
            owed = self.tunnel.data_to_send()
            if owed:
                self.sock.sendall(owed)

    def drive(self, op: Any) -> Any:
        out = op.send(None)
        try:
            while True:
                if out is None:
                    out = op.send(self._receive())
                else:
                    if out:
                        self.sock.sendall(self.tunnel.send(out))
                    out = op.send(None)
        except StopIteration as stop:
            return stop.value

    def close(self) -> None:
        self.sock.sendall(self.tunnel.close())
        self.sock.close()


@pytest.mark.parametrize("pipeline", ["password", False])
@pytest.mark.parametrize("user", ["scram_user", "md5_user"])
def test_neon_proto_client_tunnel_against_the_proxy(proxy: DevStack, pipeline: Any, user: str) -> None:
    pg = proxy.pg
    client = _TunnelClient(proxy.port, _address(pg))
    session = Session()
    client.drive(session.startup({"user": user, "database": "postgres"}, pg.role(user).password, pipeline=pipeline))
    results = client.drive(session.simple_query("SELECT current_user, 'tunnel'", mode="list"))
    assert results[-1].rows == [[user, "tunnel"]]
    client.close()


@pytest.mark.parametrize("pipeline", ["password", False])
def test_neon_proto_client_tunnel_bad_password(proxy: DevStack, pipeline: Any) -> None:
    client = _TunnelClient(proxy.port, _address(proxy.pg))
    session = Session()
    with pytest.raises(OperationalError) as info:
        client.drive(session.startup({"user": "scram_user", "database": "postgres"}, "wrong", pipeline=pipeline))
        client.drive(session.simple_query("SELECT 1", mode="list"))
    assert info.value.sqlstate == "28P01"
    client.close()


# ---------------------------------------------------------------- command line


def test_cli_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from neon_proxy.__main__ import build_parser, config_from_args

    argv = ["--upstream", "postgres://db:5432", "--ws-relay", "--ws-relay-allow", "db:5432", "--ws-relay-allow",
            "*.example.com:5432", "--ws-max-connections", "7", "--ws-handshake-timeout", "2.5", "--ws-idle-timeout", "30"]
    config = config_from_args(build_parser().parse_args(argv))
    assert config.ws_relay and config.ws_relay_allow == ("db:5432", "*.example.com:5432")
    assert (config.ws_max_connections, config.ws_handshake_timeout, config.ws_idle_timeout) == (7, 2.5, 30.0)
    defaults = config_from_args(build_parser().parse_args(["--upstream", "postgres://db:5432"]))
    assert not defaults.ws_relay and defaults.ws_relay_allow == () and defaults.ws_max_connections == 1000
    monkeypatch.setenv("NEON_PROXY_WS_RELAY", "1")
    monkeypatch.setenv("NEON_PROXY_WS_RELAY_ALLOW", "a:1 b:2")
    monkeypatch.setenv("NEON_PROXY_WS_IDLE_TIMEOUT", "12")
    config = config_from_args(build_parser().parse_args(["--upstream", "postgres://db:5432"]))
    assert config.ws_relay and config.ws_relay_allow == ("a:1", "b:2") and config.ws_idle_timeout == 12.0
    with pytest.raises(ValueError, match="ws_max_connections must be positive"):
        config_from_args(build_parser().parse_args(["--upstream", "postgres://db:5432", "--ws-max-connections", "0"]))


def test_relay_allowlist_matching() -> None:
    from neon_proxy.websocket import address_allowed, parse_address

    allowed = ("db.internal:5432", "*.neon.tech:5432", "[::1]:5433")
    assert address_allowed(*parse_address("db.internal:5432"), allowed)
    assert address_allowed(*parse_address("ep-1.us-east-2.aws.neon.tech:5432"), allowed)
    assert address_allowed(*parse_address("[::1]:5433"), allowed)
    assert not address_allowed(*parse_address("neon.tech:5432"), allowed)
    assert not address_allowed(*parse_address("evil.neon.tech.example.com:5432"), allowed)
    assert not address_allowed(*parse_address("db.internal:5433"), allowed)
    for bad in ("db.internal", "db.internal:0", "db.internal:99999", ":5432", "user@db:5432", "db/x:5432"):
        with pytest.raises(ValueError):
            parse_address(bad)
