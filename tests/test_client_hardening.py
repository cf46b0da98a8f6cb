"""neon_sync's Client against misbehaving servers: a timeout bounds the whole call; protocol errors are raised at once.

The hostile servers are scripted (tests/hostile_server.py: real wire bytes, just enough
of them); the ordinary cancel path runs against the real Postgres.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

import pytest

from neon_proto.deadlines import CANCEL_GRACE, QueryDeadline
from neon_proto.errors import ConnectionClosed, QueryCanceled, RemoteProtocolError
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres
from tests.hostile_server import HostileServer, Scenario, message, row_description

SLACK = 1.0


def stops_mid_row(server: HostileServer) -> Scenario:
    def scenario(sock: socket.socket, _query: bytes) -> None:
        sock.sendall(row_description("n") + message(b"D", b"\x00\x01\x00\x00\x00\x04")[:9])  # half a DataRow
        server.wait(60)

    return scenario


def answers_with_copy_in(server: HostileServer) -> Scenario:
    def scenario(sock: socket.socket, _query: bytes) -> None:
        sock.sendall(message(b"G", b"\x00\x00\x01\x00\x00"))
        server.wait(60)

    return scenario


def hostile(make_scenario: Callable[[HostileServer], Scenario], *, cancel_closes: bool = True) -> HostileServer:
    server = HostileServer(lambda sock, query: None, cancel_closes=cancel_closes)
    server.scenario = make_scenario(server)
    return server


@pytest.mark.parametrize("params", [None, [1]], ids=["simple", "extended"])
def test_timeout_bounds_the_call_against_a_server_that_stops_mid_row(params: list[int] | None) -> None:
    with hostile(stops_mid_row) as server, Client(server.dsn) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed, match="did not confirm the cancel"):
            client.query("SELECT $1::int AS n" if params else "SELECT 1 AS n", params, timeout=0.3)
        elapsed = time.monotonic() - started
        assert elapsed < 0.3 + CANCEL_GRACE + SLACK, elapsed
        assert elapsed >= 0.3 + CANCEL_GRACE - 0.2, "the grace is for the server to confirm: it is waited"
        assert server.cancels == 1
        assert client.closed


def test_timeout_bounds_the_call_when_the_cancel_connection_hangs_too() -> None:
    with hostile(stops_mid_row, cancel_closes=False) as server, Client(server.dsn) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            client.query("SELECT 1 AS n", timeout=0.3)
        assert time.monotonic() - started < 0.3 + CANCEL_GRACE + SLACK
        assert client.closed


@pytest.mark.parametrize("params", [None, [1]], ids=["simple", "extended"])
def test_copy_in_response_to_a_select_is_a_protocol_error_at_once(params: list[int] | None) -> None:
    with hostile(answers_with_copy_in) as server, Client(server.dsn) as client:
        started = time.monotonic()
        with pytest.raises(RemoteProtocolError, match="not a COPY"):
            client.query("SELECT $1::int" if params else "SELECT 1", params)
        assert time.monotonic() - started < SLACK
        assert client.closed


def test_timeout_against_real_postgres_cancels_and_keeps_the_connection(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn()) as client:
        started = time.monotonic()
        with pytest.raises(QueryCanceled):
            client.query("SELECT pg_sleep(10)", timeout=0.3)
        assert time.monotonic() - started < 0.3 + CANCEL_GRACE
        assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_query_deadline_cancels_then_abandons() -> None:
    deadline = QueryDeadline(100.0, 1.5, grace=2.0)
    assert deadline.wake_at == 101.5
    assert deadline.expire() == "cancel"
    assert deadline.wake_at == 103.5
    assert deadline.expire() == "abandon"
    assert "1.5 s timeout" in str(deadline.abandon_error())
    with pytest.raises(ValueError):
        QueryDeadline(0.0, 0.0)
