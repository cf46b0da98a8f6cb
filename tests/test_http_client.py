"""neon_sync.neon() end to end: our client, our proxy (neon_proxy), the real Postgres behind it."""

from __future__ import annotations

import datetime
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from neon_proto import errors
from neon_proto.http import HTTPStatusError
from neon_proto.results import Result
from neon_proto.types import Json
from neon_sync import Client, neon
from neon_sync.embedded import EmbeddedPostgres
from neon_sync.http import NeonHTTP, NeonQuery

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def sql(proxy: Any) -> Iterator[NeonHTTP]:
    """A neon() function pointed at the proxy, as the superuser on database postgres."""
    with neon(proxy.database_url(), fetch_endpoint=proxy.url) as s:
        yield s


@pytest.fixture
def db_sql(proxy: Any, fresh_db: str) -> Iterator[NeonHTTP]:
    """A neon() function on a fresh database with a table ``items (id int primary key, name text)``."""
    with neon(proxy.database_url(database=fresh_db), fetch_endpoint=proxy.url) as s:
        s("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        yield s


@pytest.fixture(scope="module")
def small_proxy(pg: EmbeddedPostgres) -> Iterator[Any]:
    """A proxy with 64 KiB request and response limits."""
    from neon_proxy.config import ProxyConfig
    from neon_proxy.testing import DevStack

    config = ProxyConfig(listen_port=0, max_request_size=64 * 1024, max_response_size=64 * 1024, shutdown_timeout=2.0)
    with DevStack(postgres=pg, config=config) as stack:
        yield stack


@pytest.fixture(scope="module")
def tls_proxy(pg: EmbeddedPostgres) -> Iterator[Any]:
    """A proxy serving HTTPS with a certificate for localhost and 127.0.0.1, from pg's test CA."""
    from neon_proxy.config import ProxyConfig
    from neon_proxy.testing import DevStack

    assert pg.server_cert_path and pg.server_key_path
    config = ProxyConfig(
        listen_port=0, tls_cert=pg.server_cert_path, tls_key=pg.server_key_path, shutdown_timeout=2.0
    )
    with DevStack(postgres=pg, config=config) as stack:
        yield stack


class Forwarder:
    """A loopback TCP forwarder in front of the proxy that counts connections and can
    misbehave on purpose: close idle connections, or swallow a request and hang up."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.swallowed = 0
        self.swallow_next = False
        self._clients: list[socket.socket] = []
        self._to_reset: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/sql") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self.connections += 1
                self._clients.append(client)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and self.swallow_next:
                    self.swallow_next = False
                    self.swallowed += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            if s in self._to_reset:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:  # the other direction's pump closed it already
                    pass
                s.close()  # with a zero linger: RST, no FIN
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close_idle_connections(self) -> None:
        """What a server's keep-alive timeout does: close every connection from its side."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reset_idle_connections(self) -> None:
        """Abort every connection with a TCP reset, as a crashed server would."""
        with self._lock:
            clients, self._clients = self._clients, []
            self._to_reset.update(clients)
        for client in clients:
            client.shutdown(socket.SHUT_RD)  # wakes its pump, which resets it

    def close(self) -> None:
        self.listener.close()
        self.close_idle_connections()


@pytest.fixture
def forwarder(proxy: Any) -> Iterator[Forwarder]:
    fwd = Forwarder(proxy.port)
    yield fwd
    fwd.close()


# --------------------------------------------------------------------------- single queries

UTC = datetime.timezone.utc


@pytest.mark.parametrize(
    ("cast", "value"),
    [
        ("int", 42),
        ("int8", 9007199254740993),
        ("float8", 1.25),
        ("text", "héllo 'quoted' \"double\" \\ back"),
        ("text", None),
        ("text", "NULL"),
        ("bool", True),
        ("bool", False),
        ("int[]", [1, None, 3]),
        ("text[]", ["a", "b,c", 'd"e', None, "NULL", ""]),
        ("int[][]", [[1, 2], [3, 4]]),
        ("bytea", b"\x00\x01\xfe\xff"),
        ("bytea", bytes(range(256)) * 256),
        ("timestamptz", datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)),
        ("timestamp", datetime.datetime(1999, 12, 31, 23, 59, 59)),
        ("date", datetime.date(2024, 2, 29)),
        ("interval", datetime.timedelta(days=3, seconds=7, microseconds=5)),
        ("numeric", Decimal("123456789012345678901234567890.000000001")),
        ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
        ("jsonb", {"a": [1, 2, {"b": None}], "c": "é"}),
        ("json", Json(["x", 1, True])),
    ],
)
def test_typed_parameters_round_trip(sql: NeonHTTP, cast: str, value: Any) -> None:
    rows = sql(f"SELECT $1::{cast} AS v", [value])
    expected = value.obj if isinstance(value, Json) else value
    assert rows == [{"v": expected}]


