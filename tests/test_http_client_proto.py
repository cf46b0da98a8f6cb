"""The sans-IO SQL-over-HTTP client (neon_proto.http), against an h11 server machine in memory."""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal
from typing import Any

import h11
import pytest

from neon_proto import errors
from neon_proto.http import (
    NEED_DATA,
    Endpoint,
    FetchConnection,
    FetchRequest,
    FetchResponse,
    FetchSettings,
    FetchState,
    HTTPQuery,
    HTTPStatusError,
    TransactionOptions,
    build_query_request,
    build_transaction_request,
    default_fetch_endpoint,
    error_from_response,
    http_param,
    neon_connection_string,
    normalize_isolation_level,
    parse_endpoint,
    read_response,
)
from neon_proto.results import Result
from neon_proto.types import Json

DSN = "postgresql://alice:s3cr%40t@ep-cool-name-123.us-east-2.aws.neon.tech/neondb"
ENDPOINT = parse_endpoint("http://127.0.0.1:8080/sql")


def settings(**kwargs: Any) -> FetchSettings:
    _params, header = neon_connection_string(DSN)
    return FetchSettings(header, **kwargs)


class Server:
    """An h11 server machine linked to a FetchConnection through an in-memory pipe."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.SERVER)

    def receive(self, data: bytes) -> tuple[h11.Request, bytes]:
        """The request the client's bytes carry, and its body."""
        self.h11.receive_data(data)
        request = self.h11.next_event()
        assert isinstance(request, h11.Request)
        body = b""
        while True:
            event = self.h11.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    def respond(
        self, status: int, payload: Any, *, headers: list[tuple[str, str]] | None = None, chunked: bool = False
    ) -> bytes:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        hdrs = [("Content-Type", "application/json")] + (headers or [])
        hdrs.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body))))
        out = self.h11.send(h11.Response(status_code=status, headers=hdrs)) or b""
        if chunked:
            for i in range(0, len(body), 7):
                out += self.h11.send(h11.Data(data=body[i : i + 7])) or b""
        else:
            out += self.h11.send(h11.Data(data=body)) or b""
        out += self.h11.send(h11.EndOfMessage()) or b""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return out


def exchange(
    conn: FetchConnection, server: Server, request: FetchRequest, status: int, payload: Any, **kw: Any
) -> tuple[h11.Request, Any, FetchResponse]:
    """Send ``request`` through the pipe, answer it, and return what each side saw."""
    req, body = server.receive(conn.send_request(request))
    assert conn.state is FetchState.WAITING
    assert conn.next_event() is NEED_DATA
    response_bytes = server.respond(status, payload, **kw)
    # Feed byte by byte: the machine must cope with any fragmentation.
    for i in range(len(response_bytes)):
        conn.receive_data(response_bytes[i : i + 1])
    response = conn.next_event()
    assert isinstance(response, FetchResponse)
    return req, json.loads(body), response


def header(req: h11.Request, name: str) -> str | None:
    values = [v.decode() for k, v in req.headers if k == name.lower().encode()]
    assert len(values) <= 1
    return values[0] if values else None


def field(name: str, oid: int, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "dataTypeID": oid,
        "tableID": kw.get("table", 0),
        "columnID": kw.get("column", 0),
        "dataTypeSize": kw.get("size", -1),
        "dataTypeModifier": -1,
        "format": "text",
    }


def result(fields: list[dict[str, Any]], rows: list[list[str | None]], command: str = "SELECT") -> dict[str, Any]:
    return {"fields": fields, "rows": rows, "command": command, "rowCount": len(rows), "rowAsArray": True}


# --------------------------------------------------------------------------- requests


