"""neon_proto.ws_frames and the tunnel's hot path, against wsproto as the reference.

The tunnel reads and writes whole binary frames itself and hands every other frame to
wsproto. These tests feed the same bytes to the tunnel and to a plain wsproto client and
require the same Postgres bytes, pongs, close codes and verdicts; what the tunnel sends is
read back by a wsproto server. Frames are split at random receive boundaries.
"""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from neon_proto.errors import LocalProtocolError, RemoteProtocolError
from neon_proto.options import WebSocketTarget
from neon_proto.websocket import WebSocketTunnel
from neon_proto.ws_frames import (
    client_binary_frame,
    frame_size,
    mask_payload,
    server_binary_frame,
    take_binary_frames,
)

TARGET = WebSocketTarget(False, "127.0.0.1", 8080, "/v2")


def accepted_pair(max_buffer: int = 64 * 1024 * 1024) -> tuple[WebSocketTunnel, WSConnection, bytes]:
    """A tunnel and a wsproto server; also the server's upgrade answer (not yet fed)."""
    client = WebSocketTunnel(TARGET, max_buffer=max_buffer)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.start())
    assert isinstance(next(server.events()), Request)
    return client, server, server.send(AcceptConnection())


def open_pair(max_buffer: int = 64 * 1024 * 1024) -> tuple[WebSocketTunnel, WSConnection]:
    client, server, answer = accepted_pair(max_buffer)
    client.receive_data(answer)
    assert client.handshake_complete
    return client, server


def wsproto_client() -> WSConnection:
    """A plain wsproto client past its upgrade: the reference reader of server frames."""
    client = WSConnection(ConnectionType.CLIENT)
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="h", target="/v2")))
    list(server.events())
    client.receive_data(server.send(AcceptConnection()))
    list(client.events())
    return client


def pieces(wire: bytes, cuts: list[int]) -> list[bytes]:
    """``wire`` cut at the positions ``cuts`` (taken modulo its length)."""
    bounds = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    return [wire[a:b] for a, b in zip(bounds, bounds[1:])]


def server_messages(server: WSConnection, wire: bytes, cuts: list[int]) -> list[object]:
    """What wsproto's server makes of ``wire``: whole binary messages and other events."""
    events: list[object] = []
    partial = bytearray()
    for piece in pieces(wire, cuts):
        server.receive_data(piece)
        for event in server.events():
            if isinstance(event, BytesMessage):
                partial += event.data
                if event.message_finished:
                    events.append(bytes(partial))
                    partial.clear()
            else:
                events.append(event)
    assert not partial
    return events


# ---------------------------------------------------------------------------- what we send

sizes_at_boundaries = st.sampled_from([0, 1, 3, 4, 5, 125, 126, 127, 1023, 1024, 65535, 65536, 70001])
payloads = st.one_of(st.binary(max_size=300), sizes_at_boundaries.map(lambda n: bytes(i % 251 for i in range(n))))


@settings(max_examples=60, deadline=None)
@given(st.lists(payloads, min_size=1, max_size=6), st.lists(st.integers(0, 200_000), max_size=8))
def test_every_message_the_tunnel_sends_reads_back_identically_in_wsproto(messages: list[bytes], cuts: list[int]) -> None:
    client, server = open_pair()
    wire = b"".join(client.send(m) for m in messages)
    assert server_messages(server, wire, cuts) == messages


def test_client_frames_follow_rfc_6455() -> None:
    # RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
    assert mask_payload(b"\x37\xfa\x21\x3d", b"Hello") == bytes.fromhex("7f9f4d5158")
    mask = b"\x01\x02\x03\x04"
    assert client_binary_frame(b"", mask) == b"\x82\x80" + mask
    assert client_binary_frame(bytes(125), mask)[:2] == b"\x82\xfd"
    assert client_binary_frame(bytes(126), mask)[:4] == b"\x82\xfe\x00\x7e"
    assert client_binary_frame(bytes(65535), mask)[:4] == b"\x82\xfe\xff\xff"
    assert client_binary_frame(bytes(65536), mask)[:10] == b"\x82\xff" + (65536).to_bytes(8, "big")


def test_server_frames_read_back_in_a_wsproto_client() -> None:
    client = wsproto_client()
    messages = [b"", b"x", bytes(125), bytes(126), bytes(65535), bytes(65536)]
    client.receive_data(b"".join(server_binary_frame(m) for m in messages))
    got: list[bytes] = []
    partial = b""
    for event in client.events():
        assert isinstance(event, BytesMessage)
        partial += event.data
        if event.message_finished:
            got.append(partial)
            partial = b""
    assert got == messages


@given(st.binary(min_size=4, max_size=4), st.one_of(st.binary(max_size=1100), st.binary(min_size=1020, max_size=5000)))
def test_masking_is_a_bytewise_xor_and_undoes_itself(mask: bytes, payload: bytes) -> None:
    masked = mask_payload(mask, payload)
    assert masked == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert mask_payload(mask, masked) == payload


