"""Pipelined startup in neon_proto, client and server machines linked in memory (no network).

The client's Session against neon_proto.backend's BackendConnection: the first query leaves
before the server answered the login, startup finishes behind it, and a failed login or a
server asking for another method surfaces at that query.
"""

from __future__ import annotations

import struct

import pytest

from neon_proto.auth import AuthMethodMemory
from neon_proto.backend import BackendConnection, PasswordMessage, StartupMessage
from neon_proto.frontend import NEED_DATA, State
from neon_proto.session import Session
from neon_proto.sqlstate import InvalidPassword
from neon_proto.startup import AuthPipelineMismatch


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def select_one_results() -> bytes:
    """What a server answers to Parse/Bind/Describe/Execute/Sync of ``SELECT 1 AS one``."""
    field = b"one\x00" + struct.pack("!ihihih", 0, 0, 23, 4, -1, 0)
    return (
        message(b"1")
        + message(b"2")
        + message(b"T", struct.pack("!h", 1) + field)
        + message(b"D", struct.pack("!hi", 1, 1) + b"1")
        + message(b"C", b"SELECT 1\x00")
        + message(b"Z", b"I")
    )


def login_ok() -> bytes:
    """AuthenticationOk, a ParameterStatus, BackendKeyData and ReadyForQuery."""
    return (
        message(b"R", struct.pack("!i", 0))
        + message(b"S", b"server_version\x0015.0\x00")
        + message(b"K", struct.pack("!ii", 42, 4242))
        + message(b"Z", b"I")
    )


def start_pipelined(session: Session, password: str, methods: AuthMethodMemory | None = None) -> bytes:
    """Run a pipelined startup: it returns after its one flight."""
    op = session.startup({"user": "alice", "database": "db"}, password, pipeline="password", methods=methods, server="s")
    flight = next(op)
    with pytest.raises(StopIteration):
        op.send(None)
    return flight


def test_the_first_query_leaves_before_the_login_is_answered() -> None:
    session = Session()
    flight = start_pipelined(session, "secret")
    assert session.conn.startup_in_background and session.idle
    query = session.execute("SELECT 1 AS one", [])
    query_bytes = next(query)
    # The server gets the whole flight and the query at once.
    server = BackendConnection()
    server.receive_data(flight + query_bytes)
    startup = server.next_event()
    assert isinstance(startup, StartupMessage) and startup.parameters["user"] == "alice"
    answer = server.request_password()
    password = server.next_event()
    assert isinstance(password, PasswordMessage) and password.password == "secret"
    trailing, _ = server.trailing_data
    assert trailing == query_bytes  # the query waits behind the password, for the relay
    # Login and results arrive together; the query's op reads through the login.
    assert query.send(None) is None
    with pytest.raises(StopIteration) as done:
        query.send(answer + login_ok() + select_one_results())
    assert done.value.value.rows == [{"one": 1}]
    assert session.conn.state is State.READY
    assert session.conn.process_id == 42
    assert session.conn.parameters["server_version"] == "15.0"
    assert not session.conn.startup_in_background


def test_a_failed_login_surfaces_at_the_first_query_with_its_class() -> None:
    session = Session()
    flight = start_pipelined(session, "wrong")
    query = session.execute("SELECT 1", [])
    server = BackendConnection()
    server.receive_data(flight + next(query))
    assert isinstance(server.next_event(), StartupMessage)
    answer = server.request_password()
    assert isinstance(server.next_event(), PasswordMessage)
    failure = server.send_error({"S": "FATAL", "V": "FATAL", "C": "28P01", "M": 'password authentication failed for user "alice"'})
    query.send(None)
    with pytest.raises(InvalidPassword) as info:
        query.send(answer + failure)
    assert info.value.sqlstate == "28P01"
    assert session.closed


def test_a_server_asking_for_another_method_is_reported_and_remembered() -> None:
    session = Session()
    methods = AuthMethodMemory()
    start_pipelined(session, "secret", methods)
    query = session.execute("SELECT 1", [])
    next(query)
    query.send(None)
    md5_request = message(b"R", struct.pack("!i", 5) + b"salt")
    with pytest.raises(AuthPipelineMismatch, match="MD5") as info:
        query.send(md5_request)
    assert info.value.asked == "md5"
    assert methods.get("s", "alice") == "md5"


def test_finish_startup_waits_for_the_backend_key() -> None:
    session = Session()
    start_pipelined(session, "secret")
    op = session.finish_startup()
    assert next(op) is None
    server_bytes = message(b"R", struct.pack("!i", 3)) + login_ok()
    with pytest.raises(StopIteration):
        op.send(server_bytes)
    assert session.conn.process_id == 42 and session.idle


def test_the_startup_messages_split_anywhere_still_finish_the_login() -> None:
    stream = message(b"R", struct.pack("!i", 3)) + login_ok() + select_one_results()
    for cut in range(1, len(stream)):
        session = Session()
        start_pipelined(session, "secret")
        query = session.execute("SELECT 1 AS one", [])
        next(query)
        assert query.send(None) is None
        assert query.send(stream[:cut]) is None
        with pytest.raises(StopIteration) as done:
            query.send(stream[cut:])
        assert done.value.value.rows == [{"one": 1}]
