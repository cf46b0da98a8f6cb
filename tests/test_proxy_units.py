"""neon_proxy's pure parts: reading requests, converting cells, writing responses. No network."""

from __future__ import annotations

import json

import pytest

from neon_proto.errors import Diagnostic
from neon_proxy.cells import ResponseBudget, TextCellRegistry, array_to_json, converter_for, json_string
from neon_proxy.config import ProxyConfig, parse_endpoint_table, parse_listen
from neon_proxy.request import (
    RequestError,
    RequestOptions,
    begin_statement,
    json_param_to_text,
    parse_conn_info,
    parse_payload,
    parse_request_options,
)
from neon_proxy.response import ERROR_KEYS, command_and_row_count, error_json, pg_error_json


def conn_headers(url: str, **extra: str) -> dict[str, str | None]:
    return {"neon-connection-string": url, **extra}


# ---------------------------------------------------------------------- connection string


def test_conn_info_decodes_user_password_and_database_and_strips_pooler() -> None:
    info = parse_conn_info(conn_headers("postgresql://us%40er:p%2Fw%3A@ep-cool-123-pooler.eu.aws.neon.tech/my%20db?sslmode=require"))
    assert (info.endpoint, info.user, info.password, info.database) == ("ep-cool-123", "us@er", "p/w:", "my db")
    assert "p/w" not in repr(info)


def test_conn_info_uses_only_the_options_query_parameter() -> None:
    info = parse_conn_info(
        conn_headers("postgres://u:p@localhost/db?application_name=x&options=-c%20search_path%3Dfoo+bar")
    )
    assert info.options == "-c search_path=foo bar"
    assert info.endpoint == "localhost"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "invalid header: neon-connection-string"),
        ({"neon-connection-string": None}, "invalid header: neon-connection-string"),
        (conn_headers("not a url"), "invalid connection string: relative URL without a base"),
        (conn_headers("postgres://u:p@host:99999999/db"), "invalid connection string: invalid port number"),
        (conn_headers("mysql://u:p@host/db"), "incorrect scheme"),
        (conn_headers("postgres://u:p@host"), "missing database name"),
        (conn_headers("postgres://u:p@host/"), "missing database name"),
        (conn_headers("postgres://:p@host/db"), "missing username"),
        (conn_headers("postgres://u@host/db"), "missing authentication credentials: required password"),
        (conn_headers("postgres://u:@host/db"), "missing authentication credentials: required password"),
        (conn_headers("postgres://u:p@host/db", authorization="Bearer x"), "missing authentication credentials: required password"),
        (conn_headers("postgres://u:p@127.0.0.1/db"), "missing hostname"),
        (conn_headers("postgres://u:p@[::1]:5432/db"), "missing hostname"),
    ],
)
def test_conn_info_errors_are_neons(headers: dict[str, str | None], message: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_conn_info(headers)
    assert info.value.status == 400
    assert info.value.message == message


def test_request_options_need_exactly_true() -> None:
    options = parse_request_options(
        {"neon-raw-text-output": "true", "neon-array-mode": "TRUE", "neon-batch-read-only": "true"}
    )
    assert options == RequestOptions(raw_output=True, array_mode=False, read_only=True)
    with pytest.raises(RequestError, match="invalid isolation level"):
        parse_request_options({"neon-batch-isolation-level": "serializable"})


def test_begin_statement_carries_isolation_read_only_and_deferrable() -> None:
    assert begin_statement(RequestOptions()) == "BEGIN"
    options = RequestOptions(isolation_level="Serializable", read_only=True, deferrable=True)
    assert begin_statement(options) == "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE"


# ---------------------------------------------------------------------- body and parameters


def test_payload_single_and_batch() -> None:
    single = parse_payload(b'{"query": "SELECT $1", "params": [1], "arrayMode": true}')
    assert not single.batch and single.queries[0].params == ("1",) and single.queries[0].array_mode is True
    assert parse_payload(b'{"query": "SELECT 1"}').queries[0].params == ()
    batch = parse_payload(b'{"queries": [{"query": "SELECT 1"}, {"query": "SELECT 2", "arrayMode": false}]}')
    assert batch.batch and [q.query for q in batch.queries] == ["SELECT 1", "SELECT 2"]
    assert parse_payload(b'{"queries": []}').queries == ()


@pytest.mark.parametrize(
    "body",
    [b'{"query": 1}', b'{"query": "x", "params": null}', b'{"queries": [{"nope": 1}]}', b"[]", b'"x"'],
)
def test_payload_of_the_wrong_shape(body: bytes) -> None:
    with pytest.raises(RequestError) as info:
        parse_payload(body)
    assert info.value.message == "could not parse the HTTP request body: data did not match any variant of untagged enum Payload"


@pytest.mark.parametrize("body", [b"", b"{", b'{"query": NaN}', b"\xff"])
def test_payload_that_is_not_json(body: bytes) -> None:
    with pytest.raises(RequestError) as info:
        parse_payload(body)
    assert info.value.status == 400
    assert info.value.message.startswith("could not parse the HTTP request body: ")


def test_json_params_become_postgres_text() -> None:
    assert json_param_to_text(None) is None
    assert json_param_to_text("a\nb") == "a\nb"
    assert json_param_to_text(True) == "true"
    assert json_param_to_text(42) == "42"
    assert json_param_to_text(1.5) == "1.5"
    assert json_param_to_text({"b": 1, "a": [1, "x"]}) == '{"b":1,"a":[1,"x"]}'
    assert json_param_to_text([1, None, "NULL", 'q"\\', [True, 2]]) == '{1,NULL,"NULL","q\\"\\\\",{true,2}}'
    assert json_param_to_text([{"a": 1}]) == '{"{\\"a\\":1}"}'


# ---------------------------------------------------------------------- cells


def test_raw_cells_are_json_strings() -> None:
    convert = converter_for(16, raw=True)
    assert convert is not None and convert("t") == '"t"'
    assert json_string('a"\n\x01é') == '"a\\"\\n\\u0001é"'


@pytest.mark.parametrize(
    ("oid", "text", "expected"),
    [
        (16, "t", True),
        (16, "f", False),
        (21, "-3", -3),
        (23, "42", 42),
        (20, "9007199254740993", "9007199254740993"),
        (1700, "1.10", "1.10"),
        (701, "1.5", 1.5),
        (700, "NaN", "NaN"),
        (701, "-Infinity", "-Infinity"),
        (3802, '{"a": [1, null]}', {"a": [1, None]}),
        (114, "[1,2]", [1, 2]),
        (1007, "{{1,2},{NULL,4}}", [[1, 2], [None, 4]]),
        (1009, r'{"a b","q\"",NULL,"NULL",x}', ["a b", 'q"', None, "NULL", "x"]),
        (1000, "{t,f}", [True, False]),
        (3807, r'{"{\"a\": 1}"}', [{"a": 1}]),
        (1007, "[0:1]={5,6}", [5, 6]),
        (1007, "{}", []),
        (1020, "{(1,1),(0,0);(2,2),(1,1)}", ["(1,1),(0,0)", "(2,2),(1,1)"]),
        (1082, "2024-01-02", "2024-01-02"),
    ],
)
def test_non_raw_cells_follow_neons_rules(oid: int, text: str, expected: object) -> None:
    convert = converter_for(oid, raw=False)
    assert convert is not None
    assert json.loads(convert(text)) == expected


def test_user_types_need_a_lookup_and_arrays_of_them_become_json_arrays() -> None:
    assert converter_for(70000, raw=False) is None
    convert = converter_for(70000, raw=False, is_array=lambda oid: True)
    assert convert is not None and json.loads(convert("{happy,sad}")) == ["happy", "sad"]
    scalar = converter_for(70001, raw=False, is_array=lambda oid: False)
    assert scalar is not None and scalar("{x}") == '"{x}"'


def test_unbalanced_arrays_are_refused() -> None:
    for text in ("{1,2", "1,2}", '{"a}', "[1:2]"):
        with pytest.raises(ValueError):
            array_to_json(text, json_string)


def test_registry_charges_the_budget_and_calls_back_once() -> None:
    calls: list[int] = []
    budget = ResponseBudget(10, lambda: calls.append(1))
    registry = TextCellRegistry(raw=True, budget=budget)
    load = registry.get_loader(25)
    assert load(b"abc") == '"abc"'
    assert not budget.exceeded
    load(b"abcdefgh")
    load(b"more")
    assert budget.exceeded and calls == [1]
    assert registry.dump("x") == (0, 0, b"x") and registry.dump(None) == (0, 0, None)


def test_registry_defers_unknown_types_in_non_raw_mode() -> None:
    registry = TextCellRegistry(raw=False, budget=ResponseBudget(100))
    assert registry.get_loader(70000)(b"{a}") == "{a}"
    assert registry.pending == {70000}
    bad = registry.get_loader(1007)(b"{1,2")
    assert registry.conversion_failed and bad == '"{1,2"'


# ---------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("SELECT 3", ("SELECT", 3)),
        ("INSERT 0 2", ("INSERT", 2)),
        ("UPDATE 0", ("UPDATE", 0)),
        ("CREATE TABLE", ("CREATE", None)),
        ("DROP TABLE", ("DROP", None)),
        ("BEGIN", ("BEGIN", None)),
        (None, ("", None)),
    ],
)
def test_command_and_row_count(tag: str | None, expected: tuple[str, int | None]) -> None:
    assert command_and_row_count(tag) == expected


