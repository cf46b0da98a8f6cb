"""The backend (server) side of Postgres startup and authentication, as a sans-IO state machine.

What a proxy needs to stand where a Postgres server would: read the client's first packets
(SSLRequest, GSSENCRequest, CancelRequest, StartupMessage), ask for a cleartext password,
and answer with AuthenticationOk, ParameterStatus, BackendKeyData and ReadyForQuery, or an
ErrorResponse. After that the machine is done: whatever the client sent beyond its
password (the first query of a pipelined connect) is in ``trailing_data``, to be relayed.

Feed bytes with ``receive_data`` (``b""`` means EOF), pull events with ``next_event``
until it returns ``NEED_DATA``, write what the ``send_*`` methods return. A password that
arrives before it was asked for (the JS driver's ``pipelineConnect: "password"``) simply
waits in the buffer until ``request_password`` has been called.
"""

from __future__ import annotations

import enum
import struct
from typing import Any, Mapping

import attrs

from neon_proto.errors import Diagnostic, LocalProtocolError, RemoteProtocolError
from neon_proto.frontend import NEED_DATA

__all__ = [
    "BackendState",
    "BackendConnection",
    "StartupMessage",
    "SSLRequest",
    "GSSENCRequest",
    "CancelRequest",
    "PasswordMessage",
    "Terminate",
    "ClientEndOfStream",
    "error_response",
    "MAX_STARTUP_PACKET",
    "MAX_PASSWORD_MESSAGE",
]

MAX_STARTUP_PACKET = 10000
"""Postgres's own limit on the length of a startup packet."""
MAX_PASSWORD_MESSAGE = 65536
"""The longest PasswordMessage accepted (Postgres's limit on an authentication token)."""

_SSL_REQUEST_CODE = 80877103
_GSSENC_REQUEST_CODE = 80877104
_CANCEL_REQUEST_CODE = 80877102

_unpack_i = struct.Struct("!i").unpack_from
_pack_i = struct.Struct("!i").pack
_pack_ci = struct.Struct("!ci").pack


class BackendState(enum.Enum):
    """Where the server side of a connection is in its startup."""

    STARTUP = "STARTUP"  # waiting for the first packet (or the next, after refusing TLS/GSS)
    STARTUP_RECEIVED = "STARTUP_RECEIVED"  # StartupMessage read; the server must answer it
    PASSWORD_REQUESTED = "PASSWORD_REQUESTED"  # AuthenticationCleartextPassword sent
    AUTHENTICATING = "AUTHENTICATING"  # the password is read; the server checks it
    AUTHENTICATED = "AUTHENTICATED"  # AuthenticationOk sent; parameters and keys follow
    READY = "READY"  # ReadyForQuery sent: startup is over, the rest is the session's
    CLOSED = "CLOSED"  # ErrorResponse sent, CancelRequest or Terminate received, or EOF
    ERROR = "ERROR"  # the client broke the protocol


@attrs.frozen(slots=True)
class StartupMessage:
    """The client's StartupMessage: protocol 3.``minor_version`` and its parameters.

    ``protocol_options`` are the ``_pq_.*`` parameters (protocol extensions), kept apart.
    """

    minor_version: int
    parameters: dict[str, str]
    protocol_options: tuple[str, ...] = ()

    @property
    def user(self) -> str:
        """The ``user`` parameter (always present: the machine refuses a startup without it)."""
        return self.parameters["user"]

    @property
    def database(self) -> str:
        """The ``database`` parameter, which defaults to the user name as in Postgres."""
        return self.parameters.get("database") or self.user


@attrs.frozen(slots=True)
class SSLRequest:
    """The client asks for TLS before its startup message."""


