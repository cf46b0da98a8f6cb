"""neon_proxy against real Postgres, spoken to with a plain HTTP client (http.client)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from neon_proxy.config import ProxyConfig
from neon_proxy.response import ERROR_KEYS
from neon_proxy.testing import DevStack, ProxyThread, upstream_url
from neon_sync.embedded import EmbeddedPostgres

MAX = 10 * 1024 * 1024
RESULT_KEYS = ["fields", "rows", "command", "rowCount", "rowAsArray"]
FIELD_KEYS = ["name", "dataTypeID", "tableID", "columnID", "dataTypeSize", "dataTypeModifier", "format"]


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


def request(
    port: int,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    method: str = "POST",
    path: str = "/sql",
    connection: http.client.HTTPConnection | None = None,
) -> Response:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    result = Response(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    if connection is None:
        conn.close()
    return result


def neon_headers(url: str, *, raw: bool = True, array: bool = True, **extra: str) -> dict[str, str]:
    headers = {"Neon-Connection-String": url}
    if raw:
        headers["Neon-Raw-Text-Output"] = "true"
    if array:
        headers["Neon-Array-Mode"] = "true"
    headers.update(extra)
    return headers


class Sql:
    """Posts queries to the proxy fixture as one user on one database."""

    def __init__(self, proxy: DevStack, user: str | None = None, database: str = "postgres", **url: Any) -> None:
        self.proxy = proxy
        self.port = proxy.port
        self.url = proxy.database_url(user, database=database, **url)

    def post(self, body: Any, *, raw: bool = True, array: bool = True, **extra: Any) -> Response:
        return request(self.port, body, headers=neon_headers(self.url, raw=raw, array=array, **extra))

    def ok(self, query: str, params: list[Any] | None = None, **options: Any) -> Any:
        body: dict[str, Any] = {"query": query, "params": params or []}
        response = self.post(body, **options)
        assert response.status == 200, response
        return response.json

    def rows(self, query: str, params: list[Any] | None = None, **options: Any) -> list[Any]:
        rows: list[Any] = self.ok(query, params, **options)["rows"]
        return rows


@pytest.fixture
def sql(proxy: DevStack) -> Sql:
    return Sql(proxy)


@pytest.fixture
def db_sql(proxy: DevStack, fresh_db: str) -> Sql:
    return Sql(proxy, database=fresh_db)


def backend_activity(pg: EmbeddedPostgres, marker: str) -> list[tuple[int, str]]:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, state FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()", [f"%{marker}%"]
        ).fetchall()
    return [(int(pid), str(state)) for pid, state in rows]


# ---------------------------------------------------------------------- success shapes


def test_single_query_shape_key_order_and_text_cells(sql: Sql) -> None:
    response = sql.post({"query": "SELECT $1 AS a, 2 AS b, NULL::int AS c, 'NULL' AS d, true AS e", "params": [42]})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    uuid.UUID(response.headers["neon-request-id"])
    body = response.json
    assert list(body) == RESULT_KEYS
    assert [list(f) for f in body["fields"]] == [FIELD_KEYS] * 5
    assert body["fields"][0] == {
        "name": "a", "dataTypeID": 25, "tableID": 0, "columnID": 0,
        "dataTypeSize": -1, "dataTypeModifier": -1, "format": "text",
    }  # fmt: skip
    assert body["rows"] == [["42", "2", None, "NULL", "t"]]
    assert (body["command"], body["rowCount"], body["rowAsArray"]) == ("SELECT", 1, True)


def test_object_rows_when_array_mode_is_off_and_a_later_duplicate_name_wins(sql: Sql) -> None:
    body = sql.ok("SELECT 1 AS a, 2 AS b, 3 AS a", array=False)
    assert body["rows"] == [{"a": "3", "b": "2"}]
    assert body["rowAsArray"] is False
    # The per-query arrayMode overrides the header.
    assert sql.post({"query": "SELECT 1 AS a", "arrayMode": False}).json["rows"] == [{"a": "1"}]
    assert sql.post({"query": "SELECT 1 AS a", "arrayMode": True}, array=False).json["rows"] == [["1"]]


def test_fields_carry_table_and_column_ids(db_sql: Sql) -> None:
    db_sql.ok("CREATE TABLE t (id int, name varchar(10))")
    fields = db_sql.ok("SELECT name, id FROM t")["fields"]
    assert [f["columnID"] for f in fields] == [2, 1]
    assert fields[0]["tableID"] > 0 and fields[0]["dataTypeID"] == 1043 and fields[0]["dataTypeModifier"] == 14


def test_untyped_param_is_text_and_typed_context_is_a_number(sql: Sql) -> None:
    assert sql.rows("SELECT $1 AS v", [42]) == [["42"]]
    body = sql.ok("SELECT $1 AS v, $2 * 1 AS n", [42, 42], raw=False)
    assert body["rows"] == [["42", 42]]
    assert [f["dataTypeID"] for f in body["fields"]] == [25, 23]


def test_native_json_params(sql: Sql) -> None:
    params = [None, True, 1.5, {"a": [1, "x"]}, [1, None, "a b", [2, 3]], "NULL", "x\ny"]
    rows = sql.rows("SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text", params)
    assert rows == [[None, "true", "1.5", '{"a":[1,"x"]}', '{1,NULL,"a b",{2,3}}', "NULL", "x\ny"]]
    assert sql.rows("SELECT $1::int[] AS a", [[1, 2, None]]) == [["{1,2,NULL}"]]


def test_non_raw_cells(db_sql: Sql) -> None:
    db_sql.ok("CREATE TYPE mood AS ENUM ('happy', 'sad')")
    body = db_sql.ok(
        "SELECT true AS b, 2::int2 AS s, 3 AS i, 4::int8 AS l, 1.50::numeric AS n, 'NaN'::float8 AS f, 0.5::float4 AS g,"
        " '{\"k\": [1, null]}'::jsonb AS j, ARRAY[[1,2],[3,NULL]] AS a, ARRAY['x y', NULL] AS t,"
        " ARRAY['happy', 'sad']::mood[] AS e, 'sad'::mood AS m, '\\x0102'::bytea AS by",
        raw=False,
    )
    assert body["rows"] == [
        [True, 2, 3, "4", "1.50", "NaN", 0.5, {"k": [1, None]}, [[1, 2], [3, None]], ["x y", None],
         ["happy", "sad"], "sad", "\\x0102"]
    ]  # fmt: skip


def test_command_and_row_count_pairs(db_sql: Sql) -> None:
    def summary(query: str) -> tuple[str, Any]:
        body = db_sql.ok(query)
        return body["command"], body["rowCount"]

    assert summary("CREATE TABLE t (n int)") == ("CREATE", None)
    assert summary("INSERT INTO t VALUES (1), (2) RETURNING n") == ("INSERT", 2)
    assert db_sql.rows("INSERT INTO t VALUES (3) RETURNING n") == [["3"]]
    assert summary("UPDATE t SET n = n + 1") == ("UPDATE", 3)
    assert summary("SELECT * FROM t") == ("SELECT", 3)
    assert summary("DELETE FROM t WHERE n > 3") == ("DELETE", 1)
    assert summary("DROP TABLE t") == ("DROP", None)


def test_each_auth_method_through_the_proxy(proxy: DevStack) -> None:
    for user in ("trust_user", "cleartext_user", "md5_user", "scram_user"):
        assert Sql(proxy, user).rows("SELECT current_user") == [[user]]


def test_keep_alive_serves_many_requests_on_one_connection(proxy: DevStack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    headers = neon_headers(proxy.database_url())
    for i in range(5):
        response = request(0, {"query": "SELECT $1::int AS i", "params": [i]}, headers=headers, connection=conn)
        assert response.status == 200 and response.json["rows"] == [[str(i)]]
    conn.close()


# ---------------------------------------------------------------------- errors


def test_postgres_error_is_400_with_every_field(db_sql: Sql) -> None:
    response = db_sql.post({"query": "SELECT missing_column FROM pg_class"})
    assert response.status == 400
    body = response.json
    assert list(body) == list(ERROR_KEYS)
    assert body["message"] == 'column "missing_column" does not exist'
    assert (body["code"], body["severity"], body["position"]) == ("42703", "ERROR", "8")
    assert isinstance(body["line"], str) and body["file"] and body["routine"]
    assert body["detail"] is None and body["internalQuery"] is None

    db_sql.ok("CREATE TABLE t (n int CONSTRAINT t_pkey PRIMARY KEY)")
    db_sql.ok("INSERT INTO t VALUES (1)")
    body = db_sql.post({"query": "INSERT INTO t VALUES ($1)", "params": [1]}).json
    assert body["code"] == "23505" and body["detail"] == "Key (n)=(1) already exists."
    assert (body["schema"], body["table"], body["constraint"]) == ("public", "t", "t_pkey")

    body = db_sql.post({"query": "DO $$ BEGIN PERFORM nosuch; END $$"}).json
    assert body["internalQuery"] == "SELECT nosuch" and body["internalPosition"] == "8" and body["position"] is None
    assert "PL/pgSQL" in body["where"]


def test_wrong_parameter_count_is_postgres_bind_error(sql: Sql) -> None:
    response = sql.post({"query": "SELECT $1", "params": [1, 2]})
    assert response.status == 400
    assert response.json["message"] == 'bind message supplies 2 parameters, but prepared statement "" requires 1'


def test_wrong_password_is_400_from_postgres(proxy: DevStack) -> None:
    response = Sql(proxy, "scram_user", password="wrong").post({"query": "SELECT 1"})
    assert response.status == 400
    assert response.json["message"] == 'password authentication failed for user "scram_user"'
    assert response.json["code"] == "28P01"
    assert "wrong" not in response.body.decode()
    # The right password still works afterwards: nothing about the failure was cached.
    assert Sql(proxy, "scram_user").rows("SELECT 1") == [["1"]]


@pytest.mark.parametrize(
    ("url", "extra", "message"),
    [
        (None, {}, "invalid header: neon-connection-string"),
        ("nonsense", {}, "invalid connection string: relative URL without a base"),
        ("mysql://u:p@localhost/db", {}, "incorrect scheme"),
        ("postgresql://u:p@localhost", {}, "missing database name"),
        ("postgresql://:p@localhost/postgres", {}, "missing username"),
        ("postgresql://postgres@localhost/postgres", {}, "missing authentication credentials: required password"),
        ("GOOD", {"Authorization": "Bearer abc.def.ghi"}, "missing authentication credentials: required password"),
        ("GOOD", {"Neon-Batch-Isolation-Level": "Chaos"}, "invalid isolation level"),
    ],
)
def test_bad_headers_are_400(proxy: DevStack, url: str | None, extra: dict[str, str], message: str) -> None:
    headers = dict(extra)
    if url is not None:
        headers["Neon-Connection-String"] = proxy.database_url() if url == "GOOD" else url
    response = request(proxy.port, {"query": "SELECT 1"}, headers=headers)
    assert response.status == 400
    assert response.json["message"] == message
    assert (response.json["code"], response.json["severity"]) == ("", "")
    assert list(response.json) == list(ERROR_KEYS)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "could not parse the HTTP request body: Expecting property name enclosed in double quotes"),
        (b'{"query": 42}', "could not parse the HTTP request body: data did not match any variant of untagged enum Payload"),
    ],
)
def test_bad_json_is_400(sql: Sql, body: bytes, message: str) -> None:
    response = sql.post(body)
    assert response.status == 400
    assert response.json["message"].startswith(message)


def test_request_over_the_limit_is_413(sql: Sql) -> None:
    body = json.dumps({"query": "SELECT $1", "params": ["x" * MAX]}).encode()
    response = sql.post(body)
    assert response.status == 413
    assert response.json["message"] == f"request is too large (max is {MAX} bytes)"
    # Just under the limit is fine.
    small = sql.post({"query": "SELECT length($1)", "params": ["x" * (MAX - 100)]})
    assert small.status == 200 and small.json["rows"] == [[str(MAX - 100)]]


def test_response_over_the_limit_is_507_and_the_query_stops(proxy: DevStack, sql: Sql) -> None:
    marker = f"cross_join_{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    response = sql.post({"query": f"SELECT a, b, '{marker}' FROM generate_series(1, 100000) a, generate_series(1, 100000) b"})
    assert response.status == 507
    assert response.json["message"] == f"response is too large (max is {MAX} bytes)"
    assert time.monotonic() - started < 10
    assert [s for _, s in backend_activity(proxy.pg, marker) if s == "active"] == []
    assert sql.rows("SELECT 1") == [["1"]]


def test_other_paths_and_methods_are_400_not_supported(proxy: DevStack) -> None:
    port = proxy.port
    for method, path in (("POST", "/other"), ("GET", "/sql"), ("POST", "/sql/"), ("PUT", "/")):
        response = request(port, b"{}", method=method, path=path)
        assert response.status == 400
        assert response.json == "query is not supported"
        assert response.headers["access-control-allow-origin"] == "*" and "neon-request-id" in response.headers


def test_options_is_cors_preflight(proxy: DevStack) -> None:
    response = request(proxy.port, method="OPTIONS")
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = [h.strip() for h in response.headers["access-control-allow-headers"].split(",")]
    assert "Authorization" in allowed and "Neon-Connection-String" in allowed
    assert {"Neon-Raw-Text-Output", "Neon-Array-Mode", "Neon-Batch-Isolation-Level", "Neon-Batch-Read-Only"} <= set(allowed)
    assert "Neon-Batch-Deferrable" not in allowed
    assert response.headers["access-control-max-age"] == "86400"


def test_websocket_upgrade_of_another_version_is_refused(proxy: DevStack) -> None:
    # The upgrade itself is tested in test_ws_proxy.py; an unusable one gets a plain HTTP answer.
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8"}
    response = request(proxy.port, method="GET", path="/v2", headers=headers)
    assert response.status == 426
    assert "only 13" in response.json["message"]
    assert response.headers["sec-websocket-version"] == "13"  # RFC 6455 4.4


# ---------------------------------------------------------------------- batches


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("ReadUncommitted", "read uncommitted"),
        ("ReadCommitted", "read committed"),
        ("RepeatableRead", "repeatable read"),
        ("Serializable", "serializable"),
    ],
)
def test_batch_isolation_levels_are_applied_and_echoed(sql: Sql, level: str, shown: str) -> None:
    response = sql.post(
        {"queries": [{"query": "SHOW transaction_isolation"}, {"query": "SELECT 1 AS one", "arrayMode": False}]},
        **{"Neon-Batch-Isolation-Level": level},  # type: ignore[arg-type]
    )
    assert response.status == 200
    assert response.headers["neon-batch-isolation-level"] == level
    assert "neon-batch-read-only" not in response.headers
    results = response.json["results"]
    assert list(response.json) == ["results"] and list(results[0]) == RESULT_KEYS
    assert results[0]["rows"] == [[shown]]
    assert results[1]["rows"] == [{"one": "1"}] and results[1]["rowAsArray"] is False


def test_batch_read_only_rejects_writes_and_rolls_back(db_sql: Sql) -> None:
    db_sql.ok("CREATE TABLE t (n int)")
    flags: dict[str, Any] = {"Neon-Batch-Read-Only": "true", "Neon-Batch-Deferrable": "true", "Neon-Batch-Isolation-Level": "Serializable"}
    shown = db_sql.post({"queries": [{"query": "SHOW transaction_read_only"}, {"query": "SHOW transaction_deferrable"}]}, **flags)
    assert shown.status == 200
    assert [r["rows"] for r in shown.json["results"]] == [[["on"]], [["on"]]]
    assert shown.headers["neon-batch-read-only"] == "true" and shown.headers["neon-batch-deferrable"] == "true"
    refused = db_sql.post({"queries": [{"query": "SELECT 1"}, {"query": "INSERT INTO t VALUES (1)"}]}, **flags)
    assert refused.status == 400
    assert refused.json["code"] == "25006"
    assert "neon-batch-read-only" not in refused.headers
    assert db_sql.rows("SELECT count(*) FROM t") == [["0"]]


def test_batch_error_rolls_back_everything_and_reports_one_error(db_sql: Sql) -> None:
    db_sql.ok("CREATE TABLE t (n int PRIMARY KEY)")
    response = db_sql.post(
        {"queries": [
            {"query": "INSERT INTO t VALUES ($1)", "params": [1]},
            {"query": "INSERT INTO t VALUES ($1)", "params": [1]},
            {"query": "INSERT INTO t VALUES ($1)", "params": [2]},
        ]}  # fmt: skip
    )
    assert response.status == 400
    assert response.json["code"] == "23505" and "results" not in response.json
    assert db_sql.rows("SELECT count(*) FROM t") == [["0"]]
    ok = db_sql.post({"queries": [{"query": "INSERT INTO t VALUES (1) RETURNING n"}, {"query": "SELECT count(*) FROM t"}]})
    assert [r["rows"] for r in ok.json["results"]] == [[["1"]], [["1"]]]
    assert db_sql.rows("SELECT count(*) FROM t") == [["1"]]


def test_empty_batch(sql: Sql) -> None:
    response = sql.post({"queries": []})
    assert response.status == 200 and response.json == {"results": []}


# ---------------------------------------------------------------------- pooling and reset


def test_session_state_does_not_leak_between_requests(proxy: DevStack) -> None:
    sql = Sql(proxy, "md5_user")
    assert sql.rows("BEGIN") == []
    first = sql.rows("SELECT pg_backend_pid()::text, txid_current()::text")
    second = sql.rows("SELECT pg_backend_pid()::text, txid_current()::text")
    assert first[0][0] == second[0][0], "the pooled connection is reused"
    assert first[0][1] != second[0][1], "each request runs in its own transaction"
    sql.ok("SET search_path = nowhere")
    sql.ok("CREATE TEMP TABLE leaked (n int)")
    sql.ok("PREPARE p AS SELECT 1")
    sql.ok("SELECT pg_advisory_lock(4242)")
    after = sql.rows(
        "SELECT pg_backend_pid()::text, current_setting('search_path'), to_regclass('pg_temp.leaked')::text,"
        " (SELECT count(*) FROM pg_prepared_statements)::text,"
        " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())::text"
    )
    assert after == [[first[0][0], '"$user", public', None, "0", "0"]]


def test_errored_single_query_connection_is_dropped(proxy: DevStack) -> None:
    sql = Sql(proxy, "cleartext_user")
    pid = sql.rows("SELECT pg_backend_pid()")[0][0]
    assert sql.post({"query": "SELECT 1/0"}).status == 400
    assert sql.rows("SELECT pg_backend_pid()")[0][0] != pid


def test_server_closing_an_idle_pooled_connection_is_noticed(proxy: DevStack) -> None:
    sql = Sql(proxy, "trust_user")
    pid = sql.rows("SELECT pg_backend_pid()")[0][0]
    with psycopg.connect(proxy.pg.dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s::int)", [pid])
    time.sleep(0.2)
    assert sql.rows("SELECT 1") == [["1"]]


def test_client_vanishing_mid_query_cancels_it(proxy: DevStack, sql: Sql) -> None:
    marker = f"vanish_{uuid.uuid4().hex[:8]}"
    body = json.dumps({"query": f"SELECT pg_sleep(5), '{marker}'"}).encode()
    head = (
        f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {sql.url}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", sql.port))
    sock.sendall(head + body)
    deadline = time.monotonic() + 5
    while not [s for _, s in backend_activity(proxy.pg, marker) if s == "active"]:
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.02)
    sock.close()
    closed_at = time.monotonic()
    while [s for _, s in backend_activity(proxy.pg, marker) if s == "active"]:
        assert time.monotonic() - closed_at < 1.5, "the query was not cancelled"
        time.sleep(0.02)
    assert sql.rows("SELECT 2") == [["2"]]


def test_many_concurrent_requests(proxy: DevStack) -> None:
    sql = Sql(proxy)
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        response = sql.post({"query": "SELECT $1::int AS i, pg_sleep(0.05)", "params": [i]})
        results[i] = (response.status, response.json["rows"][0][0] if response.status == 200 else response.body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: (200, str(i)) for i in range(50)}
    assert proxy.server.pool.size <= 20 + 10  # per-key limit (plus other tests' keys)


# ---------------------------------------------------------------------- upstream routing and lifecycle


@pytest.fixture
def routed(pg: EmbeddedPostgres) -> Iterator[ProxyThread]:
    config = ProxyConfig(
        listen_port=0,
        endpoints={"alive": upstream_url(pg), "dead": "postgres://127.0.0.1:1?sslmode=disable"},
        connect_timeout=3,
        shutdown_timeout=5,
    )
    with ProxyThread(config) as thread:
        yield thread


def test_endpoint_table_routes_by_connection_string_host(routed: ProxyThread, pg: EmbeddedPostgres) -> None:
    password = pg.superuser_password

    def post(host: str) -> Response:
        url = f"postgresql://postgres:{password}@{host}/postgres"
        return request(routed.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url})

    assert post("alive-pooler.example.com").status == 200
    unreachable = post("dead.example.com")
    assert unreachable.status == 500
    assert unreachable.json["code"] == "" and unreachable.json["severity"] == ""
    assert "could not connect" in unreachable.json["message"] and password not in unreachable.body.decode()
    unknown = post("elsewhere.example.com")
    assert unknown.status == 400 and unknown.json["message"] == "password authentication failed for user 'postgres'"


def test_shutdown_finishes_in_flight_requests(pg: EmbeddedPostgres) -> None:
    thread = ProxyThread(ProxyConfig(listen_port=0, upstream=upstream_url(pg), shutdown_timeout=10)).start()
    url = DevStack(postgres=pg).database_url()
    outcome: list[Response] = []
    worker = threading.Thread(
        target=lambda: outcome.append(request(thread.port, {"query": "SELECT pg_sleep(0.5), 7"}, headers={"Neon-Connection-String": url}))
    )
    worker.start()
    time.sleep(0.2)
    thread.stop()
    worker.join(10)
    assert outcome and outcome[0].status == 200 and outcome[0].json["rows"] == [{"pg_sleep": "", "?column?": 7}]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", thread.port), timeout=1).close()


def test_https_proxy(pg: EmbeddedPostgres) -> None:
    import ssl

    assert pg.server_cert_path and pg.server_key_path and pg.ca_cert_path
    config = ProxyConfig(
        listen_port=0, upstream=upstream_url(pg), tls_cert=pg.server_cert_path, tls_key=pg.server_key_path
    )
    with ProxyThread(config) as thread:
        assert thread.url.startswith("https://")
        context = ssl.create_default_context(cafile=pg.ca_cert_path)
        conn = http.client.HTTPSConnection("localhost", thread.port, context=context, timeout=10)
        url = DevStack(postgres=pg).database_url()
        response = request(0, {"query": "SELECT 1"}, headers=neon_headers(url), connection=conn)
        assert response.status == 200 and response.json["rows"] == [["1"]]


def test_databases_are_separate_pool_keys(proxy: DevStack, fresh_db: str) -> None:
    assert Sql(proxy, database=fresh_db).rows("SELECT current_database()") == [[fresh_db]]
    assert Sql(proxy).rows("SELECT current_database()") == [["postgres"]]


def test_malformed_http_gets_400_and_the_proxy_keeps_serving(proxy: DevStack, sql: Sql) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert sql.rows("SELECT 1") == [["1"]]


def test_pipelined_requests_on_one_connection(proxy: DevStack, sql: Sql) -> None:
    def raw_request(n: int) -> bytes:
        body = json.dumps({"query": f"SELECT {n} AS n"}).encode()
        head = f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {sql.url}\r\nNeon-Array-Mode: true\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(raw_request(1) + raw_request(2))
        received = b""
        while received.count(b'"rows":') < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert received.index(b'"rows":[[1]]') < received.index(b'"rows":[[2]]')
