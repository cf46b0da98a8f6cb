"""Running a request's queries on an upstream connection, the way Neon's proxy runs them.

Each query is an unnamed Parse with no parameter types, then Bind (text), Describe,
Execute; a single query ends with Sync. A batch is sent in one flight as ``BEGIN ...``,
the queries and ``COMMIT`` under one Sync, so an error skips the rest and a ROLLBACK
follows. Cells come back as JSON text (see ``neon_proxy.cells``).

The session reset that must run before a pooled connection is lent again rides in the same
flight, as one simple Query behind the request's Sync: Postgres runs it as soon as the
request's queries are done, and it costs no round trip of its own. Its answer is read
right after the request's own ReadyForQuery. Only when the request left a transaction open
(or the reset failed) does a second reset, with ROLLBACK, take a round trip.
"""

from __future__ import annotations

import logging
from typing import Any, Generator, TypeVar

import attrs

from neon_proto import events as ev
from neon_proto.errors import ConnectionClosed, Error, PipelineAborted
from neon_proto.frontend import FrontendConnection, State, only_a_goodbye
from neon_proto.messages import query_message
from neon_proto.pooling import RESET_SQL, RESET_STATEMENTS
from neon_proto.results import Result
from neon_proto.session import Op, Query, Session, could_be_copy
from neon_proxy.cells import ResponseBudget, TextCellRegistry, converter_for, json_string
from neon_proxy.request import Payload, RequestOptions, begin_statement
from neon_proxy.response import result_json, results_json
from neon_trio import Client

__all__ = [
    "TextSession",
    "UpstreamClient",
    "PlainTextRegistry",
    "QueryOutcome",
    "run_payload",
    "RESET_STATEMENTS",
    "reset_session",
    "needs_reset",
]

logger = logging.getLogger("neon_proxy")

T = TypeVar("T")

_RESET_SQL = RESET_SQL  # neon_proto.pooling: the same sequence as neon_sync.Pool's reset_session
_RESET_MESSAGE = query_message(_RESET_SQL)
_ROLLBACK_AND_RESET_SQL = "ROLLBACK; " + _RESET_SQL

_TYPE_LOOKUP = (
    "SELECT oid, typcategory = 'A' AND left(typname, 1) = '_' FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])"
)


class TextSession(Session):
    """A session sending every parameter as untyped text, as Neon's proxy does.

    This makes an untyped ``SELECT $1`` come back as text and a wrong parameter count fail
    with Postgres's own ``bind message supplies N parameters`` error.
    """

    def __init__(self, **options: Any) -> None:
        options["declare_param_types"] = False  # also when Session.renewed() passes the old value
        super().__init__(**options)


class PlainTextRegistry:
    """Cells as Python str, parameters as untyped text: for the proxy's own statements."""

    def dump(self, value: Any) -> tuple[int, int, bytes | None]:
        """An untyped text parameter."""
        return (0, 0, None) if value is None else (0, 0, str(value).encode("utf-8"))

    def get_loader(self, oid: int, format: int = 0) -> Any:
        """Every type loads as its text."""
        return _decode_text


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


_PLAIN_TEXT = PlainTextRegistry()


class UpstreamClient(Client):
    """A ``neon_trio.Client`` that sends parameters as untyped text, with per-connection caches.

    Build it with ``UpstreamClient.from_params(params, registry=PlainTextRegistry())``. It keeps
    one cell registry per output mode (the session's row parsers are cached per registry)
    and what pg_type said about user types. ``needs_reset`` is True once anything ran on it
    that the request path did not reset behind itself.
    """

    session_class = TextSession
    known_arrays: dict[int, bool]
    needs_reset: bool

    def _init(self, params: Any, **options: Any) -> None:
        super()._init(params, **options)
        self.known_arrays = {}
        self.needs_reset = True
        self._cell_registries: dict[bool, TextCellRegistry] = {}

    @property
    def is_tls(self) -> bool:
        """Whether the connection to the upstream is encrypted."""
        stream = self._stream
        return stream is not None and stream.is_tls

    def cell_registry(self, raw: bool) -> TextCellRegistry:
        """This connection's registry for raw (all strings) or typed JSON cells."""
        registry = self._cell_registries.get(raw)
        if registry is None:
            registry = self._cell_registries[raw] = TextCellRegistry(raw=raw, known_arrays=self.known_arrays)
        return registry

    async def run(self, op: Op[Any], *, timeout: float | None = None) -> Any:
        """As ``Client.run``; the session may hold request state afterwards (``needs_reset``)."""
        self.needs_reset = True
        return await super().run(op, timeout=timeout)