def test_query_request_has_neon_headers_and_json_body() -> None:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT $1::int AS n", (1,)))
    req, body, _ = exchange(conn, server, request, 200, result([field("n", 23)], [["1"]]))
    assert req.method == b"POST"
    assert req.target == b"/sql"
    assert header(req, "host") == "127.0.0.1:8080"
    assert header(req, "neon-raw-text-output") == "true"
    assert header(req, "neon-array-mode") == "true"
    assert header(req, "content-type") == "application/json"
    assert header(req, "authorization") is None
    assert header(req, "neon-batch-isolation-level") is None
    assert body == {"query": "SELECT $1::int AS n", "params": ["1"]}


def test_connection_string_header_is_a_url_with_application_name() -> None:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"))
    req, _, _ = exchange(conn, server, request, 200, result([], []))
    value = header(req, "neon-connection-string")
    assert value is not None
    assert value.startswith("postgresql://alice:s3cr%40t@ep-cool-name-123.us-east-2.aws.neon.tech:5432/neondb?")
    assert "application_name=pkg%3Apypi%2Fneon-python%400.1.0" in value


def test_application_name_already_given_is_kept() -> None:
    _params, value = neon_connection_string(DSN + "?application_name=mine")
    assert value.endswith("application_name=mine")


def test_keyword_connection_strings_become_urls() -> None:
    _params, value = neon_connection_string("host=db.example.com user=bob password=pw dbname=app")
    assert value.startswith("postgresql://bob:pw@db.example.com:5432/app?")


def test_auth_token_is_a_bearer_header() -> None:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"), auth_token="eyJ.token.sig")
    req, _, _ = exchange(conn, server, request, 200, result([], []))
    assert header(req, "authorization") == "Bearer eyJ.token.sig"


def test_a_bad_auth_token_is_refused_without_repeating_it() -> None:
    with pytest.raises(errors.ProgrammingError) as info:
        build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"), auth_token="top\r\nsecret")
    assert "secret" not in str(info.value)


def test_extra_headers_are_sent_and_override_defaults() -> None:
    conn, server = FetchConnection(), Server()
    extra = (("X-Trace", "abc"), ("User-Agent", "mine/1"))
    request = build_query_request(ENDPOINT, settings(headers=extra), HTTPQuery("SELECT 1"))
    req, _, _ = exchange(conn, server, request, 200, result([], []))
    assert header(req, "x-trace") == "abc"
    assert header(req, "user-agent") == "mine/1"


def test_framing_headers_cannot_be_overridden() -> None:
    with pytest.raises(errors.ProgrammingError):
        build_query_request(ENDPOINT, settings(headers=(("Content-Length", "3"),)), HTTPQuery("SELECT 1"))


@pytest.mark.parametrize("name", ["", "X Bad", "X:Y", "Ünicode"])
def test_invalid_header_names_are_refused(name: str) -> None:
    with pytest.raises(errors.ProgrammingError, match="invalid header name"):
        build_query_request(ENDPOINT, settings(headers=((name, "v"),)), HTTPQuery("SELECT 1"))


def test_transaction_request_sends_queries_and_batch_headers() -> None:
    conn, server = FetchConnection(), Server()
    options = TransactionOptions("serializable", read_only=True, deferrable=False)
    queries = [HTTPQuery("SELECT $1::int", (1,)), HTTPQuery("SELECT 'x'")]
    request = build_transaction_request(ENDPOINT, settings(), queries, options)
    payload = {"results": [result([field("int4", 23)], [["1"]]), result([field("?column?", 25)], [["x"]])]}
    req, body, response = exchange(conn, server, request, 200, payload)
    assert body == {"queries": [{"query": "SELECT $1::int", "params": ["1"]}, {"query": "SELECT 'x'", "params": []}]}
    assert header(req, "neon-batch-isolation-level") == "Serializable"
    assert header(req, "neon-batch-read-only") == "true"
    assert header(req, "neon-batch-deferrable") == "false"
    assert read_response(request, response) == [[{"int4": 1}], [{"?column?": "x"}]]


