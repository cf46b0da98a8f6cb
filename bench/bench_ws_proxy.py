"""neon_proxy's WebSocket endpoint (auth mode): latency, 32-session throughput, round trips.

Run ``.venv/bin/python bench/bench_ws_proxy.py [--quick]`` after the test suite has installed
the JS driver into .cache/js (``./dev test tests/test_js_ws.py``). It starts its own Postgres
(SCRAM superuser) and neon_proxy in a subprocess, then measures:

* warm latency of ``SELECT $1::int`` on one connection: the JS driver's ``Client.query``
  over the proxy, ``neon_sync.Client`` over the proxy when this checkout's neon_sync has the
  WebSocket transport, a minimal blocking client made of wsproto and neon_proto's Session
  over the proxy (what the protocol costs a Python client, no binding around it), and
  ``neon_sync.Client`` over direct TCP; interleaved round by round; with the proxy's CPU per
  query;
* throughput: 32 JS driver sessions (two Node processes) querying back to back for a fixed
  time through the proxy: queries/s, p50/p99, and the proxy's CPU per relayed query, with
  where the machine's cores went (the machine is shared: the last column says how much);
* round trips for a fresh connection plus its first query (the JS driver's pipelined
  connect), through bench/relay.py delaying each direction by D:
  round trips = (time through the relay - time direct) / (2 D), beyond the TCP handshake.

Results are printed and written to bench/RESULTS_WS.md (its "WebSocket proxy" section).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_http import _child_env, _read_line, machine_busy, process_cpu, start_relay, stop  # noqa: E402

QUERY = "SELECT $1::int"
JS_DIR = os.path.join(ROOT, ".cache", "js", "node_modules")
SECTION_START = "<!-- bench_ws_proxy.py: start -->"
SECTION_END = "<!-- bench_ws_proxy.py: end -->"


@dataclass(frozen=True)
class Sizes:
    queries: int
    rounds: int
    load_seconds: float
    sessions: int
    rtt_delay: float
    rtt_connects: int


FULL = Sizes(queries=2000, rounds=5, load_seconds=8.0, sessions=32, rtt_delay=0.050, rtt_connects=15)
QUICK = Sizes(queries=500, rounds=2, load_seconds=3.0, sessions=32, rtt_delay=0.020, rtt_connects=7)


def start_ws_proxy(upstream: str) -> tuple[subprocess.Popen[str], str]:
    """neon_proxy in its own process; returns it and its ``NEON_WS_PROXY`` (host:port/v2)."""
    argv = [sys.executable, "-m", "neon_proxy", "dev", "--upstream", upstream, "--listen", "127.0.0.1:0",
            "--log-level", "WARNING"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env())
    return proc, _read_line(proc, "NEON_WS_PROXY=", "neon_proxy")


def node_env(database_url: str, ws_proxy: str) -> dict[str, str]:
    from pathlib import Path

    module = Path(JS_DIR) / "@neondatabase" / "serverless" / "index.mjs"
    if not module.exists():
        raise SystemExit("the JS driver is not in .cache/js: run `./dev test tests/test_js_ws.py` once first")
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "NODE_NO_WARNINGS": "1",
        "NEON_SERVERLESS_MODULE": module.as_uri(),
        "NEON_WS_MODULE": (Path(JS_DIR) / "ws" / "wrapper.mjs").as_uri(),
        "DATABASE_URL": database_url,
        "NEON_WS_PROXY": ws_proxy,
    }


def run_node(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run(["node", os.path.join(HERE, "js", "ws_bench.mjs"), *args], env=env, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"node ws_bench.mjs {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def descendants_cpu(root: int | None) -> float:
    """CPU seconds of ``root`` and every process below it (Postgres may run under a wrapper)."""
    if root is None:
        return 0.0
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(name)] = int(fields[1])
        cpu[int(name)] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in cpu:
        p = pid
        while p and p != root:
            p = parents.get(p, 0)
        if p == root:
            total += cpu[pid]
    return total


# ---------------------------------------------------------------------------------- Python clients


class HarnessClient:
    """A blocking client of nothing but wsproto and neon_proto's Session over the proxy's WebSocket."""

    def __init__(self, ws_proxy: str, user: str, password: str, database: str) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        from neon_proto.session import Session

        host_port, _, path = ws_proxy.partition("/")
        host, _, port = host_port.rpartition(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=host, target=f"/{path}?address=localhost:5432")))
        accepted = False
        while not accepted:
            self.ws.receive_data(self.sock.recv(65536))
            accepted = any(isinstance(e, AcceptConnection) for e in self.ws.events())
        self.session = Session()
        self._drive(self.session.startup({"user": user, "database": database}, password))

    def _drive(self, op: Any) -> Any:
        from wsproto.events import BytesMessage

        ws, sock = self.ws, self.sock
        out = op.send(None)
        try:
            while True:
                if out is None:
                    data = b""
                    while not data:
                        ws.receive_data(sock.recv(262144))
                        data = b"".join(bytes(e.data) for e in ws.events() if isinstance(e, BytesMessage))
                    out = op.send(data)
                else:
                    if out:
                        sock.sendall(ws.send(BytesMessage(data=out)))
                    out = op.send(None)
        except StopIteration as stop:
            return stop.value

    def query(self, sql: str, params: list[Any]) -> Any:
        return self._drive(self.session.execute(sql, params, mode="list"))

    def close(self) -> None:
        self.sock.close()


@dataclass
class Driver:
    name: str
    run: Callable[[int], Any]
    close: Callable[[], None]


def python_drivers(dsn: str, ws_proxy: str, user: str, password: str) -> tuple[list[Driver], list[str]]:
    from neon_sync import Client

    notes: list[str] = []
    drivers: list[Driver] = []
    try:
        ws_client: Any = Client(dsn, transport="websocket", ws_proxy=ws_proxy, use_secure_websocket=False)
        ws_client.connect()
        drivers.append(Driver("neon_sync.Client (WebSocket via proxy)", lambda i: ws_client.query(QUERY, [i]), ws_client.close))
    except Exception as exc:  # this checkout's neon_sync may not have the WebSocket transport yet
        notes.append(f"neon_sync.Client over WebSocket not measured: {type(exc).__name__}: {exc}")
    harness = HarnessClient(ws_proxy, user, password, "postgres")
    drivers.append(Driver("Session + wsproto harness (WebSocket via proxy)", lambda i: harness.query(QUERY, [i]), harness.close))
    tcp = Client(dsn).connect()
    drivers.append(Driver("neon_sync.Client (TCP, direct)", lambda i: tcp.query(QUERY, [i]), tcp.close))
    for driver in drivers:
        result = driver.run(7)
        first = result.rows[0]
        if (first["int4"] if isinstance(first, dict) else first[0]) != 7:
            raise RuntimeError(f"{driver.name} returned {result!r}")
    return drivers, notes


# ---------------------------------------------------------------------------------- measurements


@dataclass
class Latency:
    median_us: float
    mean_us: float
    proxy_cpu_us: float | None


def measure_latency(drivers: list[Driver], env: dict[str, str], sizes: Sizes, proxy_pid: int,
                    log: Callable[[str], None]) -> dict[str, Latency]:
    samples: dict[str, list[float]] = {}
    proxy: dict[str, list[float]] = {}
    js = "@neondatabase/serverless Client (WebSocket via proxy)"
    for r in range(sizes.rounds):
        for driver in drivers:
            for i in range(200):
                driver.run(i)
            cpu = process_cpu(proxy_pid)
            times = []
            for i in range(sizes.queries):
                t = time.perf_counter()
                driver.run(i)
                times.append((time.perf_counter() - t) * 1e6)
            proxy.setdefault(driver.name, []).append((process_cpu(proxy_pid) - cpu) / sizes.queries * 1e6)
            samples.setdefault(driver.name, []).extend(times)
        cpu = process_cpu(proxy_pid)
        us = run_node(env, "latency", str(sizes.queries))["us"]
        # The node run also opened and closed a session and ran 200 warm-up queries.
        proxy.setdefault(js, []).append((process_cpu(proxy_pid) - cpu) / (sizes.queries + 200) * 1e6)
        samples.setdefault(js, []).extend(us)
        log(f"latency round {r + 1}/{sizes.rounds} done")
    return {
        name: Latency(statistics.median(values), statistics.fmean(values), statistics.median(proxy[name]))
        for name, values in samples.items()
    }


@dataclass
class Throughput:
    sessions: int
    seconds: float
    queries: int
    p50_ms: float
    p99_ms: float
    proxy_cpu_s: float
    node_cpu_s: float
    postgres_cpu_s: float
    machine_busy_s: float

    @property
    def qps(self) -> float:
        return self.queries / self.seconds

    @property
    def proxy_us_per_query(self) -> float:
        return self.proxy_cpu_s / self.queries * 1e6


def measure_throughput(env: dict[str, str], sizes: Sizes, proxy_pid: int, postgres_pid: int | None) -> Throughput:
    processes = 2
    per = sizes.sessions // processes
    start_at = int((time.time() + 3.0) * 1000)
    procs = [
        subprocess.Popen(["node", os.path.join(HERE, "js", "ws_bench.mjs"), "load", str(per), str(sizes.load_seconds),
                          str(start_at)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    time.sleep(max(0.0, start_at / 1000 - time.time()))
    proxy0, busy0 = process_cpu(proxy_pid), machine_busy()
    pg0 = descendants_cpu(postgres_pid)
    node0 = sum(process_cpu(p.pid) for p in procs)
    time.sleep(sizes.load_seconds)
    proxy1, busy1 = process_cpu(proxy_pid), machine_busy()
    pg1 = descendants_cpu(postgres_pid)
    node1 = sum(process_cpu(p.pid) for p in procs)
    latencies: list[float] = []
    queries = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        data = json.loads(out)
        queries += data["queries"]
        latencies.extend(data["latencies_ms"])
    latencies.sort()
    return Throughput(
        sessions=sizes.sessions,
        seconds=sizes.load_seconds,
        queries=queries,
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[int(len(latencies) * 0.99)],
        proxy_cpu_s=proxy1 - proxy0,
        node_cpu_s=node1 - node0,
        postgres_cpu_s=pg1 - pg0,
        machine_busy_s=busy1 - busy0,
    )


def measure_round_trips(env: dict[str, str], ws_proxy: str, sizes: Sizes) -> tuple[float, float, float]:
    """Connect + first query (JS driver, pipelined): direct ms, relayed ms, round trips."""
    host_port, _, path = ws_proxy.partition("/")
    port = int(host_port.rpartition(":")[2])
    direct = statistics.median(run_node(env, "connect", str(sizes.rtt_connects))["ms"])
    relay, relay_port = start_relay(port, sizes.rtt_delay)
    try:
        relayed_env = dict(env, NEON_WS_PROXY=f"127.0.0.1:{relay_port}/{path}")
        relayed = statistics.median(run_node(relayed_env, "connect", str(sizes.rtt_connects))["ms"])
    finally:
        stop(relay)
    return direct, relayed, (relayed - direct) / (2 * sizes.rtt_delay * 1000)


# ---------------------------------------------------------------------------------- report


def report(latency: dict[str, Latency], load: Throughput, rtt: tuple[float, float, float], notes: list[str],
           sizes: Sizes, quick: bool) -> str:
    lines = [SECTION_START, "## WebSocket proxy (bench/bench_ws_proxy.py)", ""]
    lines.append(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' (--quick)' if quick else ''}; "
                 f"{platform.python_version()}, {os.cpu_count()} cores, shared with other developers' work.")
    lines += ["", f"### Warm latency, `{QUERY}` on one connection ({sizes.rounds} rounds x {sizes.queries} queries, interleaved)",
              "", "| client | median µs | mean µs | vs TCP (median) | proxy CPU µs/query |", "|---|---|---|---|---|"]
    tcp = latency.get("neon_sync.Client (TCP, direct)")
    for name, value in latency.items():
        ratio = f"{value.median_us / tcp.median_us:.2f}x" if tcp else "-"
        proxy = "-" if name.endswith("(TCP, direct)") else f"{value.proxy_cpu_us:.0f}"
        lines.append(f"| {name} | {value.median_us:.0f} | {value.mean_us:.0f} | {ratio} | {proxy} |")
    cores = load.machine_busy_s / load.seconds
    lines += ["", f"### Throughput: {load.sessions} JS driver sessions through the proxy for {load.seconds:.0f} s", "",
              "| queries/s | p50 ms | p99 ms | proxy CPU µs/query | proxy cores | node cores | Postgres cores | machine busy cores |",
              "|---|---|---|---|---|---|---|---|",
              f"| {load.qps:.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.proxy_us_per_query:.0f} | "
              f"{load.proxy_cpu_s / load.seconds:.2f} | {load.node_cpu_s / load.seconds:.2f} | "
              f"{load.postgres_cpu_s / load.seconds:.2f} | {cores:.2f} |"]
    direct, relayed, trips = rtt
    lines += ["", f"### Round trips: fresh JS driver Client, connect + first query (pipelined), relay delay {sizes.rtt_delay * 1000:.0f} ms each way",
              "", "| direct ms | through relay ms | round trips beyond TCP |", "|---|---|---|",
              f"| {direct:.1f} | {relayed:.1f} | {trips:.2f} |", "",
              "The upgrade is one round trip and the pipelined startup + password + query flight the other: "
              "the proxy adds none of its own (its upstream login happens on loopback beside Postgres)."]
    for note in notes:
        lines += ["", f"Note: {note}"]
    lines.append(SECTION_END)
    return "\n".join(lines) + "\n"


def write_results(section: str) -> None:
    path = os.path.join(HERE, "RESULTS_WS.md")
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# WebSocket benchmarks\n\n"
    if SECTION_START in text and SECTION_END in text:
        before = text.split(SECTION_START, 1)[0]
        after = text.split(SECTION_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer queries and shorter runs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS_WS.md alone")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from neon_sync.embedded import EmbeddedPostgres

    with EmbeddedPostgres(tls=False) as pg:
        proxy, ws_proxy = start_ws_proxy(f"postgres://127.0.0.1:{pg.port}?sslmode=disable")
        try:
            password = pg.superuser_password
            dsn = f"postgresql://{pg.superuser}:{quote(password, safe='')}@127.0.0.1:{pg.port}/postgres"
            env = node_env(f"postgresql://{pg.superuser}:{quote(password, safe='')}@localhost:{pg.port}/postgres", ws_proxy)
            drivers, notes = python_drivers(dsn, ws_proxy, pg.superuser, password)
            try:
                latency = measure_latency(drivers, env, sizes, proxy.pid, log)
            finally:
                for driver in drivers:
                    driver.close()
            log("throughput...")
            load = measure_throughput(env, sizes, proxy.pid, pg.pid)
            log("round trips...")
            rtt = measure_round_trips(env, ws_proxy, sizes)
        finally:
            stop(proxy)
    section = report(latency, load, rtt, notes, sizes, args.quick)
    print(section)
    if not args.no_write:
        write_results(section)


if __name__ == "__main__":
    main()
