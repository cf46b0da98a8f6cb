"""neon_proxy.client_channel.ServerWebSocket's framing over an in-memory trio stream, against wsproto's client.

Binary messages of every size, split anywhere, with pings, fragments and a close mixed in: the
payload comes out as one byte stream, exactly, whichever path (fast or wsproto) reads it.
"""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong

from neon_proxy.client_channel import ServerWebSocket


def _client_bytes(rng: random.Random, *, pings: bool, fragments: bool) -> tuple[bytes, bytes, int]:
    """A client's wire bytes (frames), the payload they carry, and how many pings."""
    client = Connection(ConnectionType.CLIENT)
    wire, payload, ping_count = bytearray(), bytearray(), 0
    for _ in range(rng.randint(1, 40)):
        size = rng.choice([0, 1, 5, 125, 126, 127, 1000, 65535, 65536, 70000, rng.randint(0, 200000)])
        data = rng.randbytes(size)
        if fragments and size > 10 and rng.random() < 0.3:
            cut = rng.randint(1, size - 1)
            wire += client.send(BytesMessage(data=data[:cut], message_finished=False))
            wire += client.send(BytesMessage(data=data[cut:], message_finished=True))
        else:
            wire += client.send(BytesMessage(data=data))
        payload += data
        if pings and rng.random() < 0.2:
            wire += client.send(Ping(payload=b"p%d" % ping_count))
            ping_count += 1
    wire += client.send(CloseConnection(code=1000))
    return bytes(wire), bytes(payload), ping_count


@pytest.mark.parametrize("seed", range(12))
def test_payload_comes_out_exactly_however_it_is_split(seed: int) -> None:
    rng = random.Random(seed)
    wire, payload, pings = _client_bytes(rng, pings=seed % 2 == 1, fragments=seed % 3 == 2)
    first = rng.randint(0, min(len(wire), 40))  # bytes that arrived with the upgrade request

    async def main() -> tuple[bytes, bytes]:
        server_side, client_side = trio.testing.memory_stream_pair()
        ws = ServerWebSocket(server_side, wire[:first])
        received = bytearray()

        async def feed() -> None:
            pos = first
            while pos < len(wire):
                step = rng.choice([1, 2, 3, 7, 100, 4096, 65536, 300000])
                await client_side.send_all(wire[pos : pos + step])
                pos += step

        answers = bytearray()

        async def drain_answers() -> None:
            while True:
                data = await client_side.receive_some(65536)
                if not data:
                    return
                answers.extend(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            nursery.start_soon(drain_answers)
            while True:
                data = await ws.receive()
                if not data:
                    break
                received.extend(data)
            await ws.close()
            await client_side.send_eof()
            await server_side.aclose()
            nursery.cancel_scope.cancel()
        return bytes(received), bytes(answers)

    received, answers = trio.run(main)
    assert received == payload
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(answers)
    events = list(client.events())
    assert [e.payload for e in events if isinstance(e, Pong)] == [b"p%d" % i for i in range(pings)]
    assert isinstance(events[-1], CloseConnection)


def test_server_frames_read_back_with_wsproto() -> None:
    async def main() -> bytes:
        server_side, client_side = trio.testing.memory_stream_pair()
        ws = ServerWebSocket(server_side)
        out = bytearray()
        for size in (0, 1, 125, 126, 65535, 65536, 300000):
            await ws.send(bytes([size % 251]) * size)
        await ws.close()
        await server_side.aclose()
        while True:
            data = await client_side.receive_some(1 << 20)
            if not data:
                return bytes(out)
            out.extend(data)

    wire = trio.run(main)
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(wire)
    events = list(client.events())
    messages = [bytes(e.data) for e in events if isinstance(e, BytesMessage)]
    assert [len(m) for m in messages] == [1, 125, 126, 65535, 65536, 300000]  # an empty send sends nothing
    assert all(m == bytes([len(m) % 251]) * len(m) for m in messages)
    assert isinstance(events[-1], CloseConnection)


@pytest.mark.parametrize("seed", range(20))
def test_the_relay_thread_s_view_pings_answered_without_leaving_the_hot_path(seed: int) -> None:
    # What the relay thread calls: unwrap() on whatever was read, take_owed() for the pongs.
    rng = random.Random(seed)
    client = Connection(ConnectionType.CLIENT)
    wire, payload, pongs = bytearray(), bytearray(), []
    for i in range(rng.randint(1, 30)):
        data = rng.randbytes(rng.choice([0, 1, 125, 126, 5000, 65535]))
        wire += client.send(BytesMessage(data=data))
        payload += data
        if rng.random() < 0.4:
            wire += client.send(Ping(payload=b"p%d" % i))
            pongs.append(b"p%d" % i)
        if rng.random() < 0.1:
            wire += client.send(Pong(payload=b"unasked"))  # an unsolicited pong needs no answer
    ws = ServerWebSocket(trio.testing.memory_stream_pair()[0])
    received, owed = bytearray(), bytearray()
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 2, 5, 7, 131, 1000, 70000])
        received += ws.unwrap(bytes(wire[pos : pos + step]))
        owed += ws.take_owed()
        pos += step
    assert received == payload
    assert ws.direct  # pings and pongs did not hand the stream to wsproto
    client.receive_data(bytes(owed))
    assert [e.payload for e in client.events() if isinstance(e, Pong)] == pongs


def test_a_fragment_or_a_bad_ping_hands_the_stream_to_wsproto() -> None:
    client = Connection(ConnectionType.CLIENT)
    ws = ServerWebSocket(trio.testing.memory_stream_pair()[0])
    assert ws.unwrap(client.send(BytesMessage(data=b"ab", message_finished=False))) == b""
    assert not ws.direct
    oversized_ping = b"\x89\xfe\x00\x80" + b"mask" + bytes(128)  # control frames carry at most 125 bytes
    other = ServerWebSocket(trio.testing.memory_stream_pair()[0])
    assert other.unwrap(oversized_ping) == b""
    assert not other.direct and other.take_owed() == b""
