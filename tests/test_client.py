"""neon_sync.Client against a real PostgreSQL: connecting, querying, pipelines, the statement cache."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from neon_proto.errors import (
    ConnectionClosed,
    DataError,
    InterfaceError,
    OperationalError,
    PipelineAborted,
)
from neon_proto.session import Op
from neon_proto.sqlstate import (
    DivisionByZero,
    FeatureNotSupported,
    InvalidCatalogName,
    InvalidPassword,
    SyntaxError as PgSyntaxError,
    UndefinedTable,
    UniqueViolation,
)
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres

ROLES = ["trust_user", "cleartext_user", "md5_user", "scram_user", "postgres"]


@pytest.fixture
def client(pg: EmbeddedPostgres) -> Iterator[Client]:
    """The superuser over plain TCP (TLS has its own tests)."""
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


@pytest.fixture
def table(client: Client) -> str:
    """A fresh temporary table t(id int primary key, v text) on ``client``."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    client.query(f"CREATE TEMP TABLE {name} (id int PRIMARY KEY, v text)")
    return name


def spy(op: Op[Any], log: list[str], written: list[bytes] | None = None) -> Op[Any]:
    """Pass an operation through, logging each write ('w') and each read ('r')."""
    value: Any = None
    try:
        while True:
            out = op.send(value)
            log.append("r" if out is None else "w")
            if out is not None and written is not None:
                written.append(out)
            value = yield out
    except StopIteration as stop:
        return stop.value


def round_trips(log: list[str]) -> int:
    """How many times the client wrote after having read (or at first): each is a round trip."""
    trips = 0
    previous = "r"
    for step in log:
        if step == "w" and previous == "r":
            trips += 1
        previous = step
    return trips


# ---------------------------------------------------------------- connecting


@pytest.mark.parametrize("user", ROLES)
@pytest.mark.parametrize("sslmode", ["disable", "require"])
def test_connect_with_each_auth_method(pg: EmbeddedPostgres, user: str, sslmode: str) -> None:
    with Client(pg.dsn(user), sslmode=sslmode) as c:
        assert c.query("SELECT current_user AS me").rows == [{"me": user}]


def test_connect_with_keyword_parameters(pg: EmbeddedPostgres) -> None:
    role = pg.role("scram_user")
    with Client(host=pg.host, port=pg.port, user=role.name, password=role.password, dbname="postgres", sslmode="disable") as c:
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_connect_returns_the_client_and_is_idempotent(pg: EmbeddedPostgres) -> None:
    c = Client(pg.dsn(), sslmode="disable")
    try:
        assert c.connect() is c
        pid = c.backend_pid
        assert c.connect() is c
        assert c.backend_pid == pid
    finally:
        c.close()


def test_query_before_connect_is_an_interface_error(pg: EmbeddedPostgres) -> None:
    c = Client(pg.dsn(), sslmode="disable")
    with pytest.raises(InterfaceError, match="connect"):
        c.query("SELECT 1")


