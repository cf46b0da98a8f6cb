"""neon_proto's part of the hardening (issue 11), without any network: what proves a request unanswered."""

from __future__ import annotations

import struct

import pytest

from neon_proto.frontend import only_a_goodbye


def message(code: bytes, body: bytes) -> bytes:
    return code + struct.pack("!i", len(body) + 4) + body


def error(severity: str, sqlstate: str = "57P01") -> bytes:
    body = f"S{severity}\0V{severity}\0C{sqlstate}\0Mterminating connection\0\0".encode()
    return message(b"E", body)


NOTICE = message(b"N", b"SNOTICE\0VNOTICE\0C00000\0Mhello\0\0")
PARAMETER = message(b"S", b"TimeZone\0UTC\0")
PARSE_COMPLETE = message(b"1", b"")


@pytest.mark.parametrize(
    "data, expected",
    [
        (error("FATAL"), True),
        (NOTICE + PARAMETER + error("FATAL"), True),
        (error("PANIC", "XX000"), True),
        (b"", False),  # EOF alone proves nothing: the server may have died after running it
        (error("ERROR", "42601"), False),
        (PARSE_COMPLETE + error("FATAL"), False),
        (error("FATAL")[:-3], False),  # truncated
        (NOTICE, False),
        (b"Z\x00\x00\x00\x05I", False),
    ],
    ids=["fatal", "notices-then-fatal", "panic", "nothing", "error", "answered-then-fatal", "truncated",
         "notice-only", "ready"],
)
def test_only_a_fatal_goodbye_proves_a_request_unanswered(data: bytes, expected: bool) -> None:
    assert only_a_goodbye(data) is expected
