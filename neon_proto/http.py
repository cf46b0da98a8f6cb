"""SQL over HTTP, client side: Neon's ``POST /sql`` protocol as a sans-IO machine on h11.

Three steps, none of which touches a socket:

* ``build_query_request`` / ``build_transaction_request`` turn queries into a ``FetchRequest``
  (the Neon headers and the JSON body), resolving options query, then transaction, then
  ``neon()``-level, as the JS driver does.
* ``FetchConnection`` drives one keep-alive HTTP/1.1 connection: ``send_request`` gives the
  bytes to write, ``receive_data`` takes what arrived, ``next_event`` gives a ``FetchResponse``
  or ``NEED_DATA``. After a response, ``reusable`` says whether the next request may follow.
* ``read_response`` turns a response into rows or ``Result`` objects (cells decoded by type
  OID with the registry's text loaders), or raises the exception for the error it reports.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from itertools import chain
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

import attrs
import h11

from neon_proto.conninfo import ConnectionParams, parse_connection_string
from neon_proto.errors import (
    ConnectionClosed,
    DataError,
    Diagnostic,
    Error,
    LocalProtocolError,
    OperationalError,
    ProgrammingError,
    RemoteProtocolError,
    class_for_sqlstate,
)
from neon_proto.events import FieldDescription
from neon_proto.frontend import NEED_DATA
from neon_proto.results import Result
from neon_proto.types import default_registry
from neon_proto.types import numeric as _numeric
from neon_proto.types import strings as _strings

__all__ = [
    "NEED_DATA",
    "ISOLATION_LEVELS",
    "DEFAULT_APPLICATION_NAME",
    "DEFAULT_MAX_RESPONSE_SIZE",
    "Endpoint",
    "parse_endpoint",
    "default_fetch_endpoint",
    "neon_connection_string",
    "normalize_isolation_level",
    "http_param",
    "HTTPQuery",
    "FetchSettings",
    "TransactionOptions",
    "ResultShape",
    "FetchRequest",
    "FetchResponse",
    "FetchState",
    "FetchConnection",
    "HTTPStatusError",
    "build_query_request",
    "build_transaction_request",
    "read_response",
    "error_from_response",
    "diagnostic_from_json",
    "TRANSACTION_ARGUMENT_ERROR",
    "transaction_queries",
    "query_params",
    "FetchTarget",
]

ISOLATION_LEVELS = ("ReadUncommitted", "ReadCommitted", "RepeatableRead", "Serializable")
DEFAULT_APPLICATION_NAME = "pkg:pypi/neon-python@0.1.0"
USER_AGENT = "neon-python/0.1.0"
DEFAULT_MAX_RESPONSE_SIZE = 64 * 1024 * 1024
"""Neon caps the rows of a response at 10 MiB; JSON quoting can roughly double that."""

TRANSACTION_ARGUMENT_ERROR = "transaction() expects an array of queries, or a function returning an array of queries"

_ERROR_BODY_START = 1024
_CELL_TYPES = frozenset({str, type(None)})

# --------------------------------------------------------------------------- endpoints


@attrs.frozen
class Endpoint:
    """Where the POST goes: ``http(s)://host:port/target``."""

    scheme: str
    host: str
    port: int
    target: str

    @property
    def tls(self) -> bool:
        """Whether the connection is HTTPS."""
        return self.scheme == "https"

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The endpoint as a URL."""
        return f"{self.scheme}://{self.host_header}{self.target}"


def parse_endpoint(url: str) -> Endpoint:
    """Parse an ``http://`` or ``https://`` URL; credentials in it are refused."""
    if not isinstance(url, str):
        raise ProgrammingError(f"fetch_endpoint must give a URL string, not {type(url).__name__}")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ProgrammingError("fetch_endpoint must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ProgrammingError("fetch_endpoint must not contain credentials")
    host = parts.hostname
    if not host:
        raise ProgrammingError("fetch_endpoint has no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ProgrammingError("fetch_endpoint has an invalid host name") from None
    try:
        port = parts.port
    except ValueError:
        raise ProgrammingError("fetch_endpoint has an invalid port") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Endpoint(scheme, host, port, target)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def default_fetch_endpoint(host: str, port: int, *, jwt_auth: bool = False) -> str:
    """Neon's rule: the first host label becomes ``api`` (``apiauth`` with an auth token).

    The port is ignored (HTTPS on 443). Unlike the JS driver, dotless hosts and IP
    addresses are left as they are instead of being mangled.
    """
    if "." in host and not _is_ip(host):
        host = ("apiauth." if jwt_auth else "api.") + host.split(".", 1)[1]
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}/sql"


class FetchTarget:
    """Where a ``neon()`` object sends each request and with which bearer token.

    ``fetch_endpoint`` is a URL, a function ``(host, port) -> URL``, or None for Neon's rule
    (``default_fetch_endpoint``); ``auth_token`` a string or a zero-argument function. Every
    binding resolves them here, the same way.
    """

    def __init__(self, params: ConnectionParams, fetch_endpoint: Any = None, auth_token: Any = None) -> None:
        self.params = params
        self.fetch_endpoint = fetch_endpoint
        self.auth_token = auth_token
        self._endpoints: dict[str, Endpoint] = {}
        if isinstance(fetch_endpoint, str):
            self._static: Endpoint | None = parse_endpoint(fetch_endpoint)
        elif fetch_endpoint is None or callable(fetch_endpoint):
            self._static = None
        else:
            raise ProgrammingError("fetch_endpoint must be a URL string or a function (host, port) -> URL")

    def endpoint(self) -> Endpoint:
        """The endpoint for the connection string's host and port (URLs parsed once)."""
        if self._static is not None:
            return self._static
        host, port = self.params.host, self.params.port
        if self.fetch_endpoint is None:
            url = default_fetch_endpoint(host, port, jwt_auth=self.auth_token is not None)
        else:
            url = self.fetch_endpoint(host, port)
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            endpoint = parse_endpoint(url)
            if len(self._endpoints) < 64:
                self._endpoints[url] = endpoint
        return endpoint

    def token(self, override: Any = None) -> str | None:
        """The bearer token for one request: the request's own, else the ``neon()``-level one."""
        token = override if override is not None else self.auth_token
        if token is None:
            return None
        value = token() if callable(token) else token
        if not isinstance(value, str):
            raise ProgrammingError(f"auth_token must give a str, not {type(value).__name__}")
        return value


def transaction_queries(queries: Any, sql: Any) -> list[HTTPQuery]:
    """The queries of ``transaction(queries)``: a list or tuple of query objects (anything with
    an ``http_query``), or a function of ``sql`` returning one; TypeError for anything else."""
    if callable(queries):
        queries = queries(sql)
    if not isinstance(queries, (list, tuple)):
        raise TypeError(TRANSACTION_ARGUMENT_ERROR)
    out: list[HTTPQuery] = []
    for query in queries:
        if isinstance(query, HTTPQuery):
            out.append(query)
        elif isinstance(getattr(query, "http_query", None), HTTPQuery):
            out.append(query.http_query)
        else:
            raise TypeError(TRANSACTION_ARGUMENT_ERROR)
    return out


def query_params(params: Sequence[Any] | None) -> tuple[Any, ...]:
    """A query's parameters as a tuple (a str, bytes or mapping is a mistake, not a sequence)."""
    if params is None:
        return ()
    if isinstance(params, (str, bytes, Mapping)):
        raise ProgrammingError("params must be a list or tuple of values")
    return tuple(params)


def neon_connection_string(dsn: str | ConnectionParams) -> tuple[ConnectionParams, str]:
    """The parsed parameters and the ``Neon-Connection-String`` header value.

    The value is a ``postgresql://`` URL (keyword strings are accepted and rewritten) with
    ``application_name`` added when absent, as the JS driver 1.2.0 does. It holds the
    password: it must never be logged.
    """
    params = dsn if isinstance(dsn, ConnectionParams) else parse_connection_string(dsn)
    if len(params.hosts) > 1:
        raise ProgrammingError("SQL over HTTP goes to one endpoint: give one host in the connection string")
    if params.application_name is None:
        params = params.with_(application_name=DEFAULT_APPLICATION_NAME)
    return params, params.to_url()


def normalize_isolation_level(level: str) -> str:
    """The wire name of an isolation level; ``"repeatable read"`` and ``"REPEATABLE_READ"`` work too."""
    if level in ISOLATION_LEVELS:
        return level
    if isinstance(level, str):
        key = level.replace(" ", "").replace("_", "").replace("-", "").lower()
        for name in ISOLATION_LEVELS:
            if name.lower() == key:
                return name
    raise ProgrammingError(f"invalid isolation level {level!r}: expected one of {', '.join(ISOLATION_LEVELS)}")


# --------------------------------------------------------------------------- parameters


def http_param(value: Any, registry: Any = None) -> str | None:
    """One parameter as the protocol carries it: a Postgres text literal, or None for NULL.

    Everything goes through the registry's ``literal_text`` (the same text forms as the TCP
    transport), except a plain dict, which becomes JSON text as in the JS driver.
    """
    if value is None:
        return None
    cls = type(value)
    if cls is str:
        if "\x00" in value:
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) characters")
        return value  # type: ignore[no-any-return]
    if cls is int:
        return str(value)
    if cls is dict:
        return json.dumps(value)
    text: str | None = (registry if registry is not None else default_registry).literal_text(value)
    return text