def test_an_untyped_parameter_comes_back_as_text(sql: NeonHTTP) -> None:
    assert sql("SELECT $1 AS v", [1]) == [{"v": "1"}]
    assert sql("SELECT $1 * 1 AS v", [42]) == [{"v": 42}]


def test_several_rows_and_columns(sql: NeonHTTP) -> None:
    rows = sql("SELECT g AS n, g::text || 'x' AS s FROM generate_series(1, 3) g")
    assert rows == [{"n": 1, "s": "1x"}, {"n": 2, "s": "2x"}, {"n": 3, "s": "3x"}]


def test_no_params_and_no_rows(sql: NeonHTTP) -> None:
    assert sql("SELECT 1 WHERE false") == []


def test_array_mode(sql: NeonHTTP) -> None:
    assert sql("SELECT 1 AS a, 'x' AS a", array_mode=True) == [[1, "x"]]


def test_a_later_duplicate_column_wins(sql: NeonHTTP) -> None:
    assert sql("SELECT 1 AS a, 'x' AS a") == [{"a": "x"}]


def test_full_results(sql: NeonHTTP) -> None:
    res = sql("SELECT 7 AS n", full_results=True)
    assert isinstance(res, Result)
    assert (res.rows, res.command, res.row_count, res.columns) == ([{"n": 7}], "SELECT", 1, ["n"])
    assert res.fields[0].type_oid == 23


def test_neon_level_options_and_call_overrides(proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=proxy.url, array_mode=True, full_results=True) as s:
        res = s("SELECT 1 AS n")
        assert isinstance(res, Result) and res.rows == [[1]]
        assert s("SELECT 1 AS n", array_mode=False, full_results=False) == [{"n": 1}]


def test_command_and_row_count(db_sql: NeonHTTP) -> None:
    res = db_sql("INSERT INTO items VALUES (1, 'a'), (2, 'b') RETURNING id", full_results=True)
    assert (res.command, res.row_count, res.rows) == ("INSERT", 2, [{"id": 1}, {"id": 2}])
    res = db_sql("UPDATE items SET name = 'c'", full_results=True)
    assert (res.command, res.row_count) == ("UPDATE", 2)
    res = db_sql("CREATE TABLE other (x int)", full_results=True)
    assert (res.command, res.row_count) == ("CREATE", None)


def test_query_objects_run_each_time_they_execute(db_sql: NeonHTTP) -> None:
    q = db_sql.query("INSERT INTO items SELECT coalesce(max(id), 0) + 1, 'n' FROM items RETURNING id")
    assert isinstance(q, NeonQuery)
    assert q.execute() == [{"id": 1}]
    assert q.execute() == [{"id": 2}]


def test_session_state_does_not_leak_into_the_next_request(sql: NeonHTTP) -> None:
    sql("BEGIN ISOLATION LEVEL SERIALIZABLE")
    assert sql("SHOW transaction_isolation") == [{"transaction_isolation": "read committed"}]
    sql("SET application_name = 'leak'")
    assert sql("SHOW application_name") != [{"application_name": "leak"}]


# --------------------------------------------------------------------------- transactions


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("ReadUncommitted", "read uncommitted"),
        ("ReadCommitted", "read committed"),
        ("RepeatableRead", "repeatable read"),
        ("Serializable", "serializable"),
    ],
)
def test_transaction_isolation_levels(sql: NeonHTTP, level: str, shown: str) -> None:
    results = sql.transaction([sql.query("SHOW transaction_isolation")], isolation_level=level)
    assert results == [[{"transaction_isolation": shown}]]