def test_transaction_without_options_sends_no_batch_headers() -> None:
    conn, server = FetchConnection(), Server()
    request = build_transaction_request(ENDPOINT, settings(), [HTTPQuery("SELECT 1")])
    req, _, _ = exchange(conn, server, request, 200, {"results": [result([], [])]})
    assert [k for k, _ in req.headers if k.startswith(b"neon-batch")] == []


def test_transaction_rejects_what_is_not_a_query() -> None:
    with pytest.raises(TypeError, match="expects an array of queries"):
        build_transaction_request(ENDPOINT, settings(), ["SELECT 1"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("given", "wire"),
    [
        ("ReadCommitted", "ReadCommitted"),
        ("read committed", "ReadCommitted"),
        ("REPEATABLE_READ", "RepeatableRead"),
        ("read-uncommitted", "ReadUncommitted"),
    ],
)
def test_isolation_levels_are_normalized(given: str, wire: str) -> None:
    assert normalize_isolation_level(given) == wire


def test_an_unknown_isolation_level_is_refused() -> None:
    with pytest.raises(errors.ProgrammingError, match="invalid isolation level"):
        TransactionOptions("snapshot")


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5"),
        ("héllo", "héllo"),
        (True, "true"),
        (False, "false"),
        (Decimal("12.340"), "12.340"),
        (b"\x00\xffA", "\\x00ff41"),
        (bytearray(b"ab"), "\\x6162"),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "12345678-1234-5678-1234-567812345678"),
        (datetime.date(2024, 2, 29), "2024-02-29"),
        (
            datetime.datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            "2024-01-02 03:04:05.600000+02:00",
        ),
        ([1, None, 3], "{1,NULL,3}"),
        ([["a", 'b"c'], ["d\\e", None]], '{{a,"b\\"c"},{"d\\\\e",NULL}}'),
        ({"a": [1, 2]}, '{"a": [1, 2]}'),
        (Json([1, "x"]), '[1, "x"]'),
    ],
)
def test_parameters_are_postgres_text_literals(value: Any, text: str | None) -> None:
    assert http_param(value) == text


def test_a_str_with_nul_is_refused() -> None:
    with pytest.raises(errors.DataError):
        http_param("a\x00b")


def test_an_unknown_parameter_type_is_refused() -> None:
    with pytest.raises(errors.ProgrammingError):
        http_param(object())


# --------------------------------------------------------------------------- responses


def roundtrip(query: HTTPQuery, payload: Any, status: int = 200, **kw: Any) -> Any:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(**kw), query)
    _, _, response = exchange(conn, server, request, status, payload)
    return read_response(request, response)


TYPED = result(
    [
        field("i", 23),
        field("t", 25),
        field("b", 16),
        field("n", 1700),
        field("j", 3802),
        field("y", 17),
        field("a", 1007),
        field("ts", 1184),
        field("z", 20),
    ],
    [
        ["1", "x", "t", "1.50", '{"k": [1]}', "\\x0102", "{1,NULL,3}", "2024-01-02 03:04:05+00", None],
        ["-2", "", "f", "NaN", "null", "\\x", "{}", "2000-01-01 00:00:00-05:30", "9007199254740993"],
    ],
)


def test_cells_are_decoded_by_type_oid() -> None:
    rows = roundtrip(HTTPQuery("SELECT ..."), TYPED)
    assert rows[0] == {
        "i": 1,
        "t": "x",
        "b": True,
        "n": Decimal("1.50"),
        "j": {"k": [1]},
        "y": b"\x01\x02",
        "a": [1, None, 3],
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "z": None,
    }
    assert rows[1]["b"] is False
    assert rows[1]["n"].is_nan()
    assert rows[1]["j"] is None
    assert rows[1]["z"] == 9007199254740993


def test_array_mode_gives_lists() -> None:
    rows = roundtrip(HTTPQuery("SELECT ...", array_mode=True), result([field("a", 23), field("b", 25)], [["1", None]]))
    assert rows == [[1, None]]


