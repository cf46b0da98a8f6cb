"""Events: what the Postgres backend said, one frozen class per protocol message.

The frontend machine (``neon_proto.frontend``) turns bytes into these. Messages with no
content are singletons (``PARSE_COMPLETE`` and friends) so the hot path allocates nothing
for them; consecutive DataRow messages arrive batched in one ``DataRows`` event.
"""

from __future__ import annotations

from typing import Any

import attrs

from neon_proto.errors import Diagnostic, Error, error_from_diagnostic

__all__ = [
    "Event",
    "SSLResponse",
    "AuthenticationOk",
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "ParameterStatus",
    "BackendKeyData",
    "NegotiateProtocolVersion",
    "ReadyForQuery",
    "ParseComplete",
    "BindComplete",
    "CloseComplete",
    "NoData",
    "PortalSuspended",
    "EmptyQueryResponse",
    "ParameterDescription",
    "FieldDescription",
    "RowDescription",
    "DataRows",
    "CommandComplete",
    "ErrorResponse",
    "NoticeResponse",
    "NotificationResponse",
    "CopyInResponse",
    "CopyOutResponse",
    "CopyBothResponse",
    "CopyData",
    "CopyDone",
    "EndOfStream",
    "PARSE_COMPLETE",
    "BIND_COMPLETE",
    "CLOSE_COMPLETE",
    "NO_DATA",
    "PORTAL_SUSPENDED",
    "EMPTY_QUERY_RESPONSE",
    "COPY_DONE",
    "END_OF_STREAM",
]


class Event:
    """Base class of every backend event."""

    __slots__ = ()


@attrs.frozen(slots=True)
class SSLResponse(Event):
    """The one-byte answer to SSLRequest: ``S`` (accepted) or ``N`` (refused)."""

    accepted: bool


@attrs.frozen(slots=True)
class AuthenticationOk(Event):
    """Authentication succeeded."""


@attrs.frozen(slots=True)
class AuthenticationCleartextPassword(Event):
    """The server asks for the password in clear text."""


@attrs.frozen(slots=True)
class AuthenticationMD5Password(Event):
    """The server asks for an MD5-hashed password with this salt."""

    salt: bytes


@attrs.frozen(slots=True)
class AuthenticationSASL(Event):
    """The server starts SASL and lists the mechanisms it accepts."""

    mechanisms: tuple[str, ...]


@attrs.frozen(slots=True)
class AuthenticationSASLContinue(Event):
    """A SASL challenge (the server-first message in SCRAM)."""

    data: bytes


@attrs.frozen(slots=True)
class AuthenticationSASLFinal(Event):
    """The SASL outcome (the server-final message in SCRAM)."""

    data: bytes


@attrs.frozen(slots=True)
class ParameterStatus(Event):
    """A run-time parameter's current value (sent at startup and whenever it changes)."""

    name: str
    value: str


@attrs.frozen(slots=True)
class BackendKeyData(Event):
    """The process id and secret key a CancelRequest needs."""

    process_id: int
    secret_key: int = attrs.field(repr=False)


@attrs.frozen(slots=True)
class NegotiateProtocolVersion(Event):
    """The server supports only an older minor version and lists unrecognized options."""

    newest_minor_version: int
    unrecognized_options: tuple[str, ...]


@attrs.frozen(slots=True)
class ReadyForQuery(Event):
    """The server is idle; ``status`` is ``I`` (idle), ``T`` (in transaction) or ``E`` (failed transaction)."""

    status: str


@attrs.frozen(slots=True)
class ParseComplete(Event):
    """A Parse succeeded."""


@attrs.frozen(slots=True)
class BindComplete(Event):
    """A Bind succeeded."""


@attrs.frozen(slots=True)
class CloseComplete(Event):
    """A Close succeeded."""


@attrs.frozen(slots=True)
class NoData(Event):
    """The described statement or portal returns no rows."""


@attrs.frozen(slots=True)
class PortalSuspended(Event):
    """Execute stopped at its row limit; the portal has more rows."""


@attrs.frozen(slots=True)
class EmptyQueryResponse(Event):
    """The query string was empty."""


@attrs.frozen(slots=True)
class ParameterDescription(Event):
    """The parameter type OIDs of a described statement."""

    type_oids: tuple[int, ...]


@attrs.frozen(slots=True)
class FieldDescription:
    """One column of a RowDescription."""

    name: str
    table_oid: int
    column_id: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


@attrs.frozen(slots=True)
class RowDescription(Event):
    """The columns of the rows that follow."""

    fields: tuple[FieldDescription, ...]


@attrs.frozen(slots=True)
class DataRows(Event):
    """One or more consecutive DataRow messages.

    Each row is a list of cells (bytes, or None for NULL); when the connection has a
    ``row_parser`` the rows are what it returned instead, and ``decoded`` is True.
    """

    rows: list[Any]
    decoded: bool = False


@attrs.frozen(slots=True)
class CommandComplete(Event):
    """A command finished; ``tag`` is e.g. ``SELECT 3`` or ``INSERT 0 1``."""

    tag: str


def _diagnostic_fields(fields: dict[str, str]) -> Diagnostic:
    return Diagnostic.from_fields(fields)


@attrs.frozen(slots=True)
class ErrorResponse(Event):
    """The server reports an error; ``fields`` maps one-letter field codes to values."""

    fields: dict[str, str]

    @property
    def diagnostic(self) -> Diagnostic:
        """Every field, by name."""
        return _diagnostic_fields(self.fields)

    @property
    def sqlstate(self) -> str | None:
        """The SQLSTATE code."""
        return self.fields.get("C")

    def to_exception(self) -> Error:
        """The exception class for this SQLSTATE, carrying every field."""
        return error_from_diagnostic(self.diagnostic)


@attrs.frozen(slots=True)
class NoticeResponse(Event):
    """A notice or warning; ``fields`` maps one-letter field codes to values."""

    fields: dict[str, str]

    @property
    def diagnostic(self) -> Diagnostic:
        """Every field, by name."""
        return _diagnostic_fields(self.fields)


@attrs.frozen(slots=True)
class NotificationResponse(Event):
    """A NOTIFY delivered to this session's LISTEN."""

    process_id: int
    channel: str
    payload: str


@attrs.frozen(slots=True)
class CopyInResponse(Event):
    """The server is ready to receive COPY data."""

    format: int
    column_formats: tuple[int, ...]


@attrs.frozen(slots=True)
class CopyOutResponse(Event):
    """COPY data from the server follows."""

    format: int
    column_formats: tuple[int, ...]


@attrs.frozen(slots=True)
class CopyBothResponse(Event):
    """Both directions carry COPY data (replication)."""

    format: int
    column_formats: tuple[int, ...]


@attrs.frozen(slots=True)
class CopyData(Event):
    """A chunk of COPY data."""

    data: bytes


@attrs.frozen(slots=True)
class CopyDone(Event):
    """The server finished sending COPY data."""


@attrs.frozen(slots=True)
class EndOfStream(Event):
    """The peer closed the connection cleanly, between messages."""


PARSE_COMPLETE = ParseComplete()
BIND_COMPLETE = BindComplete()
CLOSE_COMPLETE = CloseComplete()
NO_DATA = NoData()
PORTAL_SUSPENDED = PortalSuspended()
EMPTY_QUERY_RESPONSE = EmptyQueryResponse()
COPY_DONE = CopyDone()
END_OF_STREAM = EndOfStream()