def test_transaction_returns_one_result_per_query(sql: NeonHTTP) -> None:
    results = sql.transaction(
        [sql.query("SELECT $1::int AS a", [1]), sql.query("SELECT 'x' AS b", array_mode=True)], full_results=False
    )
    assert results == [[{"a": 1}], [["x"]]]


def test_transaction_options_precedence(proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=proxy.url, full_results=True) as s:
        first, second, third = s.transaction(
            [s.query("SELECT 1 AS n"), s.query("SELECT 2 AS n", full_results=True), s.query("SELECT 3 AS n")],
            array_mode=True,
            full_results=False,
        )
        assert first == [[1]]
        assert isinstance(second, Result) and second.rows == [[2]]
        assert third == [[3]]


def test_transaction_takes_a_function(sql: NeonHTTP) -> None:
    results = sql.transaction(lambda txn: [txn.query("SELECT 1 AS n"), txn.query("SELECT 2 AS n")])
    assert results == [[{"n": 1}], [{"n": 2}]]


def test_an_empty_transaction_returns_an_empty_list(sql: NeonHTTP) -> None:
    assert sql.transaction([]) == []


@pytest.mark.parametrize("bad", ["SELECT 1", 42, ["SELECT 1"], lambda txn: "SELECT 1"])
def test_transaction_refuses_anything_else(sql: NeonHTTP, bad: Any) -> None:
    with pytest.raises(TypeError, match=r"^transaction\(\) expects an array of queries, or a function returning"):
        sql.transaction(bad)


def test_a_read_only_transaction_refuses_an_insert(db_sql: NeonHTTP) -> None:
    with pytest.raises(errors.InternalError) as info:
        db_sql.transaction([db_sql.query("INSERT INTO items VALUES (1, 'a')")], read_only=True)
    assert info.value.sqlstate == "25006"
    assert db_sql("SELECT count(*)::int AS n FROM items") == [{"n": 0}]


def test_a_deferrable_serializable_read_only_transaction(sql: NeonHTTP) -> None:
    results = sql.transaction(
        [sql.query("SHOW transaction_deferrable"), sql.query("SHOW transaction_read_only")],
        isolation_level="Serializable",
        read_only=True,
        deferrable=True,
    )
    assert results == [[{"transaction_deferrable": "on"}], [{"transaction_read_only": "on"}]]


def test_read_write_by_default(sql: NeonHTTP) -> None:
    assert sql.transaction([sql.query("SHOW transaction_read_only")]) == [[{"transaction_read_only": "off"}]]


def test_an_error_in_the_second_query_rolls_back_the_first(db_sql: NeonHTTP) -> None:
    db_sql("INSERT INTO items VALUES (1, 'a')")
    with pytest.raises(errors.IntegrityError) as info:
        db_sql.transaction(
            [db_sql.query("INSERT INTO items VALUES (2, 'b')"), db_sql.query("INSERT INTO items VALUES (1, 'dup')")]
        )
    assert info.value.sqlstate == "23505"
    assert db_sql("SELECT id FROM items ORDER BY id") == [{"id": 1}]


def test_a_successful_transaction_commits(db_sql: NeonHTTP) -> None:
    db_sql.transaction(
        [db_sql.query("INSERT INTO items VALUES ($1, $2)", [1, "a"]), db_sql.query("INSERT INTO items VALUES (2, 'b')")]
    )
    assert db_sql("SELECT id, name FROM items ORDER BY id", array_mode=True) == [[1, "a"], [2, "b"]]


# --------------------------------------------------------------------------- errors


def test_a_syntax_error_has_its_position(sql: NeonHTTP) -> None:
    with pytest.raises(errors.ProgrammingError) as info:
        sql("SELECT 1 FRM x")
    exc = info.value
    assert type(exc).__name__ == "SyntaxError"
    assert exc.sqlstate == "42601"
    assert exc.status == 400  # type: ignore[attr-defined]
    assert exc.diag.position == "14"  # "x": FRM was taken as a column alias
    assert exc.diag.severity == "ERROR"
    assert exc.diag.file and exc.diag.line and exc.diag.routine


