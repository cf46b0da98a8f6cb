"""Upstream connections kept between requests, keyed by who connects to what.

A key is (endpoint, database, user, a keyed hash of the password, options): a connection is
only lent to a request that brings exactly the credentials it was opened with, so Postgres
has decided every credential the pool serves, and a wrong password opens (and fails) a new
connection. Before a connection is lent again it is reset; one that errored is dropped.
While idle, each connection is watched, so one the server closes is dropped at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from typing import Awaitable, Callable

import attrs
import trio

from neon_proto.errors import Error, OperationalError
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
        self.watch_scope = trio.CancelScope()
        self.watch_done = trio.Event()

    def __repr__(self) -> str:
        return f"<PooledConnection {self.key.user}@{self.key.endpoint}/{self.key.database} pid={self.client.backend_pid}>"


@attrs.define
class _Bucket:
    idle: list[PooledConnection] = attrs.field(factory=list)
    size: int = 0  # open or opening
    resetting: int = 0
    waiting_for_reset: int = 0

    @property
    def unused(self) -> bool:
        return not self.idle and not self.size and not self.resetting and not self.waiting_for_reset


class UpstreamPool:
    """Per-key and total limits on open upstream connections, idle expiry, reset before reuse.

    ``run()`` must be running (in a nursery) for connections to be kept; without it every
    released connection is closed.
    """

    def __init__(
        self,
        *,
        reset: Callable[[Client], Awaitable[None]],
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
        self._buckets: dict[PoolKey, _Bucket] = {}
        self._total = 0
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None

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
                bucket.idle.remove(conn)
                conn.watch_scope.cancel()  # the watcher, seeing it not taken, closes it

    async def _close_idle(self) -> None:
        idle = [c for b in self._buckets.values() for c in b.idle]
        for bucket in self._buckets.values():
            bucket.idle.clear()
        for conn in idle:
            await self._discard(conn)

    # ------------------------------------------------------------------ lending

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_for_change(self, deadline: float) -> None:
        with trio.move_on_at(deadline):
            await self._changed.wait()
            return
        raise PoolTimeout(
            f"timed out waiting for an upstream connection (limits: {self.max_per_key} per user and database,"
            f" {self.max_total} in all)"
        )

    async def acquire(self, key: PoolKey, connect: Callable[[], Awaitable[Client]]) -> PooledConnection:
        """A clean connection for ``key``: an idle one, one being reset, or a new one from ``connect``."""
        deadline = trio.current_time() + self.acquire_timeout
        while True:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket()
            while bucket.idle:
                conn = bucket.idle.pop()
                conn.taken = True
                conn.watch_scope.cancel()
                with trio.CancelScope(shield=True):  # taken now: must not be lost to a cancellation
                    await conn.watch_done.wait()
                if conn.dead or conn.client.closed:
                    await self._discard(conn)
                    continue
                logger.debug("reusing upstream connection %r", conn)
                return conn
            if bucket.resetting > bucket.waiting_for_reset:
                # A reset is one round trip; a new connection is several: wait for it.
                bucket.waiting_for_reset += 1
                try:
                    await self._wait_for_change(deadline)
                finally:
                    bucket.waiting_for_reset -= 1
                continue
            if bucket.size < self.max_per_key:
                if self._total >= self.max_total:
                    self._evict_oldest_idle()
                if self._total < self.max_total:
                    return await self._open(key, bucket, connect)
            await self._wait_for_change(deadline)

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
        if not idle:
            return
        oldest = min(idle, key=lambda c: c.last_used)
        self._buckets[oldest.key].idle.remove(oldest)
        oldest.watch_scope.cancel()

    def _forget_if_unused(self, key: PoolKey, bucket: _Bucket) -> None:
        if bucket.unused and self._buckets.get(key) is bucket:
            del self._buckets[key]

    async def release(self, conn: PooledConnection, *, reusable: bool) -> None:
        """Take a connection back: reset and keep it when ``reusable`` and healthy, else close it."""
        nursery = self._nursery
        if not reusable or nursery is None or conn.client.closed:
            await self._discard(conn)
            return
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
        conn.taken = False
        conn.watch_scope = trio.CancelScope()
        conn.watch_done = trio.Event()
        bucket.idle.append(conn)
        nursery.start_soon(self._watch, conn)
        self._notify()

    async def _watch(self, conn: PooledConnection) -> None:
        """While idle: notice the server closing the connection; close it when expired or evicted."""
        try:
            with conn.watch_scope:
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
            conn.watch_done.set()

    async def _discard(self, conn: PooledConnection) -> None:
        if conn.counted:
            conn.counted = False
            self._total -= 1
            bucket = self._buckets.get(conn.key)
            if bucket is not None:
                bucket.size -= 1
                self._forget_if_unused(conn.key, bucket)
            self._notify()
        with trio.move_on_after(2.0) as scope:
            scope.shield = True
            await conn.client.close()

    async def close(self) -> None:
        """Close every idle connection (those lent out are closed when released)."""
        await self._close_idle()
