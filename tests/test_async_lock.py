"""neon_async.lock.TurnLock (a client's one-operation-at-a-time lock) on trio, asyncio and
uvloop: free without an await, first come first served, and a cancelled waiter never keeps
it."""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio.testing

from aio import Loop, loop  # noqa: F401  (fixture)
from neon_async.lock import TurnLock


def test_free_lock_is_taken_at_once_and_waiters_are_served_in_order(loop: Loop) -> None:
    async def main() -> None:
        lock = TurnLock(loop.mod.Client.backend)
        assert lock.try_acquire() and lock.locked() and not lock.try_acquire()
        order: list[int] = []

        async def waiter(n: int) -> None:
            await loop.sleep(0.01 * n)  # queue up in this order
            await lock.acquire()
            order.append(n)
            await loop.sleep(0.001)
            lock.release()

        async def holder() -> None:
            await loop.sleep(0.1)
            assert not lock.try_acquire()  # waiting tasks come first, even when it is released meanwhile
            lock.release()

        await loop.concurrently(holder, *(lambda n=n: waiter(n) for n in range(1, 5)))
        assert order == [1, 2, 3, 4]
        assert not lock.locked() and lock.try_acquire()

    loop.run(main)


def test_a_cancelled_waiter_leaves_the_line(loop: Loop) -> None:
    async def main() -> None:
        lock = TurnLock(loop.mod.Client.backend)
        await lock.acquire()
        async with loop.timeout(0.05) as scope:
            await lock.acquire()
        assert scope.expired
        lock.release()
        assert not lock.locked()

    loop.run(main)


def test_a_waiter_cancelled_after_the_handover_passes_the_lock_on() -> None:
    async def main() -> None:
        lock = TurnLock(Loop("asyncio").mod.Client.backend)
        await lock.acquire()
        first = asyncio.create_task(lock.acquire())
        second = asyncio.create_task(lock.acquire())
        await asyncio.sleep(0)  # both wait in line
        lock.release()  # handed to the first...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1)  # so the second one has it
        assert lock.locked()
        lock.release()
        assert not lock.locked()

    asyncio.run(main())


def test_trio_waiter_cancelled_as_the_lock_is_handed_over_never_strands_it() -> None:
    async def main() -> None:
        lock = TurnLock(Loop("trio").mod.Client.backend)
        await lock.acquire()
        got: list[str] = []

        async def take(name: str, scope: trio.CancelScope) -> None:
            with scope:
                await lock.acquire()
                got.append(name)
                lock.release()

        first, second = trio.CancelScope(), trio.CancelScope()
        with trio.fail_after(2):  # a stranded lock would leave the second waiter there forever
            async with trio.open_nursery() as nursery:
                nursery.start_soon(take, "first", first)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(take, "second", second)
                await trio.testing.wait_all_tasks_blocked()
                lock.release()  # handed to the first...
                first.cancel()  # ...cancelled in the same turn
        assert got[-1] == "second"
        assert not lock.locked()

    trio.run(main)