@attrs.define
class QueryOutcome:
    """The result of running a payload: the JSON body, or the error to report."""

    body: str | None = None
    error: Error | None = None
    conversion_failed: bool = False
    rolled_back: bool = False
    unanswered: bool = False
    """The connection was lost, and provably before the server began the request: it may
    be sent again on a fresh connection (see ``_Exchange``)."""


_MAX_RECORDED = 64 * 1024


class _Exchange:
    """What passed on the connection during one request, to tell whether the server began it.

    Proof that it did not: the flight could not be written at all (the first write was
    refused: EPIPE or a reset), or all the server said was its goodbye (``only_a_goodbye``).
    """

    def __init__(self) -> None:
        self.flight_size = 0
        self.written = False  # the flight was handed to the socket
        self.received = bytearray()
        self.overflow = False

    def record(self, op: Op[T]) -> Op[T]:
        """``op``, with its bytes noted on their way."""
        try:
            out = op.send(None)
            if out:
                self.flight_size = len(out)
            while True:
                data = yield out
                if data is None:
                    self.written = True
                elif not self.overflow:
                    self.received += data
                    self.overflow = len(self.received) > _MAX_RECORDED
                out = op.send(data)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            op.close()

    def proves_unanswered(self, exc: Error) -> bool:
        """Whether ``exc`` (the connection's end) came before the server began the request."""
        if not self.written and not self.received:
            cause = exc.__cause__
            return isinstance(cause, (BrokenPipeError, ConnectionResetError)) and self.flight_size <= _MAX_RECORDED
        return not self.overflow and only_a_goodbye(bytes(self.received))


async def _lookup_types(client: UpstreamClient, oids: set[int], known: dict[int, bool]) -> None:
    """Which of ``oids`` are array types (enum arrays and the like); unknown OIDs count as not."""
    literal = "{" + ",".join(str(o) for o in sorted(oids)) + "}"
    result: Result = await client.run(
        client.session.execute(_TYPE_LOOKUP, [literal], mode="list", registry=_PLAIN_TEXT)
    )
    for oid, is_array in result.rows:
        known[int(oid)] = is_array == "t"
    for oid in oids:
        known.setdefault(oid, False)


def _finish_pending(result: Result, registry: TextCellRegistry, known: dict[int, bool]) -> None:
    """Turn the cells of looked-up types (left as plain text) into JSON text."""
    columns = [i for i, f in enumerate(result.fields) if f.type_oid in registry.pending]
    if not columns:
        return
    converters = {i: converter_for(result.fields[i].type_oid, raw=False, is_array=known.__getitem__) for i in columns}
    for row in result.rows:
        for i in columns:
            cell = row[i]
            if cell is not None:
                convert = converters[i] or json_string
                try:
                    row[i] = convert(cell)
                except ValueError:
                    registry.conversion_failed = True
                    row[i] = json_string(cell)


def _read_reset_answer(conn: FrontendConnection) -> Generator[None, bytes | None, Error | None]:
    """Read the reset's results to its ReadyForQuery (nothing follows it); return its error."""
    error: Error | None = None
    ReadyForQuery, ErrorResponse = ev.ReadyForQuery, ev.ErrorResponse
    while True:
        events = conn.next_events()
        if not events:
            conn.receive_data((yield None) or b"")
            continue
        for event in events:
            cls = type(event)
            if cls is ReadyForQuery:
                return error
            if cls is ErrorResponse:
                if error is None:
                    error = event.to_exception()
            elif cls is ev.EndOfStream:
                raise error or ConnectionClosed("the server closed the connection during the session reset")
            # The reset's row, tags, notices and parameter changes: nothing to keep.


