"""Upstream connections kept between requests, keyed by who connects to what.

A key is (endpoint, database, user, a keyed hash of the password, options): a connection is
only lent to a request that brings exactly the credentials it was opened with, so Postgres
has decided every credential the pool serves, and a wrong password opens (and fails) a new
connection. Before a connection is lent again it is reset; one that errored is dropped.
A released connection goes straight to the request that has waited longest for one, else
it waits idle; while idle it is watched, so one the server closes is dropped at once, and
it is checked once more just before it is lent.

Limits: ``max_per_key`` connections per key, ``max_per_user`` per user of one upstream
server (across databases and options), and per upstream server the lower of
``max_total`` and the server's own capacity (``set_server_capacity``: its max_connections
minus its reserved slots and a margin). A request held back by a user or server limit
makes room by closing idle connections of other keys, least used first. Idle
connections of keys that are rarely used are closed after ``rare_idle_timeout``, busy
ones after ``idle_timeout``.

Upstream connections that are not pooled (a WebSocket session's own) take a ``SessionSlot``
(``reserve_slot``): they count against the same per-user, per-server and total limits, so
one user's sessions and requests together stay within that user's bound.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import select
from collections import deque
from typing import Awaitable, Callable

import attrs
import trio

from neon_proto.errors import Error, OperationalError
from neon_proxy.hangups import HangupWatcher
from neon_trio import Client

__all__ = ["PoolKey", "PooledConnection", "PoolTimeout", "SessionSlot", "SlotRefused", "UpstreamPool"]

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
    server: str = ""
    """The upstream server (``host:port``) the endpoint maps to: what the server limits count by."""

    @classmethod
    def build(
        cls, endpoint: str, database: str, user: str, password: str, options: str | None, server: str = ""
    ) -> "PoolKey":
        """A key whose password part is an HMAC with a per-process secret (never the password)."""
        digest = hmac.new(_PASSWORD_KEY, password.encode("utf-8"), hashlib.sha256).digest()
        return cls(endpoint, database, user, digest, options, server)

    @property
    def user_key(self) -> tuple[str, str]:
        """The user of one upstream server, whatever the database and options."""
        return (self.server, self.user)


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


class SlotRefused(PoolTimeout):
    """No slot for a session's upstream connection came free in time; ``reason``: ``user`` or ``server``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.define(eq=False)
class SessionSlot:
    """One upstream connection outside the pool, counted against its limits until ``release_slot``."""

    server: str
    user: str | None
    """None: counted per server only (a relayed stream whose user the proxy cannot see)."""
    released: bool = False


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
    spares: int = 0  # being opened by ``warm``, for whoever asks next
    uses: float = 0.0  # loans, decaying (see ``_loans``): how busy the key is lately
    uses_at: float = 0.0

    @property
    def unused(self) -> bool:
        return not self.idle and not self.size and not self.resetting and not self.waiters and not self.spares


_BUSY_USES = 4.0
"""A key lent at least this often lately keeps its idle connections for ``idle_timeout``; loans
count half after a quarter of ``idle_timeout``, a quarter after half of it, and so on."""


_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


