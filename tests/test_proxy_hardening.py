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


def test_a_user_name_with_control_characters_is_the_clients_mistake_not_a_500(proxy: DevStack) -> None:
    # SASLprep refuses control characters in SCRAM's user name, which Postgres ignores: the login
    # goes on with the StartupMessage's user, and a user that does not exist is a 400.
    url = f"postgresql://scram%01user:x@localhost:{proxy.pg.port}/postgres"
    response = request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url})
    assert response.status == 400, response
    assert "password authentication failed" in response.json["message"]


# ---------------------------------------------------------------------- 1. deadlines and a bound on client connections


def limited_proxy(pg: EmbeddedPostgres, **settings: Any) -> ProxyThread:
    config = ProxyConfig(listen_port=0, upstream=upstream_url(pg), shutdown_timeout=2.0, **settings)
    return ProxyThread(config).start()


@pytest.fixture
def strict(pg: EmbeddedPostgres) -> Iterator[ProxyThread]:
    proxy = limited_proxy(pg, head_timeout=1.0, body_timeout=1.0, max_client_connections=6)
    try:
        yield proxy
    finally:
        proxy.stop()


def trickle(sock: socket.socket, data: bytes, interval: float, until: float) -> bytes:
    """Send ``data`` a byte at a time until the peer answers (or closes) or ``until`` passes."""
    sock.settimeout(interval)
    for byte in data:
        if time.monotonic() > until:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        try:
            answer = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return b""
        return answer
    return b""


def test_a_trickled_head_is_cut_at_the_head_deadline(strict: ProxyThread, pg: EmbeddedPostgres) -> None:
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    head = f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {url}\r\n" + "X-Pad: " + "a" * 200 + "\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        answer = trickle(sock, head.encode(), 0.05, started + 6)
    assert time.monotonic() - started < 3, "the head deadline must end a trickled head, not each read"
    status, body = status_and_json(answer)
    assert status == 408 and "head" in body["message"]


def test_a_trickled_body_is_cut_at_the_body_deadline(strict: ProxyThread, pg: EmbeddedPostgres) -> None:
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    body = b'{"query":"SELECT 1","params":[]}' + b" " * 200
    head = f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {url}\r\nContent-Length: {len(body)}\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(head.encode())
        answer = trickle(sock, body, 0.05, started + 6)
    assert time.monotonic() - started < 3
    status, payload = status_and_json(answer)
    assert status == 408 and "body" in payload["message"]


def test_client_connections_are_bounded_with_a_clear_refusal(strict: ProxyThread, pg: EmbeddedPostgres) -> None:
    holders = [socket.create_connection(("127.0.0.1", strict.port)) for _ in range(6)]
    try:
        for sock in holders:
            sock.sendall(b"POST /sql HTTP/1.1\r\n")  # a head that is never finished
        deadline = time.monotonic() + 5
        while strict.server.open_connections < 6:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        status, body = status_and_json(raw_exchange(strict.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert status == 503 and "too many" in body["message"]
    finally:
        for sock in holders:
            sock.close()
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    deadline = time.monotonic() + 5
    while strict.server.open_connections:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    response = request(strict.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url})
    assert response.status == 200


# ---------------------------------------------------------------------- 2. slow bodies hold no pooled connection


SLOW_BODY = b'{"query":"SELECT 1"}' + b" " * 100


def start_slow_body(port: int, url: str) -> socket.socket:
    body = SLOW_BODY
    head = f"POST /sql HTTP/1.1\r\nHost: x\r\nNeon-Connection-String: {url}\r\nContent-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head.encode() + body[:5])
    return sock


def test_slow_bodies_do_not_hold_the_users_upstream_connections(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, pool_max_per_key=3, body_timeout=20.0, connect_timeout=3.0)
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    slow = [start_slow_body(proxy.port, url) for _ in range(6)]
    try:
        time.sleep(0.5)  # time for them to take connections, if they would
        started = time.monotonic()
        responses = [request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url}) for _ in range(3)]
        assert [r.status for r in responses] == [200, 200, 200], responses
        assert time.monotonic() - started < 2.0
        assert proxy.server.pool.size <= 3
    finally:
        for sock in slow:
            sock.close()
        proxy.stop()


