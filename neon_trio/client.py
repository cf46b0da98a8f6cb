"""``Client``: one Postgres connection with the JS driver's shape, for trio.

The same sans-IO operations as ``neon_sync.Client`` are driven by a small trio loop. What
trio adds is cancellation: a task cancelled while a query runs (``trio.move_on_after``,
``fail_after``, a nursery being cancelled) sends a CancelRequest on a separate connection
and drains the query to its ReadyForQuery in a shielded scope, so the connection stays
usable; then the ``Cancelled`` goes on its way.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Iterable, Self, Sequence

import attrs
import trio

from neon_proto import events as ev
from neon_proto.conninfo import ConnectionParams, parse_connection_string
from neon_proto.errors import (
    ConnectionClosed,
    Error,
    InterfaceError,
    NotSupportedError,
    OperationalError,
)
from neon_proto.messages import cancel_request
from neon_proto.results import Result, RowMode
from neon_proto.types import TypeRegistry, default_registry
from neon_proto.session import Op, Query, Session, SessionFacts
from neon_sync._io import make_ssl_context
from neon_trio._io import TrioTransport, drive, open_stream

__all__ = ["Client", "Notification", "Pipeline"]

logger = logging.getLogger("neon_trio")

Notification = ev.NotificationResponse

TRANSPORTS = ("tcp",)

_DEFAULT_CANCEL_TIMEOUT = 10.0


@attrs.frozen
class _Drained:
    """What became of an operation resumed after its task was cancelled."""

    value: Any = None
    error: Error | None = None
    dropped: bool = False


class Client(SessionFacts):
    """A single Postgres connection for trio: ``await connect()``, ``await query()``, ``await close()``.

    ``query(text, params)`` takes ``$1``-style placeholders and returns a ``Result`` whose rows
    are dicts (lists with ``array_mode=True``). One operation runs at a time; other tasks
    wait their turn. ``cancel_timeout`` bounds the cancel-and-drain that follows a cancelled
    task: past it the connection is closed instead.
    """

    session_class: type[Session] = Session
    """The sans-IO session type; a subclass may change how parameters are sent."""

    def __init__(
        self,
        dsn: str | None = None,
        *,
        transport: str = "tcp",
        array_mode: bool = False,
        prepared_statement_cache_size: int = 0,
        registry: Any = None,
        binary: bool = False,
        max_message_size: int | None = None,
        cancel_timeout: float = _DEFAULT_CANCEL_TIMEOUT,
        **params: Any,
    ) -> None:
        if transport not in TRANSPORTS:
            raise NotSupportedError(f"transport {transport!r} is not available (choose from {', '.join(TRANSPORTS)})")
        self._init(
            parse_connection_string(dsn, env=os.environ, **params),
            array_mode=array_mode,
            prepared_statement_cache_size=prepared_statement_cache_size,
            registry=registry,
            binary=binary,
            max_message_size=max_message_size,
            cancel_timeout=cancel_timeout,
        )

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
        cancel_timeout: float = _DEFAULT_CANCEL_TIMEOUT,
    ) -> Self:
        """A client for already parsed parameters (no PG* environment is consulted)."""
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
        self.transport_name = "tcp"
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
        self._transport: TrioTransport | None = None
        self._lock = trio.Lock()
        self._connected = False
        self._drained: _Drained | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self._connected else "new")
        p = self.params
        return f"<neon_trio.Client {p.user}@{p.host}:{p.port}/{p.dbname} {state}>"

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> Self:
        """Open the connection: TCP, TLS per sslmode, startup and authentication."""
        if self._connected:
            return self
        params = self.params
        timeout = params.connect_timeout
        try:
            with trio.fail_after(timeout if timeout else math.inf):
                try:
                    await self._open(params, tls_first=params.sslmode != "allow")
                except OperationalError as exc:
                    if params.sslmode == "allow" and self._retry_allow(exc):
                        self._session = self.session_class(**self._session_options)
                        await self._open(params, tls_first=True)
                    else:
                        raise
        except trio.TooSlowError:
            raise OperationalError(f"connection to {params.host}:{params.port} timed out") from None
        self._connected = True
        logger.debug("connected to %s:%s as %s", params.host, params.port, params.user)
        return self

    @staticmethod
    def _retry_allow(exc: OperationalError) -> bool:
        return exc.sqlstate in ("28000", "28P01") or isinstance(exc, ConnectionClosed)

    async def _open(self, params: ConnectionParams, *, tls_first: bool) -> None:
        transport = TrioTransport(await open_stream(params))
        self._transport = transport
        session = self._session
        conn = session.conn
        unix = params.host.startswith("/")
        mode = params.sslmode
        server_hostname = None if unix else params.host
        try:
            if not unix and params.sslnegotiation == "direct":
                await transport.start_tls(make_ssl_context(params), server_hostname)
            elif not unix and tls_first and mode != "disable":
                accepted = await drive(session.request_tls(), transport, conn)
                if accepted:
                    await transport.start_tls(make_ssl_context(params), server_hostname)
                elif mode in ("require", "verify-ca", "verify-full"):
                    raise OperationalError(f"the server does not support TLS, but sslmode={mode} requires it")
            if params.channel_binding == "require" and not transport.is_tls:
                raise OperationalError("channel_binding=require needs a TLS connection")
            startup = session.startup(
                params.startup_parameters(),
                params.password,
                channel_binding=params.channel_binding,
                server_certificate=transport.server_certificate,
            )
            await drive(startup, transport, conn)
        except BaseException:
            await transport.aclose()
            raise

    async def close(self) -> None:
        """Say goodbye and close the stream; safe to call twice."""
        transport = self._transport
        if transport is None:
            return
        if not transport.closed:
            data = self._session.terminate()
            with trio.move_on_after(1.0) as scope:
                scope.shield = True
                try:
                    if data:
                        await transport.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                    pass
        await transport.aclose()

    aclose = close

    async def __aenter__(self) -> Self:
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by us, by the server, or by an error)."""
        transport = self._transport
        if transport is None:
            return False
        return transport.closed or self._session.closed

    @property
    def socket(self) -> trio.socket.SocketType | None:
        """The socket of the connection, for readiness watching (None when not connected)."""
        transport = self._transport
        if transport is None or transport.closed:
            return None
        return transport.socket

    async def register_type(self, name: str, factory: Any = None) -> Any:
        """Read a user or extension type (enum, composite, domain, range, hstore, citext) from
        the catalog and make this connection load and dump it; ``factory`` as in
        ``TypeRegistry.register_type_info``. Returns the ``TypeInfo``."""
        return await self.run(self._session.register_type(name, factory))

    # ------------------------------------------------------------------ running operations

    async def run(self, op: Op[Any], *, timeout: float | None = None) -> Any:
        """Drive one ``neon_proto.session`` operation on this connection and return its result.

        With ``timeout`` the query is cancelled on the server when it passes and the
        server's answer (usually QueryCanceled) is raised.
        """
        transport = self._transport
        if transport is None or not self._connected:
            op.close()
            raise InterfaceError("the client is not connected: call connect() first")
        lock = self._lock
        try:
            # A cancelled caller sends nothing; a free lock is taken without a pass through
            # the scheduler (the operation's own I/O is where other tasks get their turn).
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:
                await lock.acquire()
            try:
                if transport.closed:
                    raise ConnectionClosed("the connection is closed")
                if timeout is None:
                    return await self._drive(op, transport)
                self._drained = None
                with trio.move_on_after(timeout):
                    return await self._drive(op, transport)
                drained, self._drained = self._drained, None
                if drained is None or drained.dropped:
                    raise OperationalError("the query timed out and the connection had to be closed")
                if drained.error is not None:
                    raise drained.error
                return drained.value
            finally:
                lock.release()
        finally:
            op.close()

    async def _drive(self, op: Op[Any], transport: TrioTransport) -> Any:
        session = self._session
        try:
            return await drive(op, transport, session.conn)
        except trio.Cancelled:
            self._drained = await self._recover(op, transport)
            raise
        except ConnectionClosed:
            await transport.aclose()
            raise
        except Error:
            if session.closed:
                await transport.aclose()
            raise

    async def _recover(self, op: Op[Any], transport: TrioTransport) -> _Drained:
        """After a cancellation mid-operation: cancel on the server, then read to ReadyForQuery.

        Runs shielded for at most ``cancel_timeout`` seconds; a connection that cannot be
        brought back to idle in that time is closed.
        """
        session = self._session
        outcome = _Drained(dropped=True)
        with trio.move_on_after(self.cancel_timeout) as scope:
            scope.shield = True
            if not transport.closed:
                try:
                    await self.cancel()
                except Error as exc:
                    logger.warning("could not send the cancel request: %s", exc)
                try:
                    value = await drive(op, transport, session.conn, waiting=True)
                except Error as exc:
                    outcome = _Drained(error=exc)
                else:
                    outcome = _Drained(value=value)
        if scope.cancelled_caught or transport.closed or not session.idle:
            logger.warning("a cancelled operation could not be drained; closing the connection")
            await transport.aclose()
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
        last result is returned). ``timeout`` cancels the query on the server when it passes.
        """
        mode: RowMode = "list" if (self.array_mode if array_mode is None else array_mode) else "dict"
        if params is None:
            results: list[Result] = await self.run(
                self._session.simple_query(text, mode=mode, registry=types), timeout=timeout
            )
            return results[-1] if results else Result(())
        result: Result = await self.run(
            self._session.execute(text, params, mode=mode, registry=types), timeout=timeout
        )
        return result

    async def execute(self, text: str, params: Sequence[Any] | None = None, *, mode: RowMode = "tuple") -> Result:
        """Like query(), with the row shape chosen by ``mode`` (``tuple``, ``list`` or ``dict``)."""
        if params is None:
            results: list[Result] = await self.run(self._session.simple_query(text, mode=mode))
            return results[-1] if results else Result(())
        result: Result = await self.run(self._session.execute(text, params, mode=mode))
        return result

    async def simple_query(self, text: str, *, array_mode: bool | None = None) -> list[Result]:
        """Every statement's result of a multi-statement string (simple protocol)."""
        mode: RowMode = "list" if (self.array_mode if array_mode is None else array_mode) else "dict"
        results: list[Result] = await self.run(self._session.simple_query(text, mode=mode))
        return results

    async def execute_many(self, text: str, param_rows: Iterable[Sequence[Any]]) -> int:
        """Run a statement once per parameter row, pipelined in one round trip; all or nothing."""
        total, _ = await self.run(self._session.execute_many(text, param_rows))
        return int(total)

    def pipeline(self) -> "Pipeline":
        """A pipeline: queue queries, then ``await run()`` sends them all before reading any result."""
        return Pipeline(self)

    # ------------------------------------------------------------------ LISTEN / NOTIFY

    async def listen(self, channel: str) -> None:
        """LISTEN on a channel (quoted as an identifier)."""
        await self.query(f"LISTEN {_quote_ident(channel)}")

    async def unlisten(self, channel: str = "*") -> None:
        """UNLISTEN a channel, or all of them."""
        await self.query("UNLISTEN *" if channel == "*" else f"UNLISTEN {_quote_ident(channel)}")

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
            return session.notifications.popleft()
        transport = self._transport
        if transport is None or transport.closed:
            raise ConnectionClosed("the connection is closed")
        with trio.move_on_after(math.inf if timeout is None else timeout):
            async with self._lock:
                while not session.notifications:
                    try:
                        data = await transport.receive()
                        session.conn.receive_data(data)
                        session.process_idle_events()
                    except Error:
                        await transport.aclose()
                        raise
                return session.notifications.popleft()
        return None

    # ------------------------------------------------------------------ cancel

    async def cancel(self) -> None:
        """Ask the server to cancel the running query (a CancelRequest on a new connection).

        Returns once the server has taken the request (it closes that connection).
        """
        conn = self._session.conn
        if conn.process_id is None or conn.secret_key is None:
            raise InterfaceError("no backend key: the connection was never established")
        params = self.params
        try:
            with trio.fail_after(params.connect_timeout or 10.0):
                stream = await open_stream(params)
                try:
                    await stream.send_all(cancel_request(conn.process_id, conn.secret_key))
                    try:
                        await stream.receive_some(1)
                    except (trio.BrokenResourceError, OSError):
                        pass
                finally:
                    await trio.aclose_forcefully(stream)
        except trio.TooSlowError:
            raise OperationalError("timed out sending the cancel request") from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise OperationalError(f"could not send the cancel request: {exc}") from exc


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
        mode: RowMode = "list" if (self._client.array_mode if array_mode is None else array_mode) else "dict"
        query = Query(text, params, mode)
        self._queries.append(query)
        return query

    async def run(self, *, atomic: bool = False) -> list[Result | Error]:
        """Send every queued query, then read all results: a Result or the Error for each."""
        queries, self._queries = self._queries, []
        done: list[Query] = await self._client.run(self._client.session.pipeline(queries, sync_each=not atomic))
        return [q.error if q.error is not None else q.outcome() for q in done]

    async def __aenter__(self) -> "Pipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if exc[0] is None and self._queries:
            await self.run()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
