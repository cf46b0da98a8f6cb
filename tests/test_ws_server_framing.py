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
