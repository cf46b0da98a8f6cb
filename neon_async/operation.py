"""Driving one sans-IO operation over a backend's stream, resumable after a cancellation.

``drive`` is the whole binding in one loop: send what the operation yields, feed it what the
stream returns. ``Progress`` remembers where the loop stood, so that after the caller's task
was cancelled the same operation can be driven on to its end (the drain that keeps the
connection usable) without losing or repeating a byte.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from neon_async.backend import Sink, Stream
from neon_proto.errors import Error
from neon_proto.session import Op

__all__ = ["Progress", "drive"]

T = TypeVar("T")


class _Step:
    """Sentinels for ``Progress.out``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NEXT = _Step("NEXT")  # ask the operation for its next step (nothing is pending)


class Progress(Generic[T]):
    """An operation in flight and its pending step: bytes to send, None to receive, or next."""

    __slots__ = ("op", "out", "started")

    def __init__(self, op: Op[T]) -> None:
        self.op = op
        self.out: Any = _NEXT
        self.started = False


async def drive(progress: Progress[T], stream: Stream, sink: Sink) -> T:
    """Run (or resume) an operation to completion over ``stream``.

    A cancellation can arrive while receiving (nothing is lost: resume receives again) or
    after a send was handed to the loop (resume asks for the next step). Any other
    exception that is not the driver's own error breaks the stream, which is closed.
    """
    op = progress.op
    if not progress.started:
        # The first step builds the messages: an error there (a parameter no dumper takes)
        # comes before anything was sent, and leaves the stream as it was.
        progress.started = True
        try:
            out: Any = op.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
    else:
        out = progress.out
    try:
        if out is _NEXT:
            out = op.send(None)
        while True:
            if out is None:
                progress.out = None
                out = op.send(await stream.receive())
            else:
                if out:
                    progress.out = _NEXT
                    # Most messages leave at once; what the stream cannot take now is awaited.
                    sent = stream.send_nowait(out)
                    if sent < len(out):
                        await stream.send(memoryview(out)[sent:] if sent else out, sink)
                out = op.send(None)
    except StopIteration as stop:
        progress.out = _NEXT
        return stop.value  # type: ignore[no-any-return]
    except Error:
        raise
    except Exception:
        await stream.aclose()
        raise