def test_every_message_gets_a_fresh_mask() -> None:
    client, _server = open_pair()
    masks = {client.send(b"same")[2:6] for _ in range(50)}
    assert len(masks) > 40


def test_send_accepts_bytearray_and_memoryview() -> None:
    client, server = open_pair()
    wire = client.send(bytearray(b"abc")) + client.send(memoryview(b"xdefx")[1:4])
    assert server_messages(server, wire, []) == [b"abc", b"def"]


def test_after_close_sending_goes_through_wsproto_and_is_refused() -> None:
    client, server = open_pair()
    client.receive_data(server.send(CloseConnection(code=1000)))
    with pytest.raises(Exception, match="closed"):
        client.send(b"late")


# ---------------------------------------------------------------------------- the frame reader


def test_take_binary_frames_stops_at_an_incomplete_frame_and_at_another_kind() -> None:
    one, two = server_binary_frame(b"one"), server_binary_frame(b"two" * 100)
    assert take_binary_frames(one + two, masked=False) == ([b"one", b"two" * 100], len(one + two), False)
    assert take_binary_frames(one + two[:-1], masked=False) == ([b"one"], len(one), False)
    assert take_binary_frames(one + two[:1], masked=False) == ([b"one"], len(one), False)
    ping = b"\x89\x00"
    assert take_binary_frames(one + ping + two, masked=False) == ([b"one"], len(one), True)
    # A masked frame where unmasked ones are expected, and the reverse, are not taken.
    masked = client_binary_frame(b"abc", b"\x01\x02\x03\x04")
    assert take_binary_frames(masked, masked=False) == ([], 0, True)
    assert take_binary_frames(masked, masked=True) == ([b"abc"], len(masked), False)
    assert take_binary_frames(one, masked=True) == ([], 0, True)
    # A length that is not minimally encoded, and a 64-bit length, are left to wsproto.
    assert take_binary_frames(b"\x82\x7e\x00\x05hello", masked=False) == ([], 0, True)
    assert take_binary_frames(server_binary_frame(bytes(70000)), masked=False) == ([], 0, True)


def test_frame_size_counts_header_mask_and_payload() -> None:
    assert frame_size(b"\x82") is None
    assert frame_size(server_binary_frame(b"abc")) == 5
    assert frame_size(client_binary_frame(b"abc", b"mask")) == 9
    assert frame_size(b"\x82\x7e\x01") is None
    assert frame_size(server_binary_frame(bytes(300))) == 304
    assert frame_size(server_binary_frame(bytes(70000))[:9]) is None
    assert frame_size(server_binary_frame(bytes(70000))[:10]) == 70010


# ---------------------------------------------------------------------------- what we receive

frame_sizes = st.one_of(st.integers(0, 200), st.sampled_from([125, 126, 65535, 65536, 70000]))


@st.composite
def server_traffic(draw: st.DrawFn) -> tuple[list[tuple[bytes, list[int]]], list[bytes]]:
    """Messages as fragment lengths, and pings to put between the frames."""
    messages = []
    for _ in range(draw(st.integers(1, 5))):
        sizes = draw(st.lists(frame_sizes, min_size=1, max_size=3))
        total = sum(sizes)
        data = draw(st.binary(min_size=total, max_size=total)) if total < 1000 else bytes(i % 253 for i in range(total))
        messages.append((data, sizes))
    pings = draw(st.lists(st.binary(max_size=125), max_size=4))
    return messages, pings


def feed(client: WebSocketTunnel, wire: bytes, cuts: list[int]) -> bytes:
    """Feed ``wire`` split at ``cuts``, reading after every piece as the bindings do."""
    got = bytearray()
    for piece in pieces(wire, cuts):
        client.receive_data(piece)
        got += client.read() or b""
    return bytes(got)


@settings(max_examples=80, deadline=None)
@given(server_traffic(), st.lists(st.integers(0, 300_000), max_size=12), st.randoms(use_true_random=False))
def test_server_frames_fragmented_with_pings_between_and_split_anywhere_come_out_whole(
    traffic: tuple[list[tuple[bytes, list[int]]], list[bytes]], cuts: list[int], random: Random
) -> None:
    messages, pings = traffic
    client, server = open_pair()
    frames: list[tuple[bytes, bytes | None]] = []  # (frame, ping payload)
    for data, sizes in messages:
        pos = 0
        for i, size in enumerate(sizes):
            frames.append((server.send(Message(data=data[pos : pos + size], message_finished=i == len(sizes) - 1)), None))
            pos += size
    for payload in pings:  # control frames may come between the fragments of a message
        frames.insert(random.randint(0, len(frames)), (server.send(Ping(payload=payload)), payload))
    wire = b"".join(frame for frame, _ in frames) + server.send(CloseConnection(code=1001, reason="going away"))
    assert feed(client, wire, cuts) == b"".join(data for data, _ in messages)
    assert client.read() == b""
    assert (client.close_code, client.close_reason) == (1001, "going away")
    answers = server_messages(server, client.data_to_send(), [])
    assert [e.payload for e in answers if isinstance(e, Pong)] == [p for _, p in frames if p is not None]
    assert [e.code for e in answers if isinstance(e, CloseConnection)] == [1001]


