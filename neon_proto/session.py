"""Protocol operations as sans-IO generators, shared by every binding.

Each operation (startup, one query, a pipeline, COPY) is a generator that yields ``bytes``
to send, or ``None`` when it needs input: the binding then sends the bytes it received
(``b""`` for EOF) back with ``gen.send(data)``. The value it returns is the result. This keeps
every protocol step here, once; ``neon_sync``, ``neon_trio`` and the proxy only move bytes
(``run_sync`` style loops), in the manner of psycopg's generators.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict, deque
from typing import Any, Callable, Generator, Hashable, Iterable, Mapping, Sequence, TypeVar

from neon_proto import events as ev
from neon_proto.auth import AuthMethodMemory, ScramKeyCache
from neon_proto.errors import (
    ConnectionClosed,
    DataError,
    Diagnostic,
    Error,
    InterfaceError,
    OperationalError,
    PipelineAborted,
    ProgrammingError,
    RemoteProtocolError,
)
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from neon_proto.messages import SYNC
from neon_proto.results import Result, RowMode, make_row_converter, make_row_parser, parse_command_tag
from neon_proto.startup import Authenticator, StartupPipeline

__all__ = [
    "Session",
    "SessionFacts",
    "ConnectionInfo",
    "Op",
    "Query",
    "PortalStream",
    "NotificationHandler",
    "NoticeHandler",
    "could_be_copy",
]

logger = logging.getLogger("neon_proto.session")

T = TypeVar("T")
Op = Generator["bytes | None", "bytes | None", T]
"""A protocol operation: yields bytes to send or None to receive; returns its result."""

NoticeHandler = Callable[[Diagnostic], None]
NotificationHandler = Callable[[ev.NotificationResponse], None]


# Events that belong to the query being read: one arriving after the last query is nonsense.
_NEEDS_A_QUERY = frozenset(
    {
        ev.DataRows,
        ev.ParseComplete,
        ev.RowDescription,
        ev.NoData,
        ev.CommandComplete,
        ev.EmptyQueryResponse,
        ev.PortalSuspended,
        ev.CopyInResponse,
        ev.CopyOutResponse,
    }
)


_COPY_WORD = re.compile("copy", re.IGNORECASE).search


def could_be_copy(sql: str) -> bool:
    """Whether ``sql`` could start a COPY with the client (only a top-level COPY statement can).

    A server that answers any other statement with CopyInResponse or CopyOutResponse is
    out of step (or hostile): a protocol error, not a COPY to take part in.
    """
    return _COPY_WORD(sql) is not None


# TimeZone settings that mean UTC: timestamptz text then carries +00, as binary does.
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Universal", "Etc/Universal",
                        "Zulu", "Etc/Zulu", "GMT0", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "Greenwich", "Etc/Greenwich"})


class Query:
    """One statement in a pipeline: its text, parameters and, once run, its outcome."""

    __slots__ = ("sql", "params", "mode", "result", "error", "_convert", "_stmt_name", "_oids")

    def __init__(self, sql: str, params: Sequence[Any] | None = None, mode: RowMode = "dict") -> None:
        self.sql = sql
        self.params: Sequence[Any] = params if params is not None else ()
        self.mode: RowMode = mode
        self.result: Result | None = None
        self.error: Error | None = None
        self._convert: Callable[[Any], list[Any]] | None = None
        self._stmt_name = ""
        self._oids: tuple[int, ...] = ()

    def outcome(self) -> Result:
        """The result, or raise the error it met."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class PortalStream:
    """A result read in batches from a suspended portal (``Session.stream_open``).

    ``rows`` holds the batch at hand (the binding takes it and empties it); ``done`` turns true
    once the server sent the last row, after which the connection is ready again.
    """

    __slots__ = ("fields", "rows", "done", "tag", "row_count", "mode", "max_rows", "_registry", "_convert", "_delivered", "_leading")

    def __init__(self, mode: RowMode, max_rows: int, registry: Any) -> None:
        self.fields: list[ev.FieldDescription] = []
        self.rows: list[Any] = []
        self.done = False
        self.tag: str | None = None
        self.row_count: int | None = None
        self.mode: RowMode = mode
        self.max_rows = max_rows
        self._registry = registry
        self._convert: Any = None
        self._delivered = 0
        self._leading = 0  # CommandCompletes of statements sent ahead, to skip


