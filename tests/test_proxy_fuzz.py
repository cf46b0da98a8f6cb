"""Hypothesis fuzzing of the proxy's request parsing: only RequestError (a 4xx), in bounded time.

The pure parsers (body, connection string, Neon-* headers) take any input; the live proxy
takes mutated raw requests and always answers with a status or closes, never a traceback.
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neon_proxy.request import RequestError, parse_conn_info, parse_payload, parse_request_options
from neon_proxy.testing import DevStack

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=30,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"query": json_values | st.text(max_size=20), "params": json_values}).map(
        lambda v: json.dumps(v).encode()
    ),
    st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"\\ud800"', b"1e400", b",", b":", b'"a"', b"-0", b"9" * 30]),
             max_size=60).map(b"".join),
)


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_parse_payload_gives_a_payload_or_a_4xx(body: bytes) -> None:
    try:
        payload = parse_payload(body)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.message
    else:
        assert payload.queries or payload.batch


header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
urls = st.one_of(
    header_text,
    st.builds(
        lambda scheme, user, pw, host, port, db, query: f"{scheme}://{user}:{pw}@{host}{port}/{db}{query}",
        st.sampled_from(["postgres", "postgresql", "http", ""]),
        header_text, header_text,
        st.sampled_from(["ep-x.example.com", "127.0.0.1", "[::1]", "", "h%zz", "a..b"]),
        st.sampled_from(["", ":5432", ":99999", ":x", ":-1"]),
        header_text,
        st.sampled_from(["", "?options=-c%20x%3D1", "?options=%ff", "?%%%"]),
    ),
)


@settings(max_examples=300, deadline=1000)
@given(url=urls, level=st.none() | header_text, auth=st.booleans())
def test_header_parsing_gives_settings_or_a_4xx(url: str, level: str | None, auth: bool) -> None:
    headers: dict[str, str | None] = {"neon-connection-string": url}
    if level is not None:
        headers["neon-batch-isolation-level"] = level
    if auth:
        headers["authorization"] = "Bearer x"
    for parse in (parse_conn_info, parse_request_options):
        try:
            parse(headers)
        except RequestError as exc:
            assert 400 <= exc.status < 500


GOOD = b'POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {url}\r\nContent-Length: 20\r\n\r\n{"query":"SELECT 1"}'


@pytest.fixture(scope="module")
def fuzz_proxy(proxy: DevStack) -> DevStack:
    return proxy


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_live_proxy_answers_mutated_requests_with_a_status_or_closes(
    fuzz_proxy: DevStack, caplog: pytest.LogCaptureFixture, data: Any
) -> None:
    request = bytearray(GOOD.replace(b"{url}", fuzz_proxy.database_url("trust_user", "x").encode()))
    for _ in range(data.draw(st.integers(0, 4))):
        where = data.draw(st.integers(0, len(request)))
        action = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = data.draw(st.binary(min_size=1, max_size=6) | st.sampled_from([b"\r\n", b"\x00", b":", b"\r\n\r\n", b"zz"]))
        if action == "insert":
            request[where:where] = chunk
        elif action == "delete":
            del request[where : where + len(chunk)]
        else:
            request[where : where + len(chunk)] = chunk
    caplog.set_level(logging.INFO, logger="neon_proxy")
    with socket.create_connection(("127.0.0.1", fuzz_proxy.port), timeout=10) as sock:
        sock.sendall(bytes(request))
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    if answer and request[:1] == b"\x00":
        # A first byte NUL is a Postgres client on the proxy's port (a startup packet's
        # length): it gets a Postgres ErrorResponse, not HTTP.
        assert answer.startswith(b"E"), answer[:100]
    elif answer:
        assert answer.startswith(b"HTTP/1.1 "), answer[:100]
        status = int(answer[9:12])
        assert status == 200 or 400 <= status < 500, answer[:300]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