def test_context_manager_closes(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable") as c:
        assert not c.closed
    assert c.closed
    with pytest.raises(ConnectionClosed):
        c.query("SELECT 1")


def test_close_twice_is_harmless(client: Client) -> None:
    client.close()
    client.close()
    assert client.closed


def test_backend_pid_is_the_server_process(client: Client) -> None:
    assert client.query("SELECT pg_backend_pid() AS pid").rows[0]["pid"] == client.backend_pid


def test_server_parameters_are_reported(client: Client) -> None:
    params = client.server_parameters
    assert params["server_version"].split(".")[0].isdigit()
    assert params["client_encoding"] == "UTF8"
    assert params["integer_datetimes"] == "on"


def test_server_parameters_follow_set(client: Client) -> None:
    client.query("SET application_name = 'neon-tests'")
    assert client.server_parameters["application_name"] == "neon-tests"
    client.query("SET TimeZone = 'Asia/Tokyo'")
    assert client.server_parameters["TimeZone"] == "Asia/Tokyo"


def test_application_name_reaches_the_server(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", application_name="from-dsn") as c:
        assert c.query("SHOW application_name").rows == [{"application_name": "from-dsn"}]


def test_repr_names_user_host_and_state(client: Client, pg: EmbeddedPostgres) -> None:
    text = repr(client)
    assert "postgres@" in text and str(pg.port) in text and "connected" in text


# ---------------------------------------------------------------- queries


def test_query_with_params_returns_dict_rows(client: Client) -> None:
    result = client.query("SELECT $1::int AS n, $2::text AS s, $3::int AS missing", [42, "héllo", None])
    assert result.rows == [{"n": 42, "s": "héllo", "missing": None}]


def test_array_mode_returns_lists(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", array_mode=True) as c:
        assert c.query("SELECT 1 AS a, 'x' AS b").rows == [[1, "x"]]
        assert c.query("SELECT $1::int AS a", [2]).rows == [[2]]
        assert c.query("SELECT 1 AS a", array_mode=False).rows == [{"a": 1}]


def test_array_mode_per_query(client: Client) -> None:
    assert client.query("SELECT $1::int AS a, $2::int AS b", [1, 2], array_mode=True).rows == [[1, 2]]


def test_array_mode_keeps_duplicate_column_names(client: Client) -> None:
    assert client.query("SELECT 1 AS a, 2 AS a", array_mode=True).rows == [[1, 2]]


def test_result_fields_describe_the_columns(client: Client) -> None:
    result = client.query("SELECT 1::int4 AS a, 'x'::text AS b, true AS c")
    assert [(f.name, f.type_oid) for f in result.fields] == [("a", 23), ("b", 25), ("c", 16)]
    assert result.columns == ["a", "b", "c"]


def test_many_rows_arrive_complete(client: Client) -> None:
    result = client.query("SELECT g AS n, repeat('x', g % 50) AS s FROM generate_series(1, 20000) g")
    assert result.row_count == 20000
    assert len(result.rows) == 20000
    assert result.rows[-1] == {"n": 20000, "s": "x" * (20000 % 50)}


def test_a_large_value_arrives_whole(client: Client) -> None:
    result = client.query("SELECT repeat('ab', 2000000) AS big")
    assert result.rows[0]["big"] == "ab" * 2000000


@pytest.mark.parametrize(
    ("sql", "command", "row_count"),
    [
        ("INSERT INTO {t} VALUES (10, 'a'), (11, 'b')", "INSERT", 2),
        ("UPDATE {t} SET v = 'z'", "UPDATE", 3),
        ("DELETE FROM {t} WHERE id = 1", "DELETE", 1),
        ("SELECT * FROM {t}", "SELECT", 3),
        ("CREATE TEMP TABLE other_{t} (x int)", "CREATE", None),
    ],
)
def test_command_and_row_count(client: Client, table: str, sql: str, command: str, row_count: int | None) -> None:
    client.query(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    result = client.query(sql.format(t=table))
    assert (result.command, result.row_count) == (command, row_count)


def test_command_and_row_count_with_params(client: Client, table: str) -> None:
    result = client.query(f"INSERT INTO {table} VALUES ($1, $2), ($3, $4)", [1, "a", 2, "b"])
    assert (result.command, result.row_count, result.rows) == ("INSERT", 2, [])
    result = client.query(f"DELETE FROM {table} WHERE id = $1 RETURNING v", [2])
    assert (result.command, result.row_count, result.rows) == ("DELETE", 1, [{"v": "b"}])


def test_multi_statement_simple_query_returns_every_result(client: Client) -> None:
    results = client.simple_query("SELECT 1 AS a; SELECT 2 AS b, 3 AS c; SET search_path = public")
    assert [r.rows for r in results] == [[{"a": 1}], [{"b": 2, "c": 3}], []]
    assert [r.command for r in results] == ["SELECT", "SELECT", "SET"]


def test_query_without_params_returns_the_last_result(client: Client) -> None:
    assert client.query("SELECT 1 AS a; SELECT 2 AS b").rows == [{"b": 2}]


def test_empty_query_gives_an_empty_result(client: Client) -> None:
    result = client.query("")
    assert result.rows == [] and result.command is None
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_empty_statements_in_a_simple_query(client: Client) -> None:
    results = client.simple_query(";;")
    assert all(r.rows == [] for r in results)
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_execute_with_tuple_rows(client: Client) -> None:
    assert client.execute("SELECT $1::int, $2::text", [1, "a"]).rows == [(1, "a")]


def test_query_error_leaves_the_connection_usable(client: Client) -> None:
    with pytest.raises(UndefinedTable):
        client.query("SELECT * FROM no_such_table_here")
    with pytest.raises(UndefinedTable):
        client.query("SELECT * FROM no_such_table_here WHERE 1 = $1", [1])
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]
    assert client.transaction_status == "I"


def test_error_in_a_multi_statement_query_stops_the_rest(client: Client, table: str) -> None:
    with pytest.raises(DivisionByZero):
        client.query(f"INSERT INTO {table} VALUES (1, 'a'); SELECT 1/0; INSERT INTO {table} VALUES (2, 'b')")
    # A multi-statement simple query is one implicit transaction: the first insert is gone too.
    assert client.query(f"SELECT count(*) AS n FROM {table}").rows == [{"n": 0}]


def test_nul_in_a_string_parameter_is_a_data_error_before_sending(client: Client) -> None:
    log: list[str] = []
    with pytest.raises(DataError):
        client._run(spy(client.session.execute("SELECT $1::text", ["a\x00b"]), log))
    assert "w" not in log
    assert client.query("SELECT $1::text AS s", ["ab"]).rows == [{"s": "ab"}]


def test_nul_in_query_text_is_a_data_error(client: Client) -> None:
    with pytest.raises(DataError):
        client.query("SELECT '\x00'")
    with pytest.raises(DataError):
        client.query("SELECT $1::text, '\x00'", ["x"])
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_too_many_parameters_is_refused_locally(client: Client) -> None:
    params = list(range(70000))
    with pytest.raises(InterfaceError):
        client.query("SELECT " + ", ".join(f"${i + 1}::int" for i in range(10)), params)
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_wrong_parameter_count_is_a_server_error(client: Client) -> None:
    with pytest.raises(OperationalError) as info:
        client.query("SELECT $1::int, $2::int", [1])
    assert info.value.sqlstate == "08P01"  # the server's word for it: protocol_violation
    assert not client.closed
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_a_notice_does_not_disturb_the_result(client: Client) -> None:
    result = client.query("DO $$ BEGIN RAISE NOTICE 'hello'; END $$; SELECT 5 AS five")
    assert result.rows == [{"five": 5}]


# ---------------------------------------------------------------- transactions


def test_transaction_status_follows_the_transaction(client: Client) -> None:
    assert client.transaction_status == "I"
    client.query("BEGIN")
    assert client.transaction_status == "T"
    with pytest.raises(DivisionByZero):
        client.query("SELECT 1/0")
    assert client.transaction_status == "E"
    client.query("ROLLBACK")
    assert client.transaction_status == "I"


def test_transaction_status_with_extended_protocol(client: Client) -> None:
    client.query("BEGIN")
    with pytest.raises(DivisionByZero):
        client.query("SELECT 1/$1::int", [0])
    assert client.transaction_status == "E"
    client.query("ROLLBACK")
    assert client.transaction_status == "I"


# ---------------------------------------------------------------- pipeline


def test_pipeline_returns_results_in_order(client: Client) -> None:
    pipe = client.pipeline()
    pipe.add("SELECT $1::int AS a", [1])
    pipe.add("SELECT $1::text AS b", ["two"])
    pipe.add("SELECT 3 AS c")
    results = pipe.run()
    assert [r.rows for r in results] == [[{"a": 1}], [{"b": "two"}], [{"c": 3}]]  # type: ignore[union-attr]


def test_pipeline_sends_everything_in_one_round_trip(client: Client) -> None:
    from neon_proto.session import Query

    log: list[str] = []
    queries = [Query("SELECT $1::int AS n", [i]) for i in range(50)]
    client._run(spy(client.session.pipeline(queries, sync_each=True), log))
    assert round_trips(log) == 1
    assert [q.outcome().rows for q in queries] == [[{"n": i}] for i in range(50)]


def test_pipeline_error_fails_only_its_query(client: Client) -> None:
    pipe = client.pipeline()
    pipe.add("SELECT 1 AS a")
    pipe.add("SELECT 1/0")
    pipe.add("SELECT 3 AS c")
    first, second, third = pipe.run()
    assert first.rows == [{"a": 1}]  # type: ignore[union-attr]
    assert isinstance(second, DivisionByZero)
    assert third.rows == [{"c": 3}]  # type: ignore[union-attr]


def test_pipeline_query_objects_carry_their_outcome(client: Client) -> None:
    pipe = client.pipeline()
    ok = pipe.add("SELECT 1 AS a")
    bad = pipe.add("SELECT * FROM nowhere_at_all")
    pipe.run()
    assert ok.outcome().rows == [{"a": 1}]
    with pytest.raises(UndefinedTable):
        bad.outcome()


def test_atomic_pipeline_aborts_after_an_error(client: Client, table: str) -> None:
    pipe = client.pipeline()
    pipe.add(f"INSERT INTO {table} VALUES ($1, 'a')", [1])
    pipe.add(f"INSERT INTO {table} VALUES ($1, 'b')", [1])  # duplicate key
    pipe.add(f"INSERT INTO {table} VALUES ($1, 'c')", [3])
    first, second, third = pipe.run(atomic=True)
    assert isinstance(second, UniqueViolation)
    assert isinstance(third, PipelineAborted)
    # One Sync: one implicit transaction, so the first insert was rolled back as well.
    assert client.query(f"SELECT count(*) AS n FROM {table}").rows == [{"n": 0}]
    assert client.transaction_status == "I"


def test_atomic_pipeline_commits_when_all_succeed(client: Client, table: str) -> None:
    pipe = client.pipeline()
    for i in range(5):
        pipe.add(f"INSERT INTO {table} VALUES ($1, 'x')", [i])
    assert all(r.row_count == 1 for r in pipe.run(atomic=True))  # type: ignore[union-attr]
    assert client.query(f"SELECT count(*) AS n FROM {table}").rows == [{"n": 5}]


def test_pipeline_as_context_manager_runs_on_exit(client: Client) -> None:
    with client.pipeline() as pipe:
        q = pipe.add("SELECT 7 AS seven")
    assert q.outcome().rows == [{"seven": 7}]


def test_empty_pipeline_runs_nothing(client: Client) -> None:
    assert client.pipeline().run() == []
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


# ---------------------------------------------------------------- execute_many


def test_execute_many_inserts_10000_rows_in_one_round_trip(client: Client, table: str) -> None:
    log: list[str] = []
    rows = [(i, f"value {i}") for i in range(10000)]
    started = time.monotonic()
    total, _ = client._run(spy(client.session.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", rows), log))
    assert time.monotonic() - started < 10
    assert total == 10000
    assert round_trips(log) == 1
    assert client.query(f"SELECT count(*) AS n, sum(id) AS s FROM {table}").rows == [{"n": 10000, "s": sum(range(10000))}]


def test_execute_many_returns_the_row_count(client: Client, table: str) -> None:
    assert client.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, None)]) == 3
    assert client.execute_many(f"UPDATE {table} SET v = $1 WHERE id >= $2", [("x", 2), ("y", 3)]) == 3


def test_execute_many_is_all_or_nothing(client: Client, table: str) -> None:
    rows = [(i, "v") for i in range(100)] + [(5, "duplicate")] + [(i, "v") for i in range(100, 200)]
    with pytest.raises(UniqueViolation):
        client.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", rows)
    assert client.query(f"SELECT count(*) AS n FROM {table}").rows == [{"n": 0}]
    assert client.transaction_status == "I"


def test_execute_many_with_no_rows_does_nothing(client: Client, table: str) -> None:
    assert client.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", []) == 0
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_execute_many_with_changing_parameter_types(client: Client) -> None:
    client.query("CREATE TEMP TABLE mixed (v text)")
    assert client.execute_many("INSERT INTO mixed VALUES ($1)", [("a",), (None,), ("b",)]) == 3
    assert client.query("SELECT count(*) AS n FROM mixed").rows == [{"n": 3}]


# ---------------------------------------------------------------- prepared statement cache


def server_statements(c: Client) -> list[str]:
    return [r["statement"] for r in c.query("SELECT statement FROM pg_prepared_statements").rows]


def test_without_a_cache_no_statement_is_kept(client: Client) -> None:
    for i in range(3):
        client.query("SELECT $1::int AS n", [i])
    assert server_statements(client) == []


def test_cached_statement_is_reused(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        for i in range(5):
            assert c.query("SELECT $1::int AS n", [i]).rows == [{"n": i}]
        assert server_statements(c) == ["SELECT $1::int AS n"]
        written: list[bytes] = []
        c._run(spy(c.session.execute("SELECT $1::int AS n", [9]), [], written))
        assert written[0][:1] == b"B"  # no Parse: the statement is bound by name
        plans = c.query("SELECT generic_plans + custom_plans AS runs FROM pg_prepared_statements").rows
        assert plans == [{"runs": 6}]


def test_cache_keys_on_parameter_types(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        assert c.query("SELECT $1 AS v", [1]).rows == [{"v": 1}]
        assert c.query("SELECT $1 AS v", ["one"]).rows == [{"v": "one"}]
        assert len(server_statements(c)) == 2


def test_cache_is_bounded(pg: EmbeddedPostgres) -> None:
    size = 3
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=size) as c:
        for i in range(10):
            assert c.query(f"SELECT $1::int + {i} AS n", [1]).rows == [{"n": 1 + i}]
            # An evicted statement is closed with the next extended-protocol query.
            assert len(server_statements(c)) <= size + 1
        c.query("SELECT $1::int AS flush", [0])
        statements = server_statements(c)
        assert len(statements) <= size + 1
        assert "SELECT $1::int + 0 AS n" not in statements


def test_cached_statement_survives_an_execution_error(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        assert c.query("SELECT 10 / $1::int AS q", [2]).rows == [{"q": 5}]
        with pytest.raises(DivisionByZero):
            c.query("SELECT 10 / $1::int AS q", [0])
        assert c.query("SELECT 10 / $1::int AS q", [5]).rows == [{"q": 2}]
        assert server_statements(c) == ["SELECT 10 / $1::int AS q"]


def test_failed_parse_is_not_cached(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        for _ in range(2):
            with pytest.raises(PgSyntaxError):
                c.query("SELEC $1::int", [1])
        assert server_statements(c) == []


def test_cache_survives_an_aborted_pipeline(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        pipe = c.pipeline()
        pipe.add("SELECT 1/$1::int AS a", [0])
        pipe.add("SELECT $1::int AS never_parsed", [1])
        first, second = pipe.run(atomic=True)
        assert isinstance(first, DivisionByZero) and isinstance(second, PipelineAborted)
        # The second statement's Parse was skipped: it must not be believed prepared.
        assert c.query("SELECT $1::int AS never_parsed", [1]).rows == [{"never_parsed": 1}]
        assert c.query("SELECT 1/$1::int AS a", [1]).rows == [{"a": 1}]


def test_cache_survives_a_failed_transaction(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        c.query("BEGIN")
        assert c.query("SELECT $1::int AS n", [1]).rows == [{"n": 1}]
        c.query("ROLLBACK")
        assert c.query("SELECT $1::int AS n", [2]).rows == [{"n": 2}]


# ---------------------------------------------------------------- bad paths: connecting


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wrong_password_is_invalid_password(pg: EmbeddedPostgres) -> None:
    for user in ("cleartext_user", "md5_user", "scram_user"):
        with pytest.raises(InvalidPassword) as info:
            # A pipelined connect reports a failed login at the first query; the class is the same.
            Client(pg.dsn(user, password="not-the-password"), sslmode="disable").connect().query("SELECT 1")
        assert isinstance(info.value, OperationalError)
        assert info.value.sqlstate == "28P01"
        assert info.value.diag.severity == "FATAL"
        assert user in (info.value.diag.message or "")


def test_missing_password_is_an_operational_error(pg: EmbeddedPostgres) -> None:
    role = pg.role("scram_user")
    with pytest.raises(OperationalError, match="password"):
        Client(host=pg.host, port=pg.port, user=role.name, dbname="postgres", sslmode="disable").connect(wait=True)


def test_unknown_database_is_invalid_catalog_name(pg: EmbeddedPostgres) -> None:
    with pytest.raises(InvalidCatalogName) as info:
        Client(pg.dsn(database="no_such_database"), sslmode="disable").connect().query("SELECT 1")
    assert info.value.sqlstate == "3D000"
    assert "no_such_database" in str(info.value)


def test_unknown_user_fails_to_connect(pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError) as info:
        Client(pg.dsn("nobody_here", password="x"), sslmode="disable").connect(wait=True)
    assert info.value.sqlstate in ("28P01", "28000")


def test_connection_refused_is_an_operational_error() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(OperationalError, match=str(port)):
        Client(host="127.0.0.1", port=port, user="u", sslmode="disable").connect()
    assert time.monotonic() - started < 5


class BlackHole:
    """A listening socket that accepts connections and never says a word (not a fake server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


@pytest.mark.parametrize("sslmode", ["disable", "prefer"])
def test_connect_timeout_against_a_silent_server(black_hole: BlackHole, sslmode: str) -> None:
    started = time.monotonic()
    with pytest.raises(OperationalError, match="timed out"):
        # Pipelined (no password: nothing to wait for), the login's wait comes with the first
        # query, and connect_timeout still bounds it.
        Client(host="127.0.0.1", port=black_hole.port, user="u", sslmode=sslmode, connect_timeout=2).connect().query(
            "SELECT 1"
        )
    elapsed = time.monotonic() - started
    assert 1.9 <= elapsed < 3.5


def test_connect_timeout_below_two_seconds_counts_as_two(black_hole: BlackHole) -> None:
    """As in libpq, which enforces a 2 s minimum so that rounding cannot make it fail at once."""
    started = time.monotonic()
    with pytest.raises(OperationalError, match="timed out"):
        Client(host="127.0.0.1", port=black_hole.port, user="u", sslmode="disable", connect_timeout=1).connect(wait=True)
    assert 1.9 <= time.monotonic() - started < 3.5


def test_connect_timeout_with_sslmode_allow_is_not_doubled_by_the_retry(black_hole: BlackHole) -> None:
    started = time.monotonic()
    with pytest.raises(OperationalError):
        Client(host="127.0.0.1", port=black_hole.port, user="u", sslmode="allow", connect_timeout=2).connect()
    assert time.monotonic() - started < 3.5


# ---------------------------------------------------------------- more ways in, more ways out


def test_connect_over_the_unix_socket(pg: EmbeddedPostgres) -> None:
    if pg.socket_dir is None:
        pytest.skip("the data directory path is too long for a Unix socket")
    with Client(host=pg.socket_dir, port=pg.port, user="postgres", dbname="postgres") as c:
        assert c.query("SELECT inet_client_addr() IS NULL AS local").rows == [{"local": True}]
        assert c._transport is not None and not c._transport.is_tls


def test_options_set_server_settings_at_startup(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", options="-c statement_timeout=150 -c search_path=pg_catalog") as c:
        assert c.query("SHOW search_path").rows == [{"search_path": "pg_catalog"}]
        started = time.monotonic()
        with pytest.raises(OperationalError) as info:
            c.query("SELECT pg_sleep(5)")
        assert info.value.sqlstate == "57014"
        assert time.monotonic() - started < 3
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_message_over_max_message_size_from_the_server(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", max_message_size=4096) as c:
        assert c.query("SELECT repeat('x', 1000) AS s").rows[0]["s"] == "x" * 1000
        with pytest.raises(OperationalError, match="length"):
            c.query("SELECT repeat('x', 10000) AS s")
        assert c.closed


def test_keyboard_interrupt_mid_query_abandons_the_connection(client: Client) -> None:
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            client.query("SELECT pg_sleep(5)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 3
    assert client.closed  # half-read results are never mistaken for the next query's


@pytest.mark.parametrize("atomic", [False, True])
def test_bad_parameter_in_a_later_pipeline_query_sends_nothing(client: Client, atomic: bool) -> None:
    pipe = client.pipeline()
    pipe.add("SELECT 1 AS a")
    pipe.add("SELECT $1::int AS b", [2])
    pipe.add("SELECT $1::text AS c", ["nul \x00 inside"])
    with pytest.raises(DataError):
        pipe.run(atomic=atomic)
    assert client.transaction_status == "I"
    assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_bad_parameter_in_a_later_execute_many_row_sends_nothing(client: Client, table: str) -> None:
    rows: list[tuple[Any, ...]] = [(i, "ok") for i in range(500)] + [(500, "bad \x00")]
    with pytest.raises(DataError):
        client.execute_many(f"INSERT INTO {table} VALUES ($1, $2)", rows)
    assert client.query(f"SELECT count(*) AS n FROM {table}").rows == [{"n": 0}]


def test_bad_parameter_with_a_statement_cache_keeps_the_cache_consistent(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=1) as c:
        c.query("SELECT $1::int AS a", [1])
        c.query("SELECT $1::int AS b", [1])  # evicts the first: closed with the next pipeline
        with pytest.raises(DataError):
            c.query("SELECT $1::text AS c", ["\x00"])
        assert c.query("SELECT $1::int AS b", [2]).rows == [{"b": 2}]
        assert c.query("SELECT $1::int AS a", [3]).rows == [{"a": 3}]
        assert len(server_statements(c)) <= 2


def test_connect_can_be_retried_after_a_failure(pg: EmbeddedPostgres, client: Client) -> None:
    name = f"later_{uuid.uuid4().hex[:8]}"
    late = Client(pg.dsn(database=name), sslmode="disable", max_message_size=1 << 20)
    with pytest.raises(InvalidCatalogName):
        late.connect(wait=True)
    client.query(f'CREATE DATABASE "{name}"')
    with late.connect():
        assert late.query("SELECT current_database() AS db").rows == [{"db": name}]
        assert late.session.conn.max_message_size == 1 << 20
    client.query(f'DROP DATABASE "{name}"')


def test_cached_statement_after_a_table_change(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn(), sslmode="disable", prepared_statement_cache_size=4) as c:
        c.query("CREATE TEMP TABLE changing (id int, v text)")
        c.query("INSERT INTO changing VALUES (1, 'a')")
        assert c.query("SELECT * FROM changing WHERE id = $1", [1]).rows == [{"id": 1, "v": "a"}]
        c.query("ALTER TABLE changing ADD COLUMN w int")
        try:  # the server may refuse the old plan once, as with every driver
            c.query("SELECT * FROM changing WHERE id = $1", [1])
        except FeatureNotSupported:
            pass
        assert c.query("SELECT * FROM changing WHERE id = $1", [1]).rows == [{"id": 1, "v": "a", "w": None}]
        assert len(server_statements(c)) <= 2