def _queries_then_reset(session: Session, sent: list[Query], registry: Any, reset: bool) -> Op[Error | None]:
    """The request's queries and (with ``reset``) the session reset in one flight; the reset's error.

    The reset's Query message is built outside the machine, so the request's own
    ReadyForQuery leaves it idle and the queries' operation reads nothing past it; then the
    reset is accounted for and its answer read. Each query gets its result or its error.
    """
    conn = session.conn
    trailer = _RESET_MESSAGE if reset else b""
    if len(sent) == 1:
        # One query: the session's single-statement path, which raises the query's error.
        query = sent[0]
        single = session.execute(query.sql, query.params, mode=query.mode, registry=registry)
        yield (next(single) or b"") + trailer
        try:
            query.result = yield from single
        except Error as exc:
            if conn.state is not State.READY:
                raise  # the connection broke: there is no reset answer to read
            query.error = exc
    else:
        pipeline = session.pipeline(sent, registry=registry)
        yield (next(pipeline) or b"") + trailer
        yield from pipeline
    if not reset:
        return None
    conn.expect_ready(1)
    return (yield from _read_reset_answer(conn))


async def run_payload(
    client: UpstreamClient, payload: Payload, options: RequestOptions, budget: ResponseBudget
) -> QueryOutcome:
    """Run a request's queries and write the JSON body, or return the first error.

    The connection comes back reset (``client.needs_reset`` False) unless the request
    failed in a way that drops it anyway, or a cancellation cut it short.
    """
    registry = client.cell_registry(options.raw_output)
    registry.start(budget)
    queries = [Query(spec.query, spec.params, "list") for spec in payload.queries]
    if payload.batch:
        begin, commit = Query(begin_statement(options), (), "list"), Query("COMMIT", (), "list")
        sent = [begin, *queries, commit]
    else:
        sent = queries
    # A COPY ... FROM STDIN would take the reset's message for its data: no reset behind it.
    # (Only a top-level COPY can read from the client, so the word is a safe sign.)
    trail_reset = not any(could_be_copy(q.sql) for q in sent)
    exchange = _Exchange()
    try:
        reset_error = await client.run(exchange.record(_queries_then_reset(client.session, sent, registry, trail_reset)))
    except Error as exc:
        if client.closed and exchange.proves_unanswered(exc):
            return QueryOutcome(error=exc, unanswered=True)
        raise
    failed = next((q.error for q in sent if q.error is not None and not isinstance(q.error, PipelineAborted)), None)
    if failed is None:
        failed = next((q.error for q in sent if q.error is not None), None)
    if failed is not None and not payload.batch:
        return QueryOutcome(error=failed)  # a failed single query's connection is dropped: no reset
    if trail_reset and reset_error is None and client.transaction_status == "I":
        client.needs_reset = False
    elif failed is not None and not client.closed:
        # A failed batch left its transaction open (and the reset failed inside it): roll
        # back and reset before answering. Anything else the pool resets after the response.
        try:
            await reset_session(client)
        except Error as exc:
            logger.info("resetting an upstream connection failed (%s)", exc)
    if failed is not None:
        return QueryOutcome(error=failed, rolled_back=not client.needs_reset)
    results = [q.outcome() for q in queries]
    if registry.pending:
        known = client.known_arrays
        missing = registry.pending.difference(known)
        if missing:
            needed_reset = client.needs_reset
            await _lookup_types(client, missing, known)
            client.needs_reset = needed_reset  # a catalog read leaves no session state
        for result in results:
            _finish_pending(result, registry, known)
    if registry.conversion_failed:
        return QueryOutcome(conversion_failed=True)
    modes = [options.array_mode if spec.array_mode is None else spec.array_mode for spec in payload.queries]
    bodies = [result_json(r.fields, r.rows, r.tag, mode) for r, mode in zip(results, modes)]
    return QueryOutcome(body=results_json(bodies) if payload.batch else bodies[0])


def needs_reset(client: Client) -> bool:
    """Whether ``reset_session`` has anything to do (any client but a clean UpstreamClient)."""
    return getattr(client, "needs_reset", True) is not False


async def reset_session(client: Client) -> None:
    """Put a connection back in a fresh session state before it is lent again (one round trip)."""
    if not needs_reset(client):
        return
    sql = _ROLLBACK_AND_RESET_SQL if client.transaction_status != "I" else _RESET_SQL
    await client.run(client.session.simple_query(sql, mode="list"))
    if isinstance(client, UpstreamClient):
        client.needs_reset = False
