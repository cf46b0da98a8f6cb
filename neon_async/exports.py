"""The names ``neon_trio`` and ``neon_asyncio`` export besides the classes they bind.

Each binding does ``from neon_async.exports import *`` so that the list is kept once.
"""

from neon_async.client import CopyOut, Notification, Notifications, Pipeline, RowStream
from neon_async.http import NeonQuery
from neon_async.pool import PoolStats, PoolTimeout, check_connection, reset_session
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
from neon_proto.http import HTTPStatusError
from neon_proto.results import Field, Result

__all__ = [
    "CopyOut",
    "Notification",
    "Notifications",
    "Pipeline",
    "RowStream",
    "NeonQuery",
    "PoolTimeout",
    "PoolStats",
    "check_connection",
    "reset_session",
    "HTTPStatusError",
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

BOUND = ["neon", "NeonHTTP", "Client", "Pool", "connect", "Connection", "Cursor"]
"""The names each binding defines for its loop."""
