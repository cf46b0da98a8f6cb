"""Hostile input: whatever the peer sends, the frontend machine answers with events or RemoteProtocolError.

Never IndexError, struct.error or UnicodeDecodeError; never a hang; bounded time per byte.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neon_proto import events as ev
from neon_proto.errors import RemoteProtocolError
from neon_proto.frontend import NEED_DATA, FrontendConnection, State
from tests.test_frontend import (
    QUERY_STREAM,
    STARTUP_OK,
    auth,
    backend,
    command_complete,
    copy_response,
    data_row,
    notification,
    ready_for_query,
    row_description,
)

FUZZ = settings(
    max_examples=300,
    deadline=2000,  # milliseconds per example: a hang or quadratic blow-up fails the test
    suppress_health_check=[HealthCheck.too_slow],
)
SECONDS_PER_EXAMPLE = 2.0


def fresh() -> FrontendConnection:
    return FrontendConnection(max_message_size=1 << 16)


def in_ssl_requested() -> FrontendConnection:
    conn = fresh()
    conn.send_ssl_request()
    return conn


def in_authenticating() -> FrontendConnection:
    conn = fresh()
    conn.send_startup({"user": "u", "database": "d"})
    return conn


def in_ready() -> FrontendConnection:
    conn = in_authenticating()
    conn.receive_data(STARTUP_OK)
    while conn.next_event() is not NEED_DATA:
        pass
    assert conn.state is State.READY
    return conn


def in_busy() -> FrontendConnection:
    conn = in_ready()
    conn.send_query("SELECT 1")
    return conn


def in_pipeline() -> FrontendConnection:
    conn = in_ready()
    conn.send_parse("", "SELECT 1")
    conn.send_sync()
    conn.send_sync()
    return conn


def in_copy_in() -> FrontendConnection:
    conn = in_ready()
    conn.send_query("COPY t FROM STDIN")
    conn.receive_data(copy_response(b"G", 0, (0,)))
    assert conn.next_event() == ev.CopyInResponse(0, (0,))
    return conn


def in_copy_out() -> FrontendConnection:
    conn = in_ready()
    conn.send_query("COPY t TO STDOUT")
    conn.receive_data(copy_response(b"H", 0, (0,)))
    assert conn.next_event() == ev.CopyOutResponse(0, (0,))
    return conn


MACHINES: dict[str, Callable[[], FrontendConnection]] = {
    "ssl_requested": in_ssl_requested,
    "authenticating": in_authenticating,
    "ready": in_ready,
    "busy": in_busy,
    "pipeline": in_pipeline,
    "copy_in": in_copy_in,
    "copy_out": in_copy_out,
}

# Valid backend messages the mutations start from: the machine in BUSY accepts all of them.
VALID_QUERY_MESSAGES = [
    row_description(("a", 23), ("b", 25)),
    data_row(b"1", b"x"),
    data_row(None, b""),
    command_complete("SELECT 2"),
    notification(1, "c", "p"),
    backend(b"I"),
    backend(b"E", b"SERROR\x00C42601\x00Msyntax\x00P3\x00\x00"),
    backend(b"N", b"SNOTICE\x00Mhi\x00\x00"),
    backend(b"S", b"TimeZone\x00UTC\x00"),
    backend(b"1"),
    backend(b"2"),
    backend(b"n"),
    backend(b"t", b"\x00\x01\x00\x00\x00\x17"),
    ready_for_query(b"T"),
]


def run_machine(conn: FrontendConnection, chunks: list[bytes], eof: bool) -> list[Any]:
    """Feed ``chunks`` (then EOF), pulling every event; only RemoteProtocolError may escape."""
    started = time.monotonic()
    out: list[Any] = []
    total = sum(map(len, chunks)) + 2
    try:
        for chunk in chunks + ([b""] if eof else []):
            conn.receive_data(chunk)
            # Each call consumes at least one byte or returns NEED_DATA / END_OF_STREAM.
            for _ in range(total + 2):
                event = conn.next_event()
                if event is NEED_DATA or event is ev.END_OF_STREAM:
                    break
                assert isinstance(event, ev.Event)
                out.append(event)
            else:
                raise AssertionError("next_event never asked for more data: a loop without progress")
            if event is ev.END_OF_STREAM:
                break
    except RemoteProtocolError:
        assert conn.state is State.ERROR
    assert time.monotonic() - started < SECONDS_PER_EXAMPLE
    return out


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    pieces = []
    last = 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


@FUZZ
@given(
    state=st.sampled_from(sorted(MACHINES)),
    data=st.binary(max_size=512),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
    eof=st.booleans(),
)
def test_random_bytes_give_events_or_remote_protocol_error(state: str, data: bytes, cuts: list[int], eof: bool) -> None:
    run_machine(MACHINES[state](), split(data, cuts), eof)


# Random bytes rarely get past the type byte and length; these look like real messages.
message_type = st.sampled_from(list(b"RSKZ123nsItTCENAGHWdcv") + [ord("?")]).map(lambda c: bytes([c]))


@st.composite
def plausible_messages(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=64))
    type_byte = draw(message_type)
    length = draw(st.one_of(st.just(len(body) + 4), st.integers(min_value=-8, max_value=len(body) + 16)))
    return type_byte + length.to_bytes(4, "big", signed=True) + body


@FUZZ
@given(
    state=st.sampled_from(sorted(MACHINES)),
    messages=st.lists(plausible_messages(), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
    eof=st.booleans(),
)
def test_plausible_messages_give_events_or_remote_protocol_error(
    state: str, messages: list[bytes], cuts: list[int], eof: bool
) -> None:
    run_machine(MACHINES[state](), split(b"".join(messages), cuts), eof)


@st.composite
def mutated_stream(draw: st.DrawFn) -> bytes:
    messages = draw(st.lists(st.sampled_from(VALID_QUERY_MESSAGES), min_size=1, max_size=10))
    data = bytearray(b"".join(messages))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(min_value=1, max_value=4))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@FUZZ
@given(
    state=st.sampled_from(["busy", "pipeline", "copy_out", "ready"]),
    data=mutated_stream(),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
    eof=st.booleans(),
)
def test_mutated_valid_streams_give_events_or_remote_protocol_error(
    state: str, data: bytes, cuts: list[int], eof: bool
) -> None:
    run_machine(MACHINES[state](), split(data, cuts), eof)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(STARTUP_OK) - 1))
def test_startup_truncated_at_eof_is_a_remote_protocol_error_or_end_of_stream(cut: int) -> None:
    conn = in_authenticating()
    events = run_machine(conn, [STARTUP_OK[:cut]], eof=True)
    assert conn.state in (State.ERROR, State.CLOSED)
    assert ev.ReadyForQuery("I") not in events


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(QUERY_STREAM)), data=st.data())
def test_truncated_query_stream_ends_cleanly_or_with_remote_protocol_error(cut: int, data: st.DataObject) -> None:
    conn = in_busy()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=cut), max_size=5))
    run_machine(conn, split(QUERY_STREAM[:cut], cuts), eof=True)
    assert conn.state in (State.ERROR, State.CLOSED, State.READY)


@FUZZ
@given(
    mechanisms=st.lists(st.text(max_size=10), max_size=4),
    salt=st.binary(max_size=8),
    junk=st.binary(max_size=16),
)
def test_authentication_requests_with_odd_content(mechanisms: list[str], salt: bytes, junk: bytes) -> None:
    sasl = b"".join(m.encode("utf-8", "surrogatepass") + b"\x00" for m in mechanisms) + b"\x00"
    for message in (auth(10, sasl), auth(5, salt), auth(0, junk), auth(3, junk), auth(11, junk)):
        run_machine(in_authenticating(), [message], eof=False)


def test_huge_announced_length_costs_nothing() -> None:
    """The peer says 1 GiB is coming: refused at once, not buffered."""
    conn = in_busy()
    started = time.monotonic()
    conn.receive_data(b"D" + (1 << 30).to_bytes(4, "big") + b"\x00" * 100)
    try:
        conn.next_event()
    except RemoteProtocolError:
        pass
    else:
        raise AssertionError("a message over max_message_size was accepted")
    assert time.monotonic() - started < 0.5


def test_many_small_messages_take_linear_time() -> None:
    """A megabyte of tiny messages fed byte by byte in 1-byte reads stays fast (no quadratic rejoining)."""
    conn = in_busy()
    stream = backend(b"1") * 20000
    started = time.monotonic()
    count = 0
    for i in range(0, len(stream), 7):
        conn.receive_data(stream[i : i + 7])
        while conn.next_event() is not NEED_DATA:
            count += 1
    assert count == 20000
    assert time.monotonic() - started < 5.0


def outcome(conn: FrontendConnection, chunks: list[bytes], eof: bool, batched: bool) -> tuple[list[Any], str, State]:
    """Events (DataRows split into rows), how it ended, and the final state."""
    events: list[Any] = []
    ending = "need data"
    try:
        for chunk in chunks + ([b""] if eof else []):
            conn.receive_data(chunk)
            for _ in range(sum(map(len, chunks)) + 4):
                if batched:
                    got = conn.next_events()
                    if not got:
                        break
                else:
                    event = conn.next_event()
                    if event is NEED_DATA:
                        break
                    got = [event]
                for event in got:
                    if isinstance(event, ev.DataRows):
                        events.extend(("row", tuple(row)) for row in event.rows)
                    else:
                        events.append(event)
                if events and events[-1] is ev.END_OF_STREAM:
                    return events, "end of stream", conn.state
            else:
                raise AssertionError("no progress")
    except RemoteProtocolError:
        ending = "remote protocol error"
    return events, ending, conn.state


@FUZZ
@given(
    state=st.sampled_from(["busy", "pipeline", "copy_out", "ready", "authenticating"]),
    data=st.one_of(mutated_stream(), st.lists(plausible_messages(), max_size=10).map(b"".join)),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=6),
    eof=st.booleans(),
)
def test_batched_next_events_agrees_with_next_event(state: str, data: bytes, cuts: list[int], eof: bool) -> None:
    chunks = split(data, cuts)
    one_by_one = outcome(MACHINES[state](), chunks, eof, batched=False)
    batched = outcome(MACHINES[state](), chunks, eof, batched=True)
    assert batched == one_by_one


@FUZZ
@given(chunk_size=st.integers(min_value=1, max_value=64), eof=st.booleans())
def test_batched_next_events_on_a_valid_stream(chunk_size: int, eof: bool) -> None:
    stream = QUERY_STREAM + b"".join(VALID_QUERY_MESSAGES[:-1]) + ready_for_query(b"I")
    chunks = [stream[i : i + chunk_size] for i in range(0, len(stream), chunk_size)]
    conn = in_busy()
    conn.send_sync()
    assert outcome(conn, chunks, eof, batched=True) == outcome(
        (lambda c: (c.send_sync(), c)[1])(in_busy()), chunks, eof, batched=False
    )


# ---------------------------------------------------------------- the operations above the machine

from neon_proto.errors import Error  # noqa: E402
from neon_proto.session import Op, Query, Session  # noqa: E402

RESULT_MESSAGES = [
    backend(b"1"),
    backend(b"2"),
    row_description(("a", 23), ("b", 25)),
    data_row(b"1", b"x"),
    data_row(None, None),
    command_complete("SELECT 1"),
    ready_for_query(b"I"),
]
EXTRA_MESSAGES = [
    backend(b"n"),
    backend(b"3"),
    backend(b"I"),
    backend(b"s"),
    data_row(b"not a number", b"y"),
    data_row(b"1"),
    command_complete("INSERT 0 1"),
    backend(b"E", b"SERROR\x00VERROR\x00C42601\x00Msyntax\x00\x00"),
    backend(b"E", b"SFATAL\x00VFATAL\x0057P01\x00Mbye\x00\x00"),
    backend(b"N", b"SNOTICE\x00Mhi\x00\x00"),
    notification(7, "c", "p"),
    backend(b"S", b"TimeZone\x00UTC\x00"),
    copy_response(b"G", 0, (0,)),
    copy_response(b"H", 0, (0,)),
    backend(b"d", b"1\n"),
    backend(b"c"),
    ready_for_query(b"E"),
    auth(0),
]


def ready_session() -> Session:
    session = Session()
    startup = session.startup({"user": "u"}, None)
    assert isinstance(startup.send(None), bytes)
    try:
        out = startup.send(None)
        assert out is None
        startup.send(STARTUP_OK)
    except StopIteration:
        pass
    assert session.idle
    return session


def drive(op: Op[Any], chunks: list[bytes]) -> None:
    """Run an operation against canned server bytes, then EOF; only our own errors may escape."""
    feed_chunks = iter(chunks)
    started = time.monotonic()
    try:
        out = op.send(None)
        for _ in range(10 * len(chunks) + 100):
            out = op.send(next(feed_chunks, b"") if out is None else None)
        raise AssertionError("the operation neither finished nor failed")
    except StopIteration:
        pass
    except Error:
        pass
    assert time.monotonic() - started < SECONDS_PER_EXAMPLE


@st.composite
def mutated_responses(draw: st.DrawFn, queries: int) -> bytes:
    messages = list(RESULT_MESSAGES) * queries
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"]))
        at = draw(st.integers(min_value=0, max_value=len(messages) - 1))
        if kind == "delete" and len(messages) > 1:
            del messages[at]
        elif kind == "duplicate":
            messages.insert(at, messages[at])
        elif kind == "swap":
            other = draw(st.integers(min_value=0, max_value=len(messages) - 1))
            messages[at], messages[other] = messages[other], messages[at]
        else:
            messages.insert(at, draw(st.sampled_from(EXTRA_MESSAGES)))
    return b"".join(messages)


OPERATIONS: dict[str, Callable[[Session], Op[Any]]] = {
    "execute": lambda s: s.execute("SELECT $1::int AS a, 'x' AS b", [1]),
    "pipeline": lambda s: s.pipeline([Query("SELECT 1"), Query("SELECT 2")], sync_each=True),
    "atomic pipeline": lambda s: s.pipeline([Query("SELECT 1"), Query("SELECT 2")]),
    "simple query": lambda s: s.simple_query("SELECT 1; SELECT 2"),
    "execute many": lambda s: s.execute_many("INSERT INTO t VALUES ($1)", [(1,), (2,)]),
}


@FUZZ
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    responses=mutated_responses(queries=2),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=4),
)
def test_operations_survive_odd_server_answers(operation: str, responses: bytes, cuts: list[int]) -> None:
    drive(OPERATIONS[operation](ready_session()), split(responses, cuts))


def test_results_after_the_last_query_break_the_session_cleanly() -> None:
    session = ready_session()
    extra = backend(b"1") + backend(b"2") + backend(b"n") + command_complete("SELECT 0") + command_complete("SELECT 0")
    op = session.pipeline([Query("SELECT 1")])
    assert isinstance(op.send(None), bytes)
    assert op.send(None) is None
    try:
        op.send(extra)
    except RemoteProtocolError as exc:
        assert "every query already has its result" in str(exc)
    else:
        raise AssertionError("an extra CommandComplete was accepted")
    assert session.closed  # the binding drops the socket: the stream cannot be trusted


def test_one_large_message_in_small_reads_takes_linear_time() -> None:
    """8 MB of DataRow in 4 KB reads: the buffer is joined once, not once per read."""
    conn = FrontendConnection()
    conn.send_startup({"user": "u"})
    conn.receive_data(STARTUP_OK)
    while conn.next_event() is not NEED_DATA:
        pass
    conn.send_query("SELECT big")
    message = data_row(b"x" * (8 << 20))
    started = time.monotonic()
    events: list[Any] = []
    for i in range(0, len(message), 4096):
        conn.receive_data(message[i : i + 4096])
        events += conn.next_events()
    assert time.monotonic() - started < 2.0
    assert len(events) == 1 and events[0].rows[0][0] == b"x" * (8 << 20)
