"""The proxy's fast request parser against h11: whatever it accepts, h11 reads the same way.

``parse_simple_request`` answers a request or None, and None only means "let h11 decide", so
deferring is always allowed; there is no separate "malformed" answer to check. What must hold
is one-sided: when it accepts ``data``, an ``h11.Connection(h11.SERVER)`` fed the same bytes
reads a request with the same method, target, headers (first value per lower-case name, as the
proxy's header map keeps them), body so far, bytes still to come, bytes used, and keep-alive.
Pure: no sockets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neon_proxy.simple_request import SimpleRequest, parse_simple_request

MAX_HEAD = 64 * 1024  # as the proxy's server passes it

Verdict = Literal["request", "error", "incomplete"]

POST = (
    b"POST /sql HTTP/1.1\r\n"
    b"Host: proxy.example\r\n"
    b"Content-Type: application/json\r\n"
    b"Neon-Connection-String: postgresql://u:p@h/db\r\n"
    b"Content-Length: 29\r\n"
    b"\r\n"
) + b'{"query":"SELECT 1","params":[]}'[:29]


def head(*lines: bytes, body: bytes = b"") -> bytes:
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def post(*headers: bytes, body: bytes = b"{}") -> bytes:
    return head(b"POST /sql HTTP/1.1", b"Host: h", *headers, body=body)


# (id, data, whether the fast path accepts it, what h11 makes of it)
CASES: list[tuple[str, bytes, bool, Verdict]] = [
    ("valid-post", POST, True, "request"),
    ("valid-get-no-body", head(b"GET /health HTTP/1.1", b"Host: h"), True, "request"),
    ("valid-head", head(b"HEAD / HTTP/1.1", b"Host: h"), True, "request"),
    ("content-length-zero", post(b"Content-Length: 0", body=b""), True, "request"),
    ("content-length-leading-zeros", post(b"Content-Length: 002"), True, "request"),
    ("odd-spacing", post(b"content-LENGTH:\t 2 \t", b"X-A:b", b"X-B:   c  d  "), True, "request"),
    ("odd-casing", post(b"cOnTeNt-TyPe: Application/JSON", b"HOST-ish: x", b"Content-Length: 2"), True, "request"),
    ("empty-value", post(b"X-Empty:", b"X-Blank: \t ", b"Content-Length: 2"), True, "request"),
    ("duplicate-header", post(b"X-A: first", b"x-a: second", b"Content-Length: 2"), True, "request"),
    ("connection-close", post(b"Connection: keep-alive, CLOSE", b"Content-Length: 2"), True, "request"),
    ("connection-close-spaced", post(b"Connection: upgrade ,\tclose\t", b"Content-Length: 2"), True, "request"),
    ("non-ascii-value", post(b"X-Name: caf\xc3\xa9", b"Content-Length: 2"), True, "request"),
    ("obs-text-value", post(b"X-A: \x80\xff", b"Content-Length: 2"), True, "request"),
    ("control-char-value", post(b"X-A: a\x01b\x7f", b"Content-Length: 2"), True, "request"),
    ("absolute-form-target", head(b"GET http://h/sql?x=1 HTTP/1.1", b"Host: h"), True, "request"),
    ("asterisk-target", head(b"OPTIONS * HTTP/1.1", b"Host: h"), True, "request"),
    ("lowercase-method", head(b"post /sql HTTP/1.1", b"Host: h", b"Content-Length: 0"), True, "request"),
    ("body-partial", post(b"Content-Length: 10", body=b"abc"), True, "request"),
    ("body-absent", post(b"Content-Length: 10", body=b""), True, "request"),
    ("huge-content-length", post(b"Content-Length: 99999999999999999999", body=b"x"), True, "request"),
    ("pipelined", post(b"Content-Length: 2") + head(b"GET / HTTP/1.1", b"Host: h"), True, "request"),
    ("extra-bytes-after-body", post(b"Content-Length: 1", body=b"ab"), True, "request"),
    # Deferred to h11, which reads them.
    ("duplicate-content-length-equal", post(b"Content-Length: 2", b"Content-Length: 2"), False, "request"),
    ("content-length-list", post(b"Content-Length: 2, 2"), False, "request"),
    ("transfer-encoding", post(b"Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"), False, "request"),
    ("expect", post(b"Expect: 100-continue", b"Content-Length: 2"), False, "request"),
    ("upgrade", head(b"GET / HTTP/1.1", b"Host: h", b"Upgrade: websocket", b"Connection: Upgrade"), False, "request"),
    ("http-1.0", head(b"POST /sql HTTP/1.0", b"Content-Length: 2", body=b"{}"), False, "request"),
    ("http-1.0-with-host", head(b"GET / HTTP/1.0", b"Host: h"), False, "request"),
    ("connect", head(b"CONNECT h:443 HTTP/1.1", b"Host: h:443"), False, "request"),
    ("leading-crlf", b"\r\n" + POST, False, "error"),
    ("bare-lf", POST.replace(b"\r\n", b"\n"), False, "request"),
    ("bare-lf-one-line", POST.replace(b"Host: proxy.example\r\n", b"Host: proxy.example\n"), False, "request"),
    ("obs-fold", post(b"X-A: one", b" two", b"Content-Length: 2"), False, "request"),
    ("obs-fold-tab", post(b"X-A: one", b"\ttwo", b"Content-Length: 2"), False, "request"),
    # Deferred to h11, which rejects them.
    ("space-before-colon", post(b"Content-Length : 2"), False, "error"),
    ("space-in-name", post(b"X A: b", b"Content-Length: 2"), False, "error"),
    ("empty-name", post(b": b", b"Content-Length: 2"), False, "error"),
    ("non-ascii-name", post(b"X-\xc3\xa9: b", b"Content-Length: 2"), False, "error"),
    ("no-colon", post(b"X-A b", b"Content-Length: 2"), False, "error"),
    ("missing-host", head(b"POST /sql HTTP/1.1", b"Content-Length: 2", body=b"{}"), False, "error"),
    ("two-hosts", post(b"Host: i", b"Content-Length: 2"), False, "error"),
    ("content-length-too-long", post(b"Content-Length: 100000000000000000000"), False, "error"),
    ("content-length-plus", post(b"Content-Length: +2"), False, "error"),
    ("content-length-minus", post(b"Content-Length: -2"), False, "error"),
    ("content-length-inner-space", post(b"Content-Length: 1 2"), False, "error"),
    ("content-length-hex", post(b"Content-Length: 0x2"), False, "error"),
    ("content-length-empty", post(b"Content-Length:"), False, "error"),
    ("content-length-non-ascii", post(b"Content-Length: \xd9\xa2"), False, "error"),
    ("two-content-lengths", post(b"Content-Length: 2", b"Content-Length: 3"), False, "error"),
    ("nul-in-value", post(b"X-A: a\x00b", b"Content-Length: 2"), False, "error"),
    ("nul-in-target", head(b"GET /\x00 HTTP/1.1", b"Host: h"), False, "error"),
    ("cr-in-value", post(b"X-A: a\rb", b"Content-Length: 2"), False, "error"),
    ("vertical-tab-in-value", post(b"X-A: a\x0bb", b"Content-Length: 2"), False, "error"),
    ("non-ascii-target", head(b"GET /caf\xc3\xa9 HTTP/1.1", b"Host: h"), False, "error"),
    ("two-spaces-request-line", head(b"GET  / HTTP/1.1", b"Host: h"), False, "error"),
    ("tab-request-line", head(b"GET\t/ HTTP/1.1", b"Host: h"), False, "error"),
    ("trailing-space-request-line", head(b"GET / HTTP/1.1 ", b"Host: h"), False, "error"),
    ("lowercase-version", head(b"GET / http/1.1", b"Host: h"), False, "error"),
    ("no-version", head(b"GET /", b"Host: h"), False, "error"),
    ("http-2.0-digits", head(b"GET / HTTP/20", b"Host: h"), False, "error"),
    ("header-without-crlf-before-blank", POST.replace(b"\r\n\r\n", b"\r\r\n\r\n"), False, "error"),
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", False, "error"),
    # Deferred: the head is not all there yet.
    ("empty", b"", False, "incomplete"),
    ("request-line-only", b"POST /sql HTTP/1.1\r\n", False, "incomplete"),
    ("missing-final-crlf", POST.split(b"\r\n\r\n")[0] + b"\r\n", False, "incomplete"),
    ("missing-all-crlf", POST.split(b"\r\n\r\n")[0], False, "incomplete"),
    ("half-blank-line", POST.split(b"\r\n\r\n")[0] + b"\r\n\r", False, "incomplete"),
]
CASE_IDS = [case[0] for case in CASES]


def h11_verdict(data: bytes) -> Verdict:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    if data:  # receiving b"" would mean the client closed
        conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError:
        return "error"
    if event is h11.NEED_DATA:
        return "incomplete"
    assert isinstance(event, h11.Request), event
    return "request"


def h11_header_map(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str | None]:
    """h11's (lower-cased, stripped) headers as the proxy keeps them: the first value per name."""
    result: dict[str, str | None] = {}
    for name, value in headers:
        key = name.decode("ascii")
        if key not in result:
            try:
                result[key] = value.decode("ascii")
            except UnicodeDecodeError:
                result[key] = None
    return result


