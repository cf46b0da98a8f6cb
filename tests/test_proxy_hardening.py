"""neon_proxy under attack: every bad request answered, no secret echoed, deadlines, bounds, no dead connection lent.

Each test reproduces one way the proxy was attacked (issue 11) against a real Postgres.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from neon_proxy.config import ProxyConfig
from neon_proxy.testing import DevStack, ProxyThread, upstream_url
from neon_sync.embedded import EmbeddedPostgres
from tests.test_proxy import Sql, request

SECRET_PASSWORD = "pw-SECRET-7f3a"
SECRET_TOKEN = "tok-SECRET-91c2"


def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0, shut_write: bool = False) -> bytes:
    """Send raw bytes and read until the proxy closes the connection (or a full response arrives)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            received += chunk
            head, sep, body = received.partition(b"\r\n\r\n")
            if sep:
                length = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
        return received


def status_and_json(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), answer[:200]
    return int(head.split(b" ")[1]), json.loads(body) if body else None


def post_head(sql: Sql, extra: str = "", length: int | None = None, chunked: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {sql.url}\r\n{extra}{framing}\r\n".encode()


@pytest.fixture
def sql(proxy: DevStack) -> Sql:
    return Sql(proxy)


@pytest.fixture
def proxy_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="neon_proxy")
    return caplog


# ---------------------------------------------------------------------- 4. every bad request gets an answer


def _nested(depth: int) -> bytes:
    return b'{"query":"SELECT $1","params":[' + b"[" * depth + b"1" + b"]" * depth + b"]}"


def _nested_object(depth: int) -> bytes:
    return b'{"query":"SELECT $1","params":[' + b'{"a":' * depth + b"1" + b"}" * depth + b"]}"


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"query":"SELECT $1","params":[1e400]}', "out of range"),
        (b'{"query":"SELECT $1","params":[[1e400]]}', "out of range"),
        (_nested(300), "nested"),
        (_nested_object(300), "nested"),
        (_nested(5000), "nested"),
        (b'{"query":"SELECT $1","params":["\\ud800"]}', "surrogate"),
        (b'{"query":"SELECT \\udfff"}', "surrogate"),
        (b'{"query":"SELECT $1","params":[{"k":"\\ud800"}]}', "surrogate"),
    ],
    ids=["1e400", "1e400-in-array", "nested-300", "nested-object-300", "nested-5000", "lone-surrogate",
         "surrogate-in-query", "surrogate-in-object"],
)
def test_bad_json_values_get_400_with_a_clear_message_and_one_log_line(
    sql: Sql, proxy_log: pytest.LogCaptureFixture, body: bytes, fragment: str
) -> None:
    response = sql.post(body)
    assert response.status == 400, response
    assert fragment in response.json["message"]
    assert not [r for r in proxy_log.records if r.exc_info], "a client's bad input must not log a traceback"
    assert sql.rows("SELECT 1") == [["1"]]


@pytest.mark.parametrize("size", [b"zz", b"-5", b"1" * 24, b"ffffffffffffffffffffffff"])
def test_invalid_chunk_sizes_get_400(sql: Sql, proxy_log: pytest.LogCaptureFixture, size: bytes) -> None:
    data = post_head(sql, chunked=True) + size + b"\r\n" + b'{"query":"SELECT 1"}' + b"\r\n0\r\n\r\n"
    status, body = status_and_json(raw_exchange(sql.port, data))
    assert status == 400
    assert "chunk" in body["message"]
    assert not [r for r in proxy_log.records if r.exc_info]


def test_chunk_size_error_after_a_good_chunk_gets_400(sql: Sql) -> None:
    data = post_head(sql, chunked=True) + b"3\r\n{\"q\r\nzz\r\n"
    status, body = status_and_json(raw_exchange(sql.port, data))
    assert status == 400 and "chunk" in body["message"]


# ---------------------------------------------------------------------- 5. no secret in a response or a log


def _secret_free(text: bytes | str) -> bool:
    data = text.encode() if isinstance(text, str) else text
    return SECRET_PASSWORD.encode() not in data and SECRET_TOKEN.encode() not in data


def test_header_line_with_nul_is_refused_without_echoing_it(proxy: DevStack, proxy_log: pytest.LogCaptureFixture) -> None:
    url = proxy.database_url(password=SECRET_PASSWORD)
    data = (
        f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {url}\x00\r\n"
        f"Authorization: Bearer {SECRET_TOKEN}\x00\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    answer = raw_exchange(proxy.port, data)
    status, body = status_and_json(answer)
    assert status == 400 and body["message"]
    assert _secret_free(answer)
    assert all(_secret_free(r.getMessage()) for r in proxy_log.records)


@pytest.mark.parametrize(
    "headers",
    [
        {"Neon-Connection-String": "postgres://u:{pw}@h/db\x01"},
        {"Neon-Connection-String": "postgres://u:{pw}@h/db", "Authorization": "Bearer {tok}"},
        {"Neon-Connection-String": "postgres://u:{pw}@h:99999/db"},
        {"Neon-Connection-String": "mysql://u:{pw}@h/db"},
        {"Neon-Connection-String": "postgres://u:{pw}@h/db", "Neon-Batch-Isolation-Level": "{tok}"},
        {"Neon-Connection-String": "postgres://u:{pw}@h/db?options=-c%20{tok}"},
    ],
)
def test_error_bodies_and_logs_never_hold_header_values(
    proxy: DevStack, proxy_log: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    lines = "".join(
        f"{name}: {value.format(pw=SECRET_PASSWORD, tok=SECRET_TOKEN)}\r\n" for name, value in headers.items()
    )
    body = b'{"query":"SELECT 1"}'
    data = f"POST /sql HTTP/1.1\r\nHost: x\r\n{lines}Content-Length: {len(body)}\r\n\r\n".encode() + body
    answer = raw_exchange(proxy.port, data)
    assert answer.startswith(b"HTTP/1.1 4"), answer
    assert _secret_free(answer)
    assert all(_secret_free(r.getMessage()) for r in proxy_log.records)


def test_wrong_password_error_does_not_hold_the_password(proxy: DevStack, proxy_log: pytest.LogCaptureFixture) -> None:
    sql = Sql(proxy, "scram_user", password=SECRET_PASSWORD)
    response = sql.post({"query": "SELECT 1"})
    assert response.status == 400
    assert _secret_free(response.body)
    assert all(_secret_free(r.getMessage()) for r in proxy_log.records)