def test_an_http_error_has_the_same_fields_as_over_tcp(sql: NeonHTTP, pg: EmbeddedPostgres) -> None:
    statement = "SELECT x FROM (SELECT 1 AS y) t"
    with pytest.raises(errors.ProgrammingError) as over_http:
        sql(statement)
    with Client(pg.dsn()) as client, pytest.raises(errors.ProgrammingError) as over_tcp:
        client.query(statement)
    http_diag, tcp_diag = over_http.value.diag, over_tcp.value.diag
    assert type(over_http.value) is type(over_tcp.value)
    for name in ("message", "code", "detail", "hint", "position", "severity", "file", "line", "routine"):
        assert getattr(http_diag, name) == getattr(tcp_diag, name), name


def test_constraint_errors_carry_table_schema_and_constraint(db_sql: NeonHTTP) -> None:
    db_sql("INSERT INTO items VALUES (1, 'a')")
    with pytest.raises(errors.IntegrityError) as info:
        db_sql("INSERT INTO items VALUES (1, 'b')")
    d = info.value.diag
    assert (d.code, d.table, d.schema, d.constraint) == ("23505", "items", "public", "items_pkey")
    assert d.detail == "Key (id)=(1) already exists."
    with pytest.raises(errors.IntegrityError) as info:
        db_sql("INSERT INTO items VALUES (2, NULL)")
    assert (info.value.diag.code, info.value.diag.column) == ("23502", "name")


def test_an_error_inside_a_function_has_where_and_internal_query(sql: NeonHTTP) -> None:
    statement = "DO $$ BEGIN PERFORM nope FROM (SELECT 1) s; END $$"
    with pytest.raises(errors.ProgrammingError) as info:
        sql(statement)
    d = info.value.diag
    assert d.code == "42703"
    assert d.where and "PL/pgSQL" in d.where
    assert d.internal_query and "nope" in d.internal_query
    assert d.internal_position is not None


def test_a_wrong_password_is_an_operational_error(proxy: Any) -> None:
    with neon(proxy.database_url("scram_user", "wrong"), fetch_endpoint=proxy.url) as s:
        with pytest.raises(errors.OperationalError, match="password authentication failed") as info:
            s("SELECT 1")
    assert info.value.sqlstate == "28P01"
    assert info.value.status == 400  # type: ignore[attr-defined]


def test_a_wrong_parameter_count_is_reported(sql: NeonHTTP) -> None:
    with pytest.raises(errors.OperationalError, match="bind message supplies 2 parameters"):
        sql("SELECT $1::int", [1, 2])


def test_an_auth_token_reaches_the_proxy(proxy: Any) -> None:
    # This proxy does not accept JWTs: its refusal proves the header was sent.
    with neon(proxy.database_url(), fetch_endpoint=proxy.url, auth_token=lambda: "eyJhbGciOi.x.y") as s:
        with pytest.raises(errors.OperationalError) as info:
            s("SELECT 1")
    assert info.value.status == 400  # type: ignore[attr-defined]
    assert "eyJhbGciOi" not in str(info.value)


def test_413_for_a_request_over_the_limit(small_proxy: Any) -> None:
    with neon(small_proxy.database_url(), fetch_endpoint=small_proxy.url) as s:
        with pytest.raises(HTTPStatusError) as info:
            s("SELECT length($1) AS n", ["x" * 200_000])
        assert info.value.status == 413
        assert "request is too large" in str(info.value)
        assert s("SELECT 1 AS n") == [{"n": 1}]  # the sql object is still usable


def test_413_for_a_request_far_over_the_limit(small_proxy: Any) -> None:
    # Megabytes the proxy refuses to read: the answer arrives while we are still sending.
    with neon(small_proxy.database_url(), fetch_endpoint=small_proxy.url, timeout=20) as s:
        with pytest.raises(HTTPStatusError) as info:
            s("SELECT length($1) AS n", ["x" * 8_000_000])
        assert info.value.status == 413


