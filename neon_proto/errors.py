"""The one error hierarchy: PEP 249 names at the top, protocol errors and SQLSTATE classes below.

Every error the server reports becomes an instance of the class generated for its SQLSTATE
(see ``neon_proto.sqlstate``), carrying ``sqlstate`` and a ``diag`` with every field sent.
"""

from __future__ import annotations

from typing import Any, Mapping

import attrs

__all__ = [
    "DBAPIExceptions",
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "ConnectionClosed",
    "QueryCanceled",
    "PipelineAborted",
    "Diagnostic",
    "FIELD_CODES",
    "error_from_fields",
    "class_for_sqlstate",
]


class Warning(Exception):  # noqa: A001 - the PEP 249 name
    """A warning from the database (PEP 249)."""


class Error(Exception):
    """The base of every error this project raises (PEP 249)."""

    sqlstate: str | None = None

    def __init__(self, *args: Any, diag: "Diagnostic | None" = None) -> None:
        super().__init__(*args)
        self.diag = diag if diag is not None else Diagnostic()
        if diag is not None and diag.code:
            self.sqlstate = diag.code


class InterfaceError(Error):
    """The driver was misused or failed on its own side (PEP 249)."""


class DatabaseError(Error):
    """An error related to the database (PEP 249)."""


class DataError(DatabaseError):
    """A value could not be processed: out of range, bad format, NUL in text (PEP 249)."""


class OperationalError(DatabaseError):
    """The connection or the server failed: refused, dropped, auth failed, timed out (PEP 249)."""


class IntegrityError(DatabaseError):
    """A constraint was violated (PEP 249)."""


class InternalError(DatabaseError):
    """The database hit an internal error (PEP 249)."""


class ProgrammingError(DatabaseError):
    """A mistake in the SQL or its parameters (PEP 249)."""


class NotSupportedError(DatabaseError):
    """The database does not support what was asked (PEP 249)."""


class LocalProtocolError(InterfaceError):
    """The caller used a protocol machine in a way the protocol does not allow."""


class RemoteProtocolError(OperationalError):
    """The peer sent bytes that break the protocol; the connection cannot continue."""


class ConnectionClosed(OperationalError):
    """The connection is closed, or was lost while in use."""


class QueryCanceled(OperationalError):
    """The query was canceled (SQLSTATE 57014)."""

    sqlstate = "57014"


class PipelineAborted(OperationalError):
    """A pipelined query was skipped because an earlier query in the same sync block failed."""


# ErrorResponse / NoticeResponse field type bytes and the attribute names they fill.
FIELD_CODES: dict[str, str] = {
    "S": "severity_local",
    "V": "severity",
    "C": "code",
    "M": "message",
    "D": "detail",
    "H": "hint",
    "P": "position",
    "p": "internal_position",
    "q": "internal_query",
    "W": "where",
    "s": "schema",
    "t": "table",
    "c": "column",
    "d": "data_type",
    "n": "constraint",
    "F": "file",
    "L": "line",
    "R": "routine",
}


@attrs.frozen
class Diagnostic:
    """Every field of a server ErrorResponse or NoticeResponse; absent fields are None."""

    severity: str | None = None
    severity_local: str | None = None
    code: str | None = None
    message: str | None = None
    detail: str | None = None
    hint: str | None = None
    position: str | None = None
    internal_position: str | None = None
    internal_query: str | None = None
    where: str | None = None
    schema: str | None = None
    table: str | None = None
    column: str | None = None
    data_type: str | None = None
    constraint: str | None = None
    file: str | None = None
    line: str | None = None
    routine: str | None = None

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> "Diagnostic":
        """Build from the raw one-letter field codes of an ErrorResponse."""
        kwargs = {FIELD_CODES[k]: v for k, v in fields.items() if k in FIELD_CODES}
        if "severity" not in kwargs and "severity_local" in kwargs:
            kwargs["severity"] = kwargs["severity_local"]
        return cls(**kwargs)


_CLASS_BASES: dict[str, type[Error]] = {
    "02": DatabaseError,  # no data
    "03": ProgrammingError,
    "08": OperationalError,
    "09": DatabaseError,
    "0A": NotSupportedError,
    "0B": DatabaseError,
    "0F": DatabaseError,
    "0L": DatabaseError,
    "0P": DatabaseError,
    "0Z": DatabaseError,
    "20": ProgrammingError,
    "21": ProgrammingError,
    "22": DataError,
    "23": IntegrityError,
    "24": InternalError,
    "25": InternalError,
    "26": InternalError,
    "27": OperationalError,
    "28": OperationalError,
    "2B": InternalError,
    "2D": InternalError,
    "2F": InternalError,
    "34": ProgrammingError,
    "38": InternalError,
    "39": InternalError,
    "3B": InternalError,
    "3D": ProgrammingError,
    "3F": ProgrammingError,
    "40": OperationalError,
    "42": ProgrammingError,
    "44": ProgrammingError,
    "53": OperationalError,
    "54": OperationalError,
    "55": OperationalError,
    "57": OperationalError,
    "58": OperationalError,
    "72": DatabaseError,
    "F0": InternalError,
    "HV": OperationalError,
    "P0": InternalError,
    "XX": InternalError,
}


def base_for_sqlstate(sqlstate: str) -> type[Error]:
    """The PEP 249 class a SQLSTATE's class (first two characters) maps to."""
    return _CLASS_BASES.get(sqlstate[:2], DatabaseError)


def class_for_sqlstate(sqlstate: str | None) -> type[Error]:
    """The most specific exception class for a SQLSTATE (the generated one, else its class's)."""
    from neon_proto import sqlstate as generated

    if not sqlstate:
        return DatabaseError
    cls = generated.BY_SQLSTATE.get(sqlstate)
    if cls is not None:
        return cls
    cls = generated.BY_SQLSTATE.get(sqlstate[:2] + "000")
    if cls is not None:
        return cls
    return base_for_sqlstate(sqlstate)


def error_from_diagnostic(diag: Diagnostic) -> Error:
    """The exception for a server error, with its message and every field."""
    cls = class_for_sqlstate(diag.code)
    return cls(diag.message or "unknown server error", diag=diag)


def error_from_fields(fields: Mapping[str, str]) -> Error:
    """The exception for the raw fields of an ErrorResponse."""
    return error_from_diagnostic(Diagnostic.from_fields(fields))


class DBAPIExceptions:
    """PEP 249's optional extension: the exception classes as attributes of a connection."""

    Warning = Warning
    Error = Error
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError
