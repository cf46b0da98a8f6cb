"""Server errors as exceptions: one class per SQLSTATE, every field in ``diag``, no password anywhere."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from neon_proto import sqlstate
from neon_proto.errors import (
    DatabaseError,
    DataError,
    Diagnostic,
    Error,
    IntegrityError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    QueryCanceled,
    class_for_sqlstate,
    error_from_fields,
)
from neon_sync import Client, Pool, dbapi
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture
def client(pg: EmbeddedPostgres) -> Iterator[Client]:
    with Client(pg.dsn(), sslmode="disable") as c:
        yield c


def caught(client: Client, sql: str) -> Error:
    with pytest.raises(Error) as info:
        client.query(sql)
    return info.value


# ---------------------------------------------------------------- every field reaches diag


def test_unique_violation_names_schema_table_and_constraint(client: Client) -> None:
    client.query("CREATE TEMP TABLE uv (id int CONSTRAINT uv_pkey PRIMARY KEY)")
    client.query("INSERT INTO uv VALUES (1)")
    error = caught(client, "INSERT INTO uv VALUES (1)")
    assert isinstance(error, sqlstate.UniqueViolation)
    diag = error.diag
    assert diag.code == "23505" == error.sqlstate
    assert diag.severity == "ERROR" and diag.severity_local == "ERROR"
    assert diag.message == 'duplicate key value violates unique constraint "uv_pkey"'
    assert diag.detail == "Key (id)=(1) already exists."
    assert diag.schema is not None and diag.schema.startswith("pg_temp")
    assert diag.table == "uv"
    assert diag.constraint == "uv_pkey"
    assert diag.file and diag.line and diag.line.isdigit() and diag.routine


def test_syntax_error_has_a_position(client: Client) -> None:
    error = caught(client, "SELECT 1 FROM WHERE")
    assert isinstance(error, sqlstate.SyntaxError)
    assert error.diag.position == "15"


def test_error_with_parameters_has_a_position(client: Client) -> None:
    with pytest.raises(sqlstate.UndefinedTable) as info:
        client.query("SELECT $1::int FROM nope", [1])
    assert info.value.diag.position == "21"


def test_plpgsql_raise_carries_detail_hint_and_context(client: Client) -> None:
    error = caught(
        client,
        "DO $$ BEGIN RAISE EXCEPTION 'it broke' USING DETAIL = 'the details', HINT = 'try again', "
        "ERRCODE = 'check_violation'; END $$",
    )
    assert isinstance(error, sqlstate.CheckViolation)
    assert str(error) == "it broke"
    assert error.diag.detail == "the details"
    assert error.diag.hint == "try again"
    assert error.diag.where is not None and "PL/pgSQL" in error.diag.where


def test_internal_query_and_position(client: Client) -> None:
    error = caught(client, "DO $$ BEGIN EXECUTE 'SELECT 1 +'; END $$")
    assert error.diag.internal_query == "SELECT 1 +"
    assert error.diag.internal_position == "11"


def test_not_null_violation_names_the_column(client: Client) -> None:
    client.query("CREATE TEMP TABLE nn (a int NOT NULL)")
    error = caught(client, "INSERT INTO nn VALUES (NULL)")
    assert isinstance(error, sqlstate.NotNullViolation)
    assert (error.diag.table, error.diag.column) == ("nn", "a")


def test_domain_check_violation_names_the_data_type(client: Client) -> None:
    client.query("CREATE DOMAIN pg_temp.posint AS int CHECK (VALUE > 0)")
    error = caught(client, "SELECT (-1)::pg_temp.posint")
    assert isinstance(error, sqlstate.CheckViolation)
    assert error.diag.data_type == "posint"
    assert error.diag.constraint == "posint_check"


def test_notice_fields_reach_the_notice_handler(client: Client) -> None:
    notices: list[Diagnostic] = []
    client.session.notice_handlers.append(notices.append)
    client.query("DO $$ BEGIN RAISE WARNING 'careful' USING DETAIL = 'd', HINT = 'h'; END $$")
    (notice,) = notices
    assert (notice.severity, notice.code, notice.message, notice.detail, notice.hint) == (
        "WARNING",
        "01000",
        "careful",
        "d",
        "h",
    )


def test_every_field_code_is_mapped() -> None:
    fields = {code: f"value-{code}" for code in "SVCMDHPpqWstcdnFLR"}
    fields["C"] = "23505"
    diag = error_from_fields(fields).diag
    for code, name in {
        "S": "severity_local", "V": "severity", "M": "message", "D": "detail", "H": "hint",
        "P": "position", "p": "internal_position", "q": "internal_query", "W": "where",
        "s": "schema", "t": "table", "c": "column", "d": "data_type", "n": "constraint",
        "F": "file", "L": "line", "R": "routine",
    }.items():  # fmt: skip
        assert getattr(diag, name) == f"value-{code}"


def test_unknown_field_codes_are_ignored() -> None:
    error = error_from_fields({"C": "42P01", "M": "m", "Z": "future field"})
    assert isinstance(error, sqlstate.UndefinedTable)
    assert error.diag.message == "m"


def test_severity_falls_back_to_the_localized_one() -> None:
    assert error_from_fields({"S": "ERREUR", "C": "42P01", "M": "m"}).diag.severity == "ERREUR"


# ---------------------------------------------------------------- one class per SQLSTATE


@pytest.mark.parametrize(
    ("code", "cls", "base"),
    [
        ("23505", sqlstate.UniqueViolation, IntegrityError),
        ("23503", sqlstate.ForeignKeyViolation, IntegrityError),
        ("42P01", sqlstate.UndefinedTable, ProgrammingError),
        ("42601", sqlstate.SyntaxError, ProgrammingError),
        ("22012", sqlstate.DivisionByZero, DataError),
        ("28P01", sqlstate.InvalidPassword, OperationalError),
        ("3D000", sqlstate.InvalidCatalogName, ProgrammingError),
        ("57014", QueryCanceled, OperationalError),
        ("57P01", sqlstate.AdminShutdown, OperationalError),
        ("0A000", sqlstate.FeatureNotSupported, NotSupportedError),
        ("25P02", sqlstate.InFailedSqlTransaction, InternalError),
        ("40001", sqlstate.SerializationFailure, OperationalError),
    ],
)
def test_class_for_sqlstate(code: str, cls: type[Error], base: type[Error]) -> None:
    assert class_for_sqlstate(code) is cls
    assert issubclass(cls, base)
    error = error_from_fields({"S": "ERROR", "C": code, "M": "m"})
    assert type(error) is cls and error.sqlstate == code


def test_unknown_sqlstate_falls_back_to_its_class() -> None:
    error = error_from_fields({"C": "23ZZZ", "M": "m"})
    assert isinstance(error, IntegrityError)
    assert error.sqlstate == "23ZZZ"


def test_unknown_sqlstate_class_is_a_database_error(client: Client) -> None:
    error = caught(client, "DO $$ BEGIN RAISE EXCEPTION 'custom' USING ERRCODE = 'ZZ123'; END $$")
    assert type(error) is DatabaseError
    assert error.sqlstate == "ZZ123"


def test_server_errors_are_raised_as_their_generated_class(client: Client) -> None:
    assert isinstance(caught(client, "SELECT 1/0"), sqlstate.DivisionByZero)
    assert isinstance(caught(client, "SELECT 'x'::int"), sqlstate.InvalidTextRepresentation)
    assert isinstance(caught(client, "SELECT nope FROM pg_class"), sqlstate.UndefinedColumn)


def test_every_generated_class_matches_its_code() -> None:
    assert len(sqlstate.BY_SQLSTATE) > 200
    for code, cls in sqlstate.BY_SQLSTATE.items():
        assert cls.sqlstate == code
        assert issubclass(cls, Error)


def test_error_without_a_code_is_a_database_error() -> None:
    error = error_from_fields({"M": "no code"})
    assert type(error) is DatabaseError
    assert str(error) == "no code"


# ---------------------------------------------------------------- the password stays secret


SECRET = "S3cr3t-Pa55word-neon"


@pytest.fixture
def secret_role(pg: EmbeddedPostgres) -> Iterator[str]:
    """A role whose password is SECRET (scram, per the harness's catch-all pg_hba line)."""
    with Client(pg.dsn(), sslmode="disable") as admin:
        admin.query("DROP ROLE IF EXISTS secret_role")
        admin.query(f"CREATE ROLE secret_role LOGIN PASSWORD '{SECRET}'")
    yield "secret_role"


def messages_of(error: BaseException) -> str:
    """Everything an error shows: str, repr, diag, and the same for its causes."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "diag", ""))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_password_not_in_client_repr(pg: EmbeddedPostgres, secret_role: str) -> None:
    client = Client(f"postgresql://{secret_role}:{SECRET}@{pg.host}:{pg.port}/postgres", sslmode="disable")
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.params)
    assert SECRET not in str(client.params)
    with client:
        assert SECRET not in repr(client)
    assert SECRET not in repr(client)


def test_password_not_in_keyword_client_repr(pg: EmbeddedPostgres) -> None:
    client = Client(host=pg.host, port=pg.port, user="u", password=SECRET)
    assert SECRET not in repr(client) and SECRET not in repr(client.params)


def test_password_not_in_dbapi_or_pool_reprs(pg: EmbeddedPostgres, secret_role: str) -> None:
    dsn = f"postgresql://{secret_role}:{SECRET}@{pg.host}:{pg.port}/postgres?sslmode=disable"
    with dbapi.connect(dsn) as conn:
        assert SECRET not in repr(conn)
        assert SECRET not in repr(conn.cursor())
    with Pool(dsn, max_size=1) as pool:
        with pool.connection() as c:
            assert SECRET not in repr(c)
        assert SECRET not in repr(pool)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def failing_connections(pg: EmbeddedPostgres) -> list[tuple[str, dict[str, object]]]:
    base = f"postgresql://scram_user:{SECRET}@{pg.host}:{pg.port}/postgres"
    return [
        (base, {"sslmode": "disable"}),  # wrong password
        (base, {"sslmode": "require", "channel_binding": "require"}),  # wrong password, SCRAM-PLUS
        (f"postgresql://cleartext_user:{SECRET}@{pg.host}:{pg.port}/postgres", {"sslmode": "disable"}),
        (f"postgresql://md5_user:{SECRET}@{pg.host}:{pg.port}/postgres", {"sslmode": "disable"}),
        (f"postgresql://scram_user:{SECRET}@{pg.host}:{pg.port}/no_such_db", {"sslmode": "disable"}),
        (f"postgresql://scram_user:{SECRET}@127.0.0.1:{closed_port()}/postgres", {}),
        (base, {"sslmode": "verify-full", "sslrootcert": "system"}),
        (base, {"sslmode": "disable", "channel_binding": "require"}),
    ]


def test_password_not_in_failed_connection_errors(pg: EmbeddedPostgres, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for dsn, options in failing_connections(pg):
        with pytest.raises(OperationalError) as info:
            Client(dsn, **options).connect(wait=True)  # type: ignore[arg-type]
        assert SECRET not in messages_of(info.value), (dsn, options)
    assert SECRET not in caplog.text


def test_password_not_in_connection_string_errors() -> None:
    for dsn in (
        f"postgresql://user:{SECRET}@host:notaport/db",
        f"postgresql://user:{SECRET}@host/db?sslmode=bogus",
        f"postgresql://user:{SECRET}",
        f"host=h password={SECRET} port=x",
    ):
        with pytest.raises(Error) as info:
            Client(dsn)
        assert SECRET not in messages_of(info.value), dsn


def test_password_not_in_logs_of_a_successful_session(
    pg: EmbeddedPostgres, secret_role: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with Client(f"postgresql://{secret_role}:{SECRET}@{pg.host}:{pg.port}/postgres") as c:
        c.query("SELECT 1")
    assert SECRET not in caplog.text
