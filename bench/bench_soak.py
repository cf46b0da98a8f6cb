"""Soak test of neon_proxy: many keep-alive clients sending good, malformed, slow and abandoned requests.

    python bench/bench_soak.py [--clients 256] [--duration 60] [--write]

A throwaway Postgres and the proxy (a subprocess, as deployed: ``python -m neon_proxy``) run
on loopback. Each client is a trio task with its own keep-alive connection; each round it
sends one of: a good query (checked: status 200 and the right answer), a malformed request
(bad JSON, ``1e400``, deep nesting, a bad chunk size, a header with a NUL), a slow request
(head or body trickled, some past the deadlines) or an abandoned one (half sent, then the
socket is closed). Reported: requests served, errors among the good ones (the target is 0),
good-request latency p50/p99, the proxy's RSS and open descriptors at the start and end,
and the upstream backends (back to the baseline once idle connections expire).
``--write`` puts the report in bench/RESULTS_SOAK.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from neon_proxy.testing import upstream_url  # noqa: E402
from neon_sync import Client  # noqa: E402
from neon_sync.embedded import EmbeddedPostgres  # noqa: E402

HEAD_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends(pg: EmbeddedPostgres, user: str) -> int:
    with Client(pg.dsn()) as admin:
        result = admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1", [user])
    return int(result.rows[0]["n"])


class Stats:
    def __init__(self) -> None:
        self.served = 0  # responses received, any status
        self.kinds: dict[str, int] = {}
        self.good_latencies: list[float] = []
        self.good_errors: list[str] = []
        self.statuses: dict[int, int] = {}

    def count(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, bytes, bool]:
    """One response: status, body, and whether the server closes the connection."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("closed before the response head")
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("closed in the body")
        rest += data
    del buffer[:]
    buffer += rest[length:]
    return status, rest[:length], headers.get(b"connection", b"").lower() == b"close"


def request_bytes(url: str, body: bytes, extra: str = "") -> bytes:
    head = (
        f"POST /sql HTTP/1.1\r\nHost: soak\r\nNeon-Connection-String: {url}\r\nNeon-Array-Mode: true\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


MALFORMED = [
    lambda url: request_bytes(url, b'{"query": "SELECT 1", "params": [1e400]}'),
    lambda url: request_bytes(url, b'{"query": "SELECT 1",'),
    lambda url: request_bytes(url, b'{"query":"SELECT $1","params":[' + b"[" * 300 + b"]" * 300 + b"]}"),
    lambda url: request_bytes(url, b'{"query":"SELECT $1","params":["\\ud800"]}'),
    lambda url: (
        f"POST /sql HTTP/1.1\r\nHost: soak\r\nNeon-Connection-String: {url}\r\nTransfer-Encoding: chunked\r\n\r\n"
        "zz\r\n{}\r\n0\r\n\r\n"
    ).encode(),
    lambda url: f"POST /sql HTTP/1.1\r\nHost: soak\r\nNeon-Connection-String: {url}\x00\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
]


async def client_loop(port: int, url: str, stats: Stats, stop_at: float, rng: random.Random) -> None:
    stream: trio.SocketStream | None = None
    buffer = bytearray()
    while trio.current_time() < stop_at:
        if stream is None:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.05)
                continue
            buffer = bytearray()
        roll = rng.random()
        try:
            if roll < 0.85:
                stats.count("good")
                n = rng.randrange(1_000_000)
                body = json.dumps({"query": "SELECT $1::int + 1", "params": [n]}).encode()
                started = time.perf_counter()
                await stream.send_all(request_bytes(url, body))
                try:
                    status, payload, closing = await read_response(stream, buffer)
                except ConnectionError as exc:
                    stats.good_errors.append(f"connection: {exc}")
                    await stream.aclose()
                    stream = None
                    continue
                stats.served += 1
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                if status != 200 or json.loads(payload)["rows"] != [[n + 1]]:
                    stats.good_errors.append(f"{status}: {payload[:200]!r}")
                else:
                    stats.good_latencies.append(time.perf_counter() - started)
                if closing:
                    await stream.aclose()
                    stream = None
            elif roll < 0.90:
                stats.count("malformed")
                await stream.send_all(rng.choice(MALFORMED)(url))
                try:
                    status, _payload, _closing = await read_response(stream, buffer)
                    stats.served += 1
                    stats.statuses[status] = stats.statuses.get(status, 0) + 1
                except ConnectionError:
                    pass
                await stream.aclose()
                stream = None
            elif roll < 0.95:
                stats.count("slow")
                body = b'{"query": "SELECT 1"}'
                data = request_bytes(url, body)
                pace = rng.uniform(0.5, 3.5) / len(data)  # some finish in time, some do not
                with trio.move_on_after(HEAD_TIMEOUT + BODY_TIMEOUT + 2):
                    try:
                        for i in range(0, len(data), 8):
                            await stream.send_all(data[i : i + 8])
                            await trio.sleep(pace * 8)
                    except (trio.BrokenResourceError, OSError):
                        pass  # answered (408) and closed while we were still sending: read the answer
                    try:
                        status, _payload, _closing = await read_response(stream, buffer)
                        stats.served += 1
                        stats.statuses[status] = stats.statuses.get(status, 0) + 1
                    except (ConnectionError, trio.BrokenResourceError, OSError):
                        pass
                await stream.aclose()
                stream = None
            else:
                stats.count("abandoned")
                data = request_bytes(url, b'{"query": "SELECT pg_sleep(0.05)"}')
                await stream.send_all(data[: rng.randrange(1, len(data))])
                await stream.aclose()
                stream = None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            if stream is not None:
                await trio.aclose_forcefully(stream)
            stream = None
    if stream is not None:
        await stream.aclose()