def test_507_for_a_response_over_the_limit(small_proxy: Any) -> None:
    with neon(small_proxy.database_url(), fetch_endpoint=small_proxy.url) as s:
        with pytest.raises(HTTPStatusError) as info:
            s("SELECT repeat('x', 1000) FROM generate_series(1, 200)")
        assert info.value.status == 507
        assert str(info.value) == "Server error (HTTP status 507): response is too large (max is 65536 bytes)"
        assert s("SELECT 1 AS n") == [{"n": 1}]


def test_a_large_request_and_response_under_the_limits(sql: NeonHTTP) -> None:
    value = "é" * 2_000_000
    assert sql("SELECT $1::text AS v", [value]) == [{"v": value}]


def test_a_wrong_path_is_a_400_with_the_proxy_message(proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=proxy.url.replace("/sql", "/other")) as s:
        with pytest.raises(HTTPStatusError) as info:
            s("SELECT 1")
    assert info.value.status == 400
    assert str(info.value) == "Server error (HTTP status 400): query is not supported"


def test_an_unreachable_upstream_is_a_500(pg: EmbeddedPostgres) -> None:
    from neon_proxy.config import ProxyConfig
    from neon_proxy.testing import DevStack

    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead_port = free.getsockname()[1]
    free.close()
    config = ProxyConfig(listen_port=0, endpoints={"dead": f"postgres://127.0.0.1:{dead_port}?sslmode=disable"})
    with DevStack(postgres=pg, config=config) as stack:
        with neon(stack.database_url(host="dead.localhost"), fetch_endpoint=stack.url) as s:
            with pytest.raises(HTTPStatusError) as info:
                s("SELECT 1")
    assert info.value.status == 500


def test_nothing_listening_is_an_error_connecting() -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with neon("postgresql://someone:s3cret-pw@ep.localhost/db", fetch_endpoint=f"http://127.0.0.1:{port}/sql") as s:
        with pytest.raises(errors.OperationalError, match=f"^Error connecting to database at 127.0.0.1:{port}: ") as info:
            s("SELECT 1")
    assert "s3cret" not in str(info.value) and "someone" not in str(info.value)



# --------------------------------------------------------------------------- timeouts


def test_a_query_over_its_timeout_fails_fast(sql: NeonHTTP) -> None:
    start = time.monotonic()
    with pytest.raises(errors.OperationalError, match="timed out"):
        sql("SELECT pg_sleep(5)", timeout=0.3)
    assert time.monotonic() - start < 2
    assert sql("SELECT 1 AS n") == [{"n": 1}]


def test_the_neon_level_timeout_applies(proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=proxy.url, timeout=0.3) as s:
        with pytest.raises(errors.OperationalError, match="timed out"):
            s.transaction([s.query("SELECT pg_sleep(5)")])
        assert s("SELECT 1 AS ok FROM pg_sleep(0.01)", timeout=5) == [{"ok": 1}]


def test_a_connect_timeout() -> None:
    # A listener that never accepts: its backlog fills, then connecting blocks.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        with neon("postgresql://u:p@ep.localhost/db", fetch_endpoint=f"http://127.0.0.1:{port}/sql") as s:
            start = time.monotonic()
            with pytest.raises(errors.OperationalError, match="timed out"):
                s("SELECT 1", timeout=0.5)
            assert time.monotonic() - start < 3
    finally:
        for f in fillers:
            f.close()
        listener.close()


# --------------------------------------------------------------------------- keep-alive


