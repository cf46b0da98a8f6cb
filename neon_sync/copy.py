"""``Copy``: COPY ... FROM STDIN / TO STDOUT as a context manager, psycopg's way.

    with client.copy("COPY t (id, name) FROM STDIN") as copy:
        copy.write_row((1, "a"))          # values through the dumpers, text format
        copy.write(b"2\\tb\\n")            # or raw data
    with client.copy("COPY t TO STDOUT") as copy:
        copy.set_types(["int4", "text"])  # optional: load values instead of str
        for row in copy.rows(): ...

The protocol steps live in ``neon_proto.session`` and the text format in ``neon_proto.copy``.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from neon_proto import events as ev
from neon_proto.copy import CopyRowReader, CopyRowWriter
from neon_proto.errors import ConnectionClosed, Error, ProgrammingError

if TYPE_CHECKING:
    from neon_sync.client import Client

__all__ = ["Copy"]

_FLUSH_AT = 128 * 1024
_LINES_PER_FLUSH = 2048
_DIRECT_AT = 32 * 1024  # a write this large goes out as its own message, without buffering


class Copy:
    """A COPY in progress on a client: write to it (FROM STDIN) or read from it (TO STDOUT)."""

    def __init__(self, client: "Client", sql: str) -> None:
        self._client = client
        self._sql = sql
        self._direction: str | None = None
        self._buffer = bytearray()
        self._writer: CopyRowWriter | None = None
        self._lines: list[str] | None = None  # rows formatted but not yet encoded
        self._pending_rows: deque[tuple[Any, ...]] = deque()  # read but not yet handed out
        self._reader: CopyRowReader | None = None
        self._finished = False
        #: Rows copied, known once the COPY is over.
        self.rowcount = -1

    @property
    def direction(self) -> str | None:
        """``"in"`` (FROM STDIN), ``"out"`` (TO STDOUT), or None before the COPY started."""
        return self._direction

    def __enter__(self) -> "Copy":
        client = self._client
        start = client._run(client.session.copy_start(self._sql))
        self._direction = "in" if isinstance(start, ev.CopyInResponse) else "out"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._finished or self._client.closed:
            return
        if self._direction == "in":
            if exc is None:
                self._flush()
                self._finish_in(None)
            elif isinstance(exc, KeyboardInterrupt):
                self._client._abandon()
            else:
                try:
                    self._finish_in(f"client error: {type(exc).__name__}")
                except Error:
                    pass  # the server's answer to our CopyFail: the caller's own error goes on
        elif self._direction == "out":
            # Stopped early: read the rest so that the connection can run queries again.
            while not self._finished:
                self._read_batch()

    # ------------------------------------------------------------------ FROM STDIN

    def _need(self, direction: str) -> None:
        if self._direction is None:
            raise ProgrammingError("use the copy inside a `with` block")
        if self._direction != direction:
            what = "COPY ... FROM STDIN" if direction == "in" else "COPY ... TO STDOUT"
            raise ProgrammingError(f"this needs a {what} statement")
        if self._finished:
            raise ProgrammingError("the COPY is already over")

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send raw data in the COPY's format (buffered; sent in large messages)."""
        self._need("in")
        if self._lines:
            self._flush()  # rows written before keep their place
        if isinstance(data, str):
            data = data.encode()
        if len(data) >= _DIRECT_AT:
            self._flush()
            self._send(self._client.session.copy_in_data(data))  # large enough for its own message
            return
        self._buffer += data
        if len(self._buffer) >= _FLUSH_AT:
            self._flush()

    def write_row(self, row: Sequence[Any]) -> None:
        """Send one row (text format); each value goes through the connection's dumpers."""
        lines = self._lines
        if lines is None:
            self._need("in")
            self._writer = CopyRowWriter(self._client.registry)
            lines = self._lines = []
        lines.append(self._writer.format_line(row))  # type: ignore[union-attr]
        if len(lines) >= _LINES_PER_FLUSH:
            self._flush()

    def _flush(self) -> None:
        lines = self._lines
        if lines:
            self._buffer += "".join(lines).encode()
            lines.clear()
        if not self._buffer:
            return
        data = self._client.session.copy_in_data(self._buffer)
        self._buffer = bytearray()
        self._send(data)

    def _send(self, data: bytes) -> None:
        client = self._client
        transport = client._transport
        assert transport is not None
        try:
            transport.send(data, client.session.conn)
        except OSError as exc:
            transport.close()
            raise ConnectionClosed(f"the connection was lost during COPY: {exc}") from exc

    def _finish_in(self, failure: str | None) -> None:
        self._finished = True
        self._lines = None  # a later write_row checks the state again
        result = self._client._run(self._client.session.copy_in_finish(failure))
        self.rowcount = result.row_count if result.row_count is not None else -1

    # ------------------------------------------------------------------ TO STDOUT

    def _read_batch(self) -> bytes:
        data, done = self._client._run(self._client.session.copy_out_batch())
        if done:
            self._finished = True
        return bytes(data)

    def read(self) -> bytes:
        """The next data received (many rows at once); ``b""`` once the COPY is over."""
        if self._direction == "out" and self._finished:
            return b""
        self._need("out")
        while True:
            data = self._read_batch()
            if data or self._finished:
                return data

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read()
            if not data:
                return
            yield data

    def set_types(self, types: Sequence[int | str]) -> None:
        """Load the columns of ``rows()`` as these types (OIDs or names such as ``"int8"``)."""
        self._row_reader().set_types(types)

    def _row_reader(self) -> CopyRowReader:
        if self._reader is None:
            self._reader = CopyRowReader(self._client.registry, self._client.info.encoding)
        return self._reader

    def read_row(self) -> tuple[Any, ...] | None:
        """The next row (as ``rows()`` gives them), or None once the COPY is over."""
        pending = self._pending_rows
        while not pending:
            data = self.read()
            reader = self._row_reader()
            if not data:
                reader.finish()
                return None
            pending.extend(reader.feed(data))
        return pending.popleft()

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """The rows as tuples (text format): str values, or loaded after ``set_types``."""
        reader = self._row_reader()
        pending = self._pending_rows
        while pending:
            yield pending.popleft()
        for data in self:
            yield from reader.feed(data)
        reader.finish()
