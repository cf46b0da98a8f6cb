"""neon_proto.backend (the server side of startup) against neon_proto's FrontendConnection, in memory."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from neon_proto import backend as be
from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.errors import Diagnostic, LocalProtocolError, OperationalError, ProgrammingError, RemoteProtocolError
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from neon_proto.session import Session


def backend_events(server: be.BackendConnection, data: bytes = b"") -> list[Any]:
    if data:
        server.receive_data(data)
    out = []
    while True:
        event = server.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if isinstance(event, (be.ClientEndOfStream, be.CancelRequest, be.Terminate)):
            return out
        if server.state is not be.BackendState.STARTUP and server.state is not be.BackendState.PASSWORD_REQUESTED:
            return out


def frontend_events(client: FrontendConnection, data: bytes) -> list[Any]:
    client.receive_data(data)
    out = []
    while True:
        event = client.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)


class OpPipe:
    """Drives a frontend operation (the startup every binding runs) against the backend machine."""

    def __init__(self, op: Any) -> None:
        self.op = op
        self.out = op.send(None)

    def sent(self) -> bytes:
        """What the operation wrote before it waited for the server."""
        data = b""
        while self.out is not None:
            data += self.out
            self.out = self.op.send(None)
        return data

    def reply(self, data: bytes) -> bool:
        """Give the operation the server's bytes; True once it finished."""
        try:
            self.out = self.op.send(data)
        except StopIteration:
            return True
        return False


def greet(server: be.BackendConnection, parameters: dict[str, str] | None = None, status: str = "I") -> bytes:
    out = server.send_authentication_ok()
    for name, value in (parameters or {"server_version": "15.0", "client_encoding": "UTF8"}).items():
        out += server.send_parameter_status(name, value)
    out += server.send_backend_key_data(1234, -5678)
    return out + server.send_ready_for_query(status)


def test_startup_password_and_greeting() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    [startup] = backend_events(server, client.send_startup({"user": "alice", "database": "app", "application_name": "t"}))
    assert startup == be.StartupMessage(0, {"user": "alice", "database": "app", "application_name": "t"})
    assert startup.user == "alice" and startup.database == "app" and startup.parameters["application_name"] == "t"
    assert server.state is be.BackendState.STARTUP_RECEIVED
    assert frontend_events(client, server.request_password()) == [ev.AuthenticationCleartextPassword()]
    [password] = backend_events(server, client.send_password("s3cret"))
    assert password == be.PasswordMessage("s3cret")
    assert "s3cret" not in repr(password)
    events = frontend_events(client, greet(server))
    assert events[0] == ev.AuthenticationOk()
    assert ev.ParameterStatus("server_version", "15.0") in events
    assert events[-2:] == [ev.BackendKeyData(1234, -5678), ev.ReadyForQuery("I")]
    assert client.state is State.READY and client.process_id == 1234 and client.secret_key == -5678
    assert server.state is be.BackendState.READY
    assert server.trailing_data == (b"", False)


def test_session_startup_generator_logs_in_through_the_backend() -> None:
    """The client's own startup op (the one every binding runs) completes against the machine."""
    session, server = Session(), be.BackendConnection()
    pipe = OpPipe(session.startup({"user": "bob", "database": "db"}, "pw"))
    [startup] = backend_events(server, pipe.sent())
    assert isinstance(startup, be.StartupMessage)
    assert not pipe.reply(server.request_password())
    [password] = backend_events(server, pipe.sent())
    assert password.password == "pw"
    assert pipe.reply(greet(server))
    assert session.idle and session.conn.parameters["server_version"] == "15.0"


def test_pipelined_flight_leaves_the_first_query_in_trailing_data() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    query = msg.query_message("SELECT 1")
    flight = client.send_startup({"user": "u"}) + client.send_password("pw") + query
    [startup] = backend_events(server, flight)
    assert isinstance(startup, be.StartupMessage) and startup.database == "u"
    with pytest.raises(LocalProtocolError):
        server.next_event()  # the password is not read before it was asked for
    server.request_password()
    [password] = backend_events(server)
    assert password.password == "pw"
    greet(server)
    assert server.trailing_data == (query, False)


