"""The sans-IO frontend machine, fed hand-built backend bytes: events, states and misuse."""

from __future__ import annotations

import struct
from typing import Any, Callable

import pytest

from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.errors import DataError, LocalProtocolError, RemoteProtocolError
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from neon_proto.sqlstate import UniqueViolation

# ---------------------------------------------------------------- backend message builders


def backend(type_byte: bytes, body: bytes = b"") -> bytes:
    return type_byte + struct.pack("!i", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def auth(code: int, extra: bytes = b"") -> bytes:
    return backend(b"R", struct.pack("!i", code) + extra)


def parameter_status(name: str, value: str) -> bytes:
    return backend(b"S", cstr(name) + cstr(value))


def backend_key_data(pid: int, key: int) -> bytes:
    return backend(b"K", struct.pack("!ii", pid, key))


def ready_for_query(status: bytes = b"I") -> bytes:
    return backend(b"Z", status)


def row_description(*columns: tuple[str, int]) -> bytes:
    body = struct.pack("!H", len(columns))
    for i, (name, oid) in enumerate(columns, 1):
        body += cstr(name) + struct.pack("!IhIhih", 16384, i, oid, 4, -1, 0)
    return backend(b"T", body)


def data_row(*cells: bytes | None) -> bytes:
    body = struct.pack("!H", len(cells))
    for cell in cells:
        body += b"\xff\xff\xff\xff" if cell is None else struct.pack("!i", len(cell)) + cell
    return backend(b"D", body)


def command_complete(tag: str) -> bytes:
    return backend(b"C", cstr(tag))


def fields_body(fields: dict[str, str]) -> bytes:
    return b"".join(code.encode() + cstr(value) for code, value in fields.items()) + b"\x00"


def error_response(**fields: str) -> bytes:
    return backend(b"E", fields_body(fields))


def notice_response(**fields: str) -> bytes:
    return backend(b"N", fields_body(fields))


def notification(pid: int, channel: str, payload: str) -> bytes:
    return backend(b"A", struct.pack("!i", pid) + cstr(channel) + cstr(payload))


def copy_response(type_byte: bytes, fmt: int, column_formats: tuple[int, ...]) -> bytes:
    return backend(type_byte, bytes([fmt]) + struct.pack(f"!H{len(column_formats)}h", len(column_formats), *column_formats))


STARTUP_OK = (
    auth(0)
    + parameter_status("server_version", "15.4")
    + parameter_status("TimeZone", "UTC")
    + backend_key_data(4242, 987654321)
    + ready_for_query(b"I")
)


# ---------------------------------------------------------------- helpers


def state(conn: FrontendConnection) -> State:
    """The machine's state (a function, so that type checkers do not narrow it between calls)."""
    return conn.state


def drain(conn: FrontendConnection) -> list[Any]:
    """Every event available now, up to NEED_DATA or END_OF_STREAM."""
    out: list[Any] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return out
        out.append(event)
        if event is ev.END_OF_STREAM:
            return out


def feed(conn: FrontendConnection, data: bytes) -> list[Any]:
    conn.receive_data(data)
    return drain(conn)


def authenticating() -> FrontendConnection:
    conn = FrontendConnection()
    conn.send_startup({"user": "alice", "database": "db"})
    return conn


def ready() -> FrontendConnection:
    conn = authenticating()
    feed(conn, STARTUP_OK)
    assert state(conn) is State.READY
    return conn


def busy() -> FrontendConnection:
    conn = ready()
    conn.send_query("SELECT 1")
    return conn


def flatten(events: list[Any]) -> list[Any]:
    """Events with DataRows batches split into one entry per row (batching depends on feeding)."""
    out: list[Any] = []
    for event in events:
        if isinstance(event, ev.DataRows):
            out.extend(("row", tuple(row)) for row in event.rows)
        else:
            out.append(event)
    return out


# ---------------------------------------------------------------- startup and authentication


def test_startup_message_carries_protocol_3_and_parameters() -> None:
    conn = FrontendConnection()
    data = conn.send_startup({"user": "alice", "database": "db"})
    length, version = struct.unpack("!ii", data[:8])
    assert length == len(data)
    assert version == 196608
    assert data[8:] == b"user\x00alice\x00database\x00db\x00\x00"
    assert state(conn) is State.AUTHENTICATING


def test_authentication_ok_moves_to_starting() -> None:
    conn = authenticating()
    assert feed(conn, auth(0)) == [ev.AuthenticationOk()]
    assert state(conn) is State.STARTING


def test_cleartext_password_request_is_an_event() -> None:
    conn = authenticating()
    assert feed(conn, auth(3)) == [ev.AuthenticationCleartextPassword()]
    assert state(conn) is State.AUTHENTICATING
    assert conn.send_password("secret") == backend(b"p", b"secret\x00")


def test_md5_password_request_carries_the_salt() -> None:
    conn = authenticating()
    assert feed(conn, auth(5, b"\x01\x02\x03\x04")) == [ev.AuthenticationMD5Password(b"\x01\x02\x03\x04")]


def test_sasl_request_lists_the_mechanisms() -> None:
    conn = authenticating()
    events = feed(conn, auth(10, cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\x00"))
    assert events == [ev.AuthenticationSASL(("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"))]


def test_sasl_continue_and_final_carry_their_data() -> None:
    conn = authenticating()
    events = feed(conn, auth(11, b"r=abc,s=xyz,i=4096") + auth(12, b"v=signature"))
    assert events == [ev.AuthenticationSASLContinue(b"r=abc,s=xyz,i=4096"), ev.AuthenticationSASLFinal(b"v=signature")]


def test_unsupported_authentication_method_is_a_remote_protocol_error() -> None:
    conn = authenticating()
    conn.receive_data(auth(7))  # GSS continue
    with pytest.raises(RemoteProtocolError, match="authentication method"):
        conn.next_event()
    assert state(conn) is State.ERROR


def test_parameter_status_updates_the_parameters() -> None:
    conn = authenticating()
    feed(conn, STARTUP_OK)
    assert conn.parameters == {"server_version": "15.4", "TimeZone": "UTC"}


def test_parameter_status_after_startup_updates_the_parameters() -> None:
    conn = ready()
    assert feed(conn, parameter_status("TimeZone", "Europe/Paris")) == [ev.ParameterStatus("TimeZone", "Europe/Paris")]
    assert conn.parameters["TimeZone"] == "Europe/Paris"


def test_backend_key_data_is_kept_for_cancel() -> None:
    conn = ready()
    assert conn.process_id == 4242
    assert conn.secret_key == 987654321


def test_backend_key_data_repr_hides_the_secret() -> None:
    assert "987654321" not in repr(ev.BackendKeyData(4242, 987654321))


def test_startup_events_in_order() -> None:
    conn = authenticating()
    assert feed(conn, STARTUP_OK) == [
        ev.AuthenticationOk(),
        ev.ParameterStatus("server_version", "15.4"),
        ev.ParameterStatus("TimeZone", "UTC"),
        ev.BackendKeyData(4242, 987654321),
        ev.ReadyForQuery("I"),
    ]
    assert state(conn) is State.READY


def test_negotiate_protocol_version_is_an_event_during_authentication() -> None:
    conn = authenticating()
    body = struct.pack("!ii", 0, 2) + cstr("_pq_.a") + cstr("_pq_.b")
    assert feed(conn, backend(b"v", body)) == [ev.NegotiateProtocolVersion(0, ("_pq_.a", "_pq_.b"))]
    assert state(conn) is State.AUTHENTICATING


def test_error_during_authentication_closes_the_connection() -> None:
    conn = authenticating()
    events = feed(conn, error_response(S="FATAL", V="FATAL", C="28P01", M="password authentication failed"))
    assert [e.sqlstate for e in events] == ["28P01"]
    assert state(conn) is State.CLOSED


def test_startup_message_refuses_a_nul_in_a_value() -> None:
    conn = FrontendConnection()
    with pytest.raises(DataError, match="NUL"):
        conn.send_startup({"user": "al\x00ice"})


# ---------------------------------------------------------------- SSLRequest


def test_ssl_request_accepted() -> None:
    conn = FrontendConnection()
    assert conn.send_ssl_request() == struct.pack("!ii", 8, 80877103)
    assert state(conn) is State.SSL_REQUESTED
    assert feed(conn, b"S") == [ev.SSLResponse(True)]
    assert state(conn) is State.STARTUP


def test_ssl_request_refused() -> None:
    conn = FrontendConnection()
    conn.send_ssl_request()
    assert feed(conn, b"N") == [ev.SSLResponse(False)]
    assert state(conn) is State.STARTUP


def test_unencrypted_bytes_after_ssl_acceptance_are_refused() -> None:
    """CVE-2021-23222: data buffered behind the 'S' was not protected by TLS."""
    conn = FrontendConnection()
    conn.send_ssl_request()
    conn.receive_data(b"S" + auth(0))
    with pytest.raises(RemoteProtocolError, match="unencrypted"):
        conn.next_event()


def test_ssl_request_answered_by_an_error_response() -> None:
    conn = FrontendConnection()
    conn.send_ssl_request()
    events = feed(conn, error_response(S="FATAL", C="08P01", M="unsupported frontend protocol"))
    assert len(events) == 1 and isinstance(events[0], ev.ErrorResponse)
    assert events[0].sqlstate == "08P01"


def test_ssl_request_answered_by_garbage() -> None:
    conn = FrontendConnection()
    conn.send_ssl_request()
    conn.receive_data(b"X")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# ---------------------------------------------------------------- queries


def test_query_makes_the_connection_busy() -> None:
    conn = ready()
    assert conn.send_query("SELECT 1") == backend(b"Q", cstr("SELECT 1"))
    assert state(conn) is State.BUSY
    assert conn.pending_syncs == 1


def test_ready_for_query_status_is_the_transaction_status() -> None:
    conn = busy()
    assert feed(conn, command_complete("BEGIN") + ready_for_query(b"T")) == [
        ev.CommandComplete("BEGIN"),
        ev.ReadyForQuery("T"),
    ]
    assert conn.transaction_status == "T"
    assert state(conn) is State.READY
    conn.send_query("SELECT x")
    feed(conn, error_response(S="ERROR", C="42703", M="no x") + ready_for_query(b"E"))
    assert conn.transaction_status == "E"


def test_ready_for_query_with_unknown_status_is_refused() -> None:
    conn = busy()
    conn.receive_data(ready_for_query(b"Q"))
    with pytest.raises(RemoteProtocolError, match="status"):
        conn.next_event()


def test_row_description_fields() -> None:
    conn = busy()
    (event,) = feed(conn, row_description(("id", 23), ("name", 25)))
    assert isinstance(event, ev.RowDescription)
    assert [(f.name, f.type_oid, f.column_id, f.table_oid, f.format) for f in event.fields] == [
        ("id", 23, 1, 16384, 0),
        ("name", 25, 2, 16384, 0),
    ]


def test_consecutive_data_rows_arrive_in_one_batch() -> None:
    conn = busy()
    stream = data_row(b"1", b"a") + data_row(b"2", None) + data_row(b"3", b"")
    assert feed(conn, stream) == [ev.DataRows([[b"1", b"a"], [b"2", None], [b"3", b""]])]


def test_data_rows_split_across_reads_keep_every_row() -> None:
    conn = busy()
    stream = data_row(b"1") + data_row(b"2") + data_row(b"3")
    events = feed(conn, stream[:20]) + feed(conn, stream[20:])
    assert flatten(events) == [("row", (b"1",)), ("row", (b"2",)), ("row", (b"3",))]


def test_command_complete_tag() -> None:
    conn = busy()
    assert feed(conn, command_complete("INSERT 0 5")) == [ev.CommandComplete("INSERT 0 5")]


def test_empty_query_response() -> None:
    conn = busy()
    assert feed(conn, backend(b"I") + ready_for_query()) == [ev.EMPTY_QUERY_RESPONSE, ev.ReadyForQuery("I")]


def test_error_response_fields_and_exception_class() -> None:
    conn = busy()
    fields = {
        "S": "ERROR",
        "V": "ERROR",
        "C": "23505",
        "M": "duplicate key value violates unique constraint \"t_pkey\"",
        "D": "Key (id)=(1) already exists.",
        "s": "public",
        "t": "t",
        "n": "t_pkey",
        "F": "nbtinsert.c",
        "L": "664",
        "R": "_bt_check_unique",
    }
    (event,) = feed(conn, error_response(**fields))
    assert event.fields == fields
    diag = event.diagnostic
    assert (diag.severity, diag.code, diag.schema, diag.table, diag.constraint, diag.routine) == (
        "ERROR",
        "23505",
        "public",
        "t",
        "t_pkey",
        "_bt_check_unique",
    )
    exc = event.to_exception()
    assert isinstance(exc, UniqueViolation)
    assert exc.sqlstate == "23505"


def test_notice_response_while_busy() -> None:
    conn = busy()
    (event,) = feed(conn, notice_response(S="NOTICE", V="NOTICE", C="00000", M="hello"))
    assert isinstance(event, ev.NoticeResponse)
    assert event.diagnostic.message == "hello"


def test_notice_and_notification_while_idle() -> None:
    conn = ready()
    events = feed(conn, notice_response(S="WARNING", C="01000", M="w") + notification(77, "chan", "payload"))
    assert events[1] == ev.NotificationResponse(77, "chan", "payload")
    assert state(conn) is State.READY


def test_fatal_error_while_idle_closes_the_connection() -> None:
    conn = ready()
    feed(conn, error_response(S="FATAL", V="FATAL", C="57P01", M="terminating connection due to administrator command"))
    assert state(conn) is State.CLOSED


def test_pipelined_syncs_stay_busy_until_the_last_ready_for_query() -> None:
    conn = ready()
    conn.send_parse("", "SELECT 1")
    conn.send_sync()
    conn.send_parse("", "SELECT 2")
    conn.send_sync()
    assert conn.pending_syncs == 2
    feed(conn, backend(b"1") + ready_for_query())
    assert state(conn) is State.BUSY
    feed(conn, backend(b"1") + ready_for_query())
    assert state(conn) is State.READY
    assert conn.pending_syncs == 0


def test_extended_protocol_singletons() -> None:
    conn = ready()
    conn.send_sync()
    stream = backend(b"1") + backend(b"2") + backend(b"n") + backend(b"3") + backend(b"s") + ready_for_query()
    assert feed(conn, stream) == [
        ev.PARSE_COMPLETE,
        ev.BIND_COMPLETE,
        ev.NO_DATA,
        ev.CLOSE_COMPLETE,
        ev.PORTAL_SUSPENDED,
        ev.ReadyForQuery("I"),
    ]


def test_parameter_description() -> None:
    conn = ready()
    conn.send_sync()
    (event,) = feed(conn, backend(b"t", struct.pack("!HII", 2, 23, 25)))
    assert event == ev.ParameterDescription((23, 25))


def test_messages_with_a_body_where_none_is_allowed_are_refused() -> None:
    conn = ready()
    conn.send_sync()
    conn.receive_data(backend(b"1", b"x"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# ---------------------------------------------------------------- COPY


def test_copy_in_round() -> None:
    conn = ready()
    conn.send_query("COPY t FROM STDIN")
    assert feed(conn, copy_response(b"G", 0, (0, 0))) == [ev.CopyInResponse(0, (0, 0))]
    assert state(conn) is State.COPY_IN
    assert conn.send_copy_data(b"1\ta\n") == backend(b"d", b"1\ta\n")
    assert conn.send_copy_done() == backend(b"c")
    assert state(conn) is State.BUSY
    assert feed(conn, command_complete("COPY 1") + ready_for_query()) == [ev.CommandComplete("COPY 1"), ev.ReadyForQuery("I")]
    assert state(conn) is State.READY


def test_copy_in_fail_sends_copy_fail() -> None:
    conn = ready()
    conn.send_query("COPY t FROM STDIN")
    feed(conn, copy_response(b"G", 0, (0,)))
    assert conn.send_copy_fail("stop") == backend(b"f", cstr("stop"))
    assert state(conn) is State.BUSY


def test_copy_out_round() -> None:
    conn = ready()
    conn.send_query("COPY t TO STDOUT")
    stream = copy_response(b"H", 0, (0,)) + backend(b"d", b"1\n") + backend(b"d", b"2\n") + backend(b"c")
    assert feed(conn, stream) == [ev.CopyOutResponse(0, (0,)), ev.CopyData(b"1\n"), ev.CopyData(b"2\n"), ev.COPY_DONE]
    assert state(conn) is State.COPY_OUT
    feed(conn, command_complete("COPY 2") + ready_for_query())
    assert state(conn) is State.READY


def test_copy_data_outside_copy_is_refused() -> None:
    conn = busy()
    conn.receive_data(backend(b"d", b"x"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# ---------------------------------------------------------------- feeding patterns


QUERY_STREAM = (
    parameter_status("application_name", "x")
    + row_description(("a", 23), ("b", 25))
    + data_row(b"1", b"one")
    + data_row(None, b"two")
    + data_row(b"3", None)
    + command_complete("SELECT 3")
    + notice_response(S="NOTICE", C="00000", M="n")
    + backend(b"I")
    + error_response(S="ERROR", C="42601", M="syntax error", P="8")
    + ready_for_query(b"I")
)


def feed_in_chunks(conn: FrontendConnection, stream: bytes, size: int) -> list[Any]:
    out: list[Any] = []
    for i in range(0, len(stream), size):
        out += feed(conn, stream[i : i + size])
    return out


def session_events(chunk_size: int) -> list[Any]:
    conn = authenticating()
    out = feed_in_chunks(conn, STARTUP_OK, chunk_size)
    conn.send_query("SELECT a, b FROM t; ; SELEC")
    out += feed_in_chunks(conn, QUERY_STREAM, chunk_size)
    assert state(conn) is State.READY
    return out


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64])
def test_feeding_in_small_pieces_gives_the_same_events(chunk_size: int) -> None:
    whole = session_events(len(STARTUP_OK) + len(QUERY_STREAM))
    assert flatten(session_events(chunk_size)) == flatten(whole)
    assert len(flatten(whole)) == 5 + 10


def test_partial_message_waits_for_more_data() -> None:
    conn = busy()
    message = command_complete("SELECT 1")
    conn.receive_data(message[:3])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(message[3:-1])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(message[-1:])
    assert conn.next_event() == ev.CommandComplete("SELECT 1")


def test_trailing_data_reports_unparsed_bytes() -> None:
    conn = busy()
    conn.receive_data(command_complete("SELECT 1") + b"C\x00")
    conn.next_event()
    assert conn.trailing_data == (b"C\x00", False)


# ---------------------------------------------------------------- end of stream


def test_eof_between_messages_is_end_of_stream() -> None:
    conn = busy()
    conn.receive_data(b"")
    assert conn.next_event() is ev.END_OF_STREAM
    assert state(conn) is State.CLOSED


def test_eof_in_the_middle_of_a_message_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(command_complete("SELECT 1")[:6])
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        conn.next_event()
    assert state(conn) is State.ERROR


def test_eof_after_the_header_of_a_long_message_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(b"D\x00\x01\x00\x00")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# ---------------------------------------------------------------- remote protocol errors


def test_unknown_message_type_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(backend(b"?", b"xyz"))
    with pytest.raises(RemoteProtocolError, match="unknown backend message type"):
        conn.next_event()
    assert state(conn) is State.ERROR


def test_the_error_state_is_terminal() -> None:
    conn = busy()
    conn.receive_data(backend(b"?"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        conn.send_query("SELECT 1")


@pytest.mark.parametrize("length", [0, 3, -1, -(2**31)])
def test_length_below_four_is_a_remote_protocol_error(length: int) -> None:
    conn = busy()
    conn.receive_data(b"C" + struct.pack("!i", length) + b"\x00" * 8)
    with pytest.raises(RemoteProtocolError, match="invalid length"):
        conn.next_event()


def test_length_over_max_message_size_is_refused_before_buffering() -> None:
    conn = FrontendConnection(max_message_size=1024)
    conn.send_startup({"user": "u"})
    feed(conn, STARTUP_OK)
    conn.send_query("SELECT 1")
    conn.receive_data(b"C" + struct.pack("!i", 1025))  # the header alone: no body has arrived
    with pytest.raises(RemoteProtocolError, match="invalid length 1025"):
        conn.next_event()


def test_data_row_over_max_message_size_is_refused() -> None:
    conn = FrontendConnection(max_message_size=64)
    conn.send_startup({"user": "u"})
    feed(conn, STARTUP_OK)
    conn.send_query("SELECT 1")
    conn.receive_data(data_row(b"x") + b"D" + struct.pack("!i", 100_000))
    with pytest.raises(RemoteProtocolError):
        drain(conn)


def test_message_at_max_message_size_is_accepted() -> None:
    message = command_complete("SELECT " + "1" * 50)
    conn = FrontendConnection(max_message_size=len(message) - 1)
    conn.send_startup({"user": "u"})
    feed(conn, STARTUP_OK)
    conn.send_query("SELECT 1")
    assert feed(conn, message) == [ev.CommandComplete("SELECT " + "1" * 50)]


def test_default_max_message_size_is_bounded() -> None:
    assert 0 < FrontendConnection().max_message_size <= 2**30


def test_data_row_while_idle_is_a_remote_protocol_error() -> None:
    conn = ready()
    conn.receive_data(data_row(b"1"))
    with pytest.raises(RemoteProtocolError, match="DataRow"):
        conn.next_event()


def test_authentication_request_while_busy_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(auth(3))
    with pytest.raises(RemoteProtocolError, match="while a query is running"):
        conn.next_event()


def test_query_result_before_authentication_is_a_remote_protocol_error() -> None:
    conn = authenticating()
    conn.receive_data(command_complete("SELECT 1"))
    with pytest.raises(RemoteProtocolError, match="AUTHENTICATING"):
        conn.next_event()


def test_data_row_with_inconsistent_lengths_is_a_remote_protocol_error() -> None:
    good = data_row(b"abc")
    conn = busy()
    conn.receive_data(b"D" + struct.pack("!i", len(good) - 2) + good[5:-1])  # the cell overruns the message
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_data_row_with_bytes_left_over_is_a_remote_protocol_error() -> None:
    good = data_row(b"abc")
    conn = busy()
    conn.receive_data(b"D" + struct.pack("!i", len(good)) + good[5:] + b"z")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_data_row_with_more_columns_than_bytes_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(backend(b"D", struct.pack("!H", 3)))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_empty_data_row_body_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(backend(b"D"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_data_row_with_a_negative_cell_length_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(backend(b"D", struct.pack("!Hi", 1, -2)))
    with pytest.raises(RemoteProtocolError, match="negative"):
        conn.next_event()


def test_unterminated_error_fields_are_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(backend(b"E", b"Mno terminator"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_invalid_utf8_in_a_string_is_a_remote_protocol_error() -> None:
    conn = busy()
    conn.receive_data(backend(b"C", b"\xff\xfe\x00"))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_truncated_row_description_is_a_remote_protocol_error() -> None:
    conn = busy()
    full = row_description(("a", 23))
    body = full[5:-4]
    conn.receive_data(backend(b"T", body))
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


# ---------------------------------------------------------------- local protocol errors


def test_query_before_startup_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        FrontendConnection().send_query("SELECT 1")


def test_query_during_authentication_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        authenticating().send_query("SELECT 1")


def test_extended_protocol_before_startup_is_a_local_protocol_error() -> None:
    conn = FrontendConnection()
    sends: list[Callable[[], bytes]] = [lambda: conn.send_parse("", "SELECT 1"), conn.send_sync, conn.send_execute]
    for send in sends:
        with pytest.raises(LocalProtocolError):
            send()


def test_startup_twice_is_a_local_protocol_error() -> None:
    conn = authenticating()
    with pytest.raises(LocalProtocolError):
        conn.send_startup({"user": "alice"})


def test_password_after_startup_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        ready().send_password("x")


def test_copy_data_outside_copy_in_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        busy().send_copy_data(b"x")
    with pytest.raises(LocalProtocolError):
        ready().send_copy_done()


def test_ssl_request_after_startup_is_a_local_protocol_error() -> None:
    with pytest.raises(LocalProtocolError):
        authenticating().send_ssl_request()


def test_data_after_eof_is_a_local_protocol_error() -> None:
    conn = busy()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"x")


def test_terminate_closes_and_is_idempotent() -> None:
    conn = ready()
    assert conn.send_terminate() == msg.TERMINATE
    assert state(conn) is State.CLOSED
    assert conn.send_terminate() == b""
    with pytest.raises(LocalProtocolError):
        conn.send_query("SELECT 1")


def test_query_text_with_nul_is_refused_before_sending() -> None:
    conn = ready()
    with pytest.raises(DataError, match="NUL"):
        conn.send_query("SELECT '\x00'")
    assert state(conn) is State.READY
    assert conn.pending_syncs == 0


def test_bytes_after_a_refused_ssl_request_are_a_remote_protocol_error() -> None:
    conn = FrontendConnection()
    conn.send_ssl_request()
    conn.receive_data(b"N" + backend(b"N"))
    assert conn.next_event() == ev.SSLResponse(False)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_short_bytes_after_a_refused_ssl_request_wait_for_more() -> None:
    conn = FrontendConnection()
    conn.send_ssl_request()
    conn.receive_data(b"N\x00\x00")
    assert conn.next_event() == ev.SSLResponse(False)
    assert conn.next_event() is NEED_DATA


def test_parameter_status_while_busy_updates_the_parameters() -> None:
    """SET TimeZone reports the change in the middle of the query's results."""
    conn = busy()
    feed(conn, parameter_status("TimeZone", "Asia/Tokyo") + command_complete("SET"))
    assert conn.parameters["TimeZone"] == "Asia/Tokyo"


def test_next_events_hands_over_the_events_before_a_protocol_error() -> None:
    conn = busy()
    conn.receive_data(parameter_status("TimeZone", "UTC") + command_complete("SELECT 1") + backend(b"?"))
    assert flatten(conn.next_events()) == [ev.ParameterStatus("TimeZone", "UTC"), ev.CommandComplete("SELECT 1")]
    with pytest.raises(RemoteProtocolError, match="unknown"):
        conn.next_events()
    assert state(conn) is State.ERROR


def test_next_events_batches_a_whole_result() -> None:
    conn = busy()
    conn.receive_data(row_description(("a", 23)) + data_row(b"1") + data_row(b"2") + command_complete("SELECT 2") + ready_for_query())
    events = []
    while batch := conn.next_events():
        events += batch
    assert flatten(events) == flatten(
        [ev.RowDescription(events[0].fields), ev.DataRows([[b"1"], [b"2"]]), ev.CommandComplete("SELECT 2"), ev.ReadyForQuery("I")]
    )
    assert state(conn) is State.READY