@attrs.frozen(slots=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption before its startup message."""


@attrs.frozen(slots=True)
class CancelRequest:
    """The client asks to cancel the query of the session with this backend key."""

    process_id: int
    secret_key: int = attrs.field(repr=False)


@attrs.frozen(slots=True)
class PasswordMessage:
    """The password the client answered with (never shown in a repr)."""

    password: str = attrs.field(repr=False)


@attrs.frozen(slots=True)
class Terminate:
    """The client said goodbye before startup was over."""


@attrs.frozen(slots=True)
class ClientEndOfStream:
    """The client closed its end."""


def _cstrings(body: bytes) -> list[str]:
    return [part.decode("utf-8") for part in body.split(b"\x00")]


def error_response(error: Diagnostic | Mapping[str, str]) -> bytes:
    """An ErrorResponse from a Diagnostic or one-letter field codes (``S``, ``V``, ``C``, ``M``, ...).

    A Diagnostic without severity, code or message gets FATAL, XX000 and "unknown error".
    """
    fields = _diagnostic_fields(error) if isinstance(error, Diagnostic) else error
    body = bytearray()
    for code, value in fields.items():
        if len(code) != 1:
            raise LocalProtocolError(f"error field codes are one character, not {code!r}")
        body += code.encode("ascii") + value.replace("\x00", " ").encode("utf-8") + b"\x00"
    body += b"\x00"
    return _pack_ci(b"E", len(body) + 4) + bytes(body)


def _diagnostic_fields(diag: Diagnostic) -> dict[str, str]:
    from neon_proto.errors import FIELD_CODES

    fields: dict[str, str] = {}
    for code, name in FIELD_CODES.items():
        value = getattr(diag, name)
        if value is not None:
            fields[code] = value
    fields.setdefault("S", fields.get("V", "FATAL"))
    fields.setdefault("V", fields["S"])
    fields.setdefault("C", "XX000")
    fields.setdefault("M", "unknown error")
    return fields


class BackendConnection:
    """The server end of one connection's startup, as a pure state machine.

    Events: ``SSLRequest``, ``GSSENCRequest``, ``CancelRequest``, ``StartupMessage``,
    ``PasswordMessage``, ``Terminate``, ``ClientEndOfStream``. A protocol violation raises
    ``RemoteProtocolError`` whose ``diag`` is the ErrorResponse to send
    (``send_error(exc.diag)``) before closing.
    """

    def __init__(self, *, max_startup_packet: int = MAX_STARTUP_PACKET) -> None:
        self.state = BackendState.STARTUP
        self.max_startup_packet = max_startup_packet
        #: The client's startup message, once read.
        self.startup: StartupMessage | None = None
        self._buf = bytearray()
        self._eof = False
        self._pending_refusal = False  # an SSLRequest/GSSENCRequest waits for its answer

    def __repr__(self) -> str:
        return f"<BackendConnection {self.state.name}>"

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means it closed its end."""
        if self.state is BackendState.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        self._buf += data

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received and not parsed (the session's first messages), and whether EOF was seen."""
        return bytes(self._buf), self._eof

    def next_event(self) -> Any:
        """The next event, or NEED_DATA; RemoteProtocolError on bad input."""
        state = self.state
        if state is BackendState.STARTUP:
            return self._startup_packet()
        if state is BackendState.PASSWORD_REQUESTED:
            return self._password_message()
        if state is BackendState.CLOSED:
            return ClientEndOfStream()
        if state is BackendState.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        if state is BackendState.READY:
            raise LocalProtocolError("startup is over: the session's bytes are in trailing_data")
        raise LocalProtocolError(f"answer the client first (state {state.name})")

    def _fail(self, message: str, code: str = "08P01") -> Any:
        self.state = BackendState.ERROR
        raise RemoteProtocolError(
            message, diag=Diagnostic(severity="FATAL", severity_local="FATAL", code=code, message=message)
        )

    def _at_eof(self) -> Any:
        if not self._eof:
            return NEED_DATA
        if self._buf:
            self._fail("the client closed the connection in the middle of a message")
        self.state = BackendState.CLOSED
        return ClientEndOfStream()

    def _startup_packet(self) -> Any:
        buf = self._buf
        if len(buf) < 4:
            return self._at_eof()
        (length,) = _unpack_i(buf, 0)
        if length < 8 or length > self.max_startup_packet:
            return self._fail(f"invalid length of startup packet: {length}")
        if len(buf) < length:
            return self._at_eof()
        (code,) = _unpack_i(buf, 4)
        body = bytes(buf[8:length])
        del buf[:length]
        if code == _SSL_REQUEST_CODE or code == _GSSENC_REQUEST_CODE:
            if body:
                return self._fail("invalid length of encryption request packet")
            if buf:
                # Bytes after the request, before our answer, could be injected in clear (CVE-2021-23214).
                return self._fail("received unencrypted data after an encryption request")
            self.state = BackendState.STARTUP_RECEIVED
            self._pending_refusal = True
            return SSLRequest() if code == _SSL_REQUEST_CODE else GSSENCRequest()
        if code == _CANCEL_REQUEST_CODE:
            if len(body) != 8:
                return self._fail("invalid length of cancel request packet")
            pid, key = struct.unpack("!ii", body)
            self.state = BackendState.CLOSED
            return CancelRequest(pid, key)
        major, minor = code >> 16, code & 0xFFFF
        if major != 3:
            return self._fail(
                f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0", code="0A000"
            )
        try:
            parts = _cstrings(body)
        except UnicodeDecodeError:
            return self._fail("invalid startup packet: not UTF-8")
        # name, value, name, value, ..., "" (the list's end), "" (after the final NUL)
        if len(parts) < 2 or parts[-1] != "" or parts[-2] != "" or len(parts) % 2:
            return self._fail("invalid startup packet layout: expected terminator as last byte")
        parameters: dict[str, str] = {}
        options: list[str] = []
        for i in range(0, len(parts) - 2, 2):
            name, value = parts[i], parts[i + 1]
            if not name:
                return self._fail("invalid startup packet layout: empty parameter name")
            if name.startswith("_pq_."):
                options.append(name)
            else:
                parameters[name] = value
        if not parameters.get("user"):
            return self._fail("no PostgreSQL user name specified in startup packet", code="28000")
        self.state = BackendState.STARTUP_RECEIVED
        self._pending_refusal = False
        self.startup = StartupMessage(minor, parameters, tuple(options))
        return self.startup

    def _password_message(self) -> Any:
        buf = self._buf
        if len(buf) < 5:
            return self._at_eof()
        type_code = buf[0]
        (length,) = _unpack_i(buf, 1)
        if type_code == 88:  # 'X'
            if length != 4:
                return self._fail("invalid Terminate message")
            del buf[:5]
            self.state = BackendState.CLOSED
            return Terminate()
        if type_code != 112:  # 'p'
            return self._fail(
                f"expected password response, got message type {chr(type_code)!r}"
                if 32 < type_code < 127
                else f"expected password response, got message type {type_code}"
            )
        if length < 5 or length > MAX_PASSWORD_MESSAGE:
            return self._fail(f"invalid password message length {length}")
        if len(buf) < 1 + length:
            return self._at_eof()
        body = bytes(buf[5 : 1 + length])
        del buf[: 1 + length]
        if body.startswith(b"SCRAM-SHA-256") and b"\x00" in body[:-1]:
            # A client that pipelined SCRAM (SASLInitialResponse) before it saw what was asked.
            return self._fail(
                "expected a cleartext password, got a SASL response: this server asks for the password "
                "in clear text (connect again without SCRAM pipelining)",
                code="28000",
            )
        if body[-1:] != b"\x00" or b"\x00" in body[:-1]:
            return self._fail("invalid password message: expected one NUL-terminated string")
        try:
            password = body[:-1].decode("utf-8")
        except UnicodeDecodeError:
            return self._fail("invalid password message: not UTF-8")
        self.state = BackendState.AUTHENTICATING
        return PasswordMessage(password)

    # ------------------------------------------------------------------ output

    def _check(self, *allowed: BackendState) -> None:
        if self.state not in allowed:
            raise LocalProtocolError(f"cannot send that in state {self.state.name}")

    def send_encryption_refusal(self) -> bytes:
        """``N``: no TLS (or GSS) here; the client goes on with its startup in clear."""
        self._check(BackendState.STARTUP_RECEIVED)
        if not self._pending_refusal:
            raise LocalProtocolError("no encryption request to refuse")
        self._pending_refusal = False
        self.state = BackendState.STARTUP
        return b"N"

    def request_password(self) -> bytes:
        """AuthenticationCleartextPassword (after a NegotiateProtocolVersion if the client asked for more than 3.0)."""
        self._check(BackendState.STARTUP_RECEIVED)
        startup = self.startup
        if startup is None:
            raise LocalProtocolError("no startup message to answer")
        out = b""
        if startup.minor_version > 0 or startup.protocol_options:
            out = self.negotiate_protocol_version()
        self.state = BackendState.PASSWORD_REQUESTED
        return out + _pack_ci(b"R", 8) + _pack_i(3)

    def negotiate_protocol_version(self) -> bytes:
        """NegotiateProtocolVersion: this server speaks 3.0 and none of the ``_pq_`` options."""
        startup = self.startup
        if startup is None:
            raise LocalProtocolError("no startup message to answer")
        body = _pack_i(0) + _pack_i(len(startup.protocol_options))
        body += b"".join(name.encode("utf-8") + b"\x00" for name in startup.protocol_options)
        return _pack_ci(b"v", len(body) + 4) + body

    def send_authentication_ok(self) -> bytes:
        """AuthenticationOk: the password was right."""
        self._check(BackendState.AUTHENTICATING)
        self.state = BackendState.AUTHENTICATED
        return _pack_ci(b"R", 8) + _pack_i(0)

    def send_parameter_status(self, name: str, value: str) -> bytes:
        """ParameterStatus: one server setting the client should know (server_version, ...)."""
        self._check(BackendState.AUTHENTICATED, BackendState.READY)
        body = _cstring(name) + _cstring(value)
        return _pack_ci(b"S", len(body) + 4) + body

    def send_backend_key_data(self, process_id: int, secret_key: int) -> bytes:
        """BackendKeyData: the key a CancelRequest for this session must bring."""
        self._check(BackendState.AUTHENTICATED)
        return _pack_ci(b"K", 12) + struct.pack("!ii", process_id, secret_key)

    def send_ready_for_query(self, status: str = "I") -> bytes:
        """ReadyForQuery: startup is over; what follows belongs to the session."""
        self._check(BackendState.AUTHENTICATED)
        if status not in ("I", "T", "E"):
            raise LocalProtocolError(f"transaction status must be I, T or E, not {status!r}")
        self.state = BackendState.READY
        return _pack_ci(b"Z", 5) + status.encode("ascii")

    def send_error(self, error: Diagnostic | Mapping[str, str]) -> bytes:
        """An ErrorResponse that ends the startup (FATAL unless the fields say otherwise)."""
        self.state = BackendState.CLOSED
        return error_response(error)


def _cstring(value: str) -> bytes:
    data = value.encode("utf-8")
    if b"\x00" in data:
        raise LocalProtocolError("a string field contains a NUL character")
    return data + b"\x00"