def test_password_split_across_many_reads() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    flight = client.send_startup({"user": "u", "database": "d"}) + msg.password_message("päss")
    events: list[Any] = []
    for i in range(len(flight)):
        server.receive_data(flight[i : i + 1])
        while server.state is not be.BackendState.AUTHENTICATING:
            event = server.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
            if isinstance(event, be.StartupMessage):
                server.request_password()
    assert [type(e) for e in events] == [be.StartupMessage, be.PasswordMessage]
    assert events[1].password == "päss"


def test_ssl_and_gssenc_requests_are_refused_then_startup_goes_on() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    assert backend_events(server, client.send_ssl_request()) == [be.SSLRequest()]
    assert frontend_events(client, server.send_encryption_refusal()) == [ev.SSLResponse(False)]
    assert backend_events(server, struct.pack("!ii", 8, 80877104)) == [be.GSSENCRequest()]
    assert server.send_encryption_refusal() == b"N"
    [startup] = backend_events(server, client.send_startup({"user": "u"}))
    assert isinstance(startup, be.StartupMessage)
    with pytest.raises(LocalProtocolError):
        server.send_encryption_refusal()


def test_bytes_behind_an_ssl_request_are_refused() -> None:
    server = be.BackendConnection()
    with pytest.raises(RemoteProtocolError, match="unencrypted data"):
        server.receive_data(msg.SSL_REQUEST + b"\x00\x00\x00\x08")
        server.next_event()


def test_cancel_request() -> None:
    server = be.BackendConnection()
    [cancel] = backend_events(server, msg.cancel_request(42, -7))
    assert cancel == be.CancelRequest(42, -7)
    assert "-7" not in repr(cancel)
    assert server.state is be.BackendState.CLOSED


def test_newer_minor_version_gets_negotiate_protocol_version() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    body = struct.pack("!i", (3 << 16) | 2) + b"user\x00u\x00_pq_.compression\x00on\x00\x00"
    [startup] = backend_events(server, struct.pack("!i", len(body) + 4) + body)
    assert startup.minor_version == 2 and startup.protocol_options == ("_pq_.compression",)
    assert "_pq_.compression" not in startup.parameters
    client.send_startup({"user": "u"})  # the frontend machine's state only
    events = frontend_events(client, server.request_password())
    assert events == [ev.NegotiateProtocolVersion(0, ("_pq_.compression",)), ev.AuthenticationCleartextPassword()]


def test_plain_3_0_gets_no_negotiation() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    backend_events(server, client.send_startup({"user": "u"}))
    assert server.request_password() == b"R\x00\x00\x00\x08\x00\x00\x00\x03"


@pytest.mark.parametrize(
    ("packet", "match", "code"),
    [
        (struct.pack("!ii", 8, 2 << 16), "unsupported frontend protocol 2.0", "0A000"),
        (struct.pack("!ii", 8, 4 << 16), "unsupported frontend protocol 4.0", "0A000"),
        (struct.pack("!i", 3), "invalid length of startup packet", "08P01"),
        (struct.pack("!i", 1 << 20), "invalid length of startup packet", "08P01"),
        (struct.pack("!ii", 9, 3 << 16) + b"\x00", "no PostgreSQL user name", "28000"),
        (struct.pack("!ii", 13, 3 << 16) + b"user\x00", "invalid startup packet layout", "08P01"),
        (struct.pack("!ii", 9, 80877103) + b"x", "invalid length of encryption request", "08P01"),
        (struct.pack("!ii", 12, 80877102) + b"\x00\x00\x00\x01", "invalid length of cancel request", "08P01"),
        (b"GET / HTTP/1.1\r\n\r\n", "invalid length of startup packet", "08P01"),
    ],
)
def test_malformed_first_packets_get_a_fatal_error(packet: bytes, match: str, code: str) -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    with pytest.raises(RemoteProtocolError, match=match) as info:
        backend_events(server, packet)
    assert server.state is be.BackendState.ERROR
    answer = server.send_error(info.value.diag)
    client.send_startup({"user": "x"})
    [error] = frontend_events(client, answer)
    assert isinstance(error, ev.ErrorResponse)
    assert error.fields["C"] == code and error.fields["S"] == "FATAL" and match in error.fields["M"]