# --------------------------------------------------------------------------- requests


def _as_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return values if type(values) is tuple else tuple(values)


@attrs.frozen
class HTTPQuery:
    """One statement with ``$n`` placeholders, its parameters, and per-query options."""

    text: str
    params: tuple[Any, ...] = attrs.field(default=(), converter=_as_tuple, repr=lambda p: f"<{len(p)} params>")
    array_mode: bool | None = None
    full_results: bool | None = None
    types: Any = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ProgrammingError(f"the query must be a str, not {type(self.text).__name__}")


@attrs.frozen
class FetchSettings:
    """The ``neon()``-level settings: the connection-string header and the default options."""

    connection_string: str = attrs.field(repr=False)
    array_mode: bool = False
    full_results: bool = False
    types: Any = None
    headers: tuple[tuple[str, str], ...] = ()


def _optional_isolation_level(level: str | None) -> str | None:
    return None if level is None else normalize_isolation_level(level)


@attrs.frozen
class TransactionOptions:
    """The options of one ``transaction()`` call; None means "not set"."""

    isolation_level: str | None = attrs.field(default=None, converter=_optional_isolation_level)
    read_only: bool | None = None
    deferrable: bool | None = None
    array_mode: bool | None = None
    full_results: bool | None = None


@attrs.frozen
class ResultShape:
    """How one query's result is returned: row shape, whole ``Result`` or rows, type registry."""

    array_mode: bool
    full_results: bool
    registry: Any