class Session:
    """The client's view of one Postgres session above the frontend machine.

    Holds the type registry, the opt-in prepared-statement cache, and what arrives between
    queries (notifications, notices, parameter changes).
    """

    def __init__(
        self,
        *,
        registry: Any = None,
        max_message_size: int | None = None,
        prepared_statement_cache_size: int = 0,
        result_format: int = 0,
        declare_param_types: bool = True,
    ) -> None:
        if registry is None:
            from neon_proto.types import default_registry

            registry = default_registry
        kwargs = {} if max_message_size is None else {"max_message_size": max_message_size}
        self.conn = FrontendConnection(**kwargs)
        self.registry: Any = registry
        self.result_format = result_format
        #: Whether Parse declares each parameter's type. Without it (as Neon's proxy does) an
        #: untyped ``$1`` is text, and a wrong count fails with "bind message supplies N ...".
        self.declare_param_types = declare_param_types
        self.notifications: deque[ev.NotificationResponse] = deque()
        self.notice_handlers: list[NoticeHandler] = []
        self.notification_handlers: list[NotificationHandler] = []
        self._cache_size = prepared_statement_cache_size
        self._prepared: OrderedDict[tuple[str, tuple[int, ...]], str] = OrderedDict()
        # Column type OIDs of the cached statements that return rows, by statement name:
        # their results can come with per-column formats (``_result_formats``).
        self._columns: dict[str, tuple[int, ...]] = {}
        self._to_close: list[str] = []
        self._stmt_counter = 0
        self._converters: dict[tuple[int, str, int, int], tuple[Any, Any, Any, Any]] = {}

    def renewed(self) -> Session:
        """A new session with this one's settings and handlers, for another connection (a
        retry, a reconnect, another host); what the server said stays with the old one."""
        session = type(self)(
            registry=self.registry,
            max_message_size=self.conn.max_message_size,
            prepared_statement_cache_size=self._cache_size,
            result_format=self.result_format,
            declare_param_types=self.declare_param_types,
        )
        session.notice_handlers = self.notice_handlers
        session.notification_handlers = self.notification_handlers
        return session

    # ------------------------------------------------------------------ helpers

    @property
    def closed(self) -> bool:
        """Whether the session can no longer run queries."""
        return self.conn.state in (State.CLOSED, State.ERROR)

    @property
    def idle(self) -> bool:
        """Whether the server waits for a query (no results outstanding).

        True too while a pipelined connect finishes in the background with nothing else sent:
        a query may be sent now.
        """
        conn = self.conn
        return conn.state is State.READY or (conn.startup_in_background and conn.pending_syncs == 0)

    @property
    def transaction_status(self) -> str:
        """I (idle), T (in a transaction) or E (in a failed transaction)."""
        return self.conn.transaction_status

    def _next(self) -> Generator[bytes | None, bytes | None, Any]:
        """The next event that is not asynchronous, receiving as needed."""
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                data = yield None
                conn.receive_data(data or b"")
                continue
            cls = type(event)
            if cls is ev.NoticeResponse:
                self._on_notice(event)
                continue
            if cls is ev.NotificationResponse:
                self._on_notification(event)
                continue
            if cls is ev.ParameterStatus:
                continue
            return event

    def _on_notice(self, event: ev.NoticeResponse) -> None:
        diag = event.diagnostic
        # A WARNING deserves to be seen; NOTICE, INFO, DEBUG and LOG are chatter.
        level = logging.WARNING if diag.severity == "WARNING" else logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "server %s: %s", diag.severity, diag.message)
        for handler in self.notice_handlers:
            handler(diag)

    def _on_notification(self, event: ev.NotificationResponse) -> None:
        self.notifications.append(event)
        for handler in self.notification_handlers:
            handler(event)

    def process_idle_events(self) -> None:
        """Handle whatever arrived while idle (notifications, notices, a FATAL before closing)."""
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                return
            self._on_idle_event(event)

    def _closed_error(self, error: Error | None) -> Error:
        if error is not None:
            return error
        return ConnectionClosed("the server closed the connection unexpectedly")

    def _broken(self, why: str) -> Error:
        """The server's messages came out of order: the stream can no longer be trusted."""
        self.conn.send_terminate()  # the machine is CLOSED: the binding drops the socket
        return RemoteProtocolError(why)

    def _check_usable(self) -> None:
        state = self.conn.state
        if state is State.READY:
            return
        if state in (State.CLOSED, State.ERROR):
            raise ConnectionClosed("the connection is closed")
        if self.conn.startup_in_background and self.conn.pending_syncs == 0:
            return  # a pipelined connect: the first query follows the last startup flight
        raise InterfaceError(f"another operation is in progress on this connection ({state.name})")

    # ------------------------------------------------------------------ startup

    def request_tls(self) -> Op[bool]:
        """Send SSLRequest; return whether the server agreed to TLS."""
        conn = self.conn
        yield conn.send_ssl_request()
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                data = yield None
                conn.receive_data(data or b"")
                continue
            cls = type(event)
            if cls is ev.SSLResponse:
                return bool(event.accepted)
            if cls is ev.ErrorResponse:
                raise event.to_exception()
            if cls is ev.EndOfStream:
                raise ConnectionClosed("the server closed the connection after SSLRequest")
            raise OperationalError(f"unexpected {cls.__name__} in answer to SSLRequest")

    def startup(
        self,
        parameters: Mapping[str, str],
        password: str | None,
        *,
        channel_binding: str = "prefer",
        server_certificate: bytes | None = None,
        pipeline: StartupPipeline = False,
        server: Hashable = None,
        scram_keys: ScramKeyCache | None = None,
        methods: AuthMethodMemory | None = None,
    ) -> Op[None]:
        """Send the startup message and authenticate (see ``neon_proto.startup``).

        Without ``pipeline`` it returns at the first ReadyForQuery. With one, it returns as
        soon as its last flight is written: the next operation's messages follow at once, and
        the rest of startup is read ahead of their results (a failed login surfaces there,
        with the same exception class). ``server`` names the server for the SCRAM key cache
        (``scram_keys``) and the memory of authentication methods (``methods``).
        """
        conn = self.conn
        auth = Authenticator(
            conn,
            parameters,
            password,
            channel_binding=channel_binding,
            server_certificate=server_certificate,
            pipeline=pipeline,
            server=server,
            scram_keys=scram_keys,
            methods=methods,
            on_notice=self._on_notice,
        )
        yield auth.first_flight()
        while not auth.finished:
            if auth.pipeline is not False and auth.last_flight_sent:
                auth.detached = True
                conn.finish_startup_with(auth.on_background_event)
                return
            event = conn.next_event()
            if event is NEED_DATA:
                data = yield None
                conn.receive_data(data or b"")
                continue
            out = auth.on_event(event)
            if out:
                yield out

    def finish_startup(self) -> Op[None]:
        """Wait for the rest of a pipelined connect (the backend key, the server parameters).

        Nothing to do after a connect that was not pipelined. A failed login raises here.
        """
        conn = self.conn
        while conn.startup_in_background:
            event = conn.next_event()  # startup messages go to the startup handler
            if event is NEED_DATA:
                if not conn.startup_in_background:
                    break  # the last startup message was in the bytes just parsed
                conn.receive_data((yield None) or b"")
                continue
            self._on_idle_event(event)
        self.process_idle_events()

    def _on_idle_event(self, event: Any) -> None:
        """One event that arrived between queries: notifications and notices are handed on,
        an error (a FATAL: the backend was terminated) or EOF is raised."""
        cls = type(event)
        if cls is ev.NotificationResponse:
            self._on_notification(event)
        elif cls is ev.NoticeResponse:
            self._on_notice(event)
        elif cls is ev.ErrorResponse:
            raise event.to_exception()
        elif cls is ev.EndOfStream:
            raise ConnectionClosed("the server closed the connection")

    # ------------------------------------------------------------------ queries

    def _dump_params(self, params: Sequence[Any], registry: Any) -> tuple[list[int], list[int], list[bytes | None]]:
        """Each parameter's type OID, format and bytes."""
        oids: list[int] = []
        formats: list[int] = []
        values: list[bytes | None] = []
        dump = registry.dump
        for value in params:
            oid, fmt, data = dump(value)
            oids.append(oid)
            formats.append(fmt)
            values.append(data)
        return oids, formats, values

    def _statement_for(self, sql: str, oids: tuple[int, ...]) -> tuple[str, bool]:
        """The statement name to use and whether a Parse must be sent."""
        if not self._cache_size:
            return "", True
        key = (sql, oids)
        name = self._prepared.get(key)
        if name is not None:
            self._prepared.move_to_end(key)
            return name, False
        self._stmt_counter += 1
        return f"_neon_{self._stmt_counter}", True

    def _remember_statement(self, sql: str, oids: tuple[int, ...], name: str) -> None:
        if not name:
            return
        self._prepared[(sql, oids)] = name
        while len(self._prepared) > self._cache_size:
            _key, old = self._prepared.popitem(last=False)
            self._columns.pop(old, None)
            self._to_close.append(old)

    def _remember_columns(self, name: str, description: ev.RowDescription) -> None:
        if name:
            self._columns[name] = tuple([f.type_oid for f in description.fields])

    def _result_formats(self, name: str, registry: Any, fmt: int) -> tuple[int, ...]:
        """The Bind's result formats: ``fmt`` for every column, except that a cached statement
        of known column types gets its columns in binary wherever that loads the same value
        faster (``TypeRegistry.fast_result_formats``; asyncpg likewise binds what it prepared)."""
        if fmt:
            return (fmt,)
        oids = self._columns.get(name) if name else None
        if oids is None:
            return ()
        choose = getattr(registry, "fast_result_formats", None)
        if choose is None:
            return ()
        formats: tuple[int, ...] = choose(oids, self.conn.parameters.get("TimeZone") in _UTC_ZONES)
        return formats

    def forget_prepared_statements(self) -> None:
        """Forget the cache without closing anything: the server already dropped the
        statements (``DISCARD ALL``, ``DEALLOCATE ALL``)."""
        self._prepared.clear()
        self._columns.clear()
        self._to_close.clear()

    def _forget_statements(self) -> None:
        """Drop the cache (a schema change invalidated a plan); close the statements on the server."""
        self._to_close.extend(self._prepared.values())
        self._prepared.clear()
        self._columns.clear()

    def execute(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        mode: RowMode = "dict",
        registry: Any = None,
        result_format: int | None = None,
        loaders: Sequence[Any] | None = None,
    ) -> Op[Result]:
        """One statement through the extended protocol in a single round trip.

        The per-query hot path: the general ``pipeline`` does the same for one query,
        with more bookkeeping.
        """
        conn = self.conn
        if conn.state is not State.READY or self._to_close:
            query = Query(sql, params, mode)
            yield from self.pipeline((query,), registry=registry, result_format=result_format, loaders=loaders)
            return query.outcome()
        reg = registry if registry is not None else self.registry
        fmt = self.result_format if result_format is None else result_format
        oids, formats, values = self._dump_params(params, reg) if params else ((), (), ())
        toids = tuple(oids) if self.declare_param_types else ()
        name = ""
        parse = True
        if self._cache_size:
            name, parse = self._statement_for(sql, toids)
        yield conn.send_extended_query(
            name, sql, toids, values, formats if any(formats) else (), self._result_formats(name, reg, fmt), parse=parse
        )
        if not conn.has_buffered_data:
            conn.receive_data((yield None) or b"")
        next_events = conn.next_events
        result: Result | None = None
        convert: Any = None
        rows: list[Any] = []
        error: Error | None = None
        DataRows = ev.DataRows
        while True:
            events = next_events()
            if not events:
                data = yield None
                conn.receive_data(data or b"")
                continue
            for event in events:
                cls = type(event)
                if cls is DataRows:
                    if event.decoded:
                        rows.extend(event.rows)
                    elif error is None:
                        try:
                            rows.extend(self._decode_rows(event, convert))
                        except DataError as exc:
                            error = exc
                elif cls is ev.BindComplete:
                    pass
                elif cls is ev.ParseComplete:
                    if name:
                        self._remember_statement(sql, toids, name)
                elif cls is ev.RowDescription:
                    if parse:
                        self._remember_columns(name, event)
                    convert = self._converter(event, reg, mode, loaders)
                    result = Result(event.fields, row_as_array=mode != "dict")
                    rows = result.rows
                elif cls is ev.CommandComplete:
                    if result is None:
                        result = Result((), row_as_array=mode != "dict")
                    result.set_tag(event.tag)
                elif cls is ev.ReadyForQuery:
                    if error is not None:
                        raise error
                    return result if result is not None else Result((), row_as_array=mode != "dict")
                elif cls is ev.NoData:
                    result = Result((), row_as_array=mode != "dict")
                elif cls is ev.ErrorResponse:
                    if error is None:  # after our CopyFail, the server's error only echoes it
                        error = event.to_exception()
                    if event.sqlstate in ("26000", "0A000") and self._prepared:
                        self._forget_statements()
                else:
                    error = yield from self._unusual_event(event, error, sql)

    def _unusual_event(
        self, event: Any, error: Error | None, sql: str | None
    ) -> Generator[bytes | None, bytes | None, Error | None]:
        """What a result loop does with the rare events: notices, COPY starts, EOF.

        ``sql`` is the statement being answered (None when it is not known).
        """
        cls = type(event)
        if (cls is ev.CopyInResponse or cls is ev.CopyOutResponse) and sql is not None and not could_be_copy(sql):
            raise self._broken(f"the server answered a statement that is not a COPY with {cls.__name__}")
        if cls is ev.NoticeResponse:
            self._on_notice(event)
        elif cls is ev.NotificationResponse:
            self._on_notification(event)
        elif cls is ev.EndOfStream:
            raise self._closed_error(error)
        elif cls is ev.CopyInResponse:
            # In COPY mode the server ignored the Sync sent with the query; after a CopyFail of
            # an extended-protocol COPY it discards everything up to the next Sync: send one.
            yield self.conn.send_copy_fail("COPY FROM STDIN is only possible through the copy API") + SYNC
            return error or ProgrammingError("COPY FROM STDIN is only possible through the copy API")
        elif cls is ev.CopyOutResponse:
            return error or ProgrammingError("COPY TO STDOUT is only possible through the copy API")
        elif cls in (ev.ParameterStatus, ev.CopyData, ev.CopyDone, ev.EmptyQueryResponse, ev.PortalSuspended):
            pass
        else:
            raise self._broken(f"unexpected {cls.__name__} in query results")
        return error

    def _converter(self, description: ev.RowDescription, registry: Any, mode: RowMode, loaders: Any) -> Any:
        """The row converter for a RowDescription, cached while the same description repeats.

        Also installs the matching row parser on the machine, so the DataRows that follow
        arrive already decoded (``DataRows.decoded``); the converter serves the raw ones.
        """
        if loaders is not None:
            self.conn.set_row_parser(description, make_row_parser(description.fields, registry, mode, loaders))
            return make_row_converter(description.fields, registry, mode, loaders)
        key = (id(description), mode, id(registry), getattr(registry, "generation", 0))
        cached = self._converters.get(key)
        if cached is not None and cached[0] is description and cached[1] is registry:
            self.conn.set_row_parser(description, cached[3])
            return cached[2]
        convert = make_row_converter(description.fields, registry, mode)
        parser = make_row_parser(description.fields, registry, mode)
        if len(self._converters) >= 256:
            self._converters.clear()
        self._converters[key] = (description, registry, convert, parser)
        self.conn.set_row_parser(description, parser)
        return convert

    @staticmethod
    def _decode_rows(event: ev.DataRows, convert: Any) -> list[Any]:
        """The rows of a DataRows event, decoded (already, or now with ``convert``)."""
        if event.decoded:
            return event.rows
        if convert is None:
            raise OperationalError("DataRow without a RowDescription")
        try:
            rows: list[Any] = convert(event.rows)
        except Error:
            raise
        except Exception as exc:
            raise DataError(f"a value received from the server could not be decoded: {exc}") from exc
        return rows

    def pipeline(
        self,
        queries: Sequence[Query],
        *,
        sync_each: bool = False,
        registry: Any = None,
        result_format: int | None = None,
        loaders: Sequence[Any] | None = None,
    ) -> Op[list[Query]]:
        """Send every query before reading any result; fill each query's result or error.

        With ``sync_each`` every query has its own Sync (an error affects only its query);
        otherwise one Sync ends the block, so the queries form one implicit transaction and an
        error aborts the rest, which report PipelineAborted.
        """
        self._check_usable()
        if not queries:
            return []
        conn = self.conn
        reg = registry if registry is not None else self.registry
        fmt = self.result_format if result_format is None else result_format
        out: list[bytes] = []
        if self._to_close:
            for name in self._to_close:
                out.append(conn.send_close("S", name))
        groups: list[int] = []  # index of the last query of each sync group
        last_index = len(queries) - 1
        for i, query in enumerate(queries):
            oids, formats, values = self._dump_params(query.params, reg)
            toids = tuple(oids) if self.declare_param_types else ()
            name, parse = self._statement_for(query.sql, toids)
            query._stmt_name = name if parse else ""
            query._oids = toids
            sync = sync_each or i == last_index
            out.append(
                conn.send_extended_query(
                    name,
                    query.sql,
                    toids,
                    values,
                    formats if any(formats) else (),
                    self._result_formats(name, reg, fmt),
                    parse=parse,
                    sync=False,
                )
            )
            if sync:
                out.append(SYNC)
                groups.append(i)
        # Only now that every message is built (a bad parameter raises before anything is
        # sent) does the machine learn of the Syncs; and the evicted statements are closed.
        conn.expect_ready(len(groups))
        self._to_close.clear()
        yield b"".join(out)

        # Read the results. The event loop is inlined: this is the per-query hot path.
        next_events = conn.next_events
        receive = conn.receive_data
        cur = 0
        group = 0
        pending_error: Error | None = None
        rows: list[Any] = []
        convert: Any = None
        DataRows = ev.DataRows
        events: list[Any] = []
        index = len(events)
        while True:
            if index >= len(events):
                events = next_events()
                index = 0
                if not events:
                    data = yield None
                    receive(data or b"")
                    continue
            event = events[index]
            index += 1
            cls = type(event)
            if cur > last_index and cls in _NEEDS_A_QUERY:
                raise self._broken(f"unexpected {cls.__name__}: every query already has its result")
            if cls is DataRows:
                if event.decoded:
                    rows.extend(event.rows)
                elif queries[cur].error is None:
                    try:
                        rows.extend(self._decode_rows(event, convert))
                    except DataError as exc:
                        queries[cur].error = exc
            elif cls is ev.BindComplete or cls is ev.CloseComplete:
                pass  # CloseComplete: a statement evicted from the cache was closed
            elif cls is ev.ParseComplete:
                query = queries[cur]
                if query._stmt_name:
                    self._remember_statement(query.sql, query._oids, query._stmt_name)
            elif cls is ev.RowDescription:
                query = queries[cur]
                self._remember_columns(query._stmt_name, event)
                convert = self._converter(event, reg, query.mode, loaders)
                query.result = Result(event.fields, row_as_array=query.mode != "dict")
                rows = query.result.rows
            elif cls is ev.NoData:
                query = queries[cur]
                query.result = Result((), row_as_array=query.mode != "dict")
                convert = None
            elif cls is ev.CommandComplete or cls is ev.EmptyQueryResponse or cls is ev.PortalSuspended:
                query = queries[cur]
                if query.result is None:
                    query.result = Result(())
                if cls is ev.CommandComplete:
                    query.result.set_tag(event.tag)
                cur += 1
                convert = None
            elif cls is ev.ReadyForQuery:
                # A query with neither result nor error was skipped by the server (a COPY in
                # the middle of a pipeline swallows what follows it).
                for q in queries[cur : groups[group] + 1]:
                    if q.result is None and q.error is None:
                        q.error = PipelineAborted("skipped: the server discarded this query")
                cur = max(cur, groups[group] + 1)
                group += 1
                if group >= len(groups):
                    return list(queries)
            elif cls is ev.ErrorResponse:
                error = event.to_exception()
                if event.sqlstate in ("26000", "0A000") and self._prepared:
                    self._forget_statements()
                last = groups[group]
                target = min(cur, last)
                if queries[target].error is None:  # a COPY refused below keeps its ProgrammingError
                    queries[target].error = error
                queries[target].result = None
                for q in queries[target + 1 : last + 1]:
                    q.error = PipelineAborted(
                        "skipped: an earlier query in the same pipeline sync block failed",
                        diag=Diagnostic(message=str(error)),
                    )
                    q.result = None
                cur = last + 1
                convert = None
                if event.fields.get("V", event.fields.get("S")) in ("FATAL", "PANIC"):
                    pending_error = error
            elif cls is ev.NoticeResponse:
                self._on_notice(event)
            elif cls is ev.NotificationResponse:
                self._on_notification(event)
            elif cls is ev.ParameterStatus:
                pass
            elif cls is ev.EndOfStream:
                fatal = self._closed_error(pending_error)
                for q in queries[cur:]:
                    if q.error is None:
                        q.error = fatal
                raise fatal
            elif (cls is ev.CopyInResponse or cls is ev.CopyOutResponse) and not could_be_copy(queries[cur].sql):
                raise self._broken(f"the server answered a statement that is not a COPY with {cls.__name__}")
            elif cls is ev.CopyInResponse:
                queries[cur].error = ProgrammingError("COPY FROM STDIN is only possible through the copy API")
                # In COPY mode the server ignores Sync: if this query's own Sync was swallowed,
                # the server now discards everything up to the next Sync, so send one more.
                refused = conn.send_copy_fail("COPY FROM STDIN is only possible through the copy API")
                yield refused + SYNC if cur == groups[group] else refused
            elif cls is ev.CopyOutResponse:
                queries[cur].error = ProgrammingError("COPY TO STDOUT is only possible through the copy API")
            elif cls is ev.CopyData or cls is ev.CopyDone:
                pass
            else:
                raise self._broken(f"unexpected {cls.__name__} in query results")

    def execute_many(
        self,
        sql: str,
        param_rows: Iterable[Sequence[Any]],
        *,
        registry: Any = None,
        returning: bool = False,
        mode: RowMode = "tuple",
        begin: bool | str = False,
    ) -> Op[tuple[int, list[Result]]]:
        """Run one statement for each parameter row in one pipelined block, all or nothing.

        One Parse serves every row with the same parameter types; the rows are sent before
        any result is read. Returns the total row count (and the results when ``returning``).
        With ``begin``, a BEGIN leads the same flight (the DB-API's implicit transaction).
        """
        self._check_usable()
        conn = self.conn
        reg = registry if registry is not None else self.registry
        fmt = self.result_format
        result_formats = (fmt,) if fmt else ()
        out: list[bytes] = []
        if begin:
            begin_sql = begin if isinstance(begin, str) else "BEGIN"
            out.append(conn.send_extended_query("", begin_sql, (), (), sync=False))
        last_oids: tuple[int, ...] | None = None
        describe = b"" if not returning else conn.send_describe("P")
        execute = conn.send_execute()
        bind = conn.send_bind
        count = 0
        for params in param_rows:
            oids, formats, values = self._dump_params(params, reg)
            toids = tuple(oids)
            if toids != last_oids:
                out.append(conn.send_parse("", sql, oids if self.declare_param_types else ()))
                last_oids = toids
            out.append(bind("", "", values, formats if any(formats) else (), result_formats))
            if returning:
                out.append(describe)
            out.append(execute)
            count += 1
        if not count:
            return 0, []
        out.append(conn.send_sync())
        yield b"".join(out)
        results = yield from self._collect_results(reg, mode, extended=True, sql=sql)
        if begin:
            results = results[1:]
        total = sum(r.row_count or 0 for r in results)
        return total, (results if returning else [])

    def _receive_events(self) -> Generator[bytes | None, bytes | None, list[Any]]:
        """The next batch of events (never empty), receiving as needed."""
        conn = self.conn
        while True:
            events = conn.next_events()
            if events:
                return events
            conn.receive_data((yield None) or b"")

    def simple_query(
        self, sql: str, *, mode: RowMode = "dict", registry: Any = None, begin: bool | str = False
    ) -> Op[list[Result]]:
        """The simple query protocol: any number of statements, text results, one result each.

        With ``begin``, a BEGIN goes first as its own Query message in the same flight (the
        DB-API's implicit transaction): it runs even if ``sql`` fails to parse, and the
        server's error positions stay relative to ``sql``. Its result is not returned.
        """
        self._check_usable()
        reg = registry if registry is not None else self.registry
        conn = self.conn
        if begin:
            yield conn.send_query(begin if isinstance(begin, str) else "BEGIN") + conn.send_query(sql)
            results = yield from self._collect_results(reg, mode, extended=False, ready=2, sql=sql)
            return results[1:]
        yield conn.send_query(sql)
        return (yield from self._collect_results(reg, mode, extended=False, sql=sql))

    def _collect_results(
        self, registry: Any, mode: RowMode, *, extended: bool, ready: int = 1, sql: str | None = None
    ) -> Op[list[Result]]:
        """One Result per statement up to the ``ready``-th ReadyForQuery; the first error is
        raised after it.

        ``extended``: the statements came through the extended protocol (a COPY's CopyFail
        then needs a Sync behind it).
        """
        results: list[Result] = []
        current: Result | None = None
        convert: Callable[[Any], list[Any]] | None = None
        error: Error | None = None
        while True:
            for event in (yield from self._receive_events()):
                cls = type(event)
                if cls is ev.DataRows:
                    if current is None:
                        raise self._broken("DataRow without a RowDescription")
                    if error is None:
                        try:
                            current.rows.extend(self._decode_rows(event, convert))
                        except DataError as exc:
                            error = exc
                elif cls is ev.BindComplete or cls is ev.ParseComplete:
                    continue
                elif cls is ev.CommandComplete:
                    if current is None:
                        current = Result(())
                    current.set_tag(event.tag)
                    results.append(current)
                    current = None
                    convert = None
                elif cls is ev.RowDescription:
                    convert = self._converter(event, registry, mode, None)
                    current = Result(event.fields, row_as_array=mode != "dict")
                elif cls is ev.NoData:
                    current = Result(())
                elif cls is ev.EmptyQueryResponse:
                    results.append(Result(()))
                elif cls is ev.ErrorResponse:
                    # The first error wins: after our CopyFail the server's 57014 is only its echo.
                    if error is None:
                        error = event.to_exception()
                elif cls is ev.ReadyForQuery:
                    ready -= 1
                    if ready:
                        continue
                    if error is not None:
                        raise error
                    return results
                elif cls is ev.CopyInResponse and not extended and (sql is None or could_be_copy(sql)):
                    error = error or ProgrammingError("COPY FROM STDIN is only possible through the copy API")
                    yield self.conn.send_copy_fail("COPY FROM STDIN is only possible through the copy API")
                else:
                    error = yield from self._unusual_event(event, error, sql)

    # ------------------------------------------------------------------ types

    def fetch_type_info(self, name: str) -> Op[Any]:
        """Read a user or extension type's description from the catalog; None if there is none."""
        from neon_proto.types import TYPE_INFO_QUERY, default_registry, type_info_from_row

        result = yield from self.execute(TYPE_INFO_QUERY, [name], mode="tuple", registry=default_registry)
        if not result.rows:
            return None
        return type_info_from_row(result.rows[0])

    def register_type(self, name: str, factory: Any = None) -> Op[Any]:
        """Fetch a type's description and register it in this session's registry.

        The registry must be this connection's own (not the global default): OIDs of user
        types differ between databases.
        """
        from neon_proto.types import default_registry

        if self.registry is default_registry:
            raise ProgrammingError("register_type() needs a per-connection registry, not the global one")
        info = yield from self.fetch_type_info(name)
        if info is None:
            raise ProgrammingError(f"type {name!r} does not exist")
        self.registry.register_type_info(info, factory=factory)
        return info

    # ------------------------------------------------------------------ streaming

    def stream_open(
        self,
        sql: str,
        params: Sequence[Any] | None = None,
        *,
        max_rows: int = 2000,
        mode: RowMode = "tuple",
        registry: Any = None,
        begin: str | None = None,
    ) -> Op[PortalStream]:
        """Start a statement whose rows come ``max_rows`` at a time; return the first batch.

        Parse, Bind, Describe and Execute with a row limit, then Flush instead of Sync: the
        unnamed portal stays open and the server suspends it after each batch
        (PortalSuspended), so a result of any size costs one batch of memory. Until the
        stream is done or closed (``stream_close``), the connection runs nothing else.
        ``begin``: a statement (``BEGIN ...``) sent ahead in the same flight.
        """
        self._check_usable()
        if max_rows < 1:
            raise ProgrammingError("a stream needs a batch size of at least one row")
        if self.conn.startup_in_background:
            yield from self.finish_startup()  # a portal (no Sync) cannot follow a pipelined connect's last flight
        conn = self.conn
        if conn.startup_in_background:
            # No Sync goes out with a stream, so the machine could not tell the startup's
            # ReadyForQuery from ours: let the pipelined connect finish first.
            yield from self.finish_startup()
        reg = registry if registry is not None else self.registry
        oids, formats, values = self._dump_params(params, reg) if params else ([], [], [])
        # The stream's messages are counted by hand (no Sync yet): let a pipelined login end first.
        yield from self.finish_startup()
        fmt = self.result_format
        out: list[bytes] = []
        if begin is not None:
            out.append(conn.send_extended_query("", begin, (), (), sync=False))
        out.append(conn.send_parse("", sql, oids if self.declare_param_types else ()))
        out.append(conn.send_bind("", "", values, formats if any(formats) else (), (fmt,) if fmt else ()))
        out.append(conn.send_describe("P"))
        out.append(conn.send_execute("", max_rows))
        out.append(conn.send_flush())
        conn.expect_ready(0)  # busy from now on, though no Sync is out yet
        stream = PortalStream(mode, max_rows, reg)
        stream._leading = 1 if begin is not None else 0
        yield b"".join(out)
        yield from self._stream_batch(stream)
        return stream

    def stream_fetch(self, stream: PortalStream) -> Op[None]:
        """Ask for the next batch of a suspended portal; it lands in ``stream.rows``."""
        if stream.done:
            raise InterfaceError("the stream is already complete")
        conn = self.conn
        yield conn.send_execute("", stream.max_rows) + conn.send_flush()
        yield from self._stream_batch(stream)

    def stream_close(self, stream: PortalStream) -> Op[None]:
        """Stop a stream early: close the portal and end the flight with Sync."""
        if stream.done:
            return
        stream.done = True
        stream.rows = []
        conn = self.conn
        yield conn.send_close("P", "") + conn.send_sync()
        error: Error | None = None
        while True:
            event = yield from self._next()
            cls = type(event)
            if cls is ev.ReadyForQuery:
                if error is not None:
                    raise error
                return
            if cls is ev.ErrorResponse:
                error = error or event.to_exception()
            elif cls is ev.EndOfStream:
                raise self._closed_error(error)

    def _stream_batch(self, stream: PortalStream) -> Op[None]:
        """Read one batch: rows up to PortalSuspended, or to the end of the result and Sync."""
        conn = self.conn
        rows: list[Any] = []
        stream.rows = rows
        error: Error | None = None
        DataRows = ev.DataRows
        while True:
            for event in (yield from self._receive_events()):
                cls = type(event)
                if cls is DataRows:
                    if event.decoded:
                        rows.extend(event.rows)
                    elif error is None:
                        try:
                            rows.extend(self._decode_rows(event, stream._convert))
                        except DataError as exc:
                            error = exc
                elif cls is ev.PortalSuspended:
                    stream._delivered += len(rows)
                    if error is None:
                        return
                    # A row failed to decode: give up on the rest.
                    stream.done = True
                    yield conn.send_close("P", "") + conn.send_sync()
                elif cls is ev.RowDescription:
                    stream._convert = self._converter(event, stream._registry, stream.mode, None)
                    stream.fields = list(event.fields)
                elif cls is ev.CommandComplete and stream._leading:
                    stream._leading -= 1  # the BEGIN sent ahead
                elif cls is ev.CommandComplete:
                    stream.tag = event.tag
                    command, count = parse_command_tag(event.tag)
                    if count is not None and command in ("SELECT", "FETCH"):
                        count += stream._delivered  # the tag counts this Execute's rows only
                    stream.row_count = count
                    stream.done = True
                    yield conn.send_sync()
                elif cls is ev.EmptyQueryResponse:
                    stream.done = True
                    yield conn.send_sync()
                elif cls is ev.ErrorResponse:
                    error = error or event.to_exception()
                    if not stream.done:
                        stream.done = True
                        yield conn.send_sync()  # the server skips everything up to it
                elif cls is ev.ReadyForQuery:
                    if error is not None:
                        raise error
                    return
                elif cls in (ev.ParseComplete, ev.BindComplete, ev.NoData, ev.CommandComplete):
                    continue
                else:
                    error = yield from self._unusual_event(event, error, None)

    # ------------------------------------------------------------------ COPY

    def copy_start(self, sql: str) -> Op[ev.Event]:
        """Send a COPY statement; return CopyInResponse or CopyOutResponse (or a finished Result)."""
        self._check_usable()
        yield self.conn.send_query(sql)
        error: Error | None = None
        result: Result | None = None
        while True:
            event = yield from self._next()
            cls = type(event)
            if cls is ev.CopyInResponse or cls is ev.CopyOutResponse:
                started: ev.Event = event
                return started
            if cls is ev.ErrorResponse:
                error = event.to_exception()
            elif cls is ev.CommandComplete:
                result = Result((), tag=event.tag)
            elif cls is ev.RowDescription or cls is ev.DataRows or cls is ev.EmptyQueryResponse:
                error = error or ProgrammingError("copy() needs a COPY ... FROM STDIN or TO STDOUT statement")
            elif cls is ev.ReadyForQuery:
                if error is not None:
                    raise error
                raise ProgrammingError(
                    "copy() needs a COPY ... FROM STDIN or TO STDOUT statement"
                    + (f" (the statement ran: {result.tag})" if result else "")
                )
            elif cls is ev.EndOfStream:
                raise self._closed_error(error)

    def copy_in_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """The bytes of one CopyData message; send them (no answer is awaited)."""
        return self.conn.send_copy_data(data)

    def copy_in_finish(self, failure: str | None = None) -> Op[Result]:
        """End COPY FROM STDIN (CopyDone, or CopyFail with a reason) and read the outcome."""
        if failure is None:
            yield self.conn.send_copy_done()
        else:
            yield self.conn.send_copy_fail(failure)
        return (yield from self._copy_outcome())

    def _copy_outcome(self) -> Op[Result]:
        error: Error | None = None
        result = Result(())
        while True:
            event = yield from self._next()
            cls = type(event)
            if cls is ev.CommandComplete:
                result.set_tag(event.tag)
            elif cls is ev.ErrorResponse:
                error = event.to_exception()
            elif cls is ev.ReadyForQuery:
                if error is not None:
                    raise error
                return result
            elif cls is ev.EndOfStream:
                raise self._closed_error(error)
            elif cls is ev.CopyData or cls is ev.CopyDone:
                continue

    def copy_out_chunk(self) -> Op[bytes | None]:
        """The next chunk of COPY TO STDOUT data, or None once the COPY is complete."""
        while True:
            event = yield from self._next()
            cls = type(event)
            if cls is ev.CopyData:
                return bytes(event.data)
            if cls is ev.CopyDone:
                yield from self._copy_outcome()
                return None
            if cls is ev.ErrorResponse:
                error = event.to_exception()
                yield from self._copy_outcome_after_error()
                raise error
            if cls is ev.EndOfStream:
                raise self._closed_error(None)

    def copy_out_batch(self) -> Op[tuple[bytes, bool]]:
        """Every COPY TO STDOUT byte received so far (at least one message's, unless the COPY
        ended), joined, and whether the COPY is complete. One call per network read, not per
        row: the fast way to read."""
        conn = self.conn
        chunks: list[bytes] = []
        fast = conn.copy_out_data
        while True:
            chunks += fast()
            event = conn.next_event()
            if event is NEED_DATA:
                if chunks:
                    return b"".join(chunks), False
                conn.receive_data((yield None) or b"")
                continue
            cls = type(event)
            if cls is ev.CopyData:
                chunks.append(event.data)
            elif cls is ev.CopyDone:
                yield from self._copy_outcome()
                return b"".join(chunks), True
            elif cls is ev.ErrorResponse:
                error = event.to_exception()
                yield from self._copy_outcome_after_error()
                raise error
            elif cls is ev.EndOfStream:
                raise self._closed_error(None)
            elif cls is ev.NoticeResponse:
                self._on_notice(event)
            elif cls is ev.NotificationResponse:
                self._on_notification(event)

    def _copy_outcome_after_error(self) -> Op[None]:
        while True:
            event = yield from self._next()
            if type(event) is ev.ReadyForQuery or type(event) is ev.EndOfStream:
                return

    # ------------------------------------------------------------------ goodbye

    def terminate(self) -> bytes:
        """The Terminate message (empty if already closed)."""
        return self.conn.send_terminate()


