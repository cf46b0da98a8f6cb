"""What one client may hold of a listener: a connection slot, and the deadlines of a request.

Shared by every endpoint the proxy serves (HTTP ``/sql``, the WebSocket upgrade): a
connection takes a ``ConnectionSlots`` slot when it is accepted and gives it back when it
closes, or is refused with ``REFUSAL`` when none is free; a request's head must arrive
within ``head_timeout`` of its first byte and its body within ``body_timeout`` of the head
(``RequestDeadlines``). Trickling clients therefore hold a slot for a bounded time, and
there are never more of them than slots.
"""

from __future__ import annotations

import json
import resource

import attrs

__all__ = ["ConnectionSlots", "RequestDeadlines", "REFUSAL", "default_max_connections", "timeout_response"]


def default_max_connections() -> int:
    """4096 client connections, or half the process's descriptor limit when that is lower."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2))


def _response(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"message": message, "code": "", "severity": ""}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"{extra}connection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSAL = _response(
    "503 Service Unavailable", "the proxy has too many open connections; try again shortly", "retry-after: 1\r\n"
)
"""The whole answer to a connection accepted while every slot is taken (then it is closed)."""


def timeout_response(what: str, seconds: float) -> bytes:
    """A 408 for a request whose ``what`` ("head", "body") did not arrive in time."""
    return _response("408 Request Timeout", f"the request {what} did not arrive within {seconds:g} s")


class ConnectionSlots:
    """A bound on open client connections: ``try_take()`` on accept, ``give_back()`` on close."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"the connection limit must be positive, not {limit}")
        self.limit = limit
        self.open = 0
        self.refused = 0

    def __repr__(self) -> str:
        return f"<ConnectionSlots {self.open}/{self.limit} refused={self.refused}>"

    def try_take(self) -> bool:
        """Take a slot for a new connection; False (and counted as refused) when none is free."""
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        """The connection closed: its slot is free again."""
        if self.open > 0:
            self.open -= 1


@attrs.frozen
class RequestDeadlines:
    """How long a request's head and body may take (seconds), whatever the reads look like."""

    head_timeout: float
    body_timeout: float

    def head_deadline(self, first_byte_at: float) -> float:
        """When the head must be complete, given when its first byte arrived."""
        return first_byte_at + self.head_timeout

    def body_deadline(self, head_done_at: float) -> float:
        """When the body must be complete, given when the head was."""
        return head_done_at + self.body_timeout
