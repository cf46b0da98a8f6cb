"""The trio backend of ``neon_async``: trio's streams, clock, cancel scopes and locks."""

from __future__ import annotations

import math
from typing import Any

import trio

from neon_async.backend import Stream
from neon_trio._io import TrioTransport, open_stream

__all__ = ["TrioBackend", "TRIO"]


class _Scope:
    """A trio CancelScope entered as an async context manager; ``expired`` when its deadline hit."""

    __slots__ = ("_scope",)

    def __init__(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    @property
    def expired(self) -> bool:
        return self._scope.cancelled_caught

    async def __aenter__(self) -> _Scope:
        self._scope.__enter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool:
        return bool(self._scope.__exit__(*exc))


class TrioBackend:
    """``neon_async.backend.Backend`` for trio."""

    name = "trio"
    cancelled: type[BaseException] = trio.Cancelled
    checkpoints = True

    async def open_stream(self, host: str, port: int) -> Stream:
        return TrioTransport(await open_stream(host, port))

    def time(self) -> float:
        return trio.current_time()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    async def checkpoint(self) -> None:
        await trio.lowlevel.checkpoint()

    async def checkpoint_if_cancelled(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()

    async def schedule_point(self) -> None:
        await trio.lowlevel.cancel_shielded_checkpoint()

    def timeout(self, seconds: float | None) -> _Scope:
        return _Scope(trio.move_on_after(math.inf if seconds is None else seconds))

    def shielded(self, seconds: float) -> _Scope:
        return _Scope(trio.CancelScope(shield=True, deadline=trio.current_time() + seconds))

    def event(self) -> trio.Event:
        return trio.Event()


TRIO = TrioBackend()
