"""``Client``: one Postgres connection with the JS driver's shape, over blocking sockets."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from typing import Any, BinaryIO, Callable, Generator, Iterable, Iterator, Mapping, Sequence, Unpack

from neon_proto import events as ev
from neon_proto.conninfo import ConnectionParams
from neon_proto.hosts import AskSessionState, TryHost, host_plan
from neon_proto.plan import PlanSteps
from neon_proto.deadlines import QueryDeadline
from neon_proto.errors import (
    ConnectionClosed,
    Error,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from neon_proto.connect import cancel_plan, connect_plan
from neon_proto.startup import AuthPipelineMismatch, StartupPipeline
from neon_proto.options import ConnectKeywords, ConnectOptions, TransportOptions, resolve_connect_options
from neon_proto.results import Result, RowMode, row_mode
from neon_proto.types import TypeRegistry, default_registry
from neon_proto.session import Op, PortalStream, Query, Session, SessionFacts
from neon_proto.pyformat import format_query, quote_identifier
from neon_sync._io import Transport, establish, read_config_file, run
from neon_sync.copy import Copy

__all__ = ["Client", "ClientKeywords", "Notification", "connect_params", "connect_options", "Pipeline"]

logger = logging.getLogger("neon_sync")

Notification = ev.NotificationResponse

CLIENT_KEYWORDS = frozenset({"array_mode", "prepared_statement_cache_size", "registry", "binary", "max_message_size"})


class ClientKeywords(ConnectKeywords, total=False):
    """Every keyword ``Client`` takes: the connection's (``ConnectKeywords``) and the client's own."""

    array_mode: bool
    prepared_statement_cache_size: int
    registry: Any
    binary: bool
    max_message_size: int | None


def connect_options(dsn: str | None, options: Mapping[str, Any], *, caller: str = "Client") -> ConnectOptions:
    """Connection parameters and transport from a DSN, keywords, the PG* environment and neon_config."""
    return resolve_connect_options(
        dsn, options, env=os.environ, caller=caller, also_valid=CLIENT_KEYWORDS, read_file=read_config_file
    )


def connect_params(dsn: str | None, params: Mapping[str, Any]) -> ConnectionParams:
    """Connection parameters from a DSN, keyword overrides and the PG* environment."""
    return connect_options(dsn, params).params


class Client(SessionFacts):
    """A single Postgres connection: ``connect()``, ``query()``, ``close()``.

    ``query(text, params)`` takes ``$1``-style placeholders and returns a ``Result`` whose rows
    are dicts (lists with ``array_mode=True``). Not thread-safe: one thread at a time.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        array_mode: bool = False,
        prepared_statement_cache_size: int = 0,
        registry: Any = None,
        binary: bool = False,
        max_message_size: int | None = None,
        **options: Unpack[ConnectKeywords],
    ) -> None:
        resolved = connect_options(dsn, options)
        self.params = resolved.params
        self._given_params = resolved.params  # every host; self.params is the one connected to
        self.transport_options: TransportOptions = resolved.transport
        self.transport_name = resolved.transport.transport
        self.array_mode = array_mode
        self._session = Session(
            # The connection's own registry (user types registered here stay here).
            registry=registry if registry is not None else TypeRegistry(parent=default_registry),
            max_message_size=max_message_size,
            prepared_statement_cache_size=prepared_statement_cache_size,
            result_format=1 if binary else 0,
        )
        self._transport: Transport | None = None
        self._lock = threading.Lock()
        self._connected = False
        self._connect_failed = False
        self.connect_pipeline: StartupPipeline = False
        self._startup_deadline: float | None = None  # connect_timeout, while a pipelined login finishes

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._connected else "new")
        return f"<neon_sync.Client {self.params.user}@{self.params.host}:{self.params.port}/{self.params.dbname} {state}>"

    # ------------------------------------------------------------------ lifecycle

    def connect(self, *, wait: bool = False) -> "Client":
        """Open the connection: TCP or WebSocket, TLS per sslmode, startup and authentication.

        With a pipelined connect (``pipeline_connect``, on by default where it is safe) it
        returns as soon as its last flight is written, and the first query follows in the
        same round trip; a failed login then surfaces at that query, with the same exception
        class. ``wait=True`` waits for the login to finish anyway (Pool and DB-API
        ``connect()`` do). Calling it on a connected client does nothing; on one whose
        connection was lost, it connects again.

        With several hosts, each is tried in turn (``load_balance_hosts``), waiting for its
        login, until one accepts and its session fits ``target_session_attrs``; ``self.params``
        then names that host.
        """
        if self._connected and not self.closed:
            if wait:
                self._settle()
            return self
        steps = PlanSteps(host_plan(self._given_params, random.shuffle))
        for step in steps:
            try:
                if isinstance(step, TryHost):
                    self._connect_to(step.params, wait=wait or step.wait)
                    steps.answer(self.server_parameters if step.wait else None)
                elif isinstance(step, AskSessionState):
                    steps.answer(self.query(step.sql, array_mode=True).rows[0])
                else:
                    self.close()
                    self._connected = False
            except OperationalError as exc:
                steps.fail(exc)
        return self

    def _connect_to(self, params: ConnectionParams, *, wait: bool) -> "Client":
        """Connect to the one server ``params`` names."""
        self.params = params
        timeout = params.connect_timeout
        deadline = time.monotonic() + timeout if timeout else None
        plan = connect_plan(ConnectOptions(params, self.transport_options), self._session.renewed)
        self._connect_failed = False
        try:
            sock, connected = establish(plan, deadline=deadline)
        except BaseException:
            self._connect_failed = True
            raise
        assert sock is not None
        self._startup_deadline = deadline
        sock.settimeout(None)
        self._session = connected.session
        #: How the last connect was pipelined: "password", "scram", "startup" or False.
        self.connect_pipeline = connected.pipeline
        self._transport = Transport(sock, connected.link, coalesce_writes=self.transport_options.coalesce_writes)
        if connected.unsent:
            self._transport.send(connected.unsent)  # held: it leaves with the first query
        self._connected = True
        logger.debug(
            "connected to %s:%s as %s over %s%s",
            params.host,
            params.port,
            params.user,
            self.transport_name,
            f" (pipelined: {connected.pipeline})" if connected.pipeline else "",
        )
        if wait:
            self._settle()
        return self

    def _settle(self) -> None:
        """Finish a pipelined connect in the background of nothing: read the rest of startup."""
        if self._connected and self._session.conn.startup_in_background and not self.closed:
            self._run(self._session.finish_startup())

    @property
    def backend_pid(self) -> int | None:
        """The server process id serving this connection (waits for a pipelined connect to finish)."""
        self._settle()
        return self._session.conn.process_id

    @property
    def server_parameters(self) -> dict[str, str]:
        """Parameters the server reported (server_version, TimeZone, ...); waits for a pipelined connect."""
        self._settle()
        return dict(self._session.conn.parameters)

    def close(self) -> None:
        """Say goodbye and close the socket; safe to call twice."""
        transport = self._transport
        if transport is None or transport.closed:
            return
        try:
            data = self._session.terminate()
            if data:
                transport.send(data)
                transport.flush()
        except (OSError, Error):
            pass
        finally:
            transport.close()

    def __enter__(self) -> "Client":
        return self.connect()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by us, by the server, or by an error)."""
        transport = self._transport
        if transport is None:
            return self._connect_failed
        return transport.closed or self._session.closed

    def register_type(self, name: str, factory: Any = None) -> Any:
        """Read a user or extension type (enum, composite, domain, range, hstore, citext) from
        the catalog and make this connection load and dump it; ``factory`` as in
        ``TypeRegistry.register_type_info``. Returns the ``TypeInfo``."""
        return self._run(self._session.register_type(name, factory))

    # ------------------------------------------------------------------ running operations

    def _run(self, op: Op[Any], timeout: float | None = None, again: Callable[[], Op[Any]] | None = None) -> Any:
        """Run an operation. ``again`` rebuilds it: when a pipelined connect guessed the wrong
        login (the server asked for another method), the client connects again, now knowing
        what the server asks, and runs it once more (it never reached the server)."""
        try:
            return self._run_once(op, timeout)
        except AuthPipelineMismatch:
            if self._transport is not None:
                self._transport.close()  # the server read our early message as its answer: done
            if again is None:
                raise
            self.connect()
            return self._run_once(again(), timeout)

    def _run_once(self, op: Op[Any], timeout: float | None = None) -> Any:
        transport = self._transport
        if transport is None or not self._connected:
            op.close()
            raise InterfaceError("the client is not connected: call connect() first")
        if transport.closed:
            op.close()
            raise ConnectionClosed("the connection is closed")
        query_deadline = QueryDeadline(time.monotonic(), timeout) if timeout else None
        deadline = None
        startup_deadline = self._startup_deadline
        if startup_deadline is not None and self._session.conn.startup_in_background:
            if query_deadline is None or startup_deadline < query_deadline.cancel_at:
                deadline, query_deadline = startup_deadline, None  # connect_timeout bounds the login
        with self._lock:
            try:
                return run(
                    op,
                    transport,
                    self._session.conn,
                    deadline=deadline,
                    query_deadline=query_deadline,
                    on_timeout=self._cancel_by,
                )
            except KeyboardInterrupt:
                self._abandon()
                raise
            except ConnectionClosed:
                transport.close()
                raise
            except Error:
                if self._session.closed:
                    transport.close()
                raise

    def _cancel_by(self, abandon_at: float) -> None:
        """A query's timeout passed: send the CancelRequest, taking no longer than ``abandon_at``."""
        self.cancel(timeout=max(0.01, abandon_at - time.monotonic()))

    def _abandon(self) -> None:
        """After an interrupt mid-operation the stream position is unknown: cancel and close."""
        try:
            self.cancel()
        except Error:
            pass
        if self._transport is not None:
            self._transport.close()

    def query(
        self,
        text: str,
        params: Sequence[Any] | None = None,
        *,
        array_mode: bool | None = None,
        timeout: float | None = None,
        types: Any = None,
    ) -> Result:
        """Run one statement; ``$1``... placeholders take ``params``.

        Without params the simple protocol runs the text (several statements allowed; the
        last result is returned). ``timeout`` cancels the query on the server when it passes.
        """
        mode: RowMode = row_mode(self.array_mode if array_mode is None else array_mode)
        if params is None:
            results: list[Result] = self._run(
                self._session.simple_query(text, mode=mode, registry=types),
                timeout,
                again=lambda: self._session.simple_query(text, mode=mode, registry=types),
            )
            return results[-1] if results else Result(())
        result: Result = self._run(
            self._session.execute(text, params, mode=mode, registry=types),
            timeout,
            again=lambda: self._session.execute(text, params, mode=mode, registry=types),
        )
        return result

    def execute(self, text: str, params: Sequence[Any] | None = None, *, mode: RowMode = "tuple") -> Result:
        """Like query(), with the row shape chosen by ``mode`` (``tuple``, ``list`` or ``dict``)."""
        if params is None:
            results: list[Result] = self._run(self._session.simple_query(text, mode=mode))
            return results[-1] if results else Result(())
        result: Result = self._run(self._session.execute(text, params, mode=mode))
        return result

    def simple_query(self, text: str, *, array_mode: bool | None = None) -> list[Result]:
        """Every statement's result of a multi-statement string (simple protocol)."""
        mode: RowMode = row_mode(self.array_mode if array_mode is None else array_mode)
        results: list[Result] = self._run(self._session.simple_query(text, mode=mode))
        return results

    def execute_many(self, text: str, param_rows: Iterable[Sequence[Any]], *, begin: bool | str = False) -> int:
        """Run a statement once per parameter row, pipelined in one round trip; all or nothing.

        ``begin=True`` (or a ``BEGIN ...`` statement) opens a transaction in the same round trip
        (left open for the caller).
        """
        total, _ = self._run(self._session.execute_many(text, param_rows, begin=begin))
        return int(total)

    def pipeline(self) -> "Pipeline":
        """A pipeline: queue queries, then ``run()`` sends them all before reading any result."""
        return Pipeline(self)

    # ------------------------------------------------------------------ COPY

    def copy_from(self, sql: str, data: Iterable[bytes | str] | BinaryIO | bytes | str) -> int:
        """COPY ... FROM STDIN, streaming ``data`` (bytes, str, an iterable of chunks or a file)."""
        start = self._run(self._session.copy_start(sql))
        if not isinstance(start, ev.CopyInResponse):
            self._drain_copy_out()
            raise ProgrammingError("copy_from() needs a COPY ... FROM STDIN statement")
        transport = self._transport
        assert transport is not None
        session = self._session
        try:
            for chunk in _chunks(data):
                transport.send(session.copy_in_data(chunk), session.conn)
        except OSError as exc:
            transport.close()
            raise ConnectionClosed(f"the connection was lost during COPY: {exc}") from exc
        except KeyboardInterrupt:
            self._abandon()
            raise
        except BaseException as exc:
            try:
                self._run(session.copy_in_finish(f"client error: {type(exc).__name__}"))
            except Error:
                pass  # the server's answer to our CopyFail: the caller's own error is the one to raise
            raise
        result: Result = self._run(session.copy_in_finish(None))
        return result.row_count or 0

    def copy_to(self, sql: str) -> Generator[bytes, None, None]:
        """COPY ... TO STDOUT: an iterator of data chunks (as many rows as each read brought).

        Stopping early (``close()``, or leaving a ``for`` loop and dropping the iterator)
        reads and discards the rest, so the connection is usable again.
        """
        start = self._run(self._session.copy_start(sql))
        if not isinstance(start, ev.CopyOutResponse):
            try:
                self._run(self._session.copy_in_finish("copy_to() needs COPY ... TO STDOUT"))
            except Error:
                pass  # the server's answer to our CopyFail
            raise ProgrammingError("copy_to() needs a COPY ... TO STDOUT statement")
        batch = self._session.copy_out_batch
        done = False
        while not done:
            chunk, done = self._run(batch())
            if not chunk:
                continue
            try:
                yield chunk
            except GeneratorExit:
                # The caller stopped early: read the rest, so the connection can run queries again.
                if not done and not self.closed:
                    self._drain_copy_out()
                raise

    def _drain_copy_out(self) -> None:
        while not self._run(self._session.copy_out_batch())[1]:
            pass

    def copy(self, sql: str) -> "Copy":
        """A COPY as a context manager (psycopg's ``cursor.copy``): ``write``/``write_row`` for
        FROM STDIN, ``read``/``rows``/iteration for TO STDOUT. See ``neon_sync.copy.Copy``."""
        return Copy(self, sql)

    # ------------------------------------------------------------------ streaming

    def stream(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        batch_rows: int = 2000,
        array_mode: bool | None = None,
        mode: RowMode | None = None,
    ) -> Iterator[Any]:
        """Rows of one statement read ``batch_rows`` at a time from a suspended portal.

        Memory stays at one batch whatever the result's size. Rows are dicts (lists with
        ``array_mode``, or the ``mode`` given). Until the iteration ends, or the iterator is
        closed, the connection runs nothing else.
        """
        if mode is None:
            mode = row_mode(self.array_mode if array_mode is None else array_mode)
        return self._stream(sql, params, batch_rows=batch_rows, mode=mode)

    def _stream(
        self,
        sql: str,
        params: Sequence[Any] | None,
        *,
        batch_rows: int,
        mode: RowMode,
        begin: str | None = None,
        on_start: Callable[[PortalStream], None] | None = None,
    ) -> Iterator[Any]:
        session = self._session
        portal = self._run(session.stream_open(sql, params, max_rows=batch_rows, mode=mode, begin=begin))
        if on_start is not None:
            on_start(portal)
        try:
            while True:
                rows, portal.rows = portal.rows, []
                yield from rows
                del rows
                if portal.done:
                    return
                self._run(session.stream_fetch(portal))
        finally:
            if not portal.done and not self.closed:
                self._run(session.stream_close(portal))

    def format_query(self, sql: str, params: Sequence[Any] | None = None) -> str:
        """The statement with ``$n`` replaced by quoted literals, for logging only (never run it:
        parameters always travel apart from the SQL)."""
        return format_query(sql, params, self.registry)

    def poll(self) -> bool:
        """Take in, without blocking, what the server sent while the connection sat idle.

        Notifications are queued for ``wait_notification``; a FATAL notice (the backend was
        terminated, the server shut down) or a closed socket closes the client. Returns whether
        the connection is still open: what a pool asks before lending it.
        """
        transport = self._transport
        if transport is None or transport.closed or not self._connected:
            return False
        session = self._session
        if not session.idle:
            return not self.closed
        with self._lock:
            try:
                while True:
                    data = transport.recv_nowait()
                    if data is None:
                        break
                    session.conn.receive_data(data)
                    if not data:
                        break
                session.process_idle_events()
            except (Error, OSError) as exc:
                logger.info("the idle connection is gone: %s", exc)
                transport.close()
        return not self.closed

    # ------------------------------------------------------------------ LISTEN / NOTIFY

    def listen(self, channel: str) -> None:
        """LISTEN on a channel (quoted as an identifier)."""
        self.query(f"LISTEN {quote_identifier(channel)}")

    def unlisten(self, channel: str = "*") -> None:
        """UNLISTEN a channel, or all of them."""
        self.query("UNLISTEN *" if channel == "*" else f"UNLISTEN {quote_identifier(channel)}")

    def notify(self, channel: str, payload: str = "") -> None:
        """NOTIFY a channel with a payload."""
        self.query("SELECT pg_notify($1, $2)", [channel, payload])

    def wait_notification(self, timeout: float | None = None) -> Notification | None:
        """The next notification, waiting up to ``timeout`` seconds (None: forever); None on timeout."""
        session = self._session
        if session.notifications:
            return session.notifications.popleft()
        transport = self._transport
        if transport is None or transport.closed:
            raise ConnectionClosed("the connection is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not session.notifications:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                transport.sock.settimeout(remaining)
                try:
                    data = transport.recv()
                except socket.timeout:
                    return None
                except OSError as exc:
                    transport.close()
                    raise ConnectionClosed(f"the connection to the server was lost: {exc}") from exc
                finally:
                    if not transport.closed:
                        transport.sock.settimeout(None)
                session.conn.receive_data(data)
                try:
                    session.process_idle_events()
                except Error:
                    transport.close()
                    raise
        return session.notifications.popleft()

    def notifications(self, timeout: float | None = None) -> Iterator[Notification]:
        """Iterate over notifications as they arrive; stops after ``timeout`` seconds without one."""
        while True:
            item = self.wait_notification(timeout)
            if item is None:
                return
            yield item

    # ------------------------------------------------------------------ cancel

    def cancel(self, *, timeout: float | None = None) -> None:
        """Ask the server to cancel the running query (a CancelRequest on a new connection).

        Returns once the server has taken it (it closes that connection), or after
        ``timeout`` seconds (default: the connect timeout, else 10).
        """
        conn = self._session.conn
        if conn.process_id is None or conn.secret_key is None:
            if conn.startup_in_background:
                logger.info("cancel: the pipelined connect has not finished, so no query runs yet")
                return
            raise InterfaceError("no backend key: the connection was never established")
        params = self.params
        limit = timeout or params.connect_timeout or 10.0
        give_up_at = time.monotonic() + limit
        plan = cancel_plan(ConnectOptions(params, self.transport_options), conn.process_id, conn.secret_key)
        sock, _ = establish(plan, deadline=give_up_at)
        if sock is not None:
            # The server closes the connection when it has processed the request.
            try:
                sock.settimeout(max(0.01, give_up_at - time.monotonic()))
                sock.recv(1)
            except OSError:
                pass
            sock.close()


class Pipeline:
    """Queue queries and send them in one flight; results come back in order.

    Each query gets its own Sync by default, so an error fails only its own query; with
    ``atomic=True`` one Sync ends the block and an error aborts the rest.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._queries: list[Query] = []

    def add(self, text: str, params: Sequence[Any] | None = None, *, array_mode: bool | None = None) -> Query:
        """Queue a query; its result is filled in by ``run()``."""
        mode: RowMode = row_mode(self._client.array_mode if array_mode is None else array_mode)
        query = Query(text, params, mode)
        self._queries.append(query)
        return query

    def run(self, *, atomic: bool = False) -> list[Result | Error]:
        """Send every queued query, then read all results: a Result or the Error for each."""
        queries, self._queries = self._queries, []
        done: list[Query] = self._client._run(self._client.session.pipeline(queries, sync_each=not atomic))
        return [q.error if q.error is not None else q.outcome() for q in done]

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None and self._queries:
            self.run()


def _chunks(data: Iterable[bytes | str] | BinaryIO | bytes | str, size: int = 65536) -> Iterator[bytes]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for i in range(0, len(view), size):
            yield bytes(view[i : i + size])
        return
    read = getattr(data, "read", None)
    if read is not None:
        while True:
            chunk = read(size)
            if not chunk:
                return
            yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)
    for item in data:
        yield item.encode("utf-8") if isinstance(item, str) else bytes(item)

