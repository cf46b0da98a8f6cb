"""neon()'s response parsing against malformed and hostile responses: only the driver's errors, in bounded time.

Unit tests on the sans-IO reader (neon_proto.http.read_response), hypothesis fuzzing of it,
and neon() end to end against a scripted HTTP server that sends such responses.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neon_proto.errors import DataError, Error, OperationalError, RemoteProtocolError
from neon_proto.http import (
    FetchResponse,
    FetchSettings,
    HTTPQuery,
    build_query_request,
    build_transaction_request,
    neon_connection_string,
    parse_endpoint,
    read_response,
)
from neon_sync import neon

ENDPOINT = parse_endpoint("http://127.0.0.1:8080/sql")
DRIVER_ERRORS = (RemoteProtocolError, DataError, OperationalError)


def fetch_settings(**kwargs: Any) -> FetchSettings:
    _params, header = neon_connection_string("postgresql://u:p@ep-x.example.com/db")
    return FetchSettings(header, **kwargs)


def field(name: str = "n", oid: Any = 23) -> dict[str, Any]:
    return {"name": name, "dataTypeID": oid, "tableID": 0, "columnID": 0, "dataTypeSize": 4,
            "dataTypeModifier": -1, "format": "text"}


def result(fields: Any, rows: Any) -> dict[str, Any]:
    return {"fields": fields, "rows": rows, "command": "SELECT", "rowCount": 1, "rowAsArray": True}


def read(body: bytes | Any, *, full_results: bool = False, array_mode: bool = False, batch: int = 0) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    if batch:
        request = build_transaction_request(ENDPOINT, fetch_settings(full_results=full_results, array_mode=array_mode),
                                            [HTTPQuery("SELECT 1")] * batch)
    else:
        request = build_query_request(ENDPOINT, fetch_settings(full_results=full_results, array_mode=array_mode),
                                      HTTPQuery("SELECT 1"))
    return read_response(request, FetchResponse(200, (), data))


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "body, error",
    [
        (deep(100_000), RemoteProtocolError),
        (b'{"fields":' + deep(50_000) + b"}", RemoteProtocolError),
        (result([field()], [["abc"]]), DataError),
        (result([field(oid=1082)], [["not a date"]]), DataError),
        (result([field(oid=[23])], [["1"]]), RemoteProtocolError),
        (result([field(oid={"a": 1})], [["1"]]), RemoteProtocolError),
        (result([field(oid="23")], [["1"]]), RemoteProtocolError),
        (result([field(name=5)], [["1"]]), RemoteProtocolError),
        (result([field()], {"0": ["1"]}), RemoteProtocolError),
        (result([field()], [["1"], {"n": "2"}]), RemoteProtocolError),
        (result([field()], [["1"], ["2", "3"]]), RemoteProtocolError),
        (result([field()], [["1"], [7]]), RemoteProtocolError),
        (result({"n": 23}, [["1"]]), RemoteProtocolError),
        (result([5], [["1"]]), RemoteProtocolError),
        ([1, 2], RemoteProtocolError),
        ("just a string", RemoteProtocolError),
        (b"1" * 5000, RemoteProtocolError),
        (b"\xff\xfe", RemoteProtocolError),
    ],
    ids=["deep-array", "deep-fields", "int-abc", "date-garbage", "oid-list", "oid-object", "oid-string",
         "name-int", "rows-object", "row-object", "row-too-long", "cell-int", "fields-object", "field-int",
         "top-list", "top-string", "huge-int", "not-utf8"],
)
def test_malformed_responses_raise_driver_errors(body: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        read(body)
    with pytest.raises(error):
        read(body, array_mode=True, full_results=True)


def test_integer_cell_abc_is_a_data_error_like_tcp() -> None:
    with pytest.raises(DataError, match="could not be decoded"):
        read(result([field()], [["abc"]]))


def test_malformed_batch_responses_raise_driver_errors() -> None:
    with pytest.raises(RemoteProtocolError):
        read({"results": json.loads(deep(10))}, batch=2)
    with pytest.raises(RemoteProtocolError):
        read({"results": [result([field()], [["1"]]), 7]}, batch=2)


@pytest.mark.parametrize("status", [400, 500, 507])
def test_malformed_error_bodies_raise_driver_errors(status: int) -> None:
    request = build_query_request(ENDPOINT, fetch_settings(), HTTPQuery("SELECT 1"))
    for body in [deep(100_000), b'{"message": [1], "code": {"a": 1}}', b"\xff", b'{"message": "x", "code": 42}']:
        with pytest.raises(Error):  # a 400 raises the SQLSTATE's class, whatever code the body claims
            read_response(request, FetchResponse(status, (), body))


# ---------------------------------------------------------------------- fuzzing


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
field_values = st.fixed_dictionaries(
    {"name": json_values | st.text(max_size=5), "dataTypeID": json_values | st.sampled_from([16, 20, 23, 25, 700, 1082, 1184, 3802, 1007])},
    optional={"tableID": json_values, "columnID": json_values, "dataTypeSize": json_values, "dataTypeModifier": json_values},
)
results = st.fixed_dictionaries(
    {"fields": st.lists(field_values, max_size=3) | json_values, "rows": st.lists(st.lists(json_values | st.text(max_size=6), max_size=3), max_size=3) | json_values},
    optional={"command": json_values, "rowCount": json_values},
)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(payload=results | json_values, full_results=st.booleans(), array_mode=st.booleans())
def test_fuzzed_responses_give_rows_or_driver_errors(payload: Any, full_results: bool, array_mode: bool) -> None:
    try:
        read(payload, full_results=full_results, array_mode=array_mode)
    except DRIVER_ERRORS:
        pass


@settings(max_examples=200, deadline=2000)
@given(body=st.binary(max_size=200), status=st.sampled_from([200, 400, 500]))
def test_fuzzed_bytes_give_rows_or_driver_errors(body: bytes, status: int) -> None:
    request = build_query_request(ENDPOINT, fetch_settings(), HTTPQuery("SELECT 1"))
    try:
        read_response(request, FetchResponse(status, (), body))
    except DRIVER_ERRORS if status == 200 else Error:
        pass


# ---------------------------------------------------------------------- neon() end to end against a hostile server


class CannedHTTPServer:
    """Answers every request on 127.0.0.1 with the same 200 response body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with sock:
                sock.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        data += sock.recv(65536)
                    head = (f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(self.body)}\r\n"
                            "connection: close\r\n\r\n").encode()
                    sock.sendall(head + self.body)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize(
    "body, error",
    [
        (deep(200_000), RemoteProtocolError),
        (json.dumps(result([field()], [["abc"]])).encode(), DataError),
        (json.dumps(result([field(oid=[1, 2])], [["1"]])).encode(), RemoteProtocolError),
    ],
    ids=["deep", "int-abc", "oid-list"],
)
def test_neon_raises_only_driver_errors_from_a_hostile_server(body: bytes, error: type[Exception]) -> None:
    server = CannedHTTPServer(body)
    try:
        sql = neon("postgresql://u:p@ep-x.example.com/db", fetch_endpoint=f"http://127.0.0.1:{server.port}/sql")
        started = time.monotonic()
        with pytest.raises(error):
            sql("SELECT 1")
        assert time.monotonic() - started < 5
    finally:
        server.close()
