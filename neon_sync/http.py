"""``neon()``: Postgres queries over Neon's SQL-over-HTTP protocol, with blocking sockets.

``sql = neon(dsn)``; ``sql("SELECT $1::int", [1])`` sends one ``POST /sql`` and returns the
rows. Connections are HTTP/1.1 keep-alive, reused per endpoint, so a warm query costs one
round trip. The protocol lives in ``neon_proto.http``; this module only moves bytes.

A request that may have reached the server is never sent again: the only retry is on a
kept-alive connection that turned out to be dead before a single byte was written.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, Callable, Literal, Sequence, overload

from neon_proto.errors import ConnectionClosed, Error, OperationalError
from neon_proto.fetch_client import AuthToken, FetchClientBase, FetchEndpoint, FetchQueryBase
from neon_proto.http import (
    NEED_DATA,
    Endpoint,
    FetchConnection,
    FetchRequest,
    FetchResponse,
    HTTPQuery,
    HTTPStatusError,
    read_response,
)
from neon_proto.results import Result

__all__ = ["neon", "NeonHTTP", "NeonQuery", "HTTPStatusError", "AuthToken", "FetchEndpoint"]

logger = logging.getLogger("neon_sync")

_SMALL_SEND = 256 * 1024
_MAX_RECV_SIZE = 1024 * 1024


class _HTTPConnection:
    """A socket to one endpoint and the h11-based machine that speaks on it."""

    __slots__ = ("endpoint", "sock", "machine", "idle_since", "_timeout", "_recv_size")

    def __init__(self, endpoint: Endpoint, sock: socket.socket, machine: FetchConnection) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.machine = machine
        self.idle_since = 0.0
        self._timeout: float | None = None
        self._recv_size = 65536

    def set_deadline(self, deadline: float | None) -> None:
        """Make the next blocking call end at ``deadline``; no syscall when nothing changes."""
        if deadline is None:
            if self._timeout is not None:
                self.sock.settimeout(None)
                self._timeout = None
            return
        timeout = _remaining(deadline)
        self.sock.settimeout(timeout)
        self._timeout = timeout

    def recv(self) -> bytes:
        """Bytes from the server, b"" at EOF. The read size grows while reads come back full."""
        size = self._recv_size
        data = self.sock.recv(size)
        if len(data) == size and size < _MAX_RECV_SIZE:
            self._recv_size = size * 4
        return data

    def is_alive(self) -> bool:
        """Whether an idle connection is still open: it must have nothing to read.

        Anything readable on an idle HTTP connection is EOF, a reset, or bytes nobody asked
        for; all make it unusable. TLS records that carry no data (session tickets) are
        consumed and do not count.
        """
        sock = self.sock
        try:
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return False
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return True
            sock.setblocking(False)
            try:
                if isinstance(sock, ssl.SSLSocket):
                    sock.recv(1)
                else:
                    sock.recv(1, socket.MSG_PEEK)
            except (ssl.SSLWantReadError, BlockingIOError):
                return True
            finally:
                sock.setblocking(True)
                self._timeout = None
        except (OSError, ValueError):
            return False
        return False  # EOF or unexpected data

    def close(self) -> None:
        self.machine.close()
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout()
    return left


class NeonQuery(FetchQueryBase):
    """A query built by ``sql.query()``: run it with ``execute()`` (each call runs it again),
    or pass it to ``sql.transaction()``."""

    __slots__ = ()

    def execute(self) -> Any:
        """Send the query and return its rows (or its ``Result`` with ``full_results``)."""
        return self._sql._run_query(self.http_query, self._auth_token, self.timeout)


def _where(endpoint: Endpoint) -> str:
    """``host:port`` of an endpoint for error messages (an endpoint carries no credentials)."""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    return f"{host}:{endpoint.port}"


class NeonHTTP(FetchClientBase[_HTTPConnection]):
    """SQL over HTTP: ``sql = neon(dsn); sql("SELECT $1::int", [1])``. Thread-safe: connections
    are pooled per endpoint.

    ``fetch_endpoint`` is the URL to POST to, or a function ``(host, port) -> URL``; by
    default ``https://api.<host minus its first label>/sql`` (``apiauth.`` with an
    ``auth_token``). ``auth_token`` (str or zero-argument function) is sent as a Bearer
    token. ``timeout`` bounds each request in seconds. ``ssl_context`` or ``sslrootcert``
    (a CA file) replace the default certificate checks.
    """

    def _init_io(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # ------------------------------------------------------------------ public API

    @overload
    def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: Literal[True],
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> Result: ...

    @overload
    def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: Literal[False],
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> list[Any]: ...

    @overload
    def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: None = None,
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> Any: ...

    def __call__(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: bool | None = None,
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> Any:
        """Run one statement (``$1``-style placeholders) and return its rows.

        Rows are dicts, or lists with ``array_mode``; ``full_results=True`` returns the
        ``Result`` (fields, rows, command, row_count). Options here win over ``neon()``'s.
        """
        return self._run_query(self._http_query(text, params, array_mode, full_results, types), auth_token, timeout)

    def query(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        full_results: bool | None = None,
        types: Any = None,
        timeout: float | None = None,
        auth_token: AuthToken | None = None,
    ) -> NeonQuery:
        """A query to ``execute()`` later or to pass to ``transaction()``; nothing is sent yet.

        ``timeout`` and ``auth_token`` apply when it runs alone: in a transaction, the
        transaction's timeout and the ``neon()``-level token apply, as in the JS driver.
        """
        return NeonQuery(self, self._http_query(text, params, array_mode, full_results, types), timeout, auth_token)

    def transaction(
        self,
        queries: Sequence[NeonQuery] | Callable[[NeonHTTP], Sequence[NeonQuery]],
        *,
        isolation_level: str | None = None,
        read_only: bool | None = None,
        deferrable: bool | None = None,
        array_mode: bool | None = None,
        full_results: bool | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Run queries in one transaction with one request: all of them or none.

        ``queries`` is a list of ``sql.query(...)`` objects, or a function receiving this
        object and returning one. Returns one result per query. ``isolation_level`` is
        ``ReadUncommitted``, ``ReadCommitted``, ``RepeatableRead`` or ``Serializable``.
        """
        built = self._transaction_request(queries, isolation_level, read_only, deferrable, array_mode, full_results)
        if built is None:
            return []
        result: list[Any] = self._fetch(*built, self._timeout(timeout))
        return result

    def close(self) -> None:
        """Close the idle connections; the object stays usable (new connections open on demand)."""
        with self._lock:
            conns = [c for lst in self._idle.values() for c in lst]
            self._idle.clear()
        for conn in conns:
            conn.close()

    def __enter__(self) -> NeonHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _run_query(self, query: HTTPQuery, auth_token: AuthToken | None, timeout: float | None) -> Any:
        return self._fetch(*self._query_request(query, auth_token), self._timeout(timeout))

    def _fetch(self, endpoint: Endpoint, request: FetchRequest, timeout: float | None) -> Any:
        deadline = time.monotonic() + timeout if timeout else None
        try:
            response = self._exchange(endpoint, request, deadline)
        except socket.timeout:
            if timeout:
                raise OperationalError(f"the request timed out after {timeout:g} s") from None
            raise OperationalError(f"Error connecting to database at {_where(endpoint)}: timed out") from None
        return read_response(request, response)

    def _exchange(self, endpoint: Endpoint, request: FetchRequest, deadline: float | None) -> FetchResponse:
        conn, reused = self._checkout(endpoint, deadline)
        try:
            data = conn.machine.send_request(request)
            try:
                response = self._write_and_read(conn, data, deadline)
            except _NothingSent:
                if not reused:
                    raise
                # The kept-alive connection died before any byte of the request left: the
                # server cannot have seen it, so one fresh connection may carry it.
                conn.close()
                logger.debug("kept-alive connection to %s was closed; reconnecting", endpoint.host)
                conn = self._connect(endpoint, deadline)
                data = conn.machine.send_request(request)
                response = self._write_and_read(conn, data, deadline)
        except _NothingSent as exc:
            conn.close()
            raise OperationalError(f"Error connecting to database at {_where(endpoint)}: {exc.__cause__}") from exc.__cause__
        except BaseException:
            conn.close()
            raise
        if conn.machine.reusable:
            self._checkin(conn)
        else:
            conn.close()
        return response

    def _checkout(self, endpoint: Endpoint, deadline: float | None) -> tuple[_HTTPConnection, bool]:
        """An idle connection that is still open, else a new one; and whether it was reused."""
        now = time.monotonic()
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            found, stale = self._take_idle(endpoint, now, _HTTPConnection.is_alive)
        for conn in stale:
            conn.close()
        if found is not None:
            return found, True
        return self._connect(endpoint, deadline), False

    def _checkin(self, conn: _HTTPConnection) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pid == os.getpid() and self._keep_idle(conn, now):
                return
        conn.close()

    def _after_fork(self) -> None:
        """In a child process: drop the parent's connections (closing our copies of the
        descriptors leaves the parent's untouched) and the lock another thread may hold."""
        self._lock = threading.Lock()
        self._pid = os.getpid()
        conns = [c for lst in self._idle.values() for c in lst]
        self._idle = {}
        for conn in conns:
            try:
                conn.sock.close()
            except OSError:  # pragma: no cover
                pass

    def _connect(self, endpoint: Endpoint, deadline: float | None) -> _HTTPConnection:
        host, port = endpoint.host, endpoint.port
        try:
            sock = socket.create_connection((host, port), timeout=_remaining(deadline))
        except socket.timeout:
            raise
        except OSError as exc:
            raise OperationalError(f"Error connecting to database at {_where(endpoint)}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.tls:
                sock.settimeout(_remaining(deadline))
                ctx = self._make_ssl_context()
                try:
                    sock = ctx.wrap_socket(sock, server_hostname=host)
                except ssl.SSLCertVerificationError as exc:
                    raise OperationalError(
                        f"Error connecting to database at {_where(endpoint)}: "
                        f"TLS certificate verification failed: {exc.verify_message}"
                    ) from exc
                except (ssl.SSLError, OSError) as exc:
                    if isinstance(exc, socket.timeout):
                        raise
                    raise OperationalError(
                        f"Error connecting to database at {_where(endpoint)}: TLS handshake failed: {exc}"
                    ) from exc
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        with self._lock:
            self.connections_opened += 1
        logger.debug("opened %s connection to %s:%s", endpoint.scheme, host, port)
        return _HTTPConnection(endpoint, sock, FetchConnection(max_response_size=self.max_response_size))

    def _write_and_read(self, conn: _HTTPConnection, data: bytes, deadline: float | None) -> FetchResponse:
        """Write the request and read the response; a response that comes early ends the write.

        Raises _NothingSent if the first write failed (no byte of the request left).
        """
        sock = conn.sock
        machine = conn.machine
        if len(data) <= _SMALL_SEND:
            conn.set_deadline(deadline)
            try:
                sent = sock.send(data)
            except socket.timeout:
                raise
            except OSError as exc:
                raise _NothingSent() from exc
            if sent < len(data):
                try:
                    sock.sendall(memoryview(data)[sent:])
                except socket.timeout:
                    raise
                except OSError as exc:
                    raise ConnectionClosed(f"Error connecting to database: {exc}") from exc
        else:
            response = self._send_large(conn, data, deadline)
            if response is not None:
                return response
        try:
            while True:
                event = machine.next_event()
                if event is not NEED_DATA:
                    result: FetchResponse = event
                    return result
                conn.set_deadline(deadline)
                machine.receive_data(conn.recv())
        except socket.timeout:
            raise
        except Error:
            raise
        except OSError as exc:
            raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc

    def _send_large(self, conn: _HTTPConnection, data: bytes, deadline: float | None) -> FetchResponse | None:
        """Send a big body while reading, so an early answer (413) ends the upload."""
        sock = conn.sock
        machine = conn.machine
        view = memoryview(data)
        first = True
        sock.setblocking(False)
        try:
            while view:
                timeout = _remaining(deadline)
                readable, writable, _ = select.select([sock], [sock], [], timeout)
                if not readable and not writable:
                    raise socket.timeout()
                if readable:
                    try:
                        chunk = conn.recv()
                    except (ssl.SSLWantReadError, BlockingIOError):
                        chunk = None
                    except OSError as exc:
                        raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc
                    if chunk is not None:
                        machine.receive_data(chunk)
                        event = machine.next_event()
                        if event is not NEED_DATA:
                            machine.close()  # the rest of our body was never sent
                            result: FetchResponse = event
                            return result
                if writable:
                    try:
                        n = sock.send(view[:_SMALL_SEND])
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        n = 0
                    except OSError as exc:
                        if first:
                            raise _NothingSent() from exc
                        return self._read_after_reset(conn, exc, deadline)
                    if n:
                        first = False
                    view = view[n:]
        finally:
            sock.setblocking(True)
            conn._timeout = None
        return None

    def _read_after_reset(self, conn: _HTTPConnection, error: OSError, deadline: float | None) -> FetchResponse:
        """The server stopped reading our body: it may have answered first (413). Read that."""
        machine = conn.machine
        try:
            while True:
                event = machine.next_event()
                if event is not NEED_DATA:
                    machine.close()
                    result: FetchResponse = event
                    return result
                conn.set_deadline(deadline)
                machine.receive_data(conn.recv())
        except (OSError, Error):
            raise ConnectionClosed(f"the connection to the server was lost while sending: {error}") from error


class _NothingSent(Exception):
    """The first write of a request failed: the server received none of it."""


neon = NeonHTTP
"""``sql = neon(dsn, **options)``: the JS driver's name for building a ``NeonHTTP``."""
