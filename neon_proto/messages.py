"""Encoders for the frontend messages of the Postgres protocol (version 3.0).

Pure functions from arguments to bytes. They validate what would corrupt the stream (a NUL
inside a string field, a field that does not fit its length) and raise LocalProtocolError.
"""

from __future__ import annotations

import struct
from typing import Mapping, Sequence

from neon_proto.errors import DataError, LocalProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "SSL_REQUEST",
    "ssl_request",
    "startup_message",
    "password_message",
    "sasl_initial_response",
    "sasl_response",
    "query_message",
    "parse_message",
    "bind_message",
    "describe_message",
    "execute_message",
    "close_message",
    "SYNC",
    "FLUSH",
    "TERMINATE",
    "COPY_DONE",
    "copy_data_message",
    "copy_fail_message",
    "cancel_request",
    "cstring",
]

PROTOCOL_VERSION = 196608  # 3.0
_SSL_REQUEST_CODE = 80877103
_CANCEL_REQUEST_CODE = 80877102

_pack_i = struct.Struct("!i").pack
_pack_ci = struct.Struct("!ci").pack
_pack_ii = struct.Struct("!ii").pack
_pack_H = struct.Struct("!H").pack

SSL_REQUEST = _pack_ii(8, _SSL_REQUEST_CODE)
SYNC = b"S\x00\x00\x00\x04"
FLUSH = b"H\x00\x00\x00\x04"
TERMINATE = b"X\x00\x00\x00\x04"
COPY_DONE = b"c\x00\x00\x00\x04"

_MAX_MESSAGE = 0x3FFFFFFF


def ssl_request() -> bytes:
    """The SSLRequest packet, sent before the startup message to ask for TLS."""
    return SSL_REQUEST


def cstring(value: str, what: str = "string") -> bytes:
    """A NUL-terminated UTF-8 string; a NUL inside it is refused."""
    data = value.encode("utf-8")
    if b"\x00" in data:
        raise DataError(f"{what} contains a NUL character, which Postgres cannot accept")
    return data + b"\x00"


def _message(type_byte: bytes, body: bytes) -> bytes:
    if len(body) > _MAX_MESSAGE:
        raise LocalProtocolError("message too large for the Postgres protocol")
    return _pack_ci(type_byte, len(body) + 4) + body


def startup_message(parameters: Mapping[str, str]) -> bytes:
    """The StartupMessage: protocol 3.0 and the session parameters (user, database, ...)."""
    if "user" not in parameters:
        raise LocalProtocolError("the startup message needs a user")
    body = bytearray(_pack_i(PROTOCOL_VERSION))
    for key, value in parameters.items():
        body += cstring(key, "startup parameter name")
        body += cstring(value, f"startup parameter {key!r}")
    body += b"\x00"
    return _pack_i(len(body) + 4) + bytes(body)


def password_message(password: str | bytes) -> bytes:
    """A PasswordMessage: cleartext, or an ``md5...`` hash."""
    data = password.encode("utf-8") if isinstance(password, str) else password
    if b"\x00" in data:
        raise DataError("the password contains a NUL character")
    return _message(b"p", data + b"\x00")


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    """SASLInitialResponse: the chosen mechanism and the client-first message."""
    return _message(b"p", cstring(mechanism) + _pack_i(len(data)) + data)


def sasl_response(data: bytes) -> bytes:
    """SASLResponse: a later client message of the SASL exchange."""
    return _message(b"p", data)


def query_message(sql: str) -> bytes:
    """Query (simple query protocol): one or more statements in one string."""
    return _message(b"Q", cstring(sql, "query"))


def parse_message(name: str, sql: str, param_oids: Sequence[int] = ()) -> bytes:
    """Parse: prepare ``sql`` as statement ``name`` ("" is the unnamed statement)."""
    n = len(param_oids)
    if n > 65535:
        raise LocalProtocolError(f"too many parameters: {n} (Postgres allows 65535)")
    body = cstring(name, "statement name") + cstring(sql, "query") + struct.pack("!H", n)
    if n:
        body += struct.pack(f"!{n}I", *param_oids)
    return _message(b"P", body)


def bind_message(
    portal: str,
    statement: str,
    params: Sequence[bytes | None],
    param_formats: Sequence[int] = (),
    result_formats: Sequence[int] = (),
) -> bytes:
    """Bind: fill a statement's parameters into a portal and choose result formats."""
    n = len(params)
    if n > 65535:
        raise LocalProtocolError(f"too many parameters: {n} (Postgres allows 65535)")
    head = (cstring(portal, "portal name") if portal else b"\x00") + (
        cstring(statement, "statement name") if statement else b"\x00"
    )
    nf = len(param_formats)
    parts: list[bytes] = [
        b"",
        head,
        _pack_h_n(nf, param_formats) if nf else b"\x00\x00",
        _pack_H(n),
    ]
    append = parts.append
    for value in params:
        if value is None:
            append(b"\xff\xff\xff\xff")
        else:
            append(_pack_i(len(value)))
            append(value)
    nr = len(result_formats)
    append(_pack_h_n(nr, result_formats) if nr else b"\x00\x00")
    body_len = sum(map(len, parts)) + 4
    if body_len > _MAX_MESSAGE:
        raise LocalProtocolError("message too large for the Postgres protocol")
    parts[0] = _pack_ci(b"B", body_len)
    return b"".join(parts)


def _pack_h_n(n: int, values: Sequence[int]) -> bytes:
    return struct.pack(f"!H{n}h", n, *values)


def describe_message(kind: str, name: str = "") -> bytes:
    """Describe a statement (``S``) or a portal (``P``)."""
    if kind not in ("S", "P"):
        raise LocalProtocolError("describe kind must be 'S' or 'P'")
    return _message(b"D", kind.encode() + cstring(name, "name"))


def execute_message(portal: str = "", max_rows: int = 0) -> bytes:
    """Execute a portal, returning at most ``max_rows`` rows (0: all)."""
    return _message(b"E", cstring(portal, "portal name") + _pack_i(max_rows))


def close_message(kind: str, name: str = "") -> bytes:
    """Close a statement (``S``) or a portal (``P``)."""
    if kind not in ("S", "P"):
        raise LocalProtocolError("close kind must be 'S' or 'P'")
    return _message(b"C", kind.encode() + cstring(name, "name"))


def copy_data_message(data: bytes | bytearray | memoryview) -> bytes:
    """CopyData: a chunk of COPY FROM STDIN data."""
    return _message(b"d", bytes(data))


def copy_fail_message(reason: str) -> bytes:
    """CopyFail: abort COPY FROM STDIN with this reason."""
    return _message(b"f", cstring(reason.replace("\x00", " "), "reason"))


def cancel_request(process_id: int, secret_key: int) -> bytes:
    """CancelRequest, sent on a new connection to cancel the query running in ``process_id``."""
    return struct.pack("!iiii", 16, _CANCEL_REQUEST_CODE, process_id, secret_key)
