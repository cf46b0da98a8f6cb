"""How a query with a timeout ends, whatever the server does: the rule every binding follows.

At the timeout the binding sends a CancelRequest (on a connection of its own). Then it
waits at most ``CANCEL_GRACE`` more seconds for the server to confirm, which means the
operation reaching its end: the server's QueryCanceled error (or the result, had it
just finished). Past that grace the server is not answering: the binding closes the
connection and raises ``ConnectionClosed``. The CancelRequest itself must fit in the
grace too, so a call never outlives its timeout by more than the grace.

``QueryDeadline`` holds the decision; the binding supplies the clock (``time.monotonic``,
``trio.current_time``, the loop's time) and does the I/O.
"""

from __future__ import annotations

from typing import Literal

from neon_proto.errors import ConnectionClosed

__all__ = ["CANCEL_GRACE", "QueryDeadline"]

CANCEL_GRACE = 2.0
"""Seconds allowed, after a query's timeout, for the cancel to be sent and confirmed."""


class QueryDeadline:
    """The two moments of a query with a timeout: when to cancel, then when to give up.

    ``wake_at`` is the next moment the binding must act; at it, ``expire()`` says what to
    do: ``"cancel"`` the first time, ``"abandon"`` the second (close, raise ``abandon_error()``).
    """

    __slots__ = ("timeout", "grace", "cancel_at", "abandon_at", "cancelled")

    def __init__(self, started_at: float, timeout: float, grace: float = CANCEL_GRACE) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        self.timeout = timeout
        self.grace = grace
        self.cancel_at = started_at + timeout
        self.abandon_at = self.cancel_at + grace
        self.cancelled = False

    def __repr__(self) -> str:
        return f"<QueryDeadline timeout={self.timeout:g} grace={self.grace:g} cancelled={self.cancelled}>"

    @property
    def wake_at(self) -> float:
        """When the binding must next act, if the operation has not ended by then."""
        return self.abandon_at if self.cancelled else self.cancel_at

    def expire(self) -> Literal["cancel", "abandon"]:
        """``wake_at`` has passed: what to do now."""
        if self.cancelled:
            return "abandon"
        self.cancelled = True
        return "cancel"

    def abandon_error(self) -> ConnectionClosed:
        """The error raised when the server did not confirm the cancel in time."""
        return ConnectionClosed(
            f"the query did not finish within its {self.timeout:g} s timeout and the server did not confirm"
            f" the cancel within {self.grace:g} s; the connection was closed"
        )
