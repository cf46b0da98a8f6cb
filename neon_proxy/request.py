"""Reading one SQL-over-HTTP request, as Neon's proxy reads it: headers, connection string, body.

Pure functions from header values and body bytes to settings and queries; errors are
``RequestError`` with the HTTP status and the message Neon's proxy gives.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

import attrs

__all__ = [
    "RequestError",
    "ConnInfo",
    "RequestOptions",
    "QuerySpec",
    "Payload",
    "ISOLATION_LEVELS",
    "parse_conn_info",
    "parse_request_options",
    "parse_payload",
    "json_param_to_text",
    "begin_statement",
]

ISOLATION_LEVELS = {
    "ReadUncommitted": "READ UNCOMMITTED",
    "ReadCommitted": "READ COMMITTED",
    "RepeatableRead": "REPEATABLE READ",
    "Serializable": "SERIALIZABLE",
}

CONNECTION_STRING_HEADER = "neon-connection-string"
_ENDPOINT_SUFFIXES = ("-pooler", "-local-proxy")
_PAYLOAD_MISMATCH = "data did not match any variant of untagged enum Payload"

MAX_PARAM_DEPTH = 64
"""How deeply a parameter may nest arrays and objects (Postgres arrays have at most 6 dimensions)."""

# A JSON escape of a UTF-16 surrogate: the only way a body that is valid UTF-8 can carry a
# lone surrogate, which Postgres (and UTF-8) cannot take.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class RequestError(Exception):
    """A request refused before any query runs: the HTTP status and Neon's message."""

    def __init__(self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        """Response headers the refusal needs (``Sec-WebSocket-Version`` with a 426)."""


@attrs.frozen
class ConnInfo:
    """Who connects to which database of which endpoint; the repr hides the password."""

    endpoint: str
    user: str
    password: str = attrs.field(repr=False)
    database: str
    options: str | None = None


@attrs.frozen
class RequestOptions:
    """The Neon-* headers: cell format, default row shape and batch transaction settings."""

    raw_output: bool = False
    array_mode: bool = False
    isolation_level: str | None = None
    read_only: bool = False
    deferrable: bool = False


@attrs.frozen
class QuerySpec:
    """One query of a request: the text, its parameters as text (or None) and its row shape."""

    query: str
    params: tuple[str | None, ...] = ()
    array_mode: bool | None = None


@attrs.frozen
class Payload:
    """A single query, or a batch run in one transaction."""

    queries: tuple[QuerySpec, ...]
    batch: bool


def _decode(text: str, what: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, f"invalid {what}: invalid utf-8 sequence") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_conn_info(
    headers: Mapping[str, str | None], *, accept_jwts: bool = False, routes_by_endpoint: bool = True
) -> ConnInfo:
    """The connection-string header, checked in the order Neon's proxy checks it.

    User, password and database are URL-decoded; of the query parameters only ``options``
    is used. An ``Authorization`` header is refused: this proxy does not accept JWTs.
    With ``routes_by_endpoint`` (an endpoint table), the host must be a name whose first
    label names the endpoint, as with Neon; without it (one upstream) the host names
    nothing and may be an IP address (the whole host is then the endpoint name).
    """
    raw = headers.get(CONNECTION_STRING_HEADER)
    if raw is None:
        raise RequestError(400, f"invalid header: {CONNECTION_STRING_HEADER}")
    if "://" not in raw:
        raise RequestError(400, "invalid connection string: relative URL without a base")
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 - validates the port
    except ValueError:
        raise RequestError(400, "invalid connection string: invalid port number") from None
    if url.scheme not in ("postgres", "postgresql"):
        raise RequestError(400, "incorrect scheme")
    path = url.path
    if not path.startswith("/") or path == "/":
        raise RequestError(400, "missing database name")
    database = _decode(path[1:].split("/", 1)[0], "database name")
    if not database:
        raise RequestError(400, "missing database name")
    userinfo, at, _ = url.netloc.rpartition("@")
    user_raw, colon, password_raw = userinfo.partition(":") if at else ("", "", "")
    user = _decode(user_raw, "username")
    if not user:
        raise RequestError(400, "missing username")
    if "authorization" in headers and not accept_jwts:
        raise RequestError(400, "missing authentication credentials: required password")
    if not password_raw:
        raise RequestError(400, "missing authentication credentials: required password")
    password = _decode(password_raw, "password")
    host = url.hostname or ""
    if not host or host.startswith("["):
        raise RequestError(400, "missing hostname")
    if _is_ip(host):
        if routes_by_endpoint:
            raise RequestError(400, "missing hostname")
        endpoint = host
    else:
        endpoint = host.split(".", 1)[0]
        for suffix in _ENDPOINT_SUFFIXES:
            endpoint = endpoint.removesuffix(suffix)
    options: str | None = None
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        if key == "options":
            options = value
    return ConnInfo(endpoint=endpoint, user=user, password=password, database=database, options=options)


def parse_request_options(headers: Mapping[str, str | None]) -> RequestOptions:
    """The Neon-* settings; only the exact value ``true`` turns a flag on."""
    level = headers.get("neon-batch-isolation-level")
    if level is not None and level not in ISOLATION_LEVELS:
        raise RequestError(400, "invalid isolation level")
    return RequestOptions(
        raw_output=headers.get("neon-raw-text-output") == "true",
        array_mode=headers.get("neon-array-mode") == "true",
        isolation_level=level,
        read_only=headers.get("neon-batch-read-only") == "true",
        deferrable=headers.get("neon-batch-deferrable") == "true",
    )


def begin_statement(options: RequestOptions) -> str:
    """The statement opening a batch's transaction, with its isolation and access modes."""
    modes = []
    if options.isolation_level is not None:
        modes.append(f"ISOLATION LEVEL {ISOLATION_LEVELS[options.isolation_level]}")
    if options.read_only:
        modes.append("READ ONLY")
    if options.deferrable:
        modes.append("DEFERRABLE")
    return "BEGIN " + ", ".join(modes) if modes else "BEGIN"


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "{" + ",".join(_array_element(v) for v in value) + "}"
    if isinstance(value, dict):
        return _json_text(_json_text(value))
    return _json_text(value)


def json_param_to_text(value: Any) -> str | None:
    """A JSON parameter as Postgres text: strings raw, null as NULL, arrays as array literals.

    Booleans, numbers and objects become their JSON text. Array elements are JSON-quoted
    (so a JSON escape such as ``\\n`` reaches Postgres as backslash-n, as with Neon).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _array_element(value)
    return _json_text(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise RequestError(400, f"could not parse the HTTP request body: number out of range ({shown})")
    return value


def _nesting_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and dicts, counted without recursion up to ``limit + 1``."""
    depth = 0
    level: list[Any] = [value]
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for item in level:
            if isinstance(item, list):
                below.extend(v for v in item if isinstance(v, (list, dict)))
            elif isinstance(item, dict):
                below.extend(v for v in item.values() if isinstance(v, (list, dict)))
        level = below
    return depth


def _check_param(value: Any) -> None:
    if isinstance(value, (list, dict)) and _nesting_depth(value, MAX_PARAM_DEPTH) > MAX_PARAM_DEPTH:
        raise RequestError(400, f"a query parameter is nested too deeply (more than {MAX_PARAM_DEPTH} levels)")


def _check_unicode(obj: Any) -> None:
    """Refuse text Postgres cannot take: a lone surrogate (``"\\ud800"``) anywhere in the body."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(
            400, "could not parse the HTTP request body: invalid Unicode (a lone surrogate such as \\ud800)"
        ) from None


def _query_spec(obj: Any) -> QuerySpec | None:
    if not isinstance(obj, dict):
        return None
    query = obj.get("query")
    if not isinstance(query, str):
        return None
    params = obj.get("params", [])
    if not isinstance(params, list):
        return None
    array_mode = obj.get("arrayMode")
    if array_mode is not None and not isinstance(array_mode, bool):
        return None
    for param in params:
        _check_param(param)
    return QuerySpec(query, tuple(json_param_to_text(p) for p in params), array_mode)


def parse_payload(body: bytes) -> Payload:
    """The JSON body: ``{"query", "params", "arrayMode"?}`` or ``{"queries": [...]}``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"could not parse the HTTP request body: invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, f"could not parse the HTTP request body: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise RequestError(400, "could not parse the HTTP request body: JSON nested too deeply") from None
    except ValueError as exc:  # an integer too long to convert, NaN
        raise RequestError(400, f"could not parse the HTTP request body: {exc}") from None
    if _SURROGATE_ESCAPE.search(body):
        _check_unicode(obj)
    single = _query_spec(obj)
    if single is not None:
        return Payload((single,), batch=False)
    if isinstance(obj, dict) and isinstance(obj.get("queries"), list):
        specs = [_query_spec(item) for item in obj["queries"]]
        if all(spec is not None for spec in specs):
            return Payload(tuple(s for s in specs if s is not None), batch=True)
    raise RequestError(400, f"could not parse the HTTP request body: {_PAYLOAD_MISMATCH}")
