"""One test body for every event loop: trio, asyncio and asyncio on uvloop.

``loop`` (a fixture in the async test modules) is a ``Loop``: ``loop.mod`` is ``neon_trio``
or ``neon_asyncio``, ``loop.run(main)`` runs an async function to completion on that loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
import trio

import neon_asyncio
import neon_trio
from neon_sync import Client as SyncClient

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in the test extra where it installs
    uvloop = None

LOOPS = ["trio", "asyncio", "uvloop"]


class Loop:
    """An event loop under test and the binding that runs on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mod: ModuleType = neon_trio if name == "trio" else neon_asyncio

    def __repr__(self) -> str:
        return self.name

    def run(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` to completion on this loop."""
        if self.name == "trio":
            return trio.run(fn)
        if self.name == "uvloop":
            if uvloop is None:
                pytest.skip("uvloop is not installed")
            return uvloop.run(fn())  # type: ignore[arg-type]
        return asyncio.run(fn())  # type: ignore[arg-type]

    async def sleep(self, seconds: float) -> None:
        await self.mod.Client.backend.sleep(seconds)

    async def concurrently(self, *fns: Callable[[], Awaitable[Any]]) -> None:
        """Run the functions as sibling tasks (a nursery, a TaskGroup) and wait for all."""
        if self.name == "trio":
            async with trio.open_nursery() as nursery:
                for fn in fns:
                    nursery.start_soon(fn)
        else:
            async with asyncio.TaskGroup() as group:
                for fn in fns:
                    group.create_task(fn())  # type: ignore[arg-type]

    def timeout(self, seconds: float) -> Any:
        """The loop's own deadline (trio.move_on_after, asyncio.timeout made to swallow its expiry)."""
        return self.mod.Client.backend.timeout(seconds)


def backend_activity(admin: SyncClient, pid: int) -> tuple[str, str] | None:
    """(state, query) of a backend from pg_stat_activity, None when it is gone."""
    rows = admin.query("SELECT state, query FROM pg_stat_activity WHERE pid = $1::int", [pid]).rows
    return (rows[0]["state"], rows[0]["query"]) if rows else None


def wait_until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll a server-side condition (blocking; for checks after the async part is done)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def backends_of(admin: SyncClient, application_name: str) -> int:
    """How many server backends carry this application_name."""
    rows = admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", [application_name])
    return int(rows.rows[0]["n"])


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> Loop:
    """Each event loop in turn (import this fixture into a test module)."""
    return Loop(request.param)


@pytest.fixture
def admin(pg: Any) -> Iterator[SyncClient]:
    """A blocking superuser connection to look at the server side (pg_stat_activity)."""
    with SyncClient(pg.dsn(), sslmode="disable") as c:
        yield c
