"""neon_proto.websocket: the client tunnel against an in-memory wsproto server (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from neon_proto.errors import LocalProtocolError, OperationalError, RemoteProtocolError
from neon_proto.messages import query_message, startup_message
from neon_proto.options import WebSocketTarget
from neon_proto.websocket import WebSocketRejected, WebSocketTunnel

TARGET = WebSocketTarget(False, "127.0.0.1", 8080, "/v2?address=db:5432")


def server_events(server: WSConnection, data: bytes) -> list[object]:
    server.receive_data(data)
    return list(server.events())


def open_pair(accept_trailer: bytes = b"") -> tuple[WebSocketTunnel, WSConnection]:
    client = WebSocketTunnel(TARGET)
    server = WSConnection(ConnectionType.SERVER)
    [request] = server_events(server, client.start())
    assert isinstance(request, Request)
    client.receive_data(server.send(AcceptConnection()) + accept_trailer)
    assert client.handshake_complete
    return client, server


def test_the_upgrade_request_names_the_host_port_and_resource() -> None:
    client = WebSocketTunnel(TARGET)
    server = WSConnection(ConnectionType.SERVER)
    [request] = server_events(server, client.start())
    assert isinstance(request, Request)
    assert request.host == "127.0.0.1:8080"
    assert request.target == "/v2?address=db:5432"
    assert request.subprotocols == []


def test_the_default_port_is_left_out_of_the_host_header() -> None:
    client = WebSocketTunnel(WebSocketTarget(True, "ep-1.example.com", 443, "/v2"))
    server = WSConnection(ConnectionType.SERVER)
    [request] = server_events(server, client.start())
    assert isinstance(request, Request) and request.host == "ep-1.example.com"


def test_bytes_sent_before_the_handshake_is_read_are_kept() -> None:
    client, server = open_pair()
    assert client.read() is None
    client2 = WebSocketTunnel(TARGET)
    server2 = WSConnection(ConnectionType.SERVER)
    server_events(server2, client2.start())
    # The server's first frame arrives in the same read as its 101 response.
    client2.receive_data(server2.send(AcceptConnection()) + server2.send(Message(data=b"R\x00\x00\x00\x08\x00\x00\x00\x03")))
    assert client2.read() == b"R\x00\x00\x00\x08\x00\x00\x00\x03"


def test_one_send_is_one_binary_message() -> None:
    client, server = open_pair()
    flight = startup_message({"user": "u", "database": "d"}) + query_message("SELECT 1")
    events = server_events(server, client.send(flight))
    assert len(events) == 1
    [event] = events
    assert isinstance(event, BytesMessage) and event.message_finished and bytes(event.data) == flight


def test_message_boundaries_are_independent_of_postgres_messages() -> None:
    client, server = open_pair()
    stream = query_message("SELECT 1") + query_message("SELECT 2") + query_message("x" * 300)
    pieces = [stream[:3], stream[3:20], stream[20:21], stream[21:]]
    wire = b"".join(server.send(Message(data=p)) for p in pieces)
    got = b""
    for i in range(len(wire)):  # one byte at a time
        client.receive_data(wire[i : i + 1])
        got += client.read() or b""
    assert got == stream


@given(st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=20), st.integers(1, 64))
def test_any_split_of_any_messages_gives_back_the_same_bytes(messages: list[bytes], chunk: int) -> None:
    client, server = open_pair()
    wire = b"".join(server.send(Message(data=m)) for m in messages)
    got = b""
    for i in range(0, len(wire), chunk):
        client.receive_data(wire[i : i + chunk])
        got += client.read() or b""
    assert got == b"".join(messages)


def test_a_fragmented_message_is_reassembled() -> None:
    client, server = open_pair()
    wire = server.send(Message(data=b"abc", message_finished=False)) + server.send(Message(data=b"def"))
    client.receive_data(wire)
    assert client.read() == b"abcdef"


def test_a_ping_is_answered_with_a_pong() -> None:
    client, server = open_pair()
    client.receive_data(server.send(Ping(payload=b"hi")))
    assert client.read() is None
    [pong] = server_events(server, client.data_to_send())
    assert isinstance(pong, Pong) and pong.payload == b"hi"


def test_a_close_from_the_server_is_answered_and_ends_the_stream() -> None:
    client, server = open_pair()
    client.receive_data(server.send(Message(data=b"last")) + server.send(CloseConnection(code=1000, reason="bye")))
    assert client.read() == b"last"
    assert client.read() == b""
    assert client.close_code == 1000
    [close] = server_events(server, client.data_to_send())
    assert isinstance(close, CloseConnection) and close.code == 1000


def test_a_text_frame_is_a_protocol_error() -> None:
    client, server = open_pair()
    with pytest.raises(RemoteProtocolError, match="text frame"):
        client.receive_data(server.send(TextMessage(data="SELECT 1")))
    [close] = server_events(server, client.data_to_send())
    assert isinstance(close, CloseConnection) and close.code == 1003
    with pytest.raises(RemoteProtocolError):
        client.send(b"more")


def test_a_malformed_frame_is_a_protocol_error() -> None:
    client, _server = open_pair()
    with pytest.raises(RemoteProtocolError, match="bad WebSocket frame"):
        client.receive_data(b"\x8f\x00")  # reserved opcode 0xF


def test_a_refused_upgrade_reports_the_status_and_body() -> None:
    client = WebSocketTunnel(TARGET)
    server = WSConnection(ConnectionType.SERVER)
    server_events(server, client.start())
    body = b"address db:5432 is not allowed"
    wire = server.send(
        RejectConnection(status_code=400, headers=[(b"content-length", str(len(body)).encode())], has_body=True)
    ) + server.send(RejectData(data=body))
    with pytest.raises(WebSocketRejected) as info:
        client.receive_data(wire)
    assert info.value.status_code == 400
    assert "HTTP 400: address db:5432 is not allowed" in str(info.value)
    assert isinstance(info.value, OperationalError)


def test_eof_during_the_upgrade_is_an_operational_error() -> None:
    client = WebSocketTunnel(TARGET)
    client.start()
    client.receive_data(b"HTTP/1.1 101 Switching")
    with pytest.raises(OperationalError, match="during the upgrade"):
        client.receive_data(b"")


def test_a_response_that_is_not_http_is_refused() -> None:
    client = WebSocketTunnel(TARGET)
    client.start()
    with pytest.raises(RemoteProtocolError, match="bad WebSocket upgrade response"):
        client.receive_data(b"\x00\x01garbage\r\n\r\n")


def test_a_bad_accept_token_is_refused() -> None:
    client = WebSocketTunnel(TARGET)
    client.start()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        )


def test_close_starts_the_close_handshake() -> None:
    client, server = open_pair()
    [close] = server_events(server, client.close())
    assert isinstance(close, CloseConnection) and close.code == 1000
    assert client.read() == b""


def test_eof_from_the_socket_ends_the_stream() -> None:
    client, server = open_pair()
    client.receive_data(server.send(Message(data=b"x")))
    client.receive_data(b"")
    assert client.read() == b"x"
    assert client.read() == b""


def test_the_receive_buffer_is_bounded() -> None:
    client = WebSocketTunnel(TARGET, max_buffer=100)
    server = WSConnection(ConnectionType.SERVER)
    server_events(server, client.start())
    client.receive_data(server.send(AcceptConnection()))
    client.receive_data(server.send(Message(data=b"a" * 80)))
    with pytest.raises(LocalProtocolError, match="max_buffer"):
        client.receive_data(server.send(Message(data=b"a" * 80)))


def test_sending_before_the_upgrade_completes_is_refused() -> None:
    client = WebSocketTunnel(TARGET)
    client.start()
    with pytest.raises(LocalProtocolError):
        client.send(b"x")
