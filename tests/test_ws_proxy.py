"""neon_proxy's WebSocket endpoint against the real Postgres, byte by byte (wsproto + FrontendConnection)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from neon_proto import events as ev
from neon_proto.errors import OperationalError, ProgrammingError
from neon_proto.frontend import FrontendConnection, State
from neon_proto.session import Session
from neon_proxy.config import ProxyConfig
from neon_proxy.testing import DevStack
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


def test_relay_mode_carries_the_protocol_with_the_clients_own_scram(relay_proxy: DevStack) -> None:
    pg = relay_proxy.pg
    ws = WsClient(relay_proxy.port, f"/v2?address={pg.host}:{pg.port}")
    session = Session()
    drive(session.startup({"user": "scram_user", "database": "postgres"}, pg.role("scram_user").password), ws)
    results = drive(session.simple_query("SELECT current_user", mode="list"), ws)
    assert results[-1].rows == [["scram_user"]]
    ws.send(session.terminate())
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
