"""neon_proto: the sans-IO core. Bytes in, events out; calls in, bytes out.

No sockets, threads, clocks or event loops live here: the bindings (``neon_sync``,
``neon_trio``, ``neon_proxy``) move the bytes.
"""

from neon_proto import events
from neon_proto.conninfo import ConnectionParams, parse_connection_string
from neon_proto.errors import (
    ConnectionClosed,
    DatabaseError,
    DataError,
    Diagnostic,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    LocalProtocolError,
    NotSupportedError,
    OperationalError,
    PipelineAborted,
    ProgrammingError,
    QueryCanceled,
    RemoteProtocolError,
    Warning,
)
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from neon_proto.pyformat import convert_pyformat
from neon_proto.results import Field, Result
from neon_proto.session import Op, Query, Session

__all__ = [
    "events",
    "ConnectionParams",
    "parse_connection_string",
    "convert_pyformat",
    "FrontendConnection",
    "State",
    "NEED_DATA",
    "Session",
    "Query",
    "Op",
    "Result",
    "Field",
    "Diagnostic",
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
]