@attrs.frozen
class FetchRequest:
    """A request ready to send, and how to read its response. Holds secrets: no repr of them."""

    target: str
    headers: tuple[tuple[bytes, bytes], ...] = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    shapes: tuple[ResultShape, ...]
    batch: bool


_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_FORBIDDEN_HEADERS = frozenset({"content-length", "transfer-encoding"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _header_value(value: str, what: str) -> bytes:
    """A header value as bytes; the error never repeats the value (it may be a secret)."""
    if not isinstance(value, str):
        raise ProgrammingError(f"{what} must be a str, not {type(value).__name__}")
    try:
        data = value.encode("ascii")
    except UnicodeEncodeError:
        raise ProgrammingError(f"{what} must be ASCII") from None
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ProgrammingError(f"{what} must not contain CR, LF or NUL")
    return data


def _headers(
    endpoint: Endpoint,
    settings: FetchSettings,
    body: bytes,
    auth_token: str | None,
    extra: Iterable[tuple[str, bytes]] = (),
) -> tuple[tuple[bytes, bytes], ...]:
    headers: dict[str, tuple[bytes, bytes]] = {
        "host": (b"Host", endpoint.host_header.encode()),
        "content-type": (b"Content-Type", b"application/json"),
        "content-length": (b"Content-Length", str(len(body)).encode()),
        "user-agent": (b"User-Agent", USER_AGENT.encode()),
        "neon-connection-string": (
            b"Neon-Connection-String",
            _header_value(settings.connection_string, "the connection string"),
        ),
        "neon-raw-text-output": (b"Neon-Raw-Text-Output", b"true"),
        "neon-array-mode": (b"Neon-Array-Mode", b"true"),
    }
    if auth_token is not None:
        headers["authorization"] = (b"Authorization", b"Bearer " + _header_value(auth_token, "the auth token"))
    for name, value in extra:
        headers[name.lower()] = (name.encode(), value)
    for name, text in settings.headers:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ProgrammingError(f"invalid header name {name!r}")
        key = name.lower()
        if key in _FORBIDDEN_HEADERS:
            raise ProgrammingError(f"the {name} header is set by the driver")
        headers[key] = (name.encode(), _header_value(text, f"the {name} header"))
    return tuple(headers.values())


def _encode_query(query: HTTPQuery, registry: Any) -> dict[str, Any]:
    return {"query": query.text, "params": [http_param(v, registry) for v in query.params]}


def _body(obj: Any) -> bytes:
    try:
        return _encode_json(obj).encode()
    except UnicodeEncodeError:
        raise DataError("the query or a parameter is not valid Unicode (a lone surrogate?)") from None


def build_query_request(
    endpoint: Endpoint, settings: FetchSettings, query: HTTPQuery, *, auth_token: str | None = None
) -> FetchRequest:
    """The request for one statement; query options win over the settings'."""
    registry = query.types if query.types is not None else settings.types
    if registry is None:
        registry = default_registry
    shape = ResultShape(
        settings.array_mode if query.array_mode is None else query.array_mode,
        settings.full_results if query.full_results is None else query.full_results,
        registry,
    )
    body = _body(_encode_query(query, registry))
    return FetchRequest(endpoint.target, _headers(endpoint, settings, body, auth_token), body, (shape,), False)


def build_transaction_request(
    endpoint: Endpoint,
    settings: FetchSettings,
    queries: Sequence[HTTPQuery],
    options: TransactionOptions = TransactionOptions(),
    *,
    auth_token: str | None = None,
) -> FetchRequest:
    """The request for a batch run in one transaction; options: query, then transaction, then settings."""
    shapes: list[ResultShape] = []
    encoded: list[dict[str, Any]] = []
    txn_array = settings.array_mode if options.array_mode is None else options.array_mode
    txn_full = settings.full_results if options.full_results is None else options.full_results
    for query in queries:
        if not isinstance(query, HTTPQuery):
            raise TypeError(TRANSACTION_ARGUMENT_ERROR)
        registry = query.types if query.types is not None else settings.types
        if registry is None:
            registry = default_registry
        shapes.append(
            ResultShape(
                txn_array if query.array_mode is None else query.array_mode,
                txn_full if query.full_results is None else query.full_results,
                registry,
            )
        )
        encoded.append(_encode_query(query, registry))
    body = _body({"queries": encoded})
    extra: list[tuple[str, bytes]] = []
    if options.isolation_level is not None:
        extra.append(("Neon-Batch-Isolation-Level", options.isolation_level.encode()))
    if options.read_only is not None:
        extra.append(("Neon-Batch-Read-Only", b"true" if options.read_only else b"false"))
    if options.deferrable is not None:
        extra.append(("Neon-Batch-Deferrable", b"true" if options.deferrable else b"false"))
    headers = _headers(endpoint, settings, body, auth_token, extra)
    return FetchRequest(endpoint.target, headers, body, tuple(shapes), True)


# --------------------------------------------------------------------------- the connection


@attrs.frozen
class FetchResponse:
    """A complete HTTP response: status, headers (lower-case names) and body."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = attrs.field(repr=lambda b: f"<{len(b)} bytes>")


class FetchState(enum.Enum):
    """Where a ``FetchConnection`` is."""

    IDLE = "IDLE"  # ready for a request (a fresh connection, or kept alive)
    WAITING = "WAITING"  # a request was sent, its response is not complete
    CLOSED = "CLOSED"  # the connection must be (or was) closed
    ERROR = "ERROR"  # broken; nothing more can be done


class FetchConnection:
    """One HTTP/1.1 client connection carrying one request at a time, kept alive between them.

    ``max_response_size`` bounds the body, h11's ``max_incomplete_event_size`` the headers:
    a hostile server costs bounded memory.
    """

    def __init__(
        self, *, max_response_size: int = DEFAULT_MAX_RESPONSE_SIZE, max_header_size: int = 64 * 1024
    ) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_size)
        self.max_response_size = max_response_size
        self.state = FetchState.IDLE
        self.requests_sent = 0
        self.response_bytes = 0
        """Bytes received for the current request (0: the server has said nothing yet)."""
        self._status = 0
        self._headers: tuple[tuple[bytes, bytes], ...] = ()
        self._body: list[bytes] = []
        self._body_size = 0
        self._eof = False

    def __repr__(self) -> str:
        return f"<FetchConnection {self.state.name} requests={self.requests_sent}>"

    @property
    def reusable(self) -> bool:
        """Whether another request may be sent on this connection."""
        return self.state is FetchState.IDLE

    def send_request(self, request: FetchRequest) -> bytes:
        """The bytes of ``request``; the connection must be idle."""
        if self.state is not FetchState.IDLE:
            raise LocalProtocolError(f"cannot send a request in state {self.state.name}")
        h = self._h11
        try:
            data = h.send(h11.Request(method=b"POST", target=request.target.encode(), headers=list(request.headers)))
            assert data is not None
            data += h.send(h11.Data(data=request.body)) or b""
            data += h.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            # h11's message may quote a header value, and header values hold secrets.
            self.state = FetchState.ERROR
            raise LocalProtocolError("the HTTP request is invalid (a bad header name or value)") from None
        self.state = FetchState.WAITING
        self.requests_sent += 1
        self.response_bytes = 0
        self._status = 0
        self._body = []
        self._body_size = 0
        return data

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means the server closed the connection."""
        if data:
            self.response_bytes += len(data)
        else:
            self._eof = True
            if self.state is FetchState.IDLE:
                self.state = FetchState.CLOSED
        try:
            self._h11.receive_data(data)
        except RuntimeError:
            # h11 refuses data after EOF: the connection is over anyway.
            if self.state is not FetchState.ERROR:
                self.state = FetchState.CLOSED

    def next_event(self) -> Any:
        """The complete ``FetchResponse``, or ``NEED_DATA``.

        Raises ConnectionClosed if the server closed the connection before responding (the
        request may or may not have run), RemoteProtocolError on a malformed response.
        """
        if self.state is not FetchState.WAITING:
            raise LocalProtocolError(f"no response is expected in state {self.state.name}")
        h = self._h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                self.state = FetchState.ERROR
                if self._eof:
                    raise self._closed_error() from None
                raise RemoteProtocolError(f"invalid HTTP response: {exc}") from None
            cls = type(event)
            if event is h11.NEED_DATA:
                return NEED_DATA
            if cls is h11.Data:
                size = self._body_size + len(event.data)  # type: ignore[union-attr]
                if size > self.max_response_size:
                    self.state = FetchState.ERROR
                    raise OperationalError(
                        f"the response is larger than max_response_size ({self.max_response_size} bytes)"
                    )
                self._body_size = size
                self._body.append(event.data)  # type: ignore[union-attr]
            elif cls is h11.Response:
                self._status = event.status_code  # type: ignore[union-attr]
                self._headers = tuple(event.headers)  # type: ignore[union-attr]
            elif cls is h11.EndOfMessage:
                response = FetchResponse(self._status, self._headers, b"".join(self._body))
                self._body = []
                if h.our_state is h11.DONE and h.their_state is h11.DONE:
                    h.start_next_cycle()
                    self.state = FetchState.IDLE
                else:
                    self.state = FetchState.CLOSED
                return response
            elif cls is h11.ConnectionClosed:
                self.state = FetchState.CLOSED
                raise self._closed_error()
            elif cls is h11.InformationalResponse:
                continue
            else:  # pragma: no cover - PAUSED cannot happen while a response is pending
                self.state = FetchState.ERROR
                raise RemoteProtocolError(f"unexpected HTTP event {cls.__name__}")

    def _closed_error(self) -> ConnectionClosed:
        if self.response_bytes == 0:
            return ConnectionClosed(
                "the server closed the connection before responding (the query may or may not have run)"
            )
        return ConnectionClosed("the server closed the connection in the middle of the response")

    def close(self) -> None:
        """Record that the binding closed the socket."""
        if self.state is not FetchState.ERROR:
            self.state = FetchState.CLOSED


# --------------------------------------------------------------------------- responses


class HTTPStatusError(OperationalError):
    """The server answered with an unexpected HTTP status (413, 507, 500, ...).

    ``status`` is the status code, ``body`` the start of the body; ``diag`` holds the
    fields when the body is Neon's JSON error object.
    """

    def __init__(self, message: str, *, status: int, body: str = "", diag: Diagnostic | None = None) -> None:
        super().__init__(message, diag=diag)
        self.status = status
        self.body = body


_DIAG_KEYS = (
    ("message", "message"),
    ("code", "code"),
    ("detail", "detail"),
    ("hint", "hint"),
    ("position", "position"),
    ("internalPosition", "internal_position"),
    ("internalQuery", "internal_query"),
    ("severity", "severity"),
    ("where", "where"),
    ("table", "table"),
    ("column", "column"),
    ("schema", "schema"),
    ("dataType", "data_type"),
    ("constraint", "constraint"),
    ("file", "file"),
    ("line", "line"),
    ("routine", "routine"),
)


def diagnostic_from_json(obj: Mapping[str, Any]) -> Diagnostic:
    """The fields of a Neon JSON error; null and "" (Neon's "not a Postgres error") become None."""
    kwargs: dict[str, str] = {}
    for key, attr in _DIAG_KEYS:
        value = obj.get(key)
        if value is None or value == "":
            continue
        kwargs[attr] = value if isinstance(value, str) else str(value)
    return Diagnostic(**kwargs)


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _loads(body: bytes) -> Any:
    """The response's JSON; RemoteProtocolError for anything else (too deep, not JSON, not UTF-8)."""
    try:
        return json.loads(body)
    except RecursionError:
        raise RemoteProtocolError("the server's response is nested too deeply") from None
    except ValueError as exc:
        raise RemoteProtocolError(f"the server's response is not valid JSON: {exc}") from None


def error_from_response(status: int, body: bytes) -> Error:
    """The exception for a non-200 response; every one carries ``status``.

    A 400 with a JSON error object raises the SQLSTATE's class with every field (an error
    with no SQLSTATE, such as a failed login checked by the proxy, is an OperationalError).
    """
    payload = _json_or_none(body)
    diag: Diagnostic | None = None
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        diag = diagnostic_from_json(payload)
    if status == 400 and diag is not None:
        cls = class_for_sqlstate(diag.code) if diag.code else OperationalError
        exc = cls(diag.message or "unknown server error", diag=diag)
        exc.status = status  # type: ignore[attr-defined]
        return exc
    start = body[:_ERROR_BODY_START].decode("utf-8", "replace")
    if diag is not None and diag.message:
        shown = diag.message
    elif isinstance(payload, str):
        shown = payload
    else:
        shown = start
    return HTTPStatusError(f"Server error (HTTP status {status}): {shown}", status=status, body=start, diag=diag)


def _cell_decoder(loader: Callable[[bytes], Any]) -> Callable[[str], Any]:
    """A loader taking the JSON string instead of bytes; common loaders skip the encoding."""
    if loader is _strings.load_text:
        return str
    if loader is int or loader is float:
        return loader
    if loader is _numeric.load_bool:
        return "t".__eq__

    def decode(cell: str) -> Any:
        return loader(cell.encode())

    return decode


def _int_member(obj: Mapping[str, Any], key: str, default: int) -> int:
    value = obj.get(key)
    if value is None:
        return default
    if type(value) is not int:
        raise RemoteProtocolError(f"malformed field description from the server ({key} is not an integer)")
    return value


def _field(obj: Any) -> FieldDescription:
    """A field of the response, checked: every member has the type the protocol gives it."""
    if type(obj) is not dict:
        raise RemoteProtocolError("malformed field description from the server (not an object)")
    name = obj.get("name")
    if type(name) is not str:
        raise RemoteProtocolError("malformed field description from the server (name is not a string)")
    oid = obj.get("dataTypeID")
    if type(oid) is not int or not 0 <= oid <= 0xFFFFFFFF:
        raise RemoteProtocolError("malformed field description from the server (dataTypeID is not a type OID)")
    return FieldDescription(
        name,
        _int_member(obj, "tableID", 0),
        _int_member(obj, "columnID", 0),
        oid,
        _int_member(obj, "dataTypeSize", -1),
        _int_member(obj, "dataTypeModifier", -1),
        0,
    )


def _result(payload: Any, shape: ResultShape) -> Any:
    if type(payload) is not dict:
        raise RemoteProtocolError("malformed query result from the server (not an object)")
    fields_json = payload.get("fields")
    raw: Any = payload.get("rows")
    if type(fields_json) is not list or type(raw) is not list:
        raise RemoteProtocolError("malformed query result from the server (fields and rows must be arrays)")
    fields = [_field(f) for f in fields_json]
    command = payload.get("command")
    row_count = payload.get("rowCount")
    if raw:
        # Whole-response checks at C speed: rows are lists of one cell per field, cells are
        # text or null (raw text output is all or nothing).
        width = len(fields)
        if any(type(row) is not list or len(row) != width for row in raw):
            raise RemoteProtocolError("malformed rows from the server (a row does not match the fields)")
        kinds = set(map(type, chain.from_iterable(raw)))
        if not kinds <= _CELL_TYPES:
            raise RemoteProtocolError("malformed rows from the server (cells must be text or null)")
    registry = shape.registry
    decoders = [_cell_decoder(registry.get_loader(f.type_oid, 0)) for f in fields]
    try:
        if shape.array_mode:
            if len(decoders) == 1:
                d0 = decoders[0]
                rows: list[Any] = [[None if r[0] is None else d0(r[0])] for r in raw]
            else:
                rows = [[None if v is None else d(v) for d, v in zip(decoders, r)] for r in raw]
        else:
            names = [f.name for f in fields]
            if len(decoders) == 1:
                d0, n0 = decoders[0], names[0]
                rows = [{n0: None if r[0] is None else d0(r[0])} for r in raw]
            else:
                rows = [dict(zip(names, [None if v is None else d(v) for d, v in zip(decoders, r)])) for r in raw]
    except Error:
        raise  # a loader's own DataError, as over TCP
    except Exception as exc:  # the rows are well formed: a cell is not text of its type
        raise DataError(f"a value received from the server could not be decoded: {exc}") from None
    if not shape.full_results:
        return rows
    if command is not None and not isinstance(command, str):
        raise RemoteProtocolError("malformed command in the server's result")
    if row_count is not None and not isinstance(row_count, int):
        raise RemoteProtocolError("malformed rowCount in the server's result")
    return Result(fields, rows, command=command, row_count=row_count, row_as_array=shape.array_mode)


def read_response(request: FetchRequest, response: FetchResponse) -> Any:
    """What the caller gets: rows or a ``Result`` per query (a list of them for a batch).

    Raises the exception for an error response (see ``error_from_response``).
    """
    if response.status != 200:
        raise error_from_response(response.status, response.body)
    payload = _loads(response.body)
    if not request.batch:
        return _result(payload, request.shapes[0])
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list) or len(results) != len(request.shapes):
        raise RemoteProtocolError("the server's batch response does not have one result per query")
    return [_result(r, s) for r, s in zip(results, request.shapes)]