def test_a_later_duplicate_column_name_wins() -> None:
    rows = roundtrip(HTTPQuery("SELECT ..."), result([field("x", 23), field("x", 25)], [["1", "two"]]))
    assert rows == [{"x": "two"}]


def test_full_results_give_a_result() -> None:
    payload: dict[str, Any] = result([field("n", 23, table=16384, column=2, size=4)], [["5"]])
    res = roundtrip(HTTPQuery("SELECT ...", full_results=True), payload)
    assert isinstance(res, Result)
    assert res.rows == [{"n": 5}]
    assert res.command == "SELECT"
    assert res.row_count == 1
    assert res.columns == ["n"]
    (f,) = res.fields
    assert (f.type_oid, f.table_oid, f.column_id, f.type_size, f.type_modifier, f.format) == (23, 16384, 2, 4, -1, 0)


def test_settings_give_defaults_that_the_query_overrides() -> None:
    payload = result([field("n", 23)], [["5"]])
    assert roundtrip(HTTPQuery("SELECT ..."), payload, array_mode=True) == [[5]]
    assert roundtrip(HTTPQuery("SELECT ...", array_mode=False), payload, array_mode=True) == [{"n": 5}]


def test_transaction_options_sit_between_query_and_settings() -> None:
    conn, server = FetchConnection(), Server()
    queries = [HTTPQuery("SELECT 1"), HTTPQuery("SELECT 2", array_mode=False, full_results=True)]
    request = build_transaction_request(
        ENDPOINT, settings(full_results=True), queries, TransactionOptions(array_mode=True, full_results=False)
    )
    payload = {"results": [result([field("n", 23)], [["1"]]), result([field("n", 23)], [["2"]])]}
    _, _, response = exchange(conn, server, request, 200, payload)
    first, second = read_response(request, response)
    assert first == [[1]]
    assert isinstance(second, Result) and second.rows == [{"n": 2}]


def test_command_and_row_count_without_rows() -> None:
    payload: dict[str, Any] = {"fields": [], "rows": [], "command": "CREATE", "rowCount": None, "rowAsArray": True}
    res = roundtrip(HTTPQuery("CREATE TABLE t ()", full_results=True), payload)
    assert (res.command, res.row_count, res.rows) == ("CREATE", None, [])


def test_per_query_type_registry() -> None:
    from neon_proto.types import TypeRegistry, default_registry

    reg = TypeRegistry(parent=default_registry)
    reg.register_loader("int4", lambda data: ("int4", data))
    rows = roundtrip(HTTPQuery("SELECT ...", types=reg), result([field("n", 23)], [["5"]]))
    assert rows == [{"n": ("int4", b"5")}]


def test_a_chunked_response_is_read() -> None:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"))
    _, _, response = exchange(conn, server, request, 200, result([field("n", 23)], [["1"]]), chunked=True)
    assert read_response(request, response) == [{"n": 1}]


ERROR_BODY = {
    "message": 'column "x" does not exist',
    "code": "42703",
    "detail": "some detail",
    "hint": "Perhaps you meant to reference the column \"t.y\".",
    "position": "8",
    "internalPosition": "3",
    "internalQuery": "SELECT x",
    "severity": "ERROR",
    "where": "PL/pgSQL function f() line 1",
    "table": "t",
    "column": "x",
    "schema": "public",
    "dataType": "integer",
    "constraint": "c",
    "file": "parse_relation.c",
    "line": "3722",
    "routine": "errorMissingColumn",
}


