"""``Pool``: a thread-safe pool of ``Client`` connections."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Any, Iterator, Sequence, Unpack

from neon_proto.errors import InterfaceError, OperationalError
from neon_proto.results import Result
from neon_sync.http import NeonHTTP
from neon_sync.client import CLIENT_KEYWORDS, Client, ClientKeywords, connect_options

__all__ = ["Pool", "PoolTimeout"]

logger = logging.getLogger("neon_sync.pool")


class PoolTimeout(OperationalError):
    """No connection became free within the acquire timeout."""


class Pool:
    """Up to ``max_size`` connections, lent one at a time and taken back.

    A connection that is broken, closed, or left in a transaction that cannot be rolled
    back is discarded, never lent again. Idle connections older than ``idle_timeout``
    seconds are closed when next looked at.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        max_size: int = 10,
        idle_timeout: float | None = 300.0,
        acquire_timeout: float = 30.0,
        **client_options: Unpack[ClientKeywords],
    ) -> None:
        if max_size < 1:
            raise InterfaceError("max_size must be at least 1")
        # Checked now, so a misspelt keyword fails here and not at the first acquire().
        connection_options = {k: v for k, v in client_options.items() if k not in CLIENT_KEYWORDS}
        self.options = connect_options(dsn, connection_options, caller="Pool")
        self.dsn = dsn
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.acquire_timeout = acquire_timeout
        self._options = client_options
        self._idle: deque[tuple[Client, float]] = deque()
        self._size = 0  # connections lent or idle, plus those being opened
        self._cond = threading.Condition()
        self._closed = False
        self._fetch: NeonHTTP | None = None

    def __repr__(self) -> str:
        return f"<neon_sync.Pool size={self._size} idle={len(self._idle)} max={self.max_size}>"

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return self._size

    @property
    def idle_count(self) -> int:
        """Connections waiting to be lent."""
        return len(self._idle)

    def _new_client(self) -> Client:
        return Client(self.dsn, **self._options).connect(wait=True)

    def acquire(self, timeout: float | None = None) -> Client:
        """Lend a connection; give it back with ``release``."""
        wait = self.acquire_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                if self._closed:
                    raise InterfaceError("the pool is closed")
                while self._idle:
                    client, since = self._idle.pop()
                    if (
                        self.idle_timeout is not None and time.monotonic() - since > self.idle_timeout
                    ) or not client.poll():  # poll: the server may have ended it while idle
                        self._discard_locked(client)
                        continue
                    return client
                if self._size < self.max_size:
                    self._size += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout(f"no connection became free within {wait} s (max_size={self.max_size})")
                self._cond.wait(remaining)
        try:
            return self._new_client()
        except BaseException:
            with self._cond:
                self._size -= 1
                self._cond.notify()
            raise

    def release(self, client: Client) -> None:
        """Take a connection back; a broken one is discarded."""
        if not client.closed and not client.session.idle:
            # Given back in the middle of an operation (an unfinished COPY, say): what is left
            # in the stream would reach the next borrower.
            client.close()
        if not client.closed and client.transaction_status != "I":
            try:
                client.query("ROLLBACK")
            except Exception:
                logger.info("discarding a connection that could not be rolled back")
                client.close()
        with self._cond:
            if client.closed or self._closed:
                self._discard_locked(client)
            else:
                self._idle.append((client, time.monotonic()))
            self._cond.notify()

    def _discard_locked(self, client: Client) -> None:
        client.close()
        self._size -= 1
        self._cond.notify()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[Client]:
        """Lend a Client for the ``with`` block, then take it back."""
        client = self.acquire(timeout)
        try:
            yield client
        finally:
            self.release(client)

    def query(self, text: str, params: Sequence[Any] | None = None, **options: Any) -> Result:
        """Run one query on a pooled connection (over HTTP with ``pool_query_via_fetch``)."""
        if self.options.transport.pool_query_via_fetch:
            return self._http()(text, params, full_results=True, **options)
        with self.connection() as client:
            return client.query(text, params, **options)

    def _http(self) -> NeonHTTP:
        """The HTTP query function Pool.query uses with ``pool_query_via_fetch`` (made once)."""
        with self._cond:
            if self._fetch is None:
                transport = self.options.transport
                self._fetch = NeonHTTP(
                    self.options.params,
                    fetch_endpoint=transport.fetch_endpoint,
                    array_mode=bool(self._options.get("array_mode", False)),
                )
            return self._fetch

    def close(self) -> None:
        """Close every idle connection; lent ones are closed when given back."""
        with self._cond:
            if self._fetch is not None:
                self._fetch.close()
            self._closed = True
            while self._idle:
                client, _ = self._idle.pop()
                self._discard_locked(client)
            self._cond.notify_all()

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
