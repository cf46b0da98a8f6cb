"""neon_proxy's WebSocket endpoint (auth mode): latency, 32-session throughput, round trips.

Run ``.venv/bin/python bench/bench_ws_proxy.py [--quick]`` after the test suite has installed
the JS driver into .cache/js (``./dev test tests/test_js_ws.py``). It starts its own Postgres
(SCRAM superuser; reached without TLS except in the TLS rows) and neon_proxy in subprocesses
(a third one serving wss, with a TLS upstream, for the TLS rows), then measures:

* warm latency of ``SELECT $1::int`` on one connection: ``neon_sync.Client`` over direct TCP;
  through reference relays that do nothing but copy bytes (a C relay compiled here with
  ``cc`` when there is one, bench/reference_relay.py's thread-per-direction Python relay,
  bench/js/tcp_relay.mjs's Node ``net.Socket.pipe``): what any relay hop costs on this
  machine; through neon_proxy over plain TCP and over WebSocket (its default relay thread,
  and a second proxy with ``--ws-trio-relay``, the trio-task path); wss through a proxy with
  a TLS upstream beside direct TCP with TLS; a minimal blocking
  client made of wsproto and neon_proto's Session; the JS driver's ``Client.query``.
  Interleaved round by round, each round once with the other cores idle and once with a
  spinner process keeping one core busy (an idle core wakes slowly on this VM: see the
  results text); with the CPU per query of the process in the middle (scheduler run time
  of all its threads, from /proc/<pid>/task/*/schedstat);
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
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from bench_http import _child_env, _read_line, machine_busy, process_cpu, process_tree_cpu, start_relay, stop  # noqa: E402

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


def start_ws_proxy(upstream: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """neon_proxy in its own process; returns it and its ``NEON_WS_PROXY`` (host:port/v2)."""
    argv = [sys.executable, "-m", "neon_proxy", "dev", "--upstream", upstream, "--listen", "127.0.0.1:0",
            "--log-level", "WARNING", *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env())
    return proc, _read_line(proc, "NEON_WS_PROXY=", "neon_proxy")


def run_cpu(pid: int) -> float:
    """CPU seconds all threads of a process have run so far (scheduler time, to the nanosecond).

    /proc/<pid>/stat's utime and stime are sampled at each timer tick, which misjudges a
    process that runs in bursts of tens of microseconds; schedstat counts every one.
    Falls back to /proc/<pid>/stat where schedstat is missing.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread that just ended
    except OSError:
        return process_cpu(pid)
    return total / 1e9


@dataclass
class ReferenceRelay:
    """A byte-copying relay in front of Postgres, for the floor rows."""

    name: str
    proc: subprocess.Popen[str]
    port: int


def start_reference_relays(pg_port: int, workdir: str, notes: list[str]) -> list[ReferenceRelay]:
    """The C (when ``cc`` is on PATH), Python and Node reference relays, each in its own process."""
    commands: list[tuple[str, list[str]]] = []
    cc = shutil.which("cc")
    if cc is None:
        notes.append("no C compiler (`cc`) on PATH: the C relay row is left out")
    else:
        binary = os.path.join(workdir, "reference_relay")
        built = subprocess.run([cc, "-O2", "-pthread", "-o", binary, os.path.join(HERE, "reference_relay.c")],
                               capture_output=True, text=True)
        if built.returncode == 0:
            commands.append(("C relay, a thread per direction", [binary, str(pg_port)]))
        else:
            notes.append(f"the C relay did not compile, its row is left out: {built.stderr.strip()[:200]}")
    commands.append(("Python relay, a thread per direction",
                     [sys.executable, os.path.join(HERE, "reference_relay.py"), str(pg_port)]))
    if shutil.which("node"):
        commands.append(("Node net.Socket.pipe relay", ["node", os.path.join(HERE, "js", "tcp_relay.mjs"), str(pg_port)]))
    relays = []
    for name, argv in commands:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        relays.append(ReferenceRelay(name, proc, int(_read_line(proc, "PORT=", name))))
    return relays


