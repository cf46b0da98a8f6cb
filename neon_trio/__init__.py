"""neon_trio: the trio binding. ``Client`` over TCP, with trio cancellation that keeps the connection usable."""

from neon_proto.errors import (
    ConnectionClosed,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PipelineAborted,
    ProgrammingError,
    QueryCanceled,
    Warning,
)
from neon_proto.results import Field, Result
from neon_trio.client import Client, Notification, Pipeline

__all__ = [
    "Client",
    "Pipeline",
    "Notification",
    "Result",
    "Field",
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
    "ConnectionClosed",
    "QueryCanceled",
    "PipelineAborted",
]
