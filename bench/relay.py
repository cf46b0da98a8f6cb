"""A loopback TCP relay that delays each direction by ``delay`` seconds: a round-trip counter.

Every chunk read from one side is written to the other ``delay`` seconds after it arrived,
so order and throughput are kept and each request/response exchange costs ``2 * delay``
more than it does direct. Hence::

    round trips = (time through the relay - time direct) / (2 * delay)

The TCP handshake with the relay is local (not delayed): only protocol round trips count.
Loopback only, and the relay stops by itself after ``lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import socket
import threading
import time
from types import TracebackType

__all__ = ["DelayRelay"]


def _check_loopback(host: str) -> None:
    if host == "localhost" or not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the relay only runs on 127.0.0.1 (got {host!r})")


class _DelayedPipe:
    """One direction of one connection: a reader that timestamps chunks, a writer that waits."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, on_end: threading.Event) -> None:
        self._src = src
        self._dst = dst
        self._delay = delay
        self._queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self._ready = threading.Condition()
        self._on_end = on_end
        self.threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._write, daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self._src.recv(262144)
                due = time.monotonic() + self._delay
                with self._ready:
                    self._queue.append((due, data))
                    self._ready.notify()
                if not data:
                    return
        except OSError:
            with self._ready:
                self._queue.append((time.monotonic(), b""))
                self._ready.notify()

    def _write(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._queue:
                        self._ready.wait()
                    due, data = self._queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    self._dst.shutdown(socket.SHUT_WR)
                    return
                self._dst.sendall(data)
        except OSError:
            pass
        finally:
            self._on_end.set()


class DelayRelay:
    """Listen on 127.0.0.1 (a free port) and forward each connection to ``target`` with a delay."""

    def __init__(self, target_port: int, *, delay: float = 0.020, target_host: str = "127.0.0.1",
                 lifetime: float = 600.0) -> None:
        _check_loopback(target_host)
        if not 0 <= delay <= 1:
            raise ValueError("delay is in seconds, between 0 and 1")
        self.delay = delay
        self.target = (target_host, target_port)
        self.lifetime = lifetime
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.host, self.port = self._listener.getsockname()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "DelayRelay":
        accept = threading.Thread(target=self._accept, daemon=True)
        timer = threading.Timer(self.lifetime, self.stop)
        timer.daemon = True
        self._threads += [accept, timer]
        accept.start()
        timer.start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopped.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            ended = threading.Event()
            for pipe in (_DelayedPipe(client, upstream, self.delay, ended),
                         _DelayedPipe(upstream, client, self.delay, ended)):
                pipe.start()

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        self._stopped.set()
        try:
            self._listener.close()
        except OSError:
            pass
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def __enter__(self) -> "DelayRelay":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target_port", type=int, help="port on 127.0.0.1 to forward to")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="delay per direction (default 20)")
    parser.add_argument("--lifetime", type=float, default=600.0, help="seconds before the relay stops")
    args = parser.parse_args()
    relay = DelayRelay(args.target_port, delay=args.delay_ms / 1000, lifetime=args.lifetime).start()
    print(f"relaying 127.0.0.1:{relay.port} -> 127.0.0.1:{args.target_port}, "
          f"{args.delay_ms:g} ms each way, for {args.lifetime:g} s", flush=True)
    try:
        relay._stopped.wait()
    except KeyboardInterrupt:
        relay.stop()


if __name__ == "__main__":
    main()