def test_something_else_than_a_password_is_refused() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    backend_events(server, client.send_startup({"user": "u"}))
    server.request_password()
    with pytest.raises(RemoteProtocolError, match="expected password response, got message type 'Q'"):
        backend_events(server, msg.query_message("SELECT 1"))


def test_pipelined_scram_answer_gets_a_clear_error() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    backend_events(server, client.send_startup({"user": "u"}))
    server.request_password()
    with pytest.raises(RemoteProtocolError, match="expected a cleartext password, got a SASL response") as info:
        backend_events(server, msg.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc"))
    assert info.value.diag.code == "28000"


def test_oversized_password_message_is_refused_before_buffering() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    backend_events(server, client.send_startup({"user": "u"}))
    server.request_password()
    with pytest.raises(RemoteProtocolError, match="invalid password message length"):
        backend_events(server, b"p" + struct.pack("!i", 10_000_000))


def test_terminate_and_eof_during_startup() -> None:
    client, server = FrontendConnection(), be.BackendConnection()
    backend_events(server, client.send_startup({"user": "u"}))
    server.request_password()
    assert backend_events(server, msg.TERMINATE) == [be.Terminate()]
    server = be.BackendConnection()
    server.receive_data(b"")
    assert server.next_event() == be.ClientEndOfStream()
    server = be.BackendConnection()
    server.receive_data(b"\x00\x00")
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        server.next_event()


def test_upstream_error_reaches_the_client_with_every_field() -> None:
    session, server = Session(), be.BackendConnection()
    pipe = OpPipe(session.startup({"user": "carol"}, "wrong"))
    backend_events(server, pipe.sent())
    pipe.reply(server.request_password())
    backend_events(server, pipe.sent())
    diag = Diagnostic(
        severity="FATAL",
        severity_local="FATAL",
        code="28P01",
        message='password authentication failed for user "carol"',
        file="auth.c",
        line="326",
        routine="auth_failed",
    )
    with pytest.raises(OperationalError) as info:
        pipe.reply(server.send_error(diag))
    assert info.value.sqlstate == "28P01"
    assert info.value.diag == diag
    assert server.state is be.BackendState.CLOSED


def test_unknown_database_error_maps_to_its_class() -> None:
    session, server = Session(), be.BackendConnection()
    pipe = OpPipe(session.startup({"user": "u", "database": "nope"}, "pw"))
    backend_events(server, pipe.sent())
    with pytest.raises(ProgrammingError) as info:
        pipe.reply(server.send_error({"S": "FATAL", "V": "FATAL", "C": "3D000", "M": 'database "nope" does not exist'}))
    assert info.value.sqlstate == "3D000"


def test_sending_out_of_order_is_a_local_error() -> None:
    server = be.BackendConnection()
    for call in (server.request_password, server.send_authentication_ok, lambda: server.send_ready_for_query("I")):
        with pytest.raises(LocalProtocolError):
            call()
    client = FrontendConnection()
    backend_events(server, client.send_startup({"user": "u"}))
    server.request_password()
    backend_events(server, msg.password_message("x"))
    server.send_authentication_ok()
    with pytest.raises(LocalProtocolError):
        server.send_ready_for_query("X")
    with pytest.raises(LocalProtocolError):
        server.send_parameter_status("bad\x00name", "v")
