"""The frontend (client) side of the Postgres protocol as a sans-IO state machine.

Feed it what the socket gave with ``receive_data`` (``b""`` means EOF), pull events with
``next_event`` until it returns ``NEED_DATA``, and send whatever the ``send_*`` methods
return. It never touches a socket, a clock or a thread.

The machine checks that each backend message is allowed in the current state, keeps the
session facts (server parameters, backend key, transaction status) and counts the
outstanding Sync and Query messages, so it knows when the server is idle again.
"""

from __future__ import annotations

import enum
import gc
import struct
from typing import Any, Callable, Mapping, NoReturn, Sequence

from neon_proto import events as ev
from neon_proto import messages as msg
from neon_proto.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["State", "NEED_DATA", "FrontendConnection", "DEFAULT_MAX_MESSAGE_SIZE"]

DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024

_unpack_i = struct.Struct("!i").unpack_from
_unpack_I = struct.Struct("!I").unpack_from
_unpack_h = struct.Struct("!h").unpack_from
_unpack_H = struct.Struct("!H").unpack_from
_unpack_ii = struct.Struct("!ii").unpack_from
_unpack_field = struct.Struct("!IhIhih").unpack_from


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Any = _NeedData()
"""Returned by ``next_event`` when more bytes are needed."""


class State(enum.Enum):
    """Where the connection is in its life."""

    STARTUP = "STARTUP"  # nothing sent yet
    SSL_REQUESTED = "SSL_REQUESTED"  # SSLRequest sent, waiting for one byte
    AUTHENTICATING = "AUTHENTICATING"  # StartupMessage sent
    STARTING = "STARTING"  # AuthenticationOk received, waiting for the first ReadyForQuery
    READY = "READY"  # idle: no Query or Sync outstanding
    BUSY = "BUSY"  # a Query or Sync is outstanding
    COPY_IN = "COPY_IN"  # the server waits for COPY data from us
    COPY_OUT = "COPY_OUT"  # the server sends COPY data
    CLOSED = "CLOSED"  # Terminate sent or the peer closed
    ERROR = "ERROR"  # the stream is broken; nothing more can be done


