"""Reading a plain HTTP/1.1 request head in one pass: the proxy's common case, cheaply.

A client of the proxy sends a small ``POST /sql``; its head and body arrive together, or
the body right behind the head. h11 reads it through a general state machine, which costs
as much as the rest of the request's Python work. ``parse_simple_request`` accepts only a
narrow subset, with h11's own grammar (RFC 9110/9112, copied from ``h11._abnf``), and says
None to anything else: an incomplete head, HTTP/1.0, a folded or malformed line,
Transfer-Encoding, Expect, Upgrade, several or odd Content-Lengths, a missing or repeated
Host. The caller then hands the same bytes to h11, so every request that is not plainly
valid gets h11's verdict. An accepted request's body is framed by its Content-Length
alone: what arrived with the head, and how many bytes are still to come.
"""

from __future__ import annotations

import re

__all__ = ["SimpleRequest", "parse_simple_request"]

# h11._abnf, as bytes patterns.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD_VCHAR = rb"[^\x00\s]"
_FIELD_CONTENT = _FIELD_VCHAR + rb"+(?:[ \t]+" + _FIELD_VCHAR + rb"+)*"
_HEADER_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:" + _FIELD_CONTENT + rb")?)[ \t]*")
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.1")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,20}")

# Headers whose presence means the request is not simple: h11 decides.
_NOT_SIMPLE = frozenset({"transfer-encoding", "expect", "upgrade"})


class SimpleRequest:
    """A request: method, target, headers (first value per lower-case name), the body so far."""

    __slots__ = ("method", "target", "headers", "keep_alive", "body", "missing", "size")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: dict[str, str | None],
        keep_alive: bool,
        body: bytes,
        missing: int,
        size: int,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = body  # the body, or its start when ``missing`` bytes are still to come
        self.missing = missing
        self.size = size  # bytes of the request (head and body) in the parsed data

    def __repr__(self) -> str:
        return (
            f"<SimpleRequest {self.method.decode('ascii')} {self.target.decode('ascii')}"
            f" {len(self.body)} bytes, {self.missing} to come>"
        )


def parse_simple_request(data: bytes, max_head_size: int) -> SimpleRequest | None:
    """The request at the start of ``data`` if its head is complete and plainly valid, else None.

    Header values that are not ASCII map to None, as in the proxy's header map.
    """
    end = data.find(b"\r\n\r\n", 0, max_head_size)
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    request_line = _REQUEST_LINE.fullmatch(lines[0])
    if request_line is None:
        return None
    headers: dict[str, str | None] = {}
    hosts = 0
    lengths = 0
    keep_alive = True
    match_field = _HEADER_FIELD.fullmatch
    for line in lines[1:]:
        field = match_field(line)
        if field is None:
            return None  # a folded or malformed line: h11 says what is wrong
        name = field[1].lower().decode("ascii")
        value = field[2]
        if name == "host":
            hosts += 1
        elif name == "content-length":
            lengths += 1
        elif name == "connection":
            if b"close" in [token.strip() for token in value.lower().split(b",")]:
                keep_alive = False
        elif name in _NOT_SIMPLE:
            return None
        if name not in headers:
            try:
                headers[name] = value.decode("ascii")
            except UnicodeDecodeError:
                headers[name] = None
    if hosts != 1 or lengths > 1:
        return None
    length = 0
    if lengths:
        text = headers["content-length"]
        if text is None or _CONTENT_LENGTH.fullmatch(text.encode("ascii")) is None:
            return None
        length = int(text)
    method = request_line[1]
    if method == b"CONNECT":
        return None
    start = end + 4
    size = min(len(data), start + length)
    return SimpleRequest(
        method, request_line[2], headers, keep_alive, data[start:size], start + length - size, size
    )