_PYTHON_ENCODINGS = {"UTF8": "utf-8", "SQL_ASCII": "ascii", "LATIN1": "iso8859-1", "WIN1252": "cp1252"}


class ConnectionInfo:
    """What the server told about a connection, read live on each access (psycopg's ``info``)."""

    def __init__(self, session: Session, params: Any = None) -> None:
        self._session = session
        #: Where the connection went (from its parameters): host (a directory for a Unix
        #: socket), port, database name and role.
        self.host: str | None = getattr(params, "host", None)
        self.port: int | None = getattr(params, "port", None)
        self.dbname: str | None = getattr(params, "dbname", None)
        self.user: str | None = getattr(params, "user", None)

    @property
    def server_version(self) -> int:
        """The server's version as libpq gives it: 150004 for 15.4, 90624 for 9.6.24 (0 if unknown)."""
        text = self._session.conn.parameters.get("server_version", "")
        parts = []
        for piece in text.split(" ")[0].split("."):
            digits = "".join(c for c in piece if c.isdigit())
            if not digits:
                break
            parts.append(int(digits))
        if not parts:
            return 0
        if parts[0] >= 10:
            return parts[0] * 10000 + (parts[1] if len(parts) > 1 else 0)
        parts += [0, 0]
        return parts[0] * 10000 + parts[1] * 100 + parts[2]

    @property
    def backend_pid(self) -> int | None:
        """The server process serving the connection."""
        return self._session.conn.process_id

    @property
    def transaction_status(self) -> str:
        """``I`` idle, ``T`` in a transaction, ``E`` in a failed one, ``A`` while a query runs, ``X`` closed."""
        session = self._session
        if session.closed:
            return "X"
        if not session.idle:
            return "A"
        return session.transaction_status

    @property
    def parameters(self) -> dict[str, str]:
        """Every parameter the server reported (server_version, TimeZone, DateStyle...)."""
        return dict(self._session.conn.parameters)

    def parameter_status(self, name: str) -> str | None:
        """One reported parameter, or None."""
        return self._session.conn.parameters.get(name)

    @property
    def encoding(self) -> str:
        """The client encoding as a Python codec name (``utf-8`` for UTF8)."""
        name = self._session.conn.parameters.get("client_encoding", "UTF8")
        return _PYTHON_ENCODINGS.get(name.upper(), name.lower())

    @property
    def timezone(self) -> str | None:
        """The session's TimeZone setting."""
        return self._session.conn.parameters.get("TimeZone")

    def __repr__(self) -> str:
        return f"<ConnectionInfo server_version={self.server_version} backend_pid={self.backend_pid} status={self.transaction_status}>"