def read_body(conn: h11.Connection) -> tuple[bytes, bool]:
    """The body bytes h11 has for now, and whether the message is complete."""
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return body, True
        else:
            assert event is h11.NEED_DATA, event
            return body, False


def assert_h11_agrees(data: bytes, fast: SimpleRequest) -> None:
    """h11 fed ``data`` reads exactly the request the fast path returned."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    conn.receive_data(data)
    event = conn.next_event()  # a RemoteProtocolError here is the divergence
    assert isinstance(event, h11.Request), event
    assert event.http_version == b"1.1"
    assert fast.method == event.method
    assert fast.target == event.target
    assert fast.headers == h11_header_map(event.headers)
    body, done = read_body(conn)
    assert fast.body == body
    assert done == (fast.missing == 0)
    assert len(data) - fast.size == len(conn.trailing_data[0])
    if fast.missing > MAX_HEAD:
        conn.receive_data(b"\0")  # too many to send: h11 just waits for more
        assert read_body(conn) == (b"\0", False)
        return
    if fast.missing:
        # The bytes still to come are exactly what h11 waits for.
        if fast.missing > 1:
            conn.receive_data(b"\0" * (fast.missing - 1))
            assert read_body(conn) == (b"\0" * (fast.missing - 1), False)
        conn.receive_data(b"\0")
        assert read_body(conn) == (b"\0", True)
        assert not conn.trailing_data[0]
    assert conn.their_state in (h11.DONE, h11.MUST_CLOSE)
    assert fast.keep_alive == (conn.their_state is h11.DONE)


def check(data: bytes) -> None:
    fast = parse_simple_request(data, MAX_HEAD)
    if fast is not None:
        assert_h11_agrees(data, fast)


@pytest.mark.parametrize(("name", "data", "accepted", "verdict"), CASES, ids=CASE_IDS)
def test_fast_path_accepts_only_plain_requests(name: str, data: bytes, accepted: bool, verdict: Verdict) -> None:
    assert (parse_simple_request(data, MAX_HEAD) is not None) == accepted


@pytest.mark.parametrize(("name", "data", "accepted", "verdict"), CASES, ids=CASE_IDS)
def test_edge_case_is_what_h11_says(name: str, data: bytes, accepted: bool, verdict: Verdict) -> None:
    """The corpus covers what it claims: h11 reads, rejects, or waits on each case."""
    assert h11_verdict(data) == verdict


@pytest.mark.parametrize(("name", "data", "accepted", "verdict"), CASES, ids=CASE_IDS)
def test_edge_case_accepted_as_h11_reads_it(name: str, data: bytes, accepted: bool, verdict: Verdict) -> None:
    check(data)


def test_huge_content_length_leaves_the_rest_to_come() -> None:
    data = post(b"Content-Length: 99999999999999999999", body=b"x")
    fast = parse_simple_request(data, MAX_HEAD)
    assert fast is not None
    assert (fast.body, fast.missing, fast.size) == (b"x", 99999999999999999999 - 1, len(data))


def test_every_prefix_of_a_request_agrees() -> None:
    """Cut anywhere (head or body): deferred until the head is whole, then h11's reading."""
    end = POST.index(b"\r\n\r\n") + 4
    for cut in range(len(POST) + 1):
        fast = parse_simple_request(POST[:cut], MAX_HEAD)
        assert (fast is not None) == (cut >= end), cut
        check(POST[:cut])