class FrontendConnection:
    """The client end of one Postgres connection, as a pure state machine.

    ``max_message_size`` bounds the receive buffer: a backend message announcing a larger
    length is refused with RemoteProtocolError before it is buffered.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.state = State.STARTUP
        self.max_message_size = max_message_size
        #: Server parameters from ParameterStatus (server_version, TimeZone, ...).
        self.parameters: dict[str, str] = {}
        self.process_id: int | None = None
        self.secret_key: int | None = None
        #: Transaction status from the last ReadyForQuery: I, T or E.
        self.transaction_status = "I"
        self._chunks: list[bytes] = []
        self._chunks_len = 0
        self._buf = b""
        self._pos = 0
        self._need = 5  # bytes needed before the next message can be parsed
        self._eof = False
        self._pending_ready = 0  # outstanding Sync / Query messages
        self._deferred_error: RemoteProtocolError | None = None  # raised after the events before it
        self._row_descriptions: dict[bytes, ev.Event] = {}
        self._command_tags: dict[bytes, ev.Event] = {}
        #: Decodes one DataRow payload ``(buf, start, end) -> row``; installed with
        #: ``set_row_parser`` after a RowDescription, cleared by the machine when the result ends.
        self.row_parser: Callable[[bytes, int, int], Any] | None = None
        self._description: Any = None  # the RowDescription of the result being received
        self._parse_cache: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
        self._parsers: dict[int, Callable[[bytes, int, int], ev.Event]] = self._parser_table()
        # Set while startup finishes behind pipelined queries (see finish_startup_with).
        self._startup_handler: Callable[[Any], None] | None = None

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its end."""
        if self.state is State.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after EOF")
        if self._pos >= len(self._buf) and not self._chunks:
            # The common case: everything before was consumed; keep the bytes without copying.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
        else:
            self._chunks.append(bytes(data))
            self._chunks_len += len(data)

    def _available(self) -> int:
        return len(self._buf) - self._pos + self._chunks_len

    def _gather(self) -> None:
        """Join pending chunks into the parse buffer (only when a message can complete)."""
        if self._chunks:
            rest = self._buf[self._pos :] if self._pos < len(self._buf) else b""
            if rest:
                self._chunks.insert(0, rest)
            self._buf = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks = []
            self._chunks_len = 0
            self._pos = 0

    def set_row_parser(self, description: ev.RowDescription, parser: Callable[[bytes, int, int], Any]) -> None:
        """Decode the DataRows of ``description``'s result with ``parser`` (``DataRows.decoded``).

        Ignored unless that result is the one being received: the parser never outlives it.
        """
        if description is self._description:
            self.row_parser = parser

    @property
    def has_buffered_data(self) -> bool:
        """Whether received bytes wait to be parsed."""
        return self._pos < len(self._buf) or bool(self._chunks)

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not yet parsed, and whether EOF was seen (h11's name)."""
        self._gather()
        return self._buf[self._pos :], self._eof

    def next_event(self) -> Any:
        """The next event, or NEED_DATA. Raises RemoteProtocolError on bad input."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < self._need:
            if self.state is State.ERROR:
                raise LocalProtocolError("the connection is in the ERROR state")
            if self._available() < self._need:
                return self._at_shortage()
            self._gather()
            buf = self._buf
            pos = 0
        state = self.state
        if state is State.SSL_REQUESTED:
            return self._ssl_response()
        if state is State.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        type_code = buf[pos]
        (length,) = _unpack_i(buf, pos + 1)
        if length < 4 or length > self.max_message_size:
            self._fail(f"backend message {bytes([type_code])!r} announces an invalid length {length}")
        end = pos + 1 + length
        if end > len(buf):
            self._need = 1 + length
            return self._at_shortage()
        self._need = 5
        if type_code == 68:  # 'D'
            try:
                return self._data_rows(buf, pos, end)
            except struct.error as exc:
                self._fail(f"malformed DataRow: {exc}")
        self._pos = end
        if state is State.BUSY:
            # The hot state: results of queries. Most messages change nothing here.
            action = _BUSY_ACTIONS[type_code]
            single = _SINGLETONS[type_code]
            if single is not None and action == 0:
                if end != pos + 5:
                    self._fail(f"{type(single).__name__} should have no body")
                return single
        else:
            action = -1
        parser = self._parsers.get(type_code)
        if parser is None:
            self._fail(f"unknown backend message type {bytes([type_code])!r}")
        try:
            event: Any = parser(buf, pos + 5, end)
        except RemoteProtocolError:
            self.state = State.ERROR
            raise
        except (struct.error, UnicodeDecodeError, IndexError, ValueError) as exc:
            self._fail(f"malformed backend message {bytes([type_code])!r}: {exc}")
        if type_code == 84:
            self._description = event
            self.row_parser = None
        elif type_code == 67 or type_code == 69 or type_code == 90:
            self._description = None
            self.row_parser = None
        if action == 0:
            return event
        if action == 1:
            self._ready(event)
            return event
        self._transition(event)
        handler = self._startup_handler
        if handler is not None and (state is State.AUTHENTICATING or state is State.STARTING):
            if self.state is not State.AUTHENTICATING and self.state is not State.STARTING:
                self._startup_handler = None  # startup is over (ReadyForQuery, or an error)
            handler(event)
            return self.next_event()
        return event

    def next_events(self) -> list[Any]:
        """Every event the buffered bytes complete, in order; an empty list means NEED_DATA.

        The same events as repeated ``next_event`` calls, parsed in one tight loop while
        query results stream in (the BUSY state); anything unusual takes the general path.
        """
        if self.state is not _BUSY or self._chunks or self._eof:
            return self._next_events_general()
        buf = self._buf
        pos = self._pos
        n = len(buf)
        out: list[Any] = []
        append = out.append
        parsers = self._parsers
        max_size = self.max_message_size
        unpack_i = _unpack_i
        while pos + 5 <= n:
            code = buf[pos]
            (length,) = unpack_i(buf, pos + 1)
            end = pos + 1 + length
            if length < 4 or length > max_size or end > n:
                break
            if code == 68:  # 'D'
                try:
                    append(self._data_rows(buf, pos, end))
                except (struct.error, RemoteProtocolError):
                    self.state = _BUSY
                    break
                pos = self._pos
                continue
            action = _BUSY_ACTIONS[code]
            if action == 0:
                single = _SINGLETONS[code]
                if single is not None:
                    if end != pos + 5:
                        break
                    append(single)
                    pos = end
                    continue
                try:
                    event = parsers[code](buf, pos + 5, end)
                except Exception:
                    break
                append(event)
                pos = end
                if code == 84:  # 'T'
                    self._description = event
                    self.row_parser = None
                    if n - end > 8192:
                        # Many rows behind it: let the caller install a row parser first.
                        break
                elif code == 67 or code == 69:  # 'C', 'E': the result is over
                    self._description = None
                    self.row_parser = None
                continue
            if action == 1:
                try:
                    event = _parse_ready_for_query(buf, pos + 5, end)
                except Exception:
                    break
                pos = end
                self._pos = pos
                self.row_parser = None
                self._description = None
                self._ready(event)  # type: ignore[arg-type]
                append(event)
                if self.state is not _BUSY:
                    break
                continue
            break
        self._pos = pos
        if not out:
            return self._next_events_general()
        return out

    def copy_out_data(self) -> list[bytes]:
        """The payloads of the complete CopyData messages at the head of the buffer, in one
        tight loop (COPY TO STDOUT sends a message per row); empty when the next message is
        anything else, or incomplete: ``next_event`` takes it from there."""
        if self.state is not State.COPY_OUT:
            return []
        if self._chunks:
            self._gather()
        buf = self._buf
        pos = self._pos
        n = len(buf)
        max_size = self.max_message_size
        unpack_i = _unpack_i
        out: list[bytes] = []
        append = out.append
        while pos + 5 <= n and buf[pos] == 100:  # 'd'
            (length,) = unpack_i(buf, pos + 1)
            end = pos + 1 + length
            if end > n or length < 4 or length > max_size:
                break
            append(buf[pos + 5 : end])
            pos = end
        if out:
            self._pos = pos
            self._need = 5  # what next_event waited for was one of these
        return out

    def _next_events_general(self) -> list[Any]:
        deferred = self._deferred_error
        if deferred is not None:
            self._deferred_error = None
            raise deferred
        out: list[Any] = []
        while True:
            try:
                event = self.next_event()
            except RemoteProtocolError as exc:
                if not out:
                    raise
                # Hand over the events that came before the bad bytes first, as next_event does.
                self._deferred_error = exc
                return out
            if event is NEED_DATA:
                return out
            out.append(event)
            if event is ev.END_OF_STREAM or type(event) is ev.SSLResponse or self.state is not _BUSY:
                return out

    def _at_shortage(self) -> Any:
        if self._eof:
            if self._available() == 0:
                if self.state is not State.CLOSED:
                    self.state = State.CLOSED
                    self._pending_ready = 0
                handler = self._startup_handler
                if handler is not None:
                    self._startup_handler = None
                    handler(ev.END_OF_STREAM)
                return ev.END_OF_STREAM
            self._fail("the connection closed in the middle of a message")
        return NEED_DATA

    def _fail(self, why: str) -> NoReturn:
        self.state = State.ERROR
        raise RemoteProtocolError(why)

    def _ssl_response(self) -> ev.Event:
        self._gather()
        byte = self._buf[self._pos : self._pos + 1]
        self._pos += 1
        if byte == b"S":
            # Anything already buffered after 'S' arrived unencrypted: a MITM risk (CVE-2021-23222).
            if self._available():
                self._fail("the server sent unencrypted data after accepting TLS")
            self.state = State.STARTUP
            self._need = 5
            return ev.SSLResponse(True)
        if byte == b"N":
            self.state = State.STARTUP
            self._need = 5
            return ev.SSLResponse(False)
        if byte == b"E":
            # A server too old for SSLRequest answers with an ErrorResponse: parse it whole.
            self._pos -= 1
            self.state = State.AUTHENTICATING
            self._need = 5
            event: ev.Event = self.next_event()
            return event
        self._fail(f"unexpected answer {byte!r} to SSLRequest")

    # ------------------------------------------------------------- DataRow fast path

    def _data_rows(self, buf: bytes, pos: int, end: int) -> ev.DataRows:
        if self.state is not State.BUSY:
            self._fail(f"DataRow received in state {self.state.name}")
        parser = self.row_parser
        if parser is not None:
            try:
                return self._decoded_rows(parser, buf, pos, end)
            except Exception:
                # Fall back to raw cells: a protocol error is reported from there, and
                # a value that fails to decode is reported by whoever decodes it.
                pass
        rows: list[list[bytes | None]] = []
        append = rows.append
        unpack_i = _unpack_i
        buflen = len(buf)
        while True:
            # One DataRow message: buf[pos] == 'D', payload from pos + 5 to end.
            p = pos + 5
            (ncols,) = _unpack_H(buf, p)
            p += 2
            row: list[bytes | None] = []
            add = row.append
            for _ in range(ncols):
                (size,) = unpack_i(buf, p)
                p += 4
                if size < 0:
                    if size != -1:
                        self._fail("DataRow has a negative field length")
                    add(None)
                else:
                    q = p + size
                    add(buf[p:q])
                    p = q
            if p != end:
                self._fail("DataRow field lengths do not add up to the message length")
            append(row)
            pos = end
            # Another complete DataRow right behind?
            if pos + 5 <= buflen and buf[pos] == 68:  # 'D'
                (length,) = unpack_i(buf, pos + 1)
                if length < 4 or length > self.max_message_size:
                    self._pos = pos
                    self._fail(f"DataRow announces an invalid length {length}")
                nxt = pos + 1 + length
                if nxt <= buflen:
                    end = nxt
                    continue
            break
        self._pos = pos
        return ev.DataRows(rows)

    def _decoded_rows(self, parser: Callable[[bytes, int, int], Any], buf: bytes, pos: int, end: int) -> ev.DataRows:
        rows: list[Any] = []
        append = rows.append
        unpack_i = _unpack_i
        buflen = len(buf)
        max_size = self.max_message_size
        # A batch allocates thousands of containers that all live on: pausing the cyclic
        # collector meanwhile spares it scans that cannot free anything (a fifth of a large
        # fetch's time). It runs again as soon as the batch is decoded.
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            while True:
                append(parser(buf, pos + 5, end))
                pos = end
                if pos + 5 <= buflen and buf[pos] == 68:  # another DataRow right behind
                    (length,) = unpack_i(buf, pos + 1)
                    nxt = pos + 1 + length
                    if 4 <= length <= max_size and nxt <= buflen:
                        end = nxt
                        continue
                break
        finally:
            if collecting:
                gc.enable()
        self._pos = pos
        return ev.DataRows(rows, True)

    # ------------------------------------------------------------- parsers

    def _parser_table(self) -> dict[int, Callable[[bytes, int, int], ev.Event]]:
        table: dict[bytes, Callable[[bytes, int, int], ev.Event]] = {
            b"R": _parse_authentication,
            b"S": _parse_parameter_status,
            b"K": _parse_backend_key_data,
            b"Z": _parse_ready_for_query,
            b"1": lambda b, s, e: _empty(b, s, e, ev.PARSE_COMPLETE),
            b"2": lambda b, s, e: _empty(b, s, e, ev.BIND_COMPLETE),
            b"3": lambda b, s, e: _empty(b, s, e, ev.CLOSE_COMPLETE),
            b"n": lambda b, s, e: _empty(b, s, e, ev.NO_DATA),
            b"s": lambda b, s, e: _empty(b, s, e, ev.PORTAL_SUSPENDED),
            b"I": lambda b, s, e: _empty(b, s, e, ev.EMPTY_QUERY_RESPONSE),
            b"c": lambda b, s, e: _empty(b, s, e, ev.COPY_DONE),
            b"t": _parse_parameter_description,
            b"T": self._row_description,
            b"C": self._command_complete,
            b"E": lambda b, s, e: ev.ErrorResponse(_parse_fields(b, s, e)),
            b"N": lambda b, s, e: ev.NoticeResponse(_parse_fields(b, s, e)),
            b"A": _parse_notification,
            b"G": lambda b, s, e: ev.CopyInResponse(*_parse_copy_response(b, s, e)),
            b"H": lambda b, s, e: ev.CopyOutResponse(*_parse_copy_response(b, s, e)),
            b"W": lambda b, s, e: ev.CopyBothResponse(*_parse_copy_response(b, s, e)),
            b"d": lambda b, s, e: ev.CopyData(b[s:e]),
            b"v": _parse_negotiate_protocol_version,
        }
        return {key[0]: parser for key, parser in table.items()}

    def _command_complete(self, buf: bytes, start: int, end: int) -> ev.Event:
        """CommandComplete, memoized by its bytes (tags like ``SELECT 1`` repeat)."""
        key = buf[start:end]
        cached = self._command_tags.get(key)
        if cached is None:
            cached = _parse_command_complete(buf, start, end)
            if len(self._command_tags) >= 256:
                self._command_tags.clear()
            self._command_tags[key] = cached
        return cached

    def _row_description(self, buf: bytes, start: int, end: int) -> ev.Event:
        """RowDescription, memoized by its bytes: a repeated query reuses one event object."""
        key = buf[start:end]
        cached = self._row_descriptions.get(key)
        if cached is None:
            cached = _parse_row_description(buf, start, end)
            if len(self._row_descriptions) >= 256:
                self._row_descriptions.clear()
            self._row_descriptions[key] = cached
        return cached

    # ------------------------------------------------------------- transitions

    _ALLOWED: dict[State, frozenset[type]] = {
        State.AUTHENTICATING: frozenset(
            {
                ev.AuthenticationOk,
                ev.AuthenticationCleartextPassword,
                ev.AuthenticationMD5Password,
                ev.AuthenticationSASL,
                ev.AuthenticationSASLContinue,
                ev.AuthenticationSASLFinal,
                ev.ErrorResponse,
                ev.NoticeResponse,
                ev.NegotiateProtocolVersion,
            }
        ),
        State.STARTING: frozenset(
            {ev.ParameterStatus, ev.BackendKeyData, ev.ReadyForQuery, ev.ErrorResponse, ev.NoticeResponse}
        ),
        State.READY: frozenset({ev.ParameterStatus, ev.NoticeResponse, ev.NotificationResponse, ev.ErrorResponse}),
        State.COPY_IN: frozenset(
            {
                ev.ParameterStatus,
                ev.NoticeResponse,
                ev.NotificationResponse,
                ev.ErrorResponse,
                ev.CommandComplete,
                ev.ReadyForQuery,
                ev.CopyInResponse,
            }
        ),
        State.COPY_OUT: frozenset(
            {
                ev.ParameterStatus,
                ev.NoticeResponse,
                ev.NotificationResponse,
                ev.ErrorResponse,
                ev.CopyData,
                ev.CopyDone,
                ev.CommandComplete,
            }
        ),
    }

    def _transition(self, event: ev.Event) -> None:
        state = self.state
        cls = type(event)
        if state is State.BUSY:
            if cls is ev.ReadyForQuery:
                self._ready(event)  # type: ignore[arg-type]
            elif cls is ev.CopyInResponse:
                self.state = State.COPY_IN
            elif cls is ev.CopyOutResponse:
                self.state = State.COPY_OUT
            elif cls is ev.ParameterStatus:
                self.parameters[event.name] = event.value  # type: ignore[attr-defined]
            elif cls in _NEVER_WHEN_BUSY:
                self._fail(f"{cls.__name__} received while a query is running")
            return
        allowed = self._ALLOWED.get(state)
        if allowed is None or cls not in allowed:
            self._fail(f"{cls.__name__} received in state {state.name}")
        if state is State.AUTHENTICATING:
            if cls is ev.AuthenticationOk:
                self.state = State.STARTING
            elif cls is ev.ErrorResponse:
                self.state = State.CLOSED  # the server closes after a startup error
        elif state is State.STARTING:
            if cls is ev.BackendKeyData:
                self.process_id = event.process_id  # type: ignore[attr-defined]
                self.secret_key = event.secret_key  # type: ignore[attr-defined]
            elif cls is ev.ReadyForQuery:
                self.transaction_status = event.status  # type: ignore[attr-defined]
                # Queries pipelined behind the startup may be outstanding already.
                self.state = State.BUSY if self._pending_ready else State.READY
            elif cls is ev.ErrorResponse:
                self.state = State.CLOSED
        elif state is State.READY:
            if cls is ev.ErrorResponse:
                # An unsolicited error (e.g. the backend was terminated): a FATAL ends the session.
                if event.fields.get("V", event.fields.get("S")) in ("FATAL", "PANIC"):  # type: ignore[attr-defined]
                    self.state = State.CLOSED
        elif state is State.COPY_IN:
            if cls is ev.ReadyForQuery:
                self._ready(event)  # type: ignore[arg-type]
            elif cls is ev.CommandComplete or cls is ev.ErrorResponse:
                self.state = State.BUSY
        elif state is State.COPY_OUT:
            if cls is ev.CommandComplete or cls is ev.ErrorResponse:
                self.state = State.BUSY
        if cls is ev.ParameterStatus:
            self.parameters[event.name] = event.value  # type: ignore[attr-defined]

    def _ready(self, event: ev.ReadyForQuery) -> None:
        self.transaction_status = event.status
        self._pending_ready -= 1
        if self._pending_ready <= 0:
            self._pending_ready = 0
            self.state = State.READY
        else:
            self.state = State.BUSY

    # ------------------------------------------------------------------ output

    def _check_can_send(self, *allowed: State) -> None:
        state = self.state
        if state not in allowed and not (
            self._startup_handler is not None and State.READY in allowed and state in _STARTUP_STATES
        ):
            raise LocalProtocolError(f"cannot send that in state {state.name}")

    def finish_startup_with(self, handler: Callable[[Any], None]) -> None:
        """Let queries be sent before startup completes (a pipelined connect).

        From now on every startup message the server sends (authentication, ParameterStatus,
        BackendKeyData, the first ReadyForQuery) goes to ``handler`` instead of being returned
        by ``next_event``, ahead of the results of the queries sent meanwhile; an exception the
        handler raises (a failed login) comes out of ``next_event``. EOF reaches it as
        ``END_OF_STREAM``.
        """
        if self.state not in _STARTUP_STATES:
            raise LocalProtocolError(f"finish_startup_with() needs a startup in progress, not {self.state.name}")
        self._startup_handler = handler

    @property
    def startup_in_background(self) -> bool:
        """Whether startup is being finished behind pipelined queries."""
        return self._startup_handler is not None

    def send_ssl_request(self) -> bytes:
        """SSLRequest: ask to switch to TLS; the answer is an ``SSLResponse`` event."""
        self._check_can_send(State.STARTUP)
        self.state = State.SSL_REQUESTED
        self._need = 1
        return msg.SSL_REQUEST

    def send_startup(self, parameters: Mapping[str, str]) -> bytes:
        """The StartupMessage (user, database, application_name, options, ...)."""
        self._check_can_send(State.STARTUP)
        data = msg.startup_message(parameters)
        self.state = State.AUTHENTICATING
        self._need = 5
        return data

    def send_password(self, password: str | bytes) -> bytes:
        """A PasswordMessage (cleartext or md5 hash)."""
        self._check_can_send(State.AUTHENTICATING)
        return msg.password_message(password)

    def send_sasl_initial_response(self, mechanism: str, data: bytes) -> bytes:
        """The first SASL message."""
        self._check_can_send(State.AUTHENTICATING)
        return msg.sasl_initial_response(mechanism, data)

    def send_sasl_response(self, data: bytes) -> bytes:
        """A later SASL message."""
        self._check_can_send(State.AUTHENTICATING)
        return msg.sasl_response(data)

    def send_query(self, sql: str) -> bytes:
        """Query: the simple protocol; several statements may share the string."""
        self._check_can_send(State.READY, State.BUSY)
        data = msg.query_message(sql)
        self._pending_ready += 1
        if self.state is State.READY:
            self.state = State.BUSY
        return data

    def send_parse(self, name: str, sql: str, param_oids: Sequence[int] = ()) -> bytes:
        """Parse a statement (extended protocol)."""
        self._check_can_send(State.READY, State.BUSY)
        return msg.parse_message(name, sql, param_oids)

    def send_bind(
        self,
        portal: str,
        statement: str,
        params: Sequence[bytes | None],
        param_formats: Sequence[int] = (),
        result_formats: Sequence[int] = (),
    ) -> bytes:
        """Bind parameters to a statement, creating a portal."""
        self._check_can_send(State.READY, State.BUSY)
        return msg.bind_message(portal, statement, params, param_formats, result_formats)

    def send_describe(self, kind: str, name: str = "") -> bytes:
        """Describe a statement (``S``) or portal (``P``)."""
        self._check_can_send(State.READY, State.BUSY)
        return msg.describe_message(kind, name)

    def send_execute(self, portal: str = "", max_rows: int = 0) -> bytes:
        """Execute a portal."""
        self._check_can_send(State.READY, State.BUSY)
        return msg.execute_message(portal, max_rows)

    def send_close(self, kind: str, name: str = "") -> bytes:
        """Close a statement or portal."""
        self._check_can_send(State.READY, State.BUSY)
        return msg.close_message(kind, name)

    def send_flush(self) -> bytes:
        """Flush: ask the server to send what it has buffered, without a Sync."""
        self._check_can_send(State.READY, State.BUSY)
        return msg.FLUSH

    def send_extended_query(
        self,
        statement: str,
        sql: str,
        param_oids: tuple[int, ...],
        params: Sequence[bytes | None],
        param_formats: Sequence[int] = (),
        result_formats: Sequence[int] = (),
        *,
        parse: bool = True,
        sync: bool = True,
    ) -> bytes:
        """Parse (optional), Bind, Describe portal, Execute and (optional) Sync in one buffer.

        The Parse message of a repeated statement is reused from a small cache.
        """
        state = self.state
        if state is not State.READY and state is not State.BUSY:
            if self._startup_handler is None or state not in _STARTUP_STATES:
                raise LocalProtocolError(f"cannot send a query in state {state.name}")
        parts = []
        if parse:
            key = (statement, sql, param_oids)
            parse_bytes = self._parse_cache.get(key)
            if parse_bytes is None:
                parse_bytes = msg.parse_message(statement, sql, param_oids)
                if len(self._parse_cache) >= 128:
                    self._parse_cache.clear()
                if len(sql) < 4096:
                    self._parse_cache[key] = parse_bytes
            parts.append(parse_bytes)
        parts.append(msg.bind_message("", statement, params, param_formats, result_formats))
        parts.append(_DESCRIBE_EXECUTE)
        if sync:
            parts.append(msg.SYNC)
            self._pending_ready += 1
            if state is State.READY:
                self.state = State.BUSY
        return b"".join(parts)

    def send_sync(self) -> bytes:
        """Sync: end of a pipelined block; the server answers ReadyForQuery."""
        self._check_can_send(State.READY, State.BUSY)
        self._pending_ready += 1
        if self.state is State.READY:
            self.state = State.BUSY
        return msg.SYNC

    def expect_ready(self, count: int = 1) -> None:
        """Account for Sync or Query messages that were built without this machine."""
        self._pending_ready += count
        if self.state is State.READY:
            self.state = State.BUSY

    def send_copy_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """CopyData during COPY FROM STDIN."""
        self._check_can_send(State.COPY_IN)
        return msg.copy_data_message(data)

    def send_copy_done(self) -> bytes:
        """CopyDone: the end of COPY FROM STDIN data."""
        self._check_can_send(State.COPY_IN)
        self.state = State.BUSY
        return msg.COPY_DONE

    def send_copy_fail(self, reason: str) -> bytes:
        """CopyFail: abort COPY FROM STDIN."""
        self._check_can_send(State.COPY_IN)
        self.state = State.BUSY
        return msg.copy_fail_message(reason)

    def send_terminate(self) -> bytes:
        """Terminate: the polite goodbye."""
        if self.state in (State.CLOSED, State.ERROR):
            return b""
        self.state = State.CLOSED
        return msg.TERMINATE

    @property
    def pending_syncs(self) -> int:
        """How many ReadyForQuery messages are still expected."""
        return self._pending_ready


_NEVER_WHEN_BUSY = frozenset(
    {
        ev.AuthenticationOk,
        ev.AuthenticationCleartextPassword,
        ev.AuthenticationMD5Password,
        ev.AuthenticationSASL,
        ev.AuthenticationSASLContinue,
        ev.AuthenticationSASLFinal,
        ev.BackendKeyData,
        ev.NegotiateProtocolVersion,
        ev.CopyData,
        ev.CopyDone,
    }
)


_STARTUP_STATES = frozenset({State.AUTHENTICATING, State.STARTING})

_DESCRIBE_EXECUTE = msg.describe_message("P") + msg.execute_message()
_BUSY = State.BUSY

# What a message does to the BUSY state, by type byte: 0 nothing, 1 ReadyForQuery,
# 2 anything else (checked by _transition).
_BUSY_ACTIONS = [2] * 256
for _code in b"123nsItTCENA":
    _BUSY_ACTIONS[_code] = 0
_BUSY_ACTIONS[ord("Z")] = 1

_SINGLETONS: list[ev.Event | None] = [None] * 256
_SINGLETONS[ord("1")] = ev.PARSE_COMPLETE
_SINGLETONS[ord("2")] = ev.BIND_COMPLETE
_SINGLETONS[ord("3")] = ev.CLOSE_COMPLETE
_SINGLETONS[ord("n")] = ev.NO_DATA
_SINGLETONS[ord("s")] = ev.PORTAL_SUSPENDED
_SINGLETONS[ord("I")] = ev.EMPTY_QUERY_RESPONSE


# ---------------------------------------------------------------- message parsers


def _empty(buf: bytes, start: int, end: int, event: ev.Event) -> ev.Event:
    if start != end:
        raise RemoteProtocolError(f"{type(event).__name__} should have no body")
    return event


def _cstr(buf: bytes, start: int, end: int) -> tuple[str, int]:
    nul = buf.find(b"\x00", start, end)
    if nul < 0:
        raise RemoteProtocolError("unterminated string in backend message")
    return buf[start:nul].decode("utf-8"), nul + 1


def _check_end(pos: int, end: int, what: str) -> None:
    if pos != end:
        raise RemoteProtocolError(f"{what}: message length does not match its content")


def _parse_authentication(buf: bytes, start: int, end: int) -> ev.Event:
    if end - start < 4:
        raise RemoteProtocolError("Authentication message too short")
    (code,) = _unpack_i(buf, start)
    pos = start + 4
    if code == 0:
        _check_end(pos, end, "AuthenticationOk")
        return ev.AuthenticationOk()
    if code == 3:
        _check_end(pos, end, "AuthenticationCleartextPassword")
        return ev.AuthenticationCleartextPassword()
    if code == 5:
        _check_end(pos + 4, end, "AuthenticationMD5Password")
        return ev.AuthenticationMD5Password(buf[pos : pos + 4])
    if code == 10:
        mechanisms = []
        while pos < end:
            if buf[pos] == 0:
                pos += 1
                break
            name, pos = _cstr(buf, pos, end)
            mechanisms.append(name)
        _check_end(pos, end, "AuthenticationSASL")
        return ev.AuthenticationSASL(tuple(mechanisms))
    if code == 11:
        return ev.AuthenticationSASLContinue(buf[pos:end])
    if code == 12:
        return ev.AuthenticationSASLFinal(buf[pos:end])
    raise RemoteProtocolError(f"unsupported authentication method requested by the server (code {code})")


def _parse_parameter_status(buf: bytes, start: int, end: int) -> ev.Event:
    name, pos = _cstr(buf, start, end)
    value, pos = _cstr(buf, pos, end)
    _check_end(pos, end, "ParameterStatus")
    return ev.ParameterStatus(name, value)


def _parse_backend_key_data(buf: bytes, start: int, end: int) -> ev.Event:
    _check_end(start + 8, end, "BackendKeyData")
    pid, key = _unpack_ii(buf, start)
    return ev.BackendKeyData(pid, key)


_READY = {b"I"[0]: ev.ReadyForQuery("I"), b"T"[0]: ev.ReadyForQuery("T"), b"E"[0]: ev.ReadyForQuery("E")}


def _parse_ready_for_query(buf: bytes, start: int, end: int) -> ev.Event:
    _check_end(start + 1, end, "ReadyForQuery")
    event = _READY.get(buf[start])
    if event is None:
        raise RemoteProtocolError(f"ReadyForQuery with unknown status {buf[start:end]!r}")
    return event


def _parse_parameter_description(buf: bytes, start: int, end: int) -> ev.Event:
    (n,) = _unpack_H(buf, start)
    _check_end(start + 2 + 4 * n, end, "ParameterDescription")
    return ev.ParameterDescription(struct.unpack_from(f"!{n}I", buf, start + 2))


def _parse_row_description(buf: bytes, start: int, end: int) -> ev.Event:
    (n,) = _unpack_H(buf, start)
    pos = start + 2
    fields = []
    for _ in range(n):
        name, pos = _cstr(buf, pos, end)
        if pos + 18 > end:
            raise RemoteProtocolError("RowDescription truncated")
        table_oid, column_id, type_oid, type_size, type_modifier, fmt = _unpack_field(buf, pos)
        pos += 18
        fields.append(ev.FieldDescription(name, table_oid, column_id, type_oid, type_size, type_modifier, fmt))
    _check_end(pos, end, "RowDescription")
    return ev.RowDescription(tuple(fields))


def _parse_command_complete(buf: bytes, start: int, end: int) -> ev.Event:
    tag, pos = _cstr(buf, start, end)
    _check_end(pos, end, "CommandComplete")
    return ev.CommandComplete(tag)


def _parse_fields(buf: bytes, start: int, end: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = start
    while True:
        if pos >= end:
            raise RemoteProtocolError("error/notice fields not terminated")
        code = buf[pos]
        pos += 1
        if code == 0:
            break
        value, pos = _cstr(buf, pos, end)
        fields[chr(code)] = value
    _check_end(pos, end, "ErrorResponse/NoticeResponse")
    return fields


def _parse_notification(buf: bytes, start: int, end: int) -> ev.Event:
    if end - start < 4:
        raise RemoteProtocolError("NotificationResponse too short")
    (pid,) = _unpack_i(buf, start)
    channel, pos = _cstr(buf, start + 4, end)
    payload, pos = _cstr(buf, pos, end)
    _check_end(pos, end, "NotificationResponse")
    return ev.NotificationResponse(pid, channel, payload)


def _parse_copy_response(buf: bytes, start: int, end: int) -> tuple[int, tuple[int, ...]]:
    fmt = buf[start]
    (n,) = _unpack_H(buf, start + 1)
    _check_end(start + 3 + 2 * n, end, "CopyResponse")
    return fmt, struct.unpack_from(f"!{n}h", buf, start + 3)


def _parse_negotiate_protocol_version(buf: bytes, start: int, end: int) -> ev.Event:
    minor, n = _unpack_ii(buf, start)
    pos = start + 8
    if n < 0:
        raise RemoteProtocolError("NegotiateProtocolVersion with a negative option count")
    names = []
    for _ in range(n):
        name, pos = _cstr(buf, pos, end)
        names.append(name)
    _check_end(pos, end, "NegotiateProtocolVersion")
    return ev.NegotiateProtocolVersion(minor, tuple(names))