def test_error_json_keys_and_non_pg_shape() -> None:
    body = json.loads(error_json("boom"))
    assert tuple(body) == ERROR_KEYS
    assert body["code"] == "" and body["severity"] == "" and body["detail"] is None


def test_pg_error_json_positions_are_strings_and_internal_positions_move() -> None:
    diag = Diagnostic(severity="ERROR", severity_local="ERROR", code="42703", message="m", position="8", line="12")
    body = json.loads(pg_error_json(diag))
    assert tuple(body) == ERROR_KEYS
    assert body["position"] == "8" and body["line"] == "12" and body["internalPosition"] is None
    internal = Diagnostic(code="42703", message="m", internal_position="3", internal_query="SELECT x")
    body = json.loads(pg_error_json(internal))
    assert (body["position"], body["internalPosition"], body["internalQuery"]) == (None, "3", "SELECT x")


# ---------------------------------------------------------------------- configuration


def test_listen_and_endpoint_table_parsing() -> None:
    assert parse_listen("0.0.0.0:4444") == ("0.0.0.0", 4444)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen(":0") == ("127.0.0.1", 0)
    with pytest.raises(ValueError):
        parse_listen("4444")
    assert parse_endpoint_table("a=postgres://h:1 b=postgres://h:2,c=postgres://h:3") == {
        "a": "postgres://h:1",
        "b": "postgres://h:2",
        "c": "postgres://h:3",
    }


def test_config_routes_endpoints_before_the_default_upstream() -> None:
    config = ProxyConfig(upstream="postgres://db:5432?sslmode=disable", endpoints={"ep-x": "postgres://other:6543"})
    assert config.upstream_for("ep-x") is not None and config.upstream_for("ep-x").host == "other"  # type: ignore[union-attr]
    default = config.upstream_for("anything")
    assert default is not None and (default.host, default.port, default.sslmode) == ("db", 5432, "disable")
    assert ProxyConfig(endpoints={"only": "postgres://h:1"}).upstream_for("other") is None
    with pytest.raises(ValueError):
        ProxyConfig(upstream="mysql://x")
    with pytest.raises(ValueError, match="credentials come from each request") as info:
        ProxyConfig(upstream="postgres://admin:s3cret@db:5432/postgres")
    assert "s3cret" not in str(info.value)