def test_head_longer_than_the_limit_is_deferred() -> None:
    data = post(b"X-Pad: " + b"a" * MAX_HEAD, b"Content-Length: 2")
    assert parse_simple_request(data, MAX_HEAD) is None


BASES = [
    POST,
    post(b"Connection: close", b"X-A: b", b"x-a:  c ", b"Content-Length: 5", body=b"ab"),
    head(b"GET /x?y=1 HTTP/1.1", b"Host: h", b"Accept: */*"),
    post(b"Content-Length: 2", body=b"{}") + head(b"GET / HTTP/1.1", b"Host: h"),
]
# Bytes that move the grammar's boundaries, weighted against arbitrary ones.
INTERESTING = st.sampled_from(list(b"\r\n \t:,\x00\x0b\x80\xff0123456789-+aAHhCcTt/.1"))
BYTE = st.one_of(INTERESTING, st.integers(0, 255))
EDIT = st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 1 << 16), BYTE)


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, byte in edits:
        if kind == "insert":
            buffer.insert(where % (len(buffer) + 1), byte)
        elif buffer:
            if kind == "delete":
                del buffer[where % len(buffer)]
            else:
                buffer[where % len(buffer)] = byte
    return bytes(buffer)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BASES), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_mutated_request_accepted_as_h11_reads_it(base: bytes, edits: list[tuple[str, int, int]]) -> None:
    check(mutate(base, edits))