def test_a_400_raises_the_sqlstate_class_with_every_field() -> None:
    with pytest.raises(errors.ProgrammingError) as info:
        roundtrip(HTTPQuery("SELECT x FROM t"), ERROR_BODY, status=400)
    exc = info.value
    assert type(exc).__name__ == "UndefinedColumn"
    assert str(exc) == 'column "x" does not exist'
    assert exc.sqlstate == "42703"
    assert exc.status == 400  # type: ignore[attr-defined]
    d = exc.diag
    assert (d.message, d.code, d.detail, d.hint, d.position) == (
        'column "x" does not exist',
        "42703",
        "some detail",
        ERROR_BODY["hint"],
        "8",
    )
    assert (d.internal_position, d.internal_query, d.severity, d.where) == ("3", "SELECT x", "ERROR", ERROR_BODY["where"])
    assert (d.table, d.column, d.schema, d.data_type, d.constraint) == ("t", "x", "public", "integer", "c")
    assert (d.file, d.line, d.routine) == ("parse_relation.c", "3722", "errorMissingColumn")


def test_a_400_without_sqlstate_is_an_operational_error() -> None:
    body = dict.fromkeys(ERROR_BODY)
    body.update(message="password authentication failed for user 'alice'", code="", severity="")
    with pytest.raises(errors.OperationalError, match="password authentication failed") as info:
        roundtrip(HTTPQuery("SELECT 1"), body, status=400)
    assert info.value.sqlstate is None
    assert info.value.diag.code is None


@pytest.mark.parametrize("status", [413, 507, 500, 502])
def test_other_statuses_raise_http_status_error(status: int) -> None:
    body = dict.fromkeys(ERROR_BODY)
    body.update(message="request is too large (max is 10485760 bytes)", code="", severity="")
    with pytest.raises(HTTPStatusError) as info:
        roundtrip(HTTPQuery("SELECT 1"), body, status=status)
    exc = info.value
    assert isinstance(exc, errors.OperationalError)
    assert exc.status == status
    assert str(exc) == f"Server error (HTTP status {status}): request is too large (max is 10485760 bytes)"
    assert exc.body.startswith("{")


def test_a_non_json_error_body_is_quoted() -> None:
    exc = error_from_response(502, b"<html>Bad Gateway</html>" + b"x" * 5000)
    assert isinstance(exc, HTTPStatusError)
    assert str(exc).startswith("Server error (HTTP status 502): <html>Bad Gateway</html>")
    assert len(exc.body) == 1024


def test_a_json_string_error_is_quoted() -> None:
    exc = error_from_response(400, b'"query is not supported"')
    assert str(exc) == "Server error (HTTP status 400): query is not supported"


def test_a_malformed_200_is_a_remote_protocol_error() -> None:
    with pytest.raises(errors.RemoteProtocolError):
        roundtrip(HTTPQuery("SELECT 1"), b"not json")
    with pytest.raises(errors.RemoteProtocolError):
        roundtrip(HTTPQuery("SELECT 1"), {"fields": [field("n", 23)], "rows": [[5]]})


def test_a_batch_with_the_wrong_number_of_results_is_refused() -> None:
    conn, server = FetchConnection(), Server()
    request = build_transaction_request(ENDPOINT, settings(), [HTTPQuery("SELECT 1"), HTTPQuery("SELECT 2")])
    _, _, response = exchange(conn, server, request, 200, {"results": [result([], [])]})
    with pytest.raises(errors.RemoteProtocolError):
        read_response(request, response)


# --------------------------------------------------------------------------- the connection


def test_keep_alive_serves_several_requests() -> None:
    conn, server = FetchConnection(), Server()
    for n in range(3):
        request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT $1::int AS n", (n,)))
        _, body, response = exchange(conn, server, request, 200, result([field("n", 23)], [[str(n)]]))
        assert body["params"] == [str(n)]
        assert read_response(request, response) == [{"n": n}]
        assert conn.reusable
    assert conn.requests_sent == 3


def test_connection_close_makes_the_connection_unusable() -> None:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"))
    exchange(conn, server, request, 200, result([], []), headers=[("Connection", "close")])
    assert not conn.reusable
    assert conn.state is FetchState.CLOSED
    with pytest.raises(errors.LocalProtocolError):
        conn.send_request(request)