async def load(port: int, url: str, clients: int, duration: float, seed: int) -> Stats:
    stats = Stats()
    stop_at = trio.current_time() + duration
    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client_loop, port, url, stats, stop_at, random.Random(seed + i))
    return stats


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS_SOAK.md")
    args = parser.parse_args()

    with EmbeddedPostgres(tls=False) as pg:
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would stall the proxy
        proxy = subprocess.Popen(
            [
                sys.executable, "-m", "neon_proxy", "--listen", f"127.0.0.1:{port}", "--upstream", upstream_url(pg),
                "--head-timeout", str(HEAD_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
                "--pool-idle-timeout", str(IDLE_TIMEOUT), "--pool-rare-idle-timeout", str(IDLE_TIMEOUT),
                "--log-level", "INFO",
            ],
            env=env,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            user = "trust_user"
            url = f"postgresql://{user}:x@localhost:{pg.port}/postgres"
            base = {"rss": proc_rss_kib(proxy.pid), "fds": proc_fds(proxy.pid), "backends": backends(pg, user)}
            load_before = os.getloadavg()
            cpu_before = cpu_seconds(proxy.pid)
            wall = time.perf_counter()
            stats = trio.run(load, port, url, args.clients, args.duration, args.seed)
            wall = time.perf_counter() - wall
            proxy_cpu = cpu_seconds(proxy.pid) - cpu_before
            load_after = os.getloadavg()
            right_after = {"rss": proc_rss_kib(proxy.pid), "fds": proc_fds(proxy.pid), "backends": backends(pg, user)}
            time.sleep(IDLE_TIMEOUT * 2 + 1)  # idle upstream connections expire
            end = {"rss": proc_rss_kib(proxy.pid), "fds": proc_fds(proxy.pid), "backends": backends(pg, user)}
        finally:
            proxy.terminate()
            proxy.wait(timeout=30)
            log.seek(0)
            err = log.read()
            log.close()
    tracebacks = err.count("Traceback")
    in_proxy = [float(m) / 1000 for m in re.findall(r"POST /sql -> 200 in ([0-9.]+) ms", err)]
    error_lines = sum(1 for line in err.splitlines() if " ERROR " in line)
    good = stats.kinds.get("good", 0)
    report = f"""# neon_proxy soak run

`python bench/bench_soak.py --clients {args.clients} --duration {args.duration:g}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},
loopback only: a throwaway PostgreSQL 15, the proxy as a subprocess (`--head-timeout {HEAD_TIMEOUT:g}
--body-timeout {BODY_TIMEOUT:g} --pool-idle-timeout {IDLE_TIMEOUT:g}`, other limits at their defaults), and
{args.clients} keep-alive clients (trio tasks in this process) for {wall:.1f} s. Each round a client sends a good
query (85%, answer checked), a malformed request (5%: `1e400`, bad JSON, 300-deep nesting, a lone
surrogate, chunk size `zz`, a header with a NUL), a slow one (5%: trickled over 0.5-3.5 s, so
some pass the deadlines and get 408) or an abandoned one (5%: half sent, then closed).

The machine has 2 cores shared with other developers' work: load average {load_before[0]:.2f} before
and {load_after[0]:.2f} after the run. The load generator (one Python process), the proxy (logging
every request at INFO, to a file) and Postgres share those cores, so the throughput and latency below
are a floor, not the proxy's capacity. The clients' latency includes the time their own process,
busy with 256 connections, takes to get to a response; the proxy's own log gives the time a
request spent in the proxy.

| | |
|---|---|
| requests answered | {stats.served} ({stats.served / wall:.0f}/s) |
| rounds by kind | {", ".join(f"{k} {v}" for k, v in sorted(stats.kinds.items()))} |
| statuses | {", ".join(f"{k}: {v}" for k, v in sorted(stats.statuses.items()))} |
| errors among the {good} good requests | **{len(stats.good_errors)}** |
| good request latency, seen by the clients | p50 {percentile(stats.good_latencies, 0.5) * 1000:.1f} ms, p99 {percentile(stats.good_latencies, 0.99) * 1000:.1f} ms |
| 200 responses, time in the proxy (its log) | p50 {percentile(in_proxy, 0.5) * 1000:.1f} ms, p99 {percentile(in_proxy, 0.99) * 1000:.1f} ms, max {max(in_proxy, default=0) * 1000:.0f} ms |
| proxy CPU | {proxy_cpu:.1f} s ({proxy_cpu / wall * 100:.0f}% of a core) |
| proxy RSS | {base['rss'] / 1024:.1f} MiB at the start, {right_after['rss'] / 1024:.1f} MiB after the load, {end['rss'] / 1024:.1f} MiB at the end |
| proxy open descriptors | {base['fds']} at the start, {right_after['fds']} right after the load, {end['fds']} at the end |
| upstream backends of the user | {base['backends']} at the start, {right_after['backends']} right after the load (idle pool), {end['backends']} at the end (after idle expiry) |
| tracebacks / ERROR lines in the proxy's log | {tracebacks} / {error_lines} |
"""
    if stats.good_errors:
        report += "\nFirst errors among the good requests:\n\n" + "\n".join(f"- `{e}`" for e in stats.good_errors[:10]) + "\n"
    print(report)
    if args.write:
        (ROOT / "bench" / "RESULTS_SOAK.md").write_text(report)


if __name__ == "__main__":
    main()
