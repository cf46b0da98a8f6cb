"""Upstream connections kept between requests, keyed by who connects to what.

A key is (endpoint, database, user, a keyed hash of the password, options): a connection is
only lent to a request that brings exactly the credentials it was opened with, so Postgres
has decided every credential the pool serves, and a wrong password opens (and fails) a new
connection. Before a connection is lent again it is reset; one that errored is dropped.
A released connection goes straight to the request that has waited longest for one, else
it waits idle; while idle it is watched, so one the server closes is dropped at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import deque
from typing import Awaitable, Callable

import attrs
import trio

from neon_proto.errors import Error, OperationalError
from neon_proxy.hangups import HangupWatcher
from neon_trio import Client

__all__ = ["PoolKey", "PooledConnection", "PoolTimeout", "UpstreamPool"]

logger = logging.getLogger("neon_proxy.pool")

_PASSWORD_KEY = secrets.token_bytes(32)


@attrs.frozen
class PoolKey:
    """What a pooled connection may be lent for."""

    endpoint: str
    database: str
    user: str
    password_digest: bytes = attrs.field(repr=False)
    options: str | None = None

    @classmethod
    def build(cls, endpoint: str, database: str, user: str, password: str, options: str | None) -> "PoolKey":
        """A key whose password part is an HMAC with a per-process secret (never the password)."""
        digest = hmac.new(_PASSWORD_KEY, password.encode("utf-8"), hashlib.sha256).digest()
        return cls(endpoint, database, user, digest, options)


class PoolTimeout(OperationalError):
    """No upstream connection became free in time (the per-key or total limit is reached)."""


class PooledConnection:
    """An upstream client lent out by the pool, with the bookkeeping of its idle life."""

    def __init__(self, client: Client, key: PoolKey) -> None:
        self.client = client
        self.key = key
        self.last_used = trio.current_time()
        self.counted = True
        self.taken = True
        self.dead = False
        self.watched: trio.socket.SocketType | None = None  # registered with the hang-up watcher
        self.watch_scope: trio.CancelScope | None = None  # the watching task, where there is one
        self.watch_done: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<PooledConnection {self.key.user}@{self.key.endpoint}/{self.key.database} pid={self.client.backend_pid}>"


@attrs.define(eq=False)
class _Waiter:
    """A request waiting for a connection of its key: handed one, or woken to look again."""

    event: trio.Event = attrs.field(factory=trio.Event)
    conn: PooledConnection | None = None


@attrs.define
class _Bucket:
    idle: list[PooledConnection] = attrs.field(factory=list)
    waiters: deque[_Waiter] = attrs.field(factory=deque)
    size: int = 0  # open or opening
    resetting: int = 0

    @property
    def unused(self) -> bool:
        return not self.idle and not self.size and not self.resetting and not self.waiters


class UpstreamPool:
    """Per-key and total limits on open upstream connections, idle expiry, reset before reuse.

    ``run()`` must be running (in a nursery) for connections to be kept; without it every
    released connection is closed. ``reset`` is awaited before a connection is kept, unless
    ``needs_reset(client)`` says there is nothing to do.
    """

    def __init__(
        self,
        *,
        reset: Callable[[Client], Awaitable[None]],
        needs_reset: Callable[[Client], bool] | None = None,
        max_per_key: int = 20,
        max_total: int = 20000,
        idle_timeout: float = 300.0,
        acquire_timeout: float = 15.0,
        reset_timeout: float = 5.0,
    ) -> None:
        self.max_per_key = max_per_key
        self.max_total = max_total
        self.idle_timeout = idle_timeout
        self.acquire_timeout = acquire_timeout
        self.reset_timeout = reset_timeout
        self._reset = reset
        self._needs_reset = needs_reset
        self._buckets: dict[PoolKey, _Bucket] = {}
        self._total = 0
        self._nursery: trio.Nursery | None = None
        self._hangups = HangupWatcher()

    def __repr__(self) -> str:
        return f"<UpstreamPool open={self._total} idle={self.idle_count} keys={len(self._buckets)}>"

    @property
    def size(self) -> int:
        """Upstream connections open or being opened."""
        return self._total

    @property
    def idle_count(self) -> int:
        """Upstream connections waiting to be lent."""
        return sum(len(b.idle) for b in self._buckets.values())

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep idle connections (watched, expired after ``idle_timeout``) until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._hangups.run)
                self._nursery = nursery
                task_status.started()
                interval = max(0.5, min(30.0, self.idle_timeout / 4))
                while True:
                    await trio.sleep(interval)
                    self._expire_idle()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._close_idle()

    def _expire_idle(self) -> None:
        cutoff = trio.current_time() - self.idle_timeout
        for bucket in list(self._buckets.values()):
            for conn in [c for c in bucket.idle if c.last_used < cutoff]:
                logger.debug("closing idle upstream connection %r", conn)
                self._drop_idle(conn)

    async def _close_idle(self) -> None:
        idle = [c for b in self._buckets.values() for c in b.idle]
        for conn in idle:
            self._unwatch(conn)
        for bucket in self._buckets.values():
            bucket.idle.clear()
        for conn in idle:
            await self._discard(conn)

    # ------------------------------------------------------------------ lending

    def _notify(self) -> None:
        """Capacity changed (a connection closed, an open failed): every waiter looks again."""
        for bucket in self._buckets.values():
            for waiter in bucket.waiters:
                waiter.event.set()

    async def try_acquire(self, key: PoolKey) -> PooledConnection | None:
        """An idle connection for ``key`` if there is one now (neither waiting nor opening)."""
        bucket = self._buckets.get(key)
        while bucket is not None and bucket.idle:
            conn = bucket.idle.pop()
            conn.taken = True
            await self._stop_watching(conn)
            if conn.dead or conn.client.closed:
                await self._discard(conn)
                continue
            return conn
        return None

    async def acquire(self, key: PoolKey, connect: Callable[[], Awaitable[Client]]) -> PooledConnection:
        """A clean connection for ``key``: an idle one, one being released, or a new one from ``connect``."""
        deadline = trio.current_time() + self.acquire_timeout
        while True:
            idle = await self.try_acquire(key)
            if idle is not None:
                return idle
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket()
            # A reset is one round trip, a new connection several: wait for one being reset.
            if bucket.resetting <= len(bucket.waiters) and bucket.size < self.max_per_key:
                if self._total >= self.max_total:
                    self._evict_oldest_idle()
                if self._total < self.max_total:
                    return await self._open(key, bucket, connect)
            handed = await self._wait(bucket, deadline)
            if handed is not None:
                return handed

    async def _wait(self, bucket: _Bucket, deadline: float) -> PooledConnection | None:
        """Wait for a connection handed over by ``release`` (None: woken to look again)."""
        waiter = _Waiter()
        bucket.waiters.append(waiter)
        try:
            with trio.move_on_at(deadline):
                await waiter.event.wait()
        except BaseException:
            if waiter.conn is not None:  # handed over as we were cancelled: pass it on
                conn, waiter.conn = waiter.conn, None
                self._put_back(conn)
            raise
        finally:
            try:
                bucket.waiters.remove(waiter)
            except ValueError:
                pass
        if waiter.conn is not None:
            return waiter.conn
        if waiter.event.is_set():
            return None
        raise PoolTimeout(
            f"timed out waiting for an upstream connection (limits: {self.max_per_key} per user and database,"
            f" {self.max_total} in all)"
        )

    async def _open(self, key: PoolKey, bucket: _Bucket, connect: Callable[[], Awaitable[Client]]) -> PooledConnection:
        bucket.size += 1
        self._total += 1
        try:
            client = await connect()
        except BaseException:
            bucket.size -= 1
            self._total -= 1
            self._forget_if_unused(key, bucket)
            self._notify()
            raise
        conn = PooledConnection(client, key)
        logger.debug("opened upstream connection %r", conn)
        return conn

    def _evict_oldest_idle(self) -> None:
        idle = [c for b in self._buckets.values() for c in b.idle]
        if idle:
            self._drop_idle(min(idle, key=lambda c: c.last_used))

    def _drop_idle(self, conn: PooledConnection) -> None:
        """Take an idle connection out of the pool now and close it in the background."""
        bucket = self._buckets.get(conn.key)
        if bucket is None or conn not in bucket.idle:
            return
        bucket.idle.remove(conn)
        self._unwatch(conn)
        if conn.watch_scope is not None:
            conn.watch_scope.cancel()  # the watching task, seeing it not taken, closes it
            return
        self._uncount(conn)
        if self._nursery is not None:
            self._nursery.start_soon(self._discard, conn)

    def _forget_if_unused(self, key: PoolKey, bucket: _Bucket) -> None:
        if bucket.unused and self._buckets.get(key) is bucket:
            del self._buckets[key]

    async def release(self, conn: PooledConnection, *, reusable: bool) -> None:
        """Take a connection back: reset and keep it when ``reusable`` and healthy, else close it."""
        if not reusable or self._nursery is None or conn.client.closed:
            await self._discard(conn)
            return
        if self._needs_reset is None or self._needs_reset(conn.client):
            bucket = self._buckets[conn.key]
            bucket.resetting += 1
            ok = False
            try:
                with trio.move_on_after(self.reset_timeout):
                    try:
                        await self._reset(conn.client)
                        ok = not conn.client.closed
                    except Error as exc:
                        logger.info("resetting an upstream connection failed (%s); dropping it", exc)
            finally:
                bucket.resetting -= 1
            if not ok or self._nursery is None:
                await self._discard(conn)
                return
        conn.last_used = trio.current_time()
        self._put_back(conn)

    def _put_back(self, conn: PooledConnection) -> None:
        """A clean connection: to the longest waiting request, else idle (and watched)."""
        bucket = self._buckets[conn.key]
        while bucket.waiters:
            waiter = bucket.waiters.popleft()
            if not waiter.event.is_set():
                waiter.conn = conn
                waiter.event.set()
                return
        conn.taken = False
        bucket.idle.append(conn)
        self._watch(conn)

    # ------------------------------------------------------------------ watching idle connections

    def _watch(self, conn: PooledConnection) -> None:
        if conn.watched is not None:
            return  # still registered from its last idle time
        client = conn.client
        sock = client.socket
        if sock is not None and self._hangups.watch(sock, lambda: self._on_hangup(conn)):
            conn.watched = sock
            return
        nursery = self._nursery
        if nursery is not None:
            conn.watch_scope = trio.CancelScope()
            conn.watch_done = trio.Event()
            nursery.start_soon(self._watch_task, conn, conn.watch_scope, conn.watch_done)

    def _unwatch(self, conn: PooledConnection) -> None:
        if conn.watched is not None:
            self._hangups.unwatch(conn.watched)
            conn.watched = None

    async def _stop_watching(self, conn: PooledConnection) -> None:
        """Before lending: no watching task may read the connection any more.

        A hang-up registration stays (it reads nothing): the connection is registered once,
        not at every release, and a hang-up while it is lent is left to its request.
        """
        scope, done = conn.watch_scope, conn.watch_done
        if scope is not None and done is not None:
            scope.cancel()
            with trio.CancelScope(shield=True):  # taken now: must not be lost to a cancellation
                await done.wait()
            conn.watch_scope = conn.watch_done = None

    def _on_hangup(self, conn: PooledConnection) -> None:
        conn.watched = None
        if conn.taken:
            return
        logger.info("idle upstream connection %r ended by the server", conn)
        conn.dead = True
        self._drop_idle(conn)

    async def _watch_task(self, conn: PooledConnection, scope: trio.CancelScope, done: trio.Event) -> None:
        """Where there is no hang-up watcher: read the idle connection (server errors, EOF)."""
        try:
            with scope:
                try:
                    while True:
                        await conn.client.wait_notification()
                except Error as exc:
                    logger.info("idle upstream connection %r ended by the server: %s", conn, exc)
                    conn.dead = True
            if conn.taken:
                return
            bucket = self._buckets.get(conn.key)
            if bucket is not None and conn in bucket.idle:
                bucket.idle.remove(conn)
            await self._discard(conn)
        finally:
            done.set()

    # ------------------------------------------------------------------ closing

    def _uncount(self, conn: PooledConnection) -> None:
        if conn.counted:
            conn.counted = False
            self._total -= 1
            bucket = self._buckets.get(conn.key)
            if bucket is not None:
                bucket.size -= 1
                self._forget_if_unused(conn.key, bucket)
            self._notify()

    async def _discard(self, conn: PooledConnection) -> None:
        self._unwatch(conn)
        self._uncount(conn)
        with trio.move_on_after(2.0) as scope:
            scope.shield = True
            await conn.client.close()

    async def close(self) -> None:
        """Close every idle connection (those lent out are closed when released)."""
        await self._close_idle()