class SessionFacts:
    """What every binding's client tells about its session; the client sets ``_session``."""

    _session: Session

    @property
    def info(self) -> ConnectionInfo:
        """Server version, backend pid, transaction status, parameter statuses, encoding."""
        return ConnectionInfo(self._session, getattr(self, "params", None))

    def add_notice_handler(self, handler: NoticeHandler) -> None:
        """Call ``handler(diagnostic)`` for each notice or warning the server sends (RAISE NOTICE...)."""
        self._session.notice_handlers.append(handler)

    def remove_notice_handler(self, handler: NoticeHandler) -> None:
        """Stop calling a notice handler."""
        self._session.notice_handlers.remove(handler)

    @property
    def transaction_status(self) -> str:
        """``I`` idle, ``T`` in a transaction, ``E`` in a failed transaction."""
        return self._session.transaction_status

    @property
    def backend_pid(self) -> int | None:
        """The server process id serving this connection."""
        return self._session.conn.process_id

    @property
    def server_parameters(self) -> dict[str, str]:
        """Parameters the server reported (server_version, TimeZone, ...)."""
        return dict(self._session.conn.parameters)

    @property
    def session(self) -> Session:
        """The sans-IO session under this client."""
        return self._session

    @property
    def registry(self) -> Any:
        """The type registry used by this connection."""
        return self._session.registry