def test_a_body_in_two_packets_still_overlaps_with_opening_a_connection(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg)
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    try:
        sock = start_slow_body(proxy.port, url)
        deadline = time.monotonic() + 5
        while proxy.server.pool.idle_count < 1:  # opened while the body is awaited, and kept idle
            assert time.monotonic() < deadline, "no connection was opened while the body was read"
            time.sleep(0.01)
        sock.sendall(SLOW_BODY[5:])
        sock.settimeout(5)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 ")
        assert proxy.server.pool.size == 1
    finally:
        proxy.stop()


# ---------------------------------------------------------------------- 3. one user cannot exhaust Postgres


def backends_of(pg: EmbeddedPostgres, user: str) -> int:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [user]).fetchone()
    assert row is not None
    return int(row[0])


def run_concurrently(calls: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def one(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_one_user_with_many_pool_keys_is_bounded_and_others_still_connect(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, pool_max_per_user=4)
    base = f"postgresql://md5_user:{pg.role('md5_user').password}@localhost:{pg.port}/postgres"
    peak = [0, 0]
    stop = threading.Event()
    server = f"{pg.host}:{pg.port}"

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], backends_of(pg, "md5_user"))
            peak[1] = max(peak[1], proxy.server.pool.user_size(server, "md5_user"))
            time.sleep(0.02)

    def one(i: int) -> Any:
        url = f"{base}?options=-c%20application_name%3Dkey{i}"
        return request(proxy.port, {"query": "SELECT pg_sleep(0.3)"}, headers={"Neon-Connection-String": url}).status

    other = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        calls = [lambda i=i: one(i) for i in range(16)]
        calls.append(lambda: request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": other}).status)
        statuses = run_concurrently(calls)
    finally:
        stop.set()
        watcher.join()
        proxy.stop()
    assert statuses == [200] * 17
    assert 1 <= peak[1] <= 4, "the pool opened more than the user's bound"
    # A backend told to exit (an idle connection closed to make room) may linger an instant.
    assert 1 <= peak[0] <= 5


def test_the_pool_stays_below_the_servers_max_connections(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg)
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    try:
        assert request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url}).status == 200
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int"
            ).fetchone()
        assert row is not None
        assert proxy.server.pool.server_capacity(f"{pg.host}:{pg.port}") == row[0] - 5
    finally:
        proxy.stop()


def test_a_server_limit_is_shared_fairly_between_users(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, upstream_max_connections=3)
    users = ["trust_user", "md5_user"]
    urls = {u: f"postgresql://{u}:{pg.role(u).password or 'x'}@localhost:{pg.port}/postgres" for u in users}
    try:
        calls = [
            lambda u=u: request(proxy.port, {"query": "SELECT pg_sleep(0.2)"}, headers={"Neon-Connection-String": urls[u]}).status
            for u in users
            for _ in range(5)
        ]
        assert run_concurrently(calls) == [200] * 10
        assert proxy.server.pool.size <= 3
    finally:
        proxy.stop()


def test_idle_connections_of_rarely_used_keys_close_sooner(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg, pool_idle_timeout=60.0, pool_rare_idle_timeout=0.5)
    busy = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    rare = f"postgresql://md5_user:{pg.role('md5_user').password}@localhost:{pg.port}/postgres"
    server = f"{pg.host}:{pg.port}"
    try:
        for _ in range(8):
            assert request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": busy}).status == 200
        assert request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": rare}).status == 200
        deadline = time.monotonic() + 5
        while proxy.server.pool.user_size(server, "md5_user"):
            assert time.monotonic() < deadline, "the rarely used key's idle connection was kept"
            time.sleep(0.05)
        assert proxy.server.pool.user_size(server, "trust_user") == 1
    finally:
        proxy.stop()


# ---------------------------------------------------------------------- 6. no dead connection lent


def terminate_backends_of(pg: EmbeddedPostgres, user: str) -> int:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()", [user]
        ).fetchall()
    return len(rows)


def fill_pool(port: int, url: str, n: int) -> None:
    calls = [
        lambda: request(port, {"query": "SELECT pg_sleep(0.1)"}, headers={"Neon-Connection-String": url}).status
        for _ in range(n)
    ]
    assert run_concurrently(calls) == [200] * n


def test_requests_right_after_idle_backends_are_terminated_all_succeed(pg: EmbeddedPostgres) -> None:
    proxy = limited_proxy(pg)
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    try:
        for _ in range(4):
            fill_pool(proxy.port, url, 10)
            assert terminate_backends_of(pg, "trust_user") >= 10
            calls = [
                lambda: request(proxy.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url})
                for _ in range(20)
            ]
            responses = run_concurrently(calls)
            assert [r.status for r in responses] == [200] * 20, [r for r in responses if r.status != 200]
    finally:
        proxy.stop()


def test_a_request_on_a_connection_the_server_already_ended_is_sent_again_on_a_new_one(
    pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    import neon_proxy.pool
    from neon_proxy.pool import UpstreamPool

    # Blind the pool's own checks, so that the dead connection is lent and the retry is what saves the request.
    monkeypatch.setattr(neon_proxy.pool, "_has_input", lambda conn: False)
    monkeypatch.setattr(UpstreamPool, "_on_hangup", lambda self, conn: None)
    proxy = limited_proxy(pg)
    url = f"postgresql://trust_user:x@localhost:{pg.port}/postgres"
    try:
        fill_pool(proxy.port, url, 1)
        deadline = time.monotonic() + 5
        while proxy.server.pool.idle_count != 1:  # released just after the response went out
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert terminate_backends_of(pg, "trust_user") == 1
        time.sleep(0.2)  # the server's goodbye is in the socket, unread
        response = request(proxy.port, {"query": "SELECT 41 + 1"}, headers={"Neon-Connection-String": url, "Neon-Array-Mode": "true"})
        assert response.status == 200 and response.json["rows"] == [[42]]
    finally:
        proxy.stop()


def test_a_query_that_may_have_run_is_never_sent_again(pg: EmbeddedPostgres, fresh_db: str) -> None:
    proxy = limited_proxy(pg)
    url = f"postgresql://postgres:{pg.superuser_password}@localhost:{pg.port}/{fresh_db}"
    headers = {"Neon-Connection-String": url}
    try:
        assert request(proxy.port, {"query": "CREATE SEQUENCE s"}, headers=headers).status == 200
        response = request(
            proxy.port, {"query": "SELECT nextval('s'), pg_terminate_backend(pg_backend_pid())"}, headers=headers
        )
        assert response.status >= 400
        with psycopg.connect(pg.dsn(database=fresh_db), autocommit=True) as conn:
            row = conn.execute("SELECT last_value FROM s").fetchone()
        assert row == (1,), "the query ran twice"
    finally:
        proxy.stop()


# ---------------------------------------------------------------------- issue 10: an IP address as host


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])
def test_a_single_upstream_accepts_an_ip_address_as_host(proxy: DevStack, host: str) -> None:
    url = f"postgresql://trust_user:x@{host}:{proxy.pg.port}/postgres"
    response = request(proxy.port, {"query": "SELECT 1 AS one"}, headers={"Neon-Connection-String": url})
    assert response.status == 200, response


def test_an_endpoint_table_still_refuses_an_ip_address_as_host(pg: EmbeddedPostgres) -> None:
    config = ProxyConfig(listen_port=0, endpoints={"alive": upstream_url(pg)}, shutdown_timeout=2.0)
    with ProxyThread(config) as routed:
        url = f"postgresql://trust_user:x@127.0.0.1:{pg.port}/postgres"
        response = request(routed.port, {"query": "SELECT 1"}, headers={"Neon-Connection-String": url})
    assert response.status == 400 and response.json["message"] == "missing hostname"


# ---------------------------------------------------------------------- the shared limits, alone


def test_connection_slots_refuse_past_the_limit_and_free_on_give_back() -> None:
    from neon_proxy.limits import REFUSAL, ConnectionSlots, RequestDeadlines

    slots = ConnectionSlots(2)
    assert slots.try_take() and slots.try_take()
    assert not slots.try_take() and slots.refused == 1
    slots.give_back()
    assert slots.try_take() and slots.open == 2
    assert REFUSAL.startswith(b"HTTP/1.1 503 ") and b"connection: close" in REFUSAL
    deadlines = RequestDeadlines(head_timeout=10, body_timeout=30)
    assert (deadlines.head_deadline(100.0), deadlines.body_deadline(200.0)) == (110.0, 230.0)
    with pytest.raises(ValueError):
        ConnectionSlots(0)