def test_pings_and_long_frames_leave_the_hot_path_on_and_fragments_turn_it_off() -> None:
    client, server = open_pair()
    wire = server.send(Ping(payload=b"p")) + server.send(Message(data=bytes(70000))) + server.send(Message(data=b"x"))
    client.receive_data(wire)
    assert client.read() == bytes(70000) + b"x"
    assert not client.frames_through_wsproto
    client.receive_data(server.send(Message(data=b"ab", message_finished=False)))
    assert client.frames_through_wsproto
    client.receive_data(server.send(Message(data=b"cd")) + server.send(Message(data=b"ef")))
    assert client.read() == b"abcdef"


def test_frames_in_the_same_read_as_the_upgrade_answer_are_read() -> None:
    _client, _server, answer = accepted_pair()
    for cut in range(1, len(answer) + 20):
        fresh, srv, answer = accepted_pair()
        wire = answer + srv.send(Message(data=b"first")) + srv.send(Message(data=b"second"))
        fresh.receive_data(wire[:cut])
        fresh.receive_data(wire[cut:])
        assert fresh.handshake_complete
        assert fresh.read() == b"firstsecond"
        assert not fresh.frames_through_wsproto


def test_a_large_frame_is_passed_on_as_it_arrives() -> None:
    client, server = open_pair()
    wire = server.send(Message(data=b"x" * 100_000)) + server.send(Message(data=b"tail"))
    client.receive_data(wire[:50_000])
    assert client.read() == b"x" * (50_000 - 10)  # all but the 10-byte header
    client.receive_data(wire[50_000:])
    assert client.read() == b"x" * (100_000 - 49_990) + b"tail"


def test_the_receive_bound_holds_on_the_hot_path() -> None:
    client, server = open_pair(max_buffer=1000)
    client.receive_data(server.send(Message(data=b"y" * 900)))
    with pytest.raises(LocalProtocolError, match="max_buffer"):
        client.receive_data(server.send(Message(data=b"y" * 200)))


def reference_outcome(wire: bytes) -> tuple[bytes, bool]:
    """A plain wsproto client's view of ``wire`` after the upgrade: its data, and whether it
    found the server at fault (a framing error, a text frame)."""
    client = wsproto_client()
    data = bytearray()
    client.receive_data(wire)
    for event in client.events():
        if isinstance(event, BytesMessage):
            data += event.data
        elif isinstance(event, TextMessage):
            return bytes(data), True
        elif isinstance(event, CloseConnection):
            return bytes(data), client.state is not ConnectionState.REMOTE_CLOSING
    return bytes(data), False


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=3),
    st.binary(min_size=1, max_size=30),
    st.lists(st.integers(0, 400), max_size=4),
)
def test_broken_frames_get_wsproto_s_verdict(good: list[bytes], garbage: bytes, cuts: list[int]) -> None:
    wire = b"".join(server_binary_frame(m) for m in good) + garbage
    expected_data, expected_fault = reference_outcome(wire)
    client, _server = open_pair()
    got = bytearray()
    fault = False
    try:
        for piece in pieces(wire, cuts):
            client.receive_data(piece)
            got += client.read() or b""
        client.read()  # a fault behind the bytes just read is raised now
    except RemoteProtocolError:
        fault = True
    assert fault == expected_fault
    # wsproto passes on a frame's payload as it arrives; the hot path waits for a small
    # frame to be whole: what it gave is what wsproto gave, or the start of it, and never
    # less than the whole frames before the fault.
    assert expected_data.startswith(bytes(got))
    assert len(got) >= len(b"".join(good))


def test_bytes_before_a_bad_frame_are_read_before_the_error() -> None:
    client, server = open_pair()
    client.receive_data(server.send(Message(data=b"E-before")) + b"\x83\x00")  # opcode 3 is reserved
    assert client.read() == b"E-before"
    with pytest.raises(RemoteProtocolError, match="bad WebSocket frame"):
        client.read()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"more")
    # The tunnel answered the fault with a protocol-error Close.
    closes = [e for e in server_messages(server, client.data_to_send(), []) if isinstance(e, CloseConnection)]
    assert [c.code for c in closes] == [1002]


def test_masks_stay_fresh_across_many_messages() -> None:
    # Keys are drawn from os.urandom 128 at a time; a batch used twice would leave at most
    # 128 distinct keys among 1000 frames (random 32-bit keys repeat about once in 10,000 runs).
    client, server = open_pair()
    frames = [client.send(b"x") for _ in range(1000)]
    assert len({f[2:6] for f in frames}) > 990
    assert server_messages(server, b"".join(frames), []) == [b"x"] * 1000