def _has_input(conn: PooledConnection) -> bool:
    """Whether an idle connection shows the server's goodbye: its end shut, or (plain) bytes waiting.

    An idle session has nothing to say (notifications are unlistened by the reset), so on a
    plain connection any input means it is ending or out of step. Under TLS the server
    may send records that carry no data (session tickets), so there only a hang-up counts.
    """
    sock = conn.client.socket
    if sock is None:
        return True
    try:
        fd = sock.fileno()
        if fd < 0:
            return True
        poller = select.poll()
        poller.register(fd, _HANGUP if getattr(conn.client, "is_tls", True) else _HANGUP | select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


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
        max_per_user: int = 50,
        max_total: int = 20000,
        idle_timeout: float = 300.0,
        rare_idle_timeout: float = 30.0,
        acquire_timeout: float = 15.0,
        reset_timeout: float = 5.0,
        learns_capacity: bool = False,
    ) -> None:
        self.max_per_key = max_per_key
        self.max_per_user = max_per_user
        self.max_total = max_total
        self.idle_timeout = idle_timeout
        self.rare_idle_timeout = min(rare_idle_timeout, idle_timeout)
        #: Whether each server's first connection tells its capacity (``set_server_capacity``).
        self.learns_capacity = learns_capacity
        self.acquire_timeout = acquire_timeout
        self.reset_timeout = reset_timeout
        self._reset = reset
        self._needs_reset = needs_reset
        self._buckets: dict[PoolKey, _Bucket] = {}
        self._total = 0
        self._per_user: dict[tuple[str, str], int] = {}
        self._per_server: dict[str, int] = {}
        self._server_capacity: dict[str, int] = {}
        self._held_back: dict[str, int] = {}  # per server: requests waiting for a user or server limit
        self._nursery: trio.Nursery | None = None
        self._hangups = HangupWatcher()
        self._slot_waiters: set[trio.Event] = set()

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

    def user_size(self, server: str, user: str) -> int:
        """Connections open or opening for one user of one upstream server."""
        return self._per_user.get((server, user), 0)

    def server_size(self, server: str) -> int:
        """Connections open or opening to one upstream server."""
        return self._per_server.get(server, 0)

    def server_capacity(self, server: str) -> int | None:
        """How many connections this pool may open to ``server`` (None: not known yet)."""
        return self._server_capacity.get(server)

    def set_server_capacity(self, server: str, capacity: int) -> None:
        """Cap the connections to ``server`` (its max_connections minus reserved slots and a margin)."""
        self._server_capacity[server] = max(1, capacity)
        self._notify()  # requests held back until it was known look again

    def _server_limit(self, server: str) -> int:
        capacity = self._server_capacity.get(server)
        if capacity is None:
            # Until the first connection has told the server's capacity, it is opened alone.
            return 1 if self.learns_capacity else self.max_total
        return min(self.max_total, capacity)

    def _limit_reached(self, key: PoolKey, bucket: _Bucket) -> str | None:
        """Which limit keeps ``key`` from opening one more connection now, if any."""
        if bucket.size >= self.max_per_key:
            return "key"
        if self._per_user.get(key.user_key, 0) >= self.max_per_user:
            return "user"
        if self._per_server.get(key.server, 0) >= self._server_limit(key.server) or self._total >= self.max_total:
            return "server"
        return None

    def _count(self, key: PoolKey, bucket: _Bucket | None, delta: int) -> None:
        if bucket is not None:
            bucket.size += delta
        self._total += delta
        user = key.user_key
        self._per_user[user] = n = self._per_user.get(user, 0) + delta
        if n <= 0:
            del self._per_user[user]
        self._per_server[key.server] = n = self._per_server.get(key.server, 0) + delta
        if n <= 0:
            del self._per_server[key.server]

    # ------------------------------------------------------------------ slots for connections outside the pool

    def _slot_limit_reached(self, slot: SessionSlot) -> str | None:
        if slot.user is not None and self._per_user.get((slot.server, slot.user), 0) >= self.max_per_user:
            return "user"
        capacity = self._server_capacity.get(slot.server)
        if capacity is None and slot.user is None:
            limit = self.max_total  # a relayed stream never tells the server's capacity
        else:
            limit = self._server_limit(slot.server)
        if self._per_server.get(slot.server, 0) >= limit or self._total >= self.max_total:
            return "server"
        return None

    def _count_slot(self, slot: SessionSlot, delta: int) -> None:
        self._total += delta
        if slot.user is not None:
            user = (slot.server, slot.user)
            self._per_user[user] = n = self._per_user.get(user, 0) + delta
            if n <= 0:
                del self._per_user[user]
        self._per_server[slot.server] = n = self._per_server.get(slot.server, 0) + delta
        if n <= 0:
            del self._per_server[slot.server]

    async def reserve_slot(self, server: str, user: str | None, *, timeout: float | None = None) -> SessionSlot:
        """Count one upstream connection to ``server`` for ``user`` that the pool does not hold.

        Waits (up to ``timeout``, default ``acquire_timeout``) while the user's or the server's
        limit is reached, closing idle pooled connections to make room as ``acquire`` does;
        then raises ``SlotRefused``. Give it back with ``release_slot`` once the connection is closed.
        """
        slot = SessionSlot(server, user)
        probe = PoolKey("", "", user or "", b"", None, server)
        deadline = trio.current_time() + (self.acquire_timeout if timeout is None else timeout)
        while True:
            reason = self._slot_limit_reached(slot)
            if reason is not None:
                self._evict_idle_for(probe, same_user=reason == "user" and user is not None)
                reason = self._slot_limit_reached(slot)
            if reason is None:
                self._count_slot(slot, 1)
                return slot
            event = trio.Event()
            self._slot_waiters.add(event)
            self._held_back[server] = self._held_back.get(server, 0) + 1
            try:
                with trio.move_on_at(deadline):
                    await event.wait()
            finally:
                self._slot_waiters.discard(event)
                self._held_back[server] -= 1
                if not self._held_back[server]:
                    del self._held_back[server]
            if not event.is_set():
                if reason == "user":
                    raise SlotRefused(f'too many connections for role "{user}"', reason)
                raise SlotRefused("sorry, too many clients already", reason)

    def release_slot(self, slot: SessionSlot) -> None:
        """The connection counted by ``slot`` is closed: its place is free (idempotent)."""
        if slot.released:
            return
        slot.released = True
        self._count_slot(slot, -1)
        self._notify()

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep idle connections (watched, expired after ``idle_timeout``) until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self._hangups.run)
                self._nursery = nursery
                task_status.started()
                interval = max(0.5, min(30.0, self.rare_idle_timeout / 4))
                while True:
                    await trio.sleep(interval)
                    self._expire_idle()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await self._close_idle()

    def _loans(self, bucket: _Bucket, now: float, new: int = 0) -> float:
        """The key's recent loans (older ones count less), with ``new`` more added now."""
        half_life = self.idle_timeout / 4
        bucket.uses = bucket.uses * 0.5 ** ((now - bucket.uses_at) / half_life) + new
        bucket.uses_at = now
        return bucket.uses

    def _lent(self, bucket: _Bucket) -> None:
        self._loans(bucket, trio.current_time(), 1)

    def _expire_idle(self) -> None:
        now = trio.current_time()
        for bucket in list(self._buckets.values()):
            if not bucket.idle:
                continue
            busy = self._loans(bucket, now) >= _BUSY_USES
            cutoff = now - (self.idle_timeout if busy else self.rare_idle_timeout)
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
        for event in self._slot_waiters:
            event.set()

    async def try_acquire(self, key: PoolKey) -> PooledConnection | None:
        """An idle connection for ``key`` if there is one now (neither waiting nor opening).

        One the server has ended (its goodbye is waiting, unread) is closed, not lent.
        """
        bucket = self._buckets.get(key)
        while bucket is not None and bucket.idle:
            conn = bucket.idle.pop()
            conn.taken = True
            await self._stop_watching(conn)
            if conn.dead or conn.client.closed or _has_input(conn):
                logger.debug("idle upstream connection %r was ended by the server; not lending it", conn)
                await self._discard(conn)
                continue
            self._lent(bucket)
            return conn
        return None

    def warm(self, key: PoolKey, connect: Callable[[], Awaitable[Client]]) -> None:
        """Open a connection for ``key`` in the background, kept idle for the next request.

        For a request whose body is still arriving: the connection opens meanwhile but is
        not the request's until the body is in, so a body that never comes holds nothing.
        Nothing happens if an idle connection or a spare is there already, or no limit allows it.
        """
        nursery = self._nursery
        if nursery is None:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        if bucket.idle or bucket.spares or self._limit_reached(key, bucket) is not None:
            self._forget_if_unused(key, bucket)
            return
        bucket.spares += 1
        self._count(key, bucket, 1)
        nursery.start_soon(self._open_spare, key, bucket, connect)

    async def _open_spare(self, key: PoolKey, bucket: _Bucket, connect: Callable[[], Awaitable[Client]]) -> None:
        try:
            client = await connect()
        except BaseException as exc:
            bucket.spares -= 1
            self._count(key, bucket, -1)
            self._forget_if_unused(key, bucket)
            self._notify()
            if not isinstance(exc, Exception):
                raise
            logger.debug("opening a spare upstream connection failed: %s", exc)
            return
        bucket.spares -= 1
        conn = PooledConnection(client, key)
        logger.debug("opened spare upstream connection %r", conn)
        if self._nursery is None:
            await self._discard(conn)
            return
        self._put_back(conn)

    async def acquire(
        self, key: PoolKey, connect: Callable[[], Awaitable[Client]], *, fresh: bool = False
    ) -> PooledConnection:
        """A clean connection for ``key``: an idle one, one being released, or a new one from ``connect``.

        ``fresh``: not one that sat idle (after an idle one proved dead under a request).
        """
        deadline = trio.current_time() + self.acquire_timeout
        while True:
            idle = None if fresh else await self.try_acquire(key)
            if idle is not None:
                return idle
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket()
            # A reset is one round trip, a new connection several: wait for one being reset
            # (or being opened as a spare).
            held_back = False
            if bucket.resetting + bucket.spares <= len(bucket.waiters):
                reason = self._limit_reached(key, bucket)
                if reason == "user" or reason == "server":
                    # Make room: an idle connection of another key goes (its user's first).
                    self._evict_idle_for(key, same_user=reason == "user")
                    reason = self._limit_reached(key, bucket)
                if reason is None:
                    self._lent(bucket)
                    return await self._open(key, bucket, connect)
                held_back = reason != "key"
            if held_back:
                self._held_back[key.server] = self._held_back.get(key.server, 0) + 1
            try:
                handed = await self._wait(bucket, deadline)
            finally:
                if held_back:
                    self._held_back[key.server] -= 1
                    if not self._held_back[key.server]:
                        del self._held_back[key.server]
            if handed is not None:
                self._lent(bucket)
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
            f" {self.max_per_user} per user, {self.max_total} in all)"
        )

    async def _open(self, key: PoolKey, bucket: _Bucket, connect: Callable[[], Awaitable[Client]]) -> PooledConnection:
        self._count(key, bucket, 1)
        try:
            client = await connect()
        except BaseException:
            self._count(key, bucket, -1)
            self._forget_if_unused(key, bucket)
            self._notify()
            raise
        conn = PooledConnection(client, key)
        logger.debug("opened upstream connection %r", conn)
        return conn

    def _evict_idle_for(self, key: PoolKey, *, same_user: bool) -> None:
        """Close one idle connection of another key that shares ``key``'s user (or server):
        the least used key's, the longest idle first."""
        candidates = [
            (bucket.uses, conn.last_used, conn)
            for other, bucket in self._buckets.items()
            if other != key and other.server == key.server and (not same_user or other.user == key.user)
            for conn in bucket.idle
        ]
        if candidates:
            self._drop_idle(min(candidates, key=lambda c: (c[0], c[1]))[2])

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
        if self._nursery is not None:
            self._nursery.start_soon(self._discard, conn)
        else:
            self._uncount(conn)

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
        """A clean connection: to the longest waiting request, else idle (and watched).

        When requests of other keys are held back by a user or server limit and none of
        this key waits, the connection is closed instead: its slot serves them better.
        """
        bucket = self._buckets[conn.key]
        while bucket.waiters:
            waiter = bucket.waiters.popleft()
            if not waiter.event.is_set():
                waiter.conn = conn
                waiter.event.set()
                return
        conn.taken = False
        bucket.idle.append(conn)
        if conn.key.server in self._held_back:
            self._drop_idle(conn)
            return
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
            bucket = self._buckets.get(conn.key)
            self._count(conn.key, bucket, -1)
            if bucket is not None:
                self._forget_if_unused(conn.key, bucket)
            self._notify()

    async def _discard(self, conn: PooledConnection) -> None:
        """Close a connection; it counts against the limits until it is closed (its server slot is busy until then)."""
        self._unwatch(conn)
        try:
            with trio.move_on_after(2.0) as scope:
                scope.shield = True
                await conn.client.close()
        finally:
            self._uncount(conn)

    async def close(self) -> None:
        """Close every idle connection (those lent out are closed when released)."""
        await self._close_idle()
