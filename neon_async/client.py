"""``Client``: one Postgres connection for async code, written once for every event loop.

The sans-IO operations of ``neon_proto.session`` are driven by ``neon_async.operation.drive``
over the backend's stream. What an event loop adds is cancellation: a task cancelled while a
query runs (trio's ``move_on_after``, a cancelled nursery; asyncio's ``timeout``,
``task.cancel()``, a TaskGroup whose sibling failed) sends a CancelRequest on a separate
connection and drains the query to its ReadyForQuery in a shielded section, so the
connection stays usable; past ``cancel_timeout`` it is closed instead. Then the cancellation
goes on its way. ``neon_trio.Client`` and ``neon_asyncio.Client`` only name their backend.
"""

from __future__ import annotations

import logging
import os
import random
import select
import ssl
from typing import (
    Any,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    ClassVar,
    Iterable,
    Mapping,
    Self,
    Sequence,
    TypeVar,
    Unpack,
)

import attrs

from neon_async.backend import Backend, Sink, Stream
from neon_async.connect import LinkStream, StreamOver, establish
from neon_async.lock import TurnLock
from neon_async.operation import Progress, drive
from neon_proto import events as ev
from neon_proto.connect import cancel_plan, connect_plan
from neon_proto.conninfo import ConnectionParams
from neon_proto.hosts import AskSessionState, TryHost, host_plan
from neon_proto.plan import PlanSteps
from neon_proto.options import ConnectKeywords, ConnectOptions, TransportOptions, resolve_connect_options
from neon_proto.errors import (
    ConnectionClosed,
    Error,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from neon_proto.frontend import State
from neon_proto.results import Result, RowMode, row_mode
from neon_proto.pyformat import quote_identifier
from neon_proto.session import Op, PortalStream, Query, Session, SessionFacts
from neon_proto.startup import AuthPipelineMismatch, StartupPipeline
from neon_proto.types import TypeRegistry, default_registry
from neon_sync.config_files import read_config_file

__all__ = ["Client", "ClientKeywords", "Notification", "Pipeline", "CopyOut", "CopyData", "RowStream", "connect_options"]

logger = logging.getLogger("neon_async")

T = TypeVar("T")

Notification = ev.NotificationResponse

CopyData = bytes | bytearray | memoryview | str
"""A chunk for COPY FROM STDIN: bytes, or text sent as UTF-8."""

CLIENT_KEYWORDS = frozenset(
    {"array_mode", "prepared_statement_cache_size", "registry", "binary", "max_message_size", "cancel_timeout"}
)
"""The async Client's own keywords, beside the connection's (``ConnectKeywords``)."""


class ClientKeywords(ConnectKeywords, total=False):
    """Every keyword the async ``Client`` takes: the connection's and the client's own."""

    array_mode: bool
    prepared_statement_cache_size: int
    registry: Any
    binary: bool
    max_message_size: int | None
    cancel_timeout: float


def connect_options(
    dsn: str | None, options: Mapping[str, Any], *, caller: str = "Client", also_valid: frozenset[str] = CLIENT_KEYWORDS
) -> ConnectOptions:
    """Connection parameters and transport from a DSN, keywords, the PG* environment and neon_config.

    A ``service`` and the password file (``passfile``, PGPASSFILE, ~/.pgpass) are read here,
    once, with blocking reads: small local files, read when the client is made, never per query.
    """
    return resolve_connect_options(
        dsn, options, env=os.environ, caller=caller, also_valid=also_valid, read_file=read_config_file
    )

DEFAULT_CANCEL_TIMEOUT = 5.0
"""Seconds a cancelled query may take to be confirmed and drained before the connection is closed."""


@attrs.frozen
class _Drained:
    """What became of an operation resumed after its task was cancelled."""

    value: Any = None
    error: Error | None = None
    dropped: bool = False


class Client(SessionFacts):
    """A single Postgres connection: ``await connect()``, ``await query()``, ``await close()``.

    ``query(text, params)`` takes ``$1``-style placeholders and returns a ``Result`` whose rows
    are dicts (lists with ``array_mode=True``). One operation runs at a time; other tasks
    wait their turn. ``cancel_timeout`` bounds the cancel-and-drain that follows a cancelled
    task or a ``timeout``: past it the connection is closed instead.
    """

    backend: ClassVar[Backend]
    """The event loop's primitives; each binding's subclass names its own."""

    session_class: type[Session] = Session
    """The sans-IO session type; a subclass may change how parameters are sent."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        array_mode: bool = False,
        prepared_statement_cache_size: int = 0,
        registry: Any = None,
        binary: bool = False,
        max_message_size: int | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        **options: Unpack[ConnectKeywords],
    ) -> None:
        resolved = connect_options(dsn, options)
        self._init(
            resolved.params,
            array_mode=array_mode,
            prepared_statement_cache_size=prepared_statement_cache_size,
            registry=registry,
            binary=binary,
            max_message_size=max_message_size,
            cancel_timeout=cancel_timeout,
        )
        self.transport_options = resolved.transport
        self.transport_name = resolved.transport.transport

    @classmethod
    def from_params(
        cls,
        params: ConnectionParams,
        *,
        array_mode: bool = False,
        prepared_statement_cache_size: int = 0,
        registry: Any = None,
        binary: bool = False,
        max_message_size: int | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        wait_for_login: bool = True,
    ) -> Self:
        """A client for already parsed parameters (no PG* environment is consulted).

        The lower-level constructor, for code that takes over the session once it is logged
        in (neon_proxy): its ``connect()`` waits for the login unless ``wait_for_login=False``.
        """
        client = cls.__new__(cls)
        client._init(
            params,
            array_mode=array_mode,
            prepared_statement_cache_size=prepared_statement_cache_size,
            registry=registry,
            binary=binary,
            max_message_size=max_message_size,
            cancel_timeout=cancel_timeout,
        )
        client._wait_for_login = wait_for_login
        return client

    def _init(
        self,
        params: ConnectionParams,
        *,
        array_mode: bool,
        prepared_statement_cache_size: int,
        registry: Any,
        binary: bool,
        max_message_size: int | None,
        cancel_timeout: float,
    ) -> None:
        self.params = params
        self._given_params = params  # every host; self.params is the one connected to
        self.transport_options = TransportOptions()
        self.transport_name = "tcp"
        self._wait_for_login = False  # connect()'s default for ``wait``
        self.array_mode = array_mode
        self.cancel_timeout = cancel_timeout
        self._session_options: dict[str, Any] = {
            # The connection's own registry (user types registered here stay here).
            "registry": registry if registry is not None else TypeRegistry(parent=default_registry),
            "max_message_size": max_message_size,
            "prepared_statement_cache_size": prepared_statement_cache_size,
            "result_format": 1 if binary else 0,
        }
        self._session = self.session_class(**self._session_options)
        self._stream: Stream | None = None
        self._connect_failed = False
        self._lock = TurnLock(self.backend)
        self._connected = False
        self.connect_pipeline: StartupPipeline = False
        self._startup_deadline: float | None = None  # connect_timeout, while a pipelined login finishes
        self._drained: _Drained | None = None
        self._unfinished: CopyOut | RowStream | None = None  # a COPY or stream the caller left open

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._connected else "new")
        p = self.params
        return f"<{type(self).__module__.split('.')[0]}.Client {p.user}@{p.host}:{p.port}/{p.dbname} {state}>"

    # ------------------------------------------------------------------ lifecycle

    async def connect(self, *, wait: bool | None = None) -> Self:
        """Open the connection: TCP or WebSocket, TLS per sslmode, startup and authentication.

        The steps are ``neon_proto.connect``'s plan, the same one neon_sync drives. With a
        pipelined connect (``pipeline_connect``, on by default where it is safe: SCRAM over
        TCP with a password, a cleartext password over WebSocket) it returns as soon as its
        last flight is written, and the first query follows in the same round trip; a failed
        login then surfaces at that query, with the same exception class. ``wait=True``
        waits for the login to finish anyway (``Pool`` and DB-API ``connect()`` do; so does
        a client made by ``from_params``); until it finished, ``backend_pid`` is None.
        Calling it on a connected client does nothing (but waiting, with ``wait=True``); on one
        whose connection was lost, it connects again.

        With several hosts, each is tried in turn (``load_balance_hosts``), waiting for its
        login, until one accepts and its session fits ``target_session_attrs``
        (``neon_proto.hosts``); ``self.params`` then names that host.
        """
        if wait is None:
            wait = self._wait_for_login
        if self._connected and not self.closed:
            if wait and self._session.conn.startup_in_background:
                await self.run(self._session.finish_startup())
            else:
                await self.backend.checkpoint()  # every call is a checkpoint, even one with nothing to do
            return self
        await self.backend.checkpoint_if_cancelled()
        steps = PlanSteps(host_plan(self._given_params, random.shuffle))
        for step in steps:
            try:
                if isinstance(step, TryHost):
                    await self._connect_to(step.params, wait=wait or step.wait)
                    steps.answer(self.server_parameters if step.wait else None)
                elif isinstance(step, AskSessionState):
                    steps.answer((await self.query(step.sql, array_mode=True)).rows[0])
                else:
                    await self.close()
                    self._connected = False
            except OperationalError as exc:
                steps.fail(exc)
        return self

    async def _connect_to(self, params: ConnectionParams, *, wait: bool) -> None:
        """Connect to the one server ``params`` names, within its ``connect_timeout`` (which
        also bounds a pipelined login that finishes behind the first query)."""
        self.params = params
        self._connected = False
        self._connect_failed = True  # until it succeeds: a failed connect reads as closed
        backend = self.backend
        timeout = params.connect_timeout or None
        self._startup_deadline = None if timeout is None else backend.time() + timeout
        async with backend.timeout(timeout) as scope:
            try:
                await self._open(params, wait=wait)
            except AuthPipelineMismatch:
                # The server asked for another method than the pipelined flight assumed, after
                # the flight had left; the method memory now knows, and the next plan sends the
                # right one.
                await self._open(params, wait=wait)
        if scope.expired:
            raise OperationalError(f"connection to {params.host}:{params.port} timed out")
        self._connect_failed = False
        self._connected = True
        logger.debug("connected to %s:%s as %s over %s (pipelined: %s)",
                     params.host, params.port, params.user, self.transport_name, self.connect_pipeline)  # fmt: skip

    async def _open(self, params: ConnectionParams, *, wait: bool) -> None:
        """Drive the connect plan; keep its stream (through its link, if any) and its session.

        A pipelined login is left to finish behind the first operation unless ``wait``."""
        options = self.transport_options
        plan = connect_plan(ConnectOptions(params, options), self._session.renewed)
        raw, connected = await establish(self.backend, plan)
        assert raw is not None
        stream: Stream = raw
        if connected.link is not None:
            stream = LinkStream(raw, connected.link, coalesce_writes=options.coalesce_writes, unsent=connected.unsent)
        self._stream = stream
        self._session = session = connected.session
        #: How the last connect was pipelined: "password", "scram", "startup" or False.
        self.connect_pipeline = connected.pipeline
        if wait and session.conn.startup_in_background:
            try:
                await drive(Progress(session.finish_startup()), stream, session.conn)
            except BaseException:
                await stream.aclose()
                raise

    async def close(self) -> None:
        """Say goodbye and close the connection; safe to call twice."""
        stream = self._stream
        if stream is None or stream.closed:
            if stream is not None:
                await stream.aclose()
            await self.backend.checkpoint()
            return
        data = self._session.terminate()
        async with self.backend.shielded(1.0):
            try:
                if data:
                    await stream.send(data)
            except Error:
                pass
        await stream.aclose()

    aclose = close

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by us, by the server, or by an error)."""
        stream = self._stream
        if stream is None:
            return self._connect_failed
        return stream.closed or self._session.closed

    @property
    def socket(self) -> Any:
        """The socket of the connection, for readiness watching (None when not connected)."""
        stream = self._stream
        if stream is None or stream.closed:
            return None
        return getattr(stream, "socket", None)

    async def register_type(self, name: str, factory: Any = None) -> Any:
        """Read a user or extension type (enum, composite, domain, range, hstore, citext) from
        the catalog and make this connection load and dump it; ``factory`` as in
        ``TypeRegistry.register_type_info``. Returns the ``TypeInfo``."""
        return await self.run(self._session.register_type(name, factory))

    # ------------------------------------------------------------------ running operations

    def _usable_stream(self) -> Stream:
        stream = self._stream
        if stream is None or not self._connected:
            raise InterfaceError("the client is not connected: call connect() first")
        if stream.closed:
            raise ConnectionClosed("the connection is closed")
        return stream

    async def run(self, op: Op[T], *, timeout: float | None = None) -> T:
        """Drive one ``neon_proto.session`` operation on this connection and return its result.

        With ``timeout`` the query is cancelled on the server when it passes; the server's
        answer (usually QueryCanceled) is raised, or OperationalError when the connection
        had to be closed because the cancel was not confirmed within ``cancel_timeout``.
        """
        backend = self.backend
        try:
            if backend.checkpoints:
                await backend.checkpoint_if_cancelled()  # a cancelled caller sends nothing
            stream = self._usable_stream()
            parked = stream.parked
            lock = self._lock
            if not lock.try_acquire():
                await lock.acquire()
            try:
                if timeout is None and self._startup_deadline is None and self._unfinished is None:
                    result = await self._drive(Progress(op), stream)  # the common case, in short
                else:
                    if self._unfinished is not None:
                        await self._unfinished._finish_locked()
                    result = await self._run_locked(op, timeout)
            finally:
                lock.release()
            if stream.parked == parked and backend.checkpoints:
                # With the cancellation check above, a whole checkpoint even when the reads
                # found every byte already there and never waited (trio's rule: every call
                # is one). A read that waited was one already.
                await backend.schedule_point()
            return result
        finally:
            op.close()

    async def _run_locked(self, op: Op[T], timeout: float | None = None) -> T:
        stream = self._usable_stream()
        if self._startup_deadline is not None:
            stream = self._login_bound(stream)
        progress = Progress(op)
        if timeout is None:
            return await self._drive(progress, stream)
        self._drained = None
        async with self.backend.timeout(timeout):
            return await self._drive(progress, stream)
        drained, self._drained = self._drained, None
        if drained is None or drained.dropped:
            raise OperationalError(f"the query timed out after {timeout:g} s and the connection had to be closed")
        if drained.error is not None:
            raise drained.error
        value: T = drained.value
        return value

    def _login_bound(self, stream: Stream) -> Stream:
        """The stream, its reads bounded by ``connect_timeout`` while a pipelined login is
        still unanswered (as neon_sync does); the plain stream once the login finished."""
        deadline = self._startup_deadline
        if deadline is None or not self._session.conn.startup_in_background:
            self._startup_deadline = None
            return stream
        return _LoginBoundStream(stream, self, deadline)

    async def _drive(self, progress: Progress[T], stream: Stream) -> T:
        session = self._session
        try:
            return await drive(progress, stream, session.conn)
        except self.backend.cancelled:
            if session.conn.startup_in_background:
                # Cancelled before the pipelined login was answered: there is no backend key
                # to cancel with yet, and the server has our messages; close.
                await stream.aclose()
                self._drained = _Drained(dropped=True)
            else:
                self._drained = await self._recover(progress, stream)
            raise
        except ConnectionClosed:
            await stream.aclose()
            raise
        except Error:
            if session.closed:
                await stream.aclose()
            raise

    async def _recover(self, progress: Progress[Any], stream: Stream) -> _Drained:
        """After a cancellation mid-operation: cancel on the server, then read to ReadyForQuery.

        Runs shielded for at most ``cancel_timeout`` seconds; a connection that cannot be
        brought back to idle in that time is closed.
        """
        if not progress.started:
            return _Drained(dropped=False)
        session = self._session
        outcome = _Drained(dropped=True)
        try:
            async with self.backend.shielded(self.cancel_timeout) as scope:
                if not stream.closed:
                    try:
                        await self.cancel()
                    except Error as exc:
                        logger.warning("could not send the cancel request: %s", exc)
                    try:
                        value = await drive(progress, stream, session.conn)
                        while session.conn.state is State.COPY_OUT:  # a COPY the cancel ended
                            await drive(Progress(session.copy_out_chunk()), stream, session.conn)
                    except Error as exc:
                        outcome = _Drained(error=exc)
                    else:
                        outcome = _Drained(value=value)
        except BaseException:
            await stream.aclose()  # cancelled again while draining: the stream's position is unknown
            raise
        if scope.expired or stream.closed or not session.idle:
            logger.warning("a cancelled operation could not be drained; closing the connection")
            await stream.aclose()
            return _Drained(dropped=True)
        logger.debug("cancelled operation drained; the connection stays usable")
        return outcome

    async def query(
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
        last result is returned). ``timeout`` bounds the whole call: the query is cancelled
        on the server when it passes.
        """
        mode: RowMode = row_mode(self.array_mode if array_mode is None else array_mode)

        def operation() -> Op[Any]:  # built anew after a reconnect: the session is then a new one
            if params is None:
                return self._session.simple_query(text, mode=mode, registry=types)
            return self._session.execute(text, params, mode=mode, registry=types)

        try:
            outcome = await self.run(operation(), timeout=timeout)
        except AuthPipelineMismatch:
            await self._connect_again()
            outcome = await self.run(operation(), timeout=timeout)
        if params is None:
            return outcome[-1] if outcome else Result(())
        result: Result = outcome
        return result

    async def _connect_again(self) -> None:
        """A pipelined connect guessed the wrong login (the server asked for another method,
        so the operation never reached it): connect again, now knowing what the server asks,
        so the caller can run a new operation once more, as neon_sync's ``query()`` does."""
        if self._stream is not None:
            await self._stream.aclose()  # the server read our early message as its answer: done
        self._connected = False
        await self.connect()

    async def execute(
        self, text: str, params: Sequence[Any] | None = None, *, mode: RowMode = "tuple", timeout: float | None = None
    ) -> Result:
        """Like query(), with the row shape chosen by ``mode`` (``tuple``, ``list`` or ``dict``)."""
        if params is None:
            results = await self.run(self._session.simple_query(text, mode=mode), timeout=timeout)
            return results[-1] if results else Result(())
        return await self.run(self._session.execute(text, params, mode=mode), timeout=timeout)

    async def simple_query(self, text: str, *, array_mode: bool | None = None) -> list[Result]:
        """Every statement's result of a multi-statement string (simple protocol)."""
        mode: RowMode = row_mode(self.array_mode if array_mode is None else array_mode)
        return await self.run(self._session.simple_query(text, mode=mode))

    async def execute_many(self, text: str, param_rows: Iterable[Sequence[Any]], *, begin: bool = False) -> int:
        """Run a statement once per parameter row, pipelined in one round trip; all or nothing.

        ``begin=True`` opens a transaction in the same round trip (left open for the caller).
        """
        total, _ = await self.run(self._session.execute_many(text, param_rows, begin=begin))
        return int(total)

    def pipeline(self) -> Pipeline:
        """A pipeline: queue queries, then ``await run()`` sends them all before reading any result."""
        return Pipeline(self)

    def poll(self) -> bool:
        """Take in, without waiting, what the server sent while the connection sat idle.

        Notifications are queued; a FATAL notice or a closed socket closes the client.
        Returns whether the connection is still open: what a pool asks before lending it.
        """
        stream = self._stream
        if stream is None or stream.closed or not self._connected:
            return False
        session = self._session
        if not session.idle or self._lock.locked():
            return not self.closed
        try:
            while True:
                data = stream.receive_nowait()
                if data is None:
                    break
                session.conn.receive_data(data)
                if not data:
                    break
            session.process_idle_events()
        except Error as exc:
            logger.info("the idle connection is gone: %s", exc)
            stream.closed = True
        return not self.closed

    def has_unread_bytes(self) -> bool:
        """Whether the server sent something the event loop has not read yet (a FATAL, a
        notification): an idle connection in that state deserves a check before it is lent."""
        sock = self.socket
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    # ------------------------------------------------------------------ COPY

    async def copy_from(self, sql: str, data: CopyData | Iterable[CopyData] | AsyncIterable[CopyData]) -> int:
        """COPY ... FROM STDIN, streaming ``data`` (bytes, str, or a sync or async iterable of
        chunks); returns the row count. A cancellation ends the COPY with CopyFail, which the
        server rolls back; the connection stays usable."""
        session = self._session
        await self.backend.checkpoint_if_cancelled()
        self._usable_stream()
        await self._lock.acquire()
        try:
            if self._unfinished is not None:
                await self._unfinished._finish_locked()
            start = await self._run_locked(session.copy_start(sql))
            stream = self._usable_stream()
            if isinstance(start, ev.CopyOutResponse):
                await CopyOut(self, None)._finish_locked()
            if not isinstance(start, ev.CopyInResponse):
                raise ProgrammingError("copy_from() needs a COPY ... FROM STDIN statement")
            try:
                async for chunk in _chunks(data):
                    await stream.send(session.copy_in_data(chunk))
            except BaseException as exc:
                if isinstance(exc, self.backend.cancelled):
                    reason = "cancelled by the client"
                else:
                    reason = f"client error: {type(exc).__name__}"
                await self._fail_copy(stream, reason)
                raise
            result = await self._run_locked(session.copy_in_finish(None))
        finally:
            self._lock.release()
        return result.row_count or 0

    async def _fail_copy(self, stream: Stream, reason: str) -> None:
        """End a COPY FROM STDIN with CopyFail and read the server's answer, shielded."""
        session = self._session
        if stream.closed:
            return
        try:
            async with self.backend.shielded(self.cancel_timeout) as scope:
                try:
                    await drive(Progress(session.copy_in_finish(reason)), stream, session.conn)
                except Error:
                    pass  # the server's answer to our CopyFail: the caller's own error is the one to raise
        except BaseException:
            await stream.aclose()
            raise
        if scope.expired or not session.idle:
            await stream.aclose()

    def copy_to(self, sql: str) -> CopyOut:
        """COPY ... TO STDOUT: ``async with client.copy_to(sql) as chunks: async for chunk in chunks``.

        Chunks are read as they arrive. Leaving early reads and discards the rest (the next
        operation on the client does it too), so the connection is usable again.
        """
        return CopyOut(self, sql)

    def stream(
        self, text: str, params: Sequence[Any] | None = None, *, max_rows: int = 2000, mode: RowMode = "tuple"
    ) -> RowStream:
        """Rows of a large result ``max_rows`` at a time from a suspended portal, in bounded memory:
        ``async with client.stream(sql, params) as rows: async for row in rows``. Leaving early
        closes the portal (the next operation on the client does it too)."""
        return RowStream(self, text, params, max_rows, mode)

    # ------------------------------------------------------------------ LISTEN / NOTIFY

    async def listen(self, channel: str) -> None:
        """LISTEN on a channel (quoted as an identifier)."""
        await self.query(f"LISTEN {quote_identifier(channel)}")

    async def unlisten(self, channel: str = "*") -> None:
        """UNLISTEN a channel, or all of them."""
        await self.query("UNLISTEN *" if channel == "*" else f"UNLISTEN {quote_identifier(channel)}")

    async def notify(self, channel: str, payload: str = "") -> None:
        """NOTIFY a channel with a payload."""
        await self.query("SELECT pg_notify($1, $2)", [channel, payload])

    async def wait_notification(self, timeout: float | None = None) -> Notification | None:
        """The next notification, waiting up to ``timeout`` seconds (None: forever); None on timeout.

        Raises ConnectionClosed (or the server's error) if the server ends the session
        meanwhile, which makes this a way to watch an idle connection too.
        """
        session = self._session
        if session.notifications:
            await self.backend.checkpoint()
            return session.notifications.popleft()
        stream = self._usable_stream()
        async with self.backend.timeout(timeout) as scope:
            await self._lock.acquire()
            try:
                while not session.notifications:
                    try:
                        session.conn.receive_data(await stream.receive())
                        session.process_idle_events()
                    except Error:
                        await stream.aclose()
                        raise
            finally:
                self._lock.release()
        if scope.expired and not session.notifications:
            return None
        return session.notifications.popleft()

    def notifications(self, timeout: float | None = None) -> Notifications:
        """``async for n in client.notifications():`` each notification as it arrives; the
        iteration ends after ``timeout`` seconds without one (None: never)."""
        return Notifications(self, timeout)

    # ------------------------------------------------------------------ cancel

    async def cancel(self) -> None:
        """Ask the server to cancel the running query (a CancelRequest on a new connection).

        Returns once the server has taken the request (it closes that connection).
        """
        conn = self._session.conn
        if conn.process_id is None or conn.secret_key is None:
            raise InterfaceError("no backend key: the connection was never established")
        params = self.params
        backend = self.backend
        plan = cancel_plan(ConnectOptions(params, self.transport_options), conn.process_id, conn.secret_key)
        async with backend.timeout(params.connect_timeout or 10.0) as scope:
            stream, _ = await establish(backend, plan)
            if stream is not None:  # the plan closes what it opened; never left open
                await stream.aclose()
        if scope.expired:
            raise OperationalError("timed out sending the cancel request")


class _LoginBoundStream(StreamOver):
    """A client's stream whose reads give up at the connect deadline while the pipelined
    login is unanswered: the connection is then closed and OperationalError raised."""

    def __init__(self, inner: Stream, client: Client, deadline: float) -> None:
        self.inner = inner
        self.client = client
        self.deadline = deadline
        self.server_certificate = inner.server_certificate

    @property
    def is_tls(self) -> bool:
        return self.inner.is_tls

    async def receive(self) -> bytes:
        client = self.client
        if not client._session.conn.startup_in_background:
            return await self.inner.receive()
        backend = client.backend
        async with backend.timeout(max(0.0, self.deadline - backend.time())) as scope:
            return await self.inner.receive()
        assert scope.expired
        await self.inner.aclose()
        params = client.params
        raise OperationalError(f"connection to {params.host}:{params.port} timed out (the login was not answered)")

    def send_nowait(self, data: bytes) -> int:
        return self.inner.send_nowait(data)

    async def send(self, data: bytes | memoryview, sink: Sink | None = None) -> None:
        await self.inner.send(data, sink)

    def receive_nowait(self) -> bytes | None:
        return self.inner.receive_nowait()

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        await self.inner.start_tls(ctx, server_hostname)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Pipeline:
    """Queue queries and send them in one flight; results come back in order.

    Each query gets its own Sync by default, so an error fails only its own query; with
    ``atomic=True`` one Sync ends the block and an error aborts the rest. Used as
    ``async with client.pipeline() as p:``, the queued queries run on a clean exit.
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

    async def run(self, *, atomic: bool = False) -> list[Result | Error]:
        """Send every queued query, then read all results: a Result or the Error for each."""
        queries, self._queries = self._queries, []
        done = await self._client.run(self._client.session.pipeline(queries, sync_each=not atomic))
        return [q.error if q.error is not None else q.outcome() for q in done]

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None and self._queries:
            await self.run()


class _ReadInSteps:
    """An operation the caller reads step by step (a COPY out, a stream of rows). Each step
    holds the client's lock; one left unfinished is finished by the client's next operation."""

    _client: Client

    async def _locked(self, step: Callable[[], Awaitable[T]]) -> T:
        client = self._client
        await client.backend.checkpoint_if_cancelled()
        client._usable_stream()
        await client._lock.acquire()
        try:
            return await step()
        finally:
            client._lock.release()

    async def _begin_locked(self) -> None:
        """Before the first step: finish whatever another reader left open."""
        unfinished = self._client._unfinished
        if unfinished is not None:
            await unfinished._finish_locked()

    @property
    def finished(self) -> bool:
        """Whether nothing is left to read (or to discard)."""
        raise NotImplementedError

    async def _finish_locked(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop early: what is left is discarded and the connection is ready again."""
        if not self.finished and not self._client.closed:
            await self._locked(self._finish_locked)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self


class CopyOut(_ReadInSteps):
    """The chunks of a COPY ... TO STDOUT, as an async iterator (and context manager)."""

    def __init__(self, client: Client, sql: str | None) -> None:
        self._client = client
        self._sql = sql
        self._started = sql is None
        self._done = False

    @property
    def finished(self) -> bool:
        return not self._started or self._done

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        return await self._locked(self._next_locked)

    async def _next_locked(self) -> bytes:
        client = self._client
        session = client.session
        if not self._started:
            assert self._sql is not None
            await self._begin_locked()
            start = await client._run_locked(session.copy_start(self._sql))
            self._started = True
            if not isinstance(start, ev.CopyOutResponse):
                self._done = True
                try:
                    await client._run_locked(session.copy_in_finish("copy_to() needs COPY ... TO STDOUT"))
                except Error:
                    pass  # the server's answer to our CopyFail
                raise ProgrammingError("copy_to() needs a COPY ... TO STDOUT statement")
            client._unfinished = self
        chunk = await client._run_locked(session.copy_out_chunk())
        if chunk is None:
            self._done = True
            client._unfinished = None
            raise StopAsyncIteration
        return chunk

    async def _finish_locked(self) -> None:
        """Read and discard what is left, so the connection can run queries again."""
        client = self._client
        self._done = True
        client._unfinished = None
        if client.closed:
            return
        stream = client._usable_stream()
        session = client.session
        while session.conn.state is State.COPY_OUT or not session.idle:
            await client._drive(Progress(session.copy_out_chunk()), stream)


class RowStream(_ReadInSteps):
    """The rows of ``Client.stream()``, as an async iterator (and context manager)."""

    def __init__(self, client: Client, sql: str, params: Sequence[Any] | None, max_rows: int, mode: RowMode) -> None:
        self._client = client
        self._sql = sql
        self._params = params
        self._max_rows = max_rows
        self._mode: RowMode = mode
        self._portal: PortalStream | None = None
        self._rows: list[Any] = []
        self._at = 0

    @property
    def fields(self) -> list[ev.FieldDescription]:
        """The result's columns (known once the first batch arrived)."""
        return self._portal.fields if self._portal is not None else []

    @property
    def finished(self) -> bool:
        return self._portal is None or self._portal.done

    async def __anext__(self) -> Any:
        while self._at >= len(self._rows):
            if self._portal is not None and self._portal.done:
                raise StopAsyncIteration
            await self._locked(self._next_batch_locked)
        row = self._rows[self._at]
        self._at += 1
        return row

    async def _next_batch_locked(self) -> None:
        client = self._client
        session = client.session
        portal = self._portal
        if portal is None:
            await self._begin_locked()
            portal = self._portal = await client._run_locked(
                session.stream_open(self._sql, self._params, max_rows=self._max_rows, mode=self._mode)
            )
        else:
            await client._run_locked(session.stream_fetch(portal))
        client._unfinished = None if portal.done else self
        self._rows, portal.rows, self._at = portal.rows, [], 0

    async def _finish_locked(self) -> None:
        client = self._client
        client._unfinished = None
        self._rows = []
        portal = self._portal
        if portal is not None and not portal.done and not client.closed:
            await client._run_locked(client.session.stream_close(portal))


class Notifications:
    """``async for`` over a client's notifications (see ``Client.notifications``)."""

    def __init__(self, client: Client, timeout: float | None) -> None:
        self._client = client
        self._timeout = timeout

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self

    async def __anext__(self) -> Notification:
        item = await self._client.wait_notification(self._timeout)
        if item is None:
            raise StopAsyncIteration
        return item


async def _chunks(data: CopyData | Iterable[CopyData] | AsyncIterable[CopyData]) -> AsyncIterator[bytes]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for i in range(0, len(view), 65536):
            yield bytes(view[i : i + 65536])
        return
    if isinstance(data, AsyncIterable):
        async for item in data:
            yield item.encode("utf-8") if isinstance(item, str) else bytes(item)
        return
    for item in data:
        yield item.encode("utf-8") if isinstance(item, str) else bytes(item)