def start_spinner() -> subprocess.Popen[str]:
    """A process that keeps one core busy (so that the other is not left to sleep deeply)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], text=True)


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
    middle: int | None  # the pid of the process the queries pass through, if any


DIRECT = "neon_sync.Client, TCP direct"


def _querier(client: Any) -> Callable[[int], Any]:
    return lambda i: client.query(QUERY, [i])

JS = "@neondatabase/serverless Client, WebSocket via neon_proxy"


DIRECT_TLS = "neon_sync.Client, TCP direct with TLS (sslmode=require)"
WSS = "neon_sync.Client, WebSocket over TLS (wss) via neon_proxy, TLS upstream"


def python_drivers(dsn: str, proxies: list[tuple[str, str, int]], relays: list[ReferenceRelay], user: str,
                   password: str, tls: tuple[str, str, int] | None = None) -> tuple[list[Driver], list[str]]:
    """The measured clients: direct, through each reference relay, through each proxy (TCP, WebSocket);
    with ``tls`` (CA file, wss proxy, its pid): direct TCP with TLS, and wss through that proxy."""
    from neon_sync import Client

    notes: list[str] = []
    drivers: list[Driver] = []
    tcp = Client(dsn, sslmode="disable").connect()
    drivers.append(Driver(DIRECT, lambda i: tcp.query(QUERY, [i]), tcp.close, None))
    for relay in relays:
        via: Any = Client(host="127.0.0.1", port=relay.port, user=user, password=password, dbname="postgres",
                          sslmode="disable").connect()
        drivers.append(Driver(f"neon_sync.Client, TCP via {relay.name}", _querier(via), via.close,
                              relay.proc.pid))
    for label, ws_proxy, pid in proxies:
        host_port = ws_proxy.partition("/")[0]
        proxy_host, _, proxy_port = host_port.rpartition(":")
        via_proxy: Any = Client(host=proxy_host, port=int(proxy_port), user=user, password=password, dbname="postgres",
                                sslmode="disable", transport="tcp").connect()
        drivers.append(Driver(f"neon_sync.Client, TCP via {label}", _querier(via_proxy),
                              via_proxy.close, pid))
        try:
            ws_client: Any = Client(dsn, transport="websocket", ws_proxy=ws_proxy, use_secure_websocket=False)
            ws_client.connect()
            before = run_cpu(pid)
            for i in range(300):
                ws_client.query(QUERY, [i])
            if run_cpu(pid) - before < 0.001:
                ws_client.close()
                raise RuntimeError("it accepted transport='websocket' but its queries did not pass through the proxy")
            drivers.append(Driver(f"neon_sync.Client, WebSocket via {label}", _querier(ws_client),
                                  ws_client.close, pid))
        except Exception as exc:  # this checkout's neon_sync may not have the WebSocket transport yet
            notes.append(f"neon_sync.Client over WebSocket via {label} not measured: {type(exc).__name__}: {exc}")
    if tls is not None:
        ca, tls_ws_proxy, tls_pid = tls
        direct_tls: Any = Client(dsn, sslmode="require").connect()
        drivers.append(Driver(DIRECT_TLS, _querier(direct_tls), direct_tls.close, None))
        wss: Any = Client(dsn, transport="websocket", ws_proxy=tls_ws_proxy, sslrootcert=ca).connect()
        drivers.append(Driver(WSS, _querier(wss), wss.close, tls_pid))
    label, ws_proxy, pid = proxies[0]
    harness = HarnessClient(ws_proxy, user, password, "postgres")
    drivers.append(Driver(f"Session + wsproto harness, WebSocket via {label}", lambda i: harness.query(QUERY, [i]),
                          harness.close, pid))
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
    middle_cpu_us: float | None
    client_cpu_us: float | None = None


CONDITIONS = {"idle": "other cores idle", "busy": "one core kept busy", "pinned": "every process on one core"}


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants (Postgres's backends, a relay's workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def set_affinity(pids: Sequence[int], cpus: set[int]) -> None:
    """Every thread of these processes and their descendants on ``cpus`` (children started later inherit it)."""
    for root in pids:
        for pid in _process_tree(root):
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    os.sched_setaffinity(int(task), cpus)
            except OSError:
                pass  # gone meanwhile


def measure_latency(drivers: list[Driver], env: dict[str, str], sizes: Sizes, proxy_pid: int, conditions: list[str],
                    log: Callable[[str], None], postgres_pid: int | None = None) -> dict[str, dict[str, Latency]]:
    """Per condition (``idle``, ``busy``, ``pinned``), per client: latency and the middle process's CPU per query.

    ``pinned`` puts this process, Postgres (postmaster and backends) and every process in the
    middle on the first CPU, so that a hand-over between processes never wakes another core.
    """
    everyone = sorted({os.getpid(), proxy_pid, *(d.middle for d in drivers if d.middle),
                       *([postgres_pid] if postgres_pid else [])})
    all_cpus = os.sched_getaffinity(0)
    samples: dict[str, dict[str, list[float]]] = {c: {} for c in conditions}
    cpu_us: dict[str, dict[str, list[float]]] = {c: {} for c in conditions}
    client_us: dict[str, dict[str, list[float]]] = {c: {} for c in conditions}
    for r in range(sizes.rounds):
        for condition in conditions:
            spinner = start_spinner() if condition == "busy" else None
            if condition == "pinned":
                set_affinity(everyone, {min(all_cpus)})
            try:
                if spinner is not None:
                    time.sleep(0.2)
                for driver in drivers:
                    for i in range(200):
                        driver.run(i)
                    cpu = run_cpu(driver.middle) if driver.middle else 0.0
                    times = []
                    own = time.process_time()
                    for i in range(sizes.queries):
                        t = time.perf_counter()
                        driver.run(i)
                        times.append((time.perf_counter() - t) * 1e6)
                    client_us[condition].setdefault(driver.name, []).append(
                        (time.process_time() - own) / sizes.queries * 1e6)
                    if driver.middle:
                        cpu_us[condition].setdefault(driver.name, []).append(
                            (run_cpu(driver.middle) - cpu) / sizes.queries * 1e6)
                    samples[condition].setdefault(driver.name, []).extend(times)
                cpu = run_cpu(proxy_pid)
                us = run_node(env, "latency", str(sizes.queries))["us"]
                # The node run also opened and closed a session and ran 200 warm-up queries.
                cpu_us[condition].setdefault(JS, []).append((run_cpu(proxy_pid) - cpu) / (sizes.queries + 200) * 1e6)
                samples[condition].setdefault(JS, []).extend(us)
            finally:
                if spinner is not None:
                    stop(spinner)
                if condition == "pinned":
                    set_affinity(everyone, all_cpus)
            log(f"latency round {r + 1}/{sizes.rounds} ({CONDITIONS[condition]}) done")
    return {
        condition: {
            name: Latency(statistics.median(values), statistics.fmean(values),
                          statistics.median(cpu_us[condition][name]) if name in cpu_us[condition] else None,
                          statistics.median(client_us[condition][name]) if name in client_us[condition] else None)
            for name, values in samples[condition].items()
        }
        for condition in conditions
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
    procs = [
        subprocess.Popen(["node", os.path.join(HERE, "js", "ws_bench.mjs"), "load", str(per), str(sizes.load_seconds)],
                         env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for proc in procs:  # every session connected and warm before the clock starts
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a load process failed to connect its sessions")
    start_at = time.time() + 0.3
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{int(start_at * 1000)}\n")
        proc.stdin.flush()
    time.sleep(max(0.0, start_at - time.time()))
    proxy0, busy0 = run_cpu(proxy_pid), machine_busy()
    pg0 = sum(process_tree_cpu(postgres_pid).values()) if postgres_pid else 0.0
    node0 = sum(run_cpu(p.pid) for p in procs)
    time.sleep(sizes.load_seconds)
    proxy1, busy1 = run_cpu(proxy_pid), machine_busy()
    pg1 = sum(process_tree_cpu(postgres_pid).values()) if postgres_pid else 0.0
    node1 = sum(run_cpu(p.pid) for p in procs)
    latencies: list[float] = []
    queries = 0
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(120)
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


def _summary(latency: dict[str, dict[str, Latency]]) -> list[str]:
    """One line per condition: neon_proxy's ratio and CPU per query beside the reference relays'."""
    lines: list[str] = []
    proxy, trio_path = "neon_sync.Client, TCP via neon_proxy", "neon_sync.Client, TCP via neon_proxy --ws-trio-relay"
    for condition, rows in latency.items():
        direct = rows.get(DIRECT)
        if direct is None or proxy not in rows:
            continue
        hops = [(name.split(" via ", 1)[1], value) for name, value in rows.items()
                if name.startswith("neon_sync.Client, TCP via ") and name not in (proxy, trio_path)]
        hops = [("neon_proxy", rows[proxy])] + ([("neon_proxy --ws-trio-relay", rows[trio_path])] if trio_path in rows else []) + hops
        ratios = "; ".join(f"{label} {value.median_us / direct.median_us:.2f}x" for label, value in hops)
        cpu = "; ".join(f"{label} {value.middle_cpu_us:.0f} µs" for label, value in hops if value.middle_cpu_us is not None)
        lines += ["", f"With {CONDITIONS[condition]}, `{QUERY}` over TCP, vs direct: {ratios}. "
                  f"CPU per relayed query: {cpu}."]
        direct_tls, wss = rows.get(DIRECT_TLS), rows.get(WSS)
        if direct_tls is not None and wss is not None:
            lines += ["", f"Over TLS, with {CONDITIONS[condition]}: wss via neon_proxy (TLS upstream) "
                      f"{wss.median_us:.0f} µs, direct TCP with TLS {direct_tls.median_us:.0f} µs: "
                      f"{wss.median_us / direct_tls.median_us:.2f}x."]
        websocket = rows.get("neon_sync.Client, WebSocket via neon_proxy")
        if websocket is not None:
            added = "; ".join(f"{label} {value.median_us - direct.median_us:.0f} µs" for label, value in hops)
            lines += ["", f"Added to each query by the hop, with {CONDITIONS[condition]}: WebSocket via neon_proxy "
                      f"{websocket.median_us - direct.median_us:.0f} µs ({websocket.median_us / direct.median_us:.2f}x); "
                      f"over TCP: {added}."]
    return lines


def report(latency: dict[str, dict[str, Latency]], load: Throughput, rtt: tuple[float, float, float], notes: list[str],
           sizes: Sizes, quick: bool) -> str:
    lines = [SECTION_START, "## WebSocket proxy (bench/bench_ws_proxy.py)", ""]
    load1, load5, _ = os.getloadavg()
    lines.append(f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}{' (--quick)' if quick else ''}; "
                 f"{platform.python_version()}, {os.cpu_count()} cores, shared with other developers' work "
                 f"(load average {load1:.1f} / {load5:.1f} at the end of the run).")
    conditions = list(latency)
    head = "| client, path |"
    rule = "|---|"
    for condition in conditions:
        head += f" median µs, {CONDITIONS[condition]} | vs direct |"
        rule += "---|---|"
    both = " (" + " / ".join(conditions) + ")" if len(conditions) > 1 else ""
    head += f" CPU µs/query of the hop{both} | client CPU µs/query{both} |"
    rule += "---|---|"
    lines += ["", f"### Warm latency, `{QUERY}` on one connection ({sizes.rounds} rounds x {sizes.queries} queries, "
              "interleaved)", "", head, rule]
    names = list(latency[conditions[0]])
    for name in names:
        row = f"| {name} |"
        for condition in conditions:
            value, baseline = latency[condition].get(name), latency[condition].get(DIRECT)
            if value is None:
                row += " - | - |"
                continue
            ratio = f"{value.median_us / baseline.median_us:.2f}x" if baseline else "-"
            row += f" {value.median_us:.0f} | {ratio} |"
        cpu = [latency[c][name].middle_cpu_us for c in conditions if name in latency[c]]
        row += " " + (" / ".join(f"{v:.0f}" for v in cpu if v is not None) or "-") + " |"
        own = [latency[c][name].client_cpu_us for c in conditions if name in latency[c]]
        row += " " + (" / ".join(f"{v:.0f}" for v in own if v is not None) or "-") + " |"
        lines.append(row)
    lines += _summary(latency)
    lines += ["", "The reference relays copy bytes and nothing else (bench/reference_relay.c, bench/reference_relay.py, "
              "bench/js/tcp_relay.mjs): what any relay hop costs on this machine. neon_proxy's rows do that and also "
              "unmask and frame WebSocket messages, watch for ReadyForQuery (idle timeout, shutdown, cancel of a "
              "departed client's query) and keep their sessions' limits; `--ws-trio-relay` is its trio-task relay, "
              "the path taken where a client's frames need wsproto or a peer reads slowly."]
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
    lines += [
        "",
        "Reading it:",
        "- CPU per query is the scheduler's run time of the process in the middle (every thread), per query: the "
        "steady number on a shared machine. Latency follows whatever else the cores do: on this VM a core left idle "
        "sleeps deeply and each wake-up on it costs tens of microseconds, so a chain of processes that hand a query "
        "on (client, relay, Postgres, relay, client) is much faster when another core is kept busy; the ratios "
        "to direct TCP differ between the conditions for that reason, not because of the relay's own work. With "
        "every process on one core no hand-over wakes another core: a query costs the CPU of each process it "
        "passes through plus a context switch at each hand-over.",
        "- Per chunk, neon_proxy's relay thread makes three system calls (epoll_wait, read, write); a "
        "thread-per-direction relay makes two (a blocking read, a write) and pays in threads per connection; "
        "trio's path adds a task wake-up, a pass of trio's run loop and an epoll_ctl to re-arm each wait.",
        "- queries/s and p99 follow whatever else the cores are doing (machine busy cores, above: 2.00 means "
        "saturated).",
        "- The JS driver's latency includes its `coalesceWrites` flush, a `setTimeout(0)` that Node clamps to 1 ms, "
        "on every query; the harness row is what the same exchange costs a Python client with no binding around it.",
    ]
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
    parser.add_argument("--cores", choices=("all", "idle", "busy", "pinned"), default="all",
                        help="latency rounds with the other cores idle, with one kept busy by a spinner, with every "
                             "process on one core, or all three")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from neon_sync.embedded import EmbeddedPostgres

    conditions = list(CONDITIONS) if args.cores == "all" else [args.cores]
    with EmbeddedPostgres(tls=True) as pg, tempfile.TemporaryDirectory() as workdir:
        upstream = f"postgres://127.0.0.1:{pg.port}?sslmode=disable"
        proxy, ws_proxy = start_ws_proxy(upstream)
        trio_proxy, trio_ws_proxy = start_ws_proxy(upstream, "--ws-trio-relay")
        assert pg.ca_cert_path and pg.server_cert_path and pg.server_key_path
        tls_upstream = f"postgres://localhost:{pg.port}?sslmode=verify-full&sslrootcert={quote(pg.ca_cert_path, safe='')}"
        tls_proxy, tls_ws_proxy = start_ws_proxy(tls_upstream, "--tls-cert", pg.server_cert_path,
                                                 "--tls-key", pg.server_key_path)
        notes: list[str] = []
        relays = start_reference_relays(pg.port, workdir, notes)
        try:
            password = pg.superuser_password
            dsn = f"postgresql://{pg.superuser}:{quote(password, safe='')}@127.0.0.1:{pg.port}/postgres"
            env = node_env(f"postgresql://{pg.superuser}:{quote(password, safe='')}@localhost:{pg.port}/postgres", ws_proxy)
            proxies = [("neon_proxy", ws_proxy, proxy.pid), ("neon_proxy --ws-trio-relay", trio_ws_proxy, trio_proxy.pid)]
            drivers, more = python_drivers(dsn, proxies, relays, pg.superuser, password,
                                           (pg.ca_cert_path, tls_ws_proxy, tls_proxy.pid))
            notes += more
            try:
                latency = measure_latency(drivers, env, sizes, proxy.pid, conditions, log, pg.pid)
            finally:
                for driver in drivers:
                    driver.close()
            log("throughput...")
            load = measure_throughput(env, sizes, proxy.pid, pg.pid)
            log("round trips...")
            rtt = measure_round_trips(env, ws_proxy, sizes)
        finally:
            for relay in relays:
                stop(relay.proc)
            stop(tls_proxy)
            stop(trio_proxy)
            stop(proxy)
    section = report(latency, load, rtt, notes, sizes, args.quick)
    print(section)
    if not args.no_write:
        write_results(section)


if __name__ == "__main__":
    main()
