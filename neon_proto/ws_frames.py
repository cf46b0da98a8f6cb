"""Whole binary WebSocket frames: the hot path beside wsproto, for both ends; sans-IO.

wsproto is the WebSocket implementation of the client tunnel (neon_proto.websocket) and of
the proxy's endpoint: the upgrade, control frames, fragmented messages, the close
handshake and the verdict on every malformed frame. Once a tunnel is open, though, nearly
every frame is of one kind: a final binary frame with no extension bits and a length under
64 KiB, carrying Postgres bytes. Reading and writing those through wsproto's event machine
costs more CPU per query than the rest of the client; this module reads and writes that
one kind directly, and each end hands every other frame to wsproto.

Frames read here are exactly the frames wsproto would accept as a whole binary message
(tests/test_ws_frames.py checks it against wsproto both ways); anything else, valid or not,
is reported as "other" and never interpreted here.
"""

from __future__ import annotations

import struct

__all__ = [
    "mask_payload",
    "client_binary_frame",
    "server_binary_frame",
    "take_binary_frames",
    "frame_size",
    "FINAL_BINARY",
]

FINAL_BINARY = 0x82
"""The first byte of a final binary frame with no extension bits (FIN | opcode 2)."""

_SHORT = struct.Struct(">BB").pack
_MEDIUM = struct.Struct(">BBH").pack
_LONG = struct.Struct(">BBQ").pack

_xor_tables: dict[int, bytes] = {}


def _xor_table(key: int) -> bytes:
    table = _xor_tables.get(key)
    if table is None:
        table = _xor_tables[key] = bytes([b ^ key for b in range(256)])
    return table


def mask_payload(mask: bytes, payload: bytes | bytearray | memoryview) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (masking and unmasking are the same)."""
    n = len(payload)
    if n < 1024:  # one XOR of two integers: the fastest for the small messages of queries
        if not n:
            return b""
        key = (mask * ((n >> 2) + 1))[:n]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    # Large payloads (COPY, big parameters): every 4th byte through a translate table.
    out = bytearray(payload)
    for i in range(4):
        out[i::4] = out[i::4].translate(_xor_table(mask[i]))
    return bytes(out)


def _header(first: int, mask_bit: int, n: int) -> bytes:
    if n < 126:
        return _SHORT(first, mask_bit | n)
    if n < 65536:
        return _MEDIUM(first, mask_bit | 126, n)
    return _LONG(first, mask_bit | 127, n)


def client_binary_frame(payload: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """One final binary frame as a client sends it: masked with ``mask`` (4 random bytes)."""
    return _header(FINAL_BINARY, 0x80, len(payload)) + mask + mask_payload(mask, payload)


def server_binary_frame(payload: bytes) -> bytes:
    """One final binary frame as a server sends it (unmasked)."""
    return _header(FINAL_BINARY, 0, len(payload)) + payload


def take_binary_frames(buf: bytes, masked: bool) -> tuple[list[bytes], int, bool]:
    """The payloads of the whole final binary frames at the front of ``buf``.

    ``masked``: the frames come from a client (mask bit set, payload unmasked here) or from
    a server (no mask). Only frames with a length under 64 KiB, minimally encoded, are
    taken. Returns ``(payloads, used, other)``: ``buf[used:]`` is left, and ``other`` says
    whether it starts with a frame of another kind (hand it to wsproto) rather than an
    incomplete one (wait for more bytes) or nothing.
    """
    pos, end = 0, len(buf)
    payloads: list[bytes] = []
    want_mask = 0x80 if masked else 0
    key_size = 4 if masked else 0
    while end - pos >= 2:
        if buf[pos] != FINAL_BINARY:
            return payloads, pos, True
        second = buf[pos + 1]
        if second & 0x80 != want_mask:
            return payloads, pos, True
        length = second & 0x7F
        head = pos + 2
        if length == 126:
            if end - head < 2:
                break
            length = (buf[head] << 8) | buf[head + 1]
            if length < 126:
                return payloads, pos, True  # not minimally encoded: wsproto says what is wrong
            head += 2
        elif length == 127:
            return payloads, pos, True  # 64 KiB and more: wsproto streams it
        start = head + key_size
        stop = start + length
        if stop > end:
            break
        if masked:
            payloads.append(mask_payload(buf[head:start], buf[start:stop]))
        else:
            payloads.append(buf[start:stop])
        pos = stop
    return payloads, pos, False


def frame_size(buf: bytes) -> int | None:
    """The whole size of the frame at the start of ``buf`` (header, mask key, payload), or
    None while its header is incomplete."""
    if len(buf) < 2:
        return None
    second = buf[1]
    length = second & 0x7F
    head = 2
    if length == 126:
        head = 4
    elif length == 127:
        head = 10
    if len(buf) < head:
        return None
    if head == 4:
        length = int.from_bytes(buf[2:4], "big")
    elif head == 10:
        length = int.from_bytes(buf[2:10], "big")
    return head + (4 if second & 0x80 else 0) + length