def test_a_second_request_before_the_response_is_refused() -> None:
    conn = FetchConnection()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"))
    conn.send_request(request)
    with pytest.raises(errors.LocalProtocolError):
        conn.send_request(request)


def test_eof_before_the_response_says_the_query_may_have_run() -> None:
    conn = FetchConnection()
    conn.send_request(build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1")))
    conn.receive_data(b"")
    with pytest.raises(errors.ConnectionClosed, match="before responding"):
        conn.next_event()
    assert not conn.reusable


def test_eof_in_the_middle_of_the_body() -> None:
    conn = FetchConnection()
    conn.send_request(build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1")))
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"fie")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"")
    with pytest.raises(errors.ConnectionClosed, match="middle of the response"):
        conn.next_event()


def test_garbage_is_a_remote_protocol_error() -> None:
    conn = FetchConnection()
    conn.send_request(build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1")))
    conn.receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(errors.RemoteProtocolError):
        conn.next_event()
    assert conn.state is FetchState.ERROR


def test_the_body_is_bounded() -> None:
    conn = FetchConnection(max_response_size=100)
    conn.send_request(build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1")))
    conn.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b" " * 101)
    with pytest.raises(errors.OperationalError, match="max_response_size"):
        conn.next_event()
    assert conn.state is FetchState.ERROR


def test_the_headers_are_bounded() -> None:
    conn = FetchConnection(max_header_size=1000)
    conn.send_request(build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1")))
    conn.receive_data(b"HTTP/1.1 200 OK\r\nX: " + b"a" * 2000)
    with pytest.raises(errors.RemoteProtocolError):
        conn.next_event()


def test_an_informational_response_is_skipped() -> None:
    conn, server = FetchConnection(), Server()
    request = build_query_request(ENDPOINT, settings(), HTTPQuery("SELECT 1"))
    server.receive(conn.send_request(request))
    data = server.h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
    conn.receive_data(data + server.respond(200, result([], [])))
    assert isinstance(conn.next_event(), FetchResponse)


# --------------------------------------------------------------------------- endpoints and secrets


@pytest.mark.parametrize(
    ("host", "jwt", "url"),
    [
        ("ep-cool-name-123.us-east-2.aws.neon.tech", False, "https://api.us-east-2.aws.neon.tech/sql"),
        ("ep-cool-name-123-pooler.us-east-2.aws.neon.tech", True, "https://apiauth.us-east-2.aws.neon.tech/sql"),
        ("localhost", False, "https://localhost/sql"),
        ("127.0.0.1", False, "https://127.0.0.1/sql"),
        ("::1", False, "https://[::1]/sql"),
    ],
)
def test_default_fetch_endpoint(host: str, jwt: bool, url: str) -> None:
    assert default_fetch_endpoint(host, 5432, jwt_auth=jwt) == url


def test_parse_endpoint() -> None:
    assert parse_endpoint("https://api.example.com/sql") == Endpoint("https", "api.example.com", 443, "/sql")
    e = parse_endpoint("http://[::1]:8080/sql?x=1")
    assert (e.host, e.port, e.target, e.host_header, e.tls) == ("::1", 8080, "/sql?x=1", "[::1]:8080", False)
    for bad in ("ftp://x/sql", "https:///sql", "https://user:pw@x/sql", "https://x:99999/sql"):
        with pytest.raises(errors.ProgrammingError):
            parse_endpoint(bad)


def test_reprs_never_show_the_password() -> None:
    s = settings()
    request = build_query_request(ENDPOINT, s, HTTPQuery("SELECT $1", ("p4ss",)), auth_token="tok3n")
    shown = repr(s) + repr(request) + repr(HTTPQuery("SELECT $1", ("p4ss",)))
    assert "s3cr" not in shown and "tok3n" not in shown and "p4ss" not in shown
