"""Running a request's queries on an upstream connection, the way Neon's proxy runs them.

Each query is an unnamed Parse with no parameter types, then Bind (text), Describe,
Execute; a single query ends with Sync. A batch is sent in one flight as ``BEGIN ...``,
the queries and ``COMMIT`` under one Sync, so an error skips the rest and a ROLLBACK
follows. Cells come back as JSON text (see ``neon_proxy.cells``).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from neon_proto.errors import Error, PipelineAborted
from neon_proto.results import Result
from neon_proto.session import Query, Session
from neon_proxy.cells import ResponseBudget, TextCellRegistry, converter_for, json_string
from neon_proxy.request import Payload, RequestOptions, begin_statement
from neon_proxy.response import result_json, results_json
from neon_trio import Client

__all__ = ["TextSession", "UpstreamClient", "PlainTextRegistry", "QueryOutcome", "run_payload", "RESET_STATEMENTS", "reset_session"]

logger = logging.getLogger("neon_proxy")

RESET_STATEMENTS = (
    "CLOSE ALL",
    "SET SESSION AUTHORIZATION DEFAULT",
    "RESET ALL",
    "DEALLOCATE ALL",
    "UNLISTEN *",
    "SELECT pg_advisory_unlock_all()",
    "DISCARD TEMP",
    "DISCARD SEQUENCES",
)
"""What runs before a pooled connection is reused (after a ROLLBACK if a transaction is open)."""

_TYPE_LOOKUP = (
    "SELECT oid, typcategory = 'A' AND left(typname, 1) = '_' FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])"
)


class TextSession(Session):
    """A session sending every parameter as untyped text, as Neon's proxy does.

    This makes an untyped ``SELECT $1`` come back as text and a wrong parameter count fail
    with Postgres's own ``bind message supplies N parameters`` error.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(declare_param_types=False, **options)


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


class UpstreamClient(Client):
    """A ``neon_trio.Client`` that sends parameters as untyped text, with a per-connection type cache.

    Build it with ``UpstreamClient.from_params(params, registry=PlainTextRegistry())``.
    """

    session_class = TextSession
    known_arrays: dict[int, bool]

    def _init(self, params: Any, **options: Any) -> None:
        super()._init(params, **options)
        self.known_arrays = {}


@attrs.define
class QueryOutcome:
    """The result of running a payload: the JSON body, or the error to report."""

    body: str | None = None
    error: Error | None = None
    conversion_failed: bool = False
    rolled_back: bool = False


async def _lookup_types(client: UpstreamClient, oids: set[int], known: dict[int, bool]) -> None:
    """Which of ``oids`` are array types (enum arrays and the like); unknown OIDs count as not."""
    literal = "{" + ",".join(str(o) for o in sorted(oids)) + "}"
    result: Result = await client.run(
        client.session.execute(_TYPE_LOOKUP, [literal], mode="list", registry=PlainTextRegistry())
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


async def run_payload(
    client: UpstreamClient, payload: Payload, options: RequestOptions, budget: ResponseBudget
) -> QueryOutcome:
    """Run a request's queries and write the JSON body, or return the first error."""
    registry = TextCellRegistry(raw=options.raw_output, budget=budget, known_arrays=client.known_arrays)
    modes = [options.array_mode if spec.array_mode is None else spec.array_mode for spec in payload.queries]
    queries = [Query(spec.query, spec.params, "list") for spec in payload.queries]
    session = client.session
    if payload.batch:
        begin, commit = Query(begin_statement(options), (), "list"), Query("COMMIT", (), "list")
        sent = [begin, *queries, commit]
    else:
        sent = queries
    await client.run(session.pipeline(sent, registry=registry))
    failed = next((q.error for q in sent if q.error is not None and not isinstance(q.error, PipelineAborted)), None)
    if failed is None:
        failed = next((q.error for q in sent if q.error is not None), None)
    if failed is not None:
        outcome = QueryOutcome(error=failed)
        if payload.batch and client.transaction_status != "I" and not client.closed:
            await client.query("ROLLBACK")
            outcome.rolled_back = True
        return outcome
    results = [q.outcome() for q in queries]
    if registry.pending:
        await _lookup_types(client, set(registry.pending), client.known_arrays)
        for result in results:
            _finish_pending(result, registry, client.known_arrays)
    if registry.conversion_failed:
        return QueryOutcome(conversion_failed=True)
    bodies = [result_json(r.fields, r.rows, r.tag, mode) for r, mode in zip(results, modes)]
    return QueryOutcome(body=results_json(bodies) if payload.batch else bodies[0])


async def reset_session(client: Client) -> None:
    """Put a connection back in a fresh session state before it is lent again."""
    statements: tuple[str, ...] = RESET_STATEMENTS
    if client.transaction_status != "I":
        statements = ("ROLLBACK", *statements)
    await client.run(client.session.simple_query("; ".join(statements), mode="list"))