def test_twenty_queries_open_one_connection(forwarder: Forwarder, proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        for i in range(20):
            assert s("SELECT $1::int AS n", [i]) == [{"n": i}]
        s.transaction([s.query("SELECT 1"), s.query("SELECT 2")])
        assert s.connections_opened == 1
    assert forwarder.connections == 1


def test_errors_keep_the_connection(forwarder: Forwarder, proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        for _ in range(3):
            with pytest.raises(errors.ProgrammingError):
                s("SELEC 1")
        assert s("SELECT 1 AS n") == [{"n": 1}]
    assert forwarder.connections == 1


def test_a_connection_the_server_closed_while_idle_is_replaced(forwarder: Forwarder, proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        assert s("SELECT 1 AS n") == [{"n": 1}]
        forwarder.close_idle_connections()
        time.sleep(0.1)
        assert s("SELECT 2 AS n") == [{"n": 2}]
        assert s.connections_opened == 2


def test_a_request_that_may_have_arrived_is_never_sent_again(forwarder: Forwarder, proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        assert s("SELECT 1 AS n") == [{"n": 1}]
        forwarder.swallow_next = True
        with pytest.raises(errors.OperationalError, match="may or may not have run"):
            s("SELECT 2 AS n")
        assert forwarder.swallowed == 1
        assert forwarder.connections == 1  # no silent second attempt
        assert s("SELECT 3 AS n") == [{"n": 3}]
        assert forwarder.connections == 2


def test_a_reset_connection_is_replaced_when_the_write_fails_at_once(
    forwarder: Forwarder, proxy: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Without the idle check, the first write hits the reset: no byte left, so one retry is safe.
    from neon_sync import http as neon_http

    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        assert s("SELECT 1 AS n") == [{"n": 1}]
        monkeypatch.setattr(neon_http._HTTPConnection, "is_alive", lambda self: True)
        forwarder.reset_idle_connections()
        time.sleep(0.1)
        with caplog.at_level("DEBUG", logger="neon_sync"):
            assert s("SELECT 2 AS n") == [{"n": 2}]
        assert "reconnecting" in caplog.text
        assert s.connections_opened == 2


def test_a_connection_reset_while_idle_is_replaced(forwarder: Forwarder, proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        assert s("SELECT 1 AS n") == [{"n": 1}]
        forwarder.reset_idle_connections()
        time.sleep(0.1)
        assert s("SELECT 2 AS n") == [{"n": 2}]
        assert s.connections_opened == 2


def test_idle_connections_expire_on_the_client(forwarder: Forwarder, proxy: Any) -> None:
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url(), idle_timeout=0.05) as s:
        s("SELECT 1")
        time.sleep(0.1)
        s("SELECT 1")
        assert s.connections_opened == 2


def test_threads_share_a_small_pool(forwarder: Forwarder, proxy: Any) -> None:
    failures: list[BaseException] = []
    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:

        def work(k: int) -> None:
            try:
                for i in range(25):
                    assert s("SELECT $1::int AS n", [k * 100 + i]) == [{"n": k * 100 + i}]
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures
        assert 1 <= s.connections_opened <= 6


# --------------------------------------------------------------------------- HTTPS


def test_https_with_a_custom_ca(tls_proxy: Any, pg: EmbeddedPostgres) -> None:
    for host in ("localhost", "127.0.0.1"):
        url = f"https://{host}:{tls_proxy.port}/sql"
        with neon(tls_proxy.database_url(), fetch_endpoint=url, sslrootcert=pg.ca_cert_path) as s:
            assert s("SELECT 1 AS n") == [{"n": 1}]
            assert s("SELECT 2 AS n") == [{"n": 2}]
            assert s.connections_opened == 1


def test_https_refuses_an_unknown_ca(tls_proxy: Any) -> None:
    with neon(tls_proxy.database_url(), fetch_endpoint=f"https://localhost:{tls_proxy.port}/sql") as s:
        with pytest.raises(errors.OperationalError, match="certificate verification failed"):
            s("SELECT 1")


def test_https_checks_the_host_name(tls_proxy: Any, pg: EmbeddedPostgres) -> None:
    # The certificate names localhost and 127.0.0.1, not 127.0.0.2.
    url = f"https://127.0.0.2:{tls_proxy.port}/sql"
    with neon(tls_proxy.database_url(), fetch_endpoint=url, sslrootcert=pg.ca_cert_path) as s:
        with pytest.raises(errors.OperationalError):
            s("SELECT 1")


# --------------------------------------------------------------------------- same results as TCP

CORPUS = [
    "SELECT 1::int2 AS a, 2::int4 AS b, 9007199254740993::int8 AS c, 1.5::float4 AS d, 'NaN'::float8 AS e",
    "SELECT 12.3400::numeric AS a, 'NaN'::numeric AS b, '$1.50'::money AS c",
    "SELECT 'x'::text AS a, 'y'::varchar(3) AS b, 'z'::char(3) AS c, 'n'::name AS d, ''::text AS e",
    "SELECT true AS a, false AS b, NULL::bool AS c, 'NULL'::text AS d",
    "SELECT '\\x00ff'::bytea AS a, ''::bytea AS b",
    "SELECT '2024-02-29'::date AS a, '12:34:56.789'::time AS b, '12:34:56+05:30'::timetz AS c",
    "SELECT '2024-01-02 03:04:05.678'::timestamp AS a, '2024-01-02 03:04:05.678+02'::timestamptz AS b",
    "SELECT '1 year 2 mons 3 days 04:05:06.7'::interval AS a, '-1 day'::interval AS b",
    "SELECT '12345678-1234-5678-1234-567812345678'::uuid AS a",
    "SELECT '{\"a\": [1, 2.5, null]}'::json AS a, '{\"b\": \"é\"}'::jsonb AS b, 'null'::jsonb AS c",
    "SELECT ARRAY[1, NULL, 3] AS a, ARRAY['a', 'b,c', 'd\"e', NULL, 'NULL'] AS b, '{}'::int[] AS c",
    "SELECT ARRAY[[1, 2], [3, 4]] AS a, ARRAY[true, false] AS b, ARRAY['2024-01-01'::date] AS c",
    "SELECT '(1,2)'::point AS a, '<(1,2),3>'::circle AS b, '192.168.0.1/24'::inet AS c, '10.0.0.0/8'::cidr AS d",
    "SELECT int4range(1, 10) AS a, '[2024-01-01,2024-02-01)'::daterange AS b, ROW(1, 'x') AS c",
    "SELECT g AS n, md5(g::text) AS h FROM generate_series(1, 50) g",
    "SELECT oid, relname FROM pg_class WHERE relname = 'pg_type'",
]


@pytest.mark.parametrize("statement", CORPUS)
def test_results_equal_tcp_results(sql: NeonHTTP, pg: EmbeddedPostgres, statement: str) -> None:
    over_http = sql(statement, full_results=True)
    with Client(pg.dsn()) as client:
        over_tcp = client.query(statement)
    assert over_http.fields == over_tcp.fields
    assert repr(over_http.rows) == repr(over_tcp.rows)  # repr: NaN is not equal to itself
    assert (over_http.command, over_http.row_count) == (over_tcp.command, over_tcp.row_count)


def test_table_columns_carry_table_oid_and_column_number(db_sql: NeonHTTP, pg: EmbeddedPostgres) -> None:
    db_sql("INSERT INTO items VALUES (1, 'a')")
    res = db_sql("SELECT name, id FROM items", full_results=True)
    (table_oid,) = db_sql("SELECT 'items'::regclass::oid AS o", array_mode=True)[0]
    assert [(f.name, f.table_oid, f.column_id) for f in res.fields] == [("name", table_oid, 2), ("id", table_oid, 1)]


# --------------------------------------------------------------------------- endpoints and processes


def test_fetch_endpoint_as_a_function(proxy: Any) -> None:
    seen: list[tuple[str, int]] = []

    def endpoint(host: str, port: int) -> str:
        seen.append((host, port))
        return str(proxy.url)

    with neon(proxy.database_url(host="ep-fn.localhost"), fetch_endpoint=endpoint) as s:
        assert s("SELECT 1 AS n") == [{"n": 1}]
    assert seen == [("ep-fn.localhost", proxy.pg.port)]


def test_a_forked_child_opens_its_own_connection(forwarder: Forwarder, proxy: Any) -> None:
    import os

    with neon(proxy.database_url(), fetch_endpoint=forwarder.url()) as s:
        assert s("SELECT 1 AS n") == [{"n": 1}]
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                ok = s("SELECT 2 AS n") == [{"n": 2}] and s.connections_opened == 2
                os.write(write_end, b"ok" if ok else b"bad")
            finally:
                os._exit(0)
        os.close(write_end)
        answer = os.read(read_end, 16)
        os.close(read_end)
        os.waitpid(pid, 0)
        assert answer == b"ok"
        assert s("SELECT 3 AS n") == [{"n": 3}]  # the parent's connection is intact
        assert s.connections_opened == 1
    assert forwarder.connections == 2
