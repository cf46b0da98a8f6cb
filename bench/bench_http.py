"""neon() over HTTP through neon_proxy, against neon-serverless and against TCP, in one run.

Run ``.venv/bin/python bench/bench_http.py [--quick]``. It starts its own Postgres and two
proxies in subprocesses (HTTP and HTTPS), then measures:

* warm latency of ``SELECT $1::int``: our ``neon()``, the PyPI ``neon-serverless`` (httpx)
  at the same proxy, and ``neon_sync.Client`` over direct TCP; wall time and the client's
  own CPU time per query, interleaved round by round so noise hits every driver alike;
* proxy throughput: 32 keep-alive clients in other processes for a fixed time, with the
  proxy's CPU per query and where the machine's cores went (proxy, load clients, Postgres,
  every other process: the machine is shared, so the last column says how much it was);
* round trips, through a relay (bench/relay.py) that delays each direction by D:
  round trips = (time through the relay - time direct) / (2 D), warm and cold.

The tables are printed and written to bench/RESULTS_HTTP.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence
from urllib.parse import quote

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

QUERY = "SELECT $1::int"


@dataclass(frozen=True)
class Sizes:
    queries: int  # per driver per round
    rounds: int
    load_seconds: float
    clients: int
    processes: int
    rtt_delay: float
    rtt_warm: int
    rtt_cold: int


FULL = Sizes(queries=2000, rounds=7, load_seconds=5.0, clients=32, processes=4, rtt_delay=0.020, rtt_warm=10, rtt_cold=5)
QUICK = Sizes(queries=400, rounds=3, load_seconds=2.0, clients=32, processes=4, rtt_delay=0.010, rtt_warm=5, rtt_cold=3)


# ---------------------------------------------------------------------------------- processes


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _read_line(proc: subprocess.Popen[str], prefix: str, what: str, timeout: float = 60.0) -> str:
    """The rest of the first stdout line starting with ``prefix``."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line[len(prefix) :].strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise RuntimeError(f"{what} did not start (no {prefix!r} line)")
    return found[0]


def start_proxy(upstream: str, tls: tuple[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """neon_proxy in its own process (so it does not share our GIL); returns it and its URL."""
    argv = [sys.executable, "-m", "neon_proxy", "dev", "--upstream", upstream, "--listen", "127.0.0.1:0",
            "--log-level", "WARNING"]
    if tls is not None:
        argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env())
    return proc, _read_line(proc, "NEON_FETCH_ENDPOINT=", "neon_proxy")


def start_relay(port: int, delay: float) -> tuple[subprocess.Popen[str], int]:
    """bench/relay.py in its own process, delaying each direction by ``delay`` seconds."""
    argv = [sys.executable, os.path.join(HERE, "relay.py"), str(port), "--delay-ms", str(delay * 1000),
            "--lifetime", "900"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env())
    line = _read_line(proc, "relaying 127.0.0.1:", "the relay")
    return proc, int(line.split(" ", 1)[0])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of each of its children (Postgres: the postmaster and its backends)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(name) == root or int(fields[1]) == root:
            out[int(name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every core, every process) so far."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------- drivers


@dataclass
class Driver:
    name: str
    run: Callable[[int], Any]
    close: Callable[[], None]


def ours(dsn: str, url: str, cafile: str | None = None) -> Driver:
    from neon_sync import neon

    sql = neon(dsn, fetch_endpoint=url, sslrootcert=cafile)
    return Driver("neon_sync.neon (ours)", lambda i: sql(QUERY, [i]), sql.close)


def neon_serverless(dsn: str, url: str, cafile: str | None = None) -> Driver:
    import httpx
    import neon_serverless as ns

    transport = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=cafile)) if cafile else None
    sql = ns.neon(dsn, endpoint=url, transport=transport)
    return Driver("neon-serverless (httpx)", lambda i: sql(QUERY, [i]), sql.close)


def tcp(dsn: str) -> Driver:
    from neon_sync import Client

    client = Client(dsn).connect()
    return Driver("neon_sync.Client (TCP)", lambda i: client.query(QUERY, [i]), client.close)


def check(driver: Driver) -> None:
    out = driver.run(7)
    rows = out.rows if hasattr(out, "rows") else out
    first = rows[0]
    value = first["int4"] if isinstance(first, dict) else first[0]
    if value != 7:
        raise RuntimeError(f"{driver.name} returned {out!r}")


# ---------------------------------------------------------------------------------- latency


@dataclass
class Latency:
    wall_us: float
    cpu_us: float
    proxy_cpu_us: float | None


def measure_latency(drivers: list[Driver], sizes: Sizes, proxy_pid: int | None, log: Callable[[str], None]) -> dict[str, Latency]:
    for d in drivers:
        check(d)
        for i in range(200):
            d.run(i)
    walls: dict[str, list[float]] = {d.name: [] for d in drivers}
    cpus: dict[str, list[float]] = {d.name: [] for d in drivers}
    proxy: dict[str, list[float]] = {d.name: [] for d in drivers}
    n = sizes.queries
    for rnd in range(sizes.rounds):
        order = drivers[rnd % len(drivers):] + drivers[: rnd % len(drivers)]
        for d in order:
            gc.collect()
            run = d.run
            p0 = process_cpu(proxy_pid) if proxy_pid else 0.0
            c0 = time.process_time()
            t0 = time.perf_counter()
            for i in range(n):
                run(i)
            t1 = time.perf_counter()
            c1 = time.process_time()
            p1 = process_cpu(proxy_pid) if proxy_pid else 0.0
            walls[d.name].append((t1 - t0) / n * 1e6)
            cpus[d.name].append((c1 - c0) / n * 1e6)
            proxy[d.name].append((p1 - p0) / n * 1e6)
        log(f"  latency round {rnd + 1}/{sizes.rounds}: "
            + ", ".join(f"{name} {walls[name][-1]:.0f} µs" for name in walls))
    return {
        name: Latency(statistics.median(walls[name]), statistics.median(cpus[name]),
                      statistics.median(proxy[name]) if proxy_pid and "TCP" not in name else None)
        for name in walls
    }


# ---------------------------------------------------------------------------------- throughput


def load_worker(url: str, dsn: str, threads: int, start_at: float, seconds: float) -> None:
    """In a child process: ``threads`` clients, each its own neon() and connection, as fast as they can."""
    from neon_sync import neon

    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []
    clients = [neon(dsn, fetch_endpoint=url) for _ in range(threads)]
    for c in clients:
        c(QUERY, [1])  # open the keep-alive connection before the clock starts

    def loop(k: int) -> None:
        sql, out = clients[k], latencies[k]
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        end = time.perf_counter() + seconds
        i = 0
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                sql(QUERY, [i])
                out.append(time.perf_counter() - t0)
                i += 1
        except Exception as exc:  # reported to the parent
            errors.append(repr(exc))

    workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    cpu0 = time.process_time()
    for w in workers:
        w.join()
    cpu = time.process_time() - cpu0
    opened = sum(c.connections_opened for c in clients)
    json.dump(
        {"latencies": [x for lst in latencies for x in lst], "errors": errors, "connections": opened, "cpu": cpu},
        sys.stdout,
    )


@dataclass
class Throughput:
    clients: int
    processes: int
    seconds: float
    queries: int
    qps: float
    p50_ms: float
    p99_ms: float
    errors: int
    connections: int
    proxy_cpu: float  # cores
    proxy_cpu_us: float  # per query
    client_cpu: float  # cores, the load processes
    postgres_cpu: float  # cores
    other_cpu: float  # cores: every other process on the machine
    load_average: float  # 1-minute, before the run


def measure_throughput(url: str, dsn: str, sizes: Sizes, proxy_pid: int, postgres_pid: int | None) -> Throughput:
    per_proc = [sizes.clients // sizes.processes + (1 if k < sizes.clients % sizes.processes else 0)
                for k in range(sizes.processes)]
    start_at = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--load-worker", url, dsn, str(n), repr(start_at), repr(sizes.load_seconds)],
            stdout=subprocess.PIPE, text=True, cwd=ROOT, env=_child_env())
        for n in per_proc
    ]
    load_average = os.getloadavg()[0]
    time.sleep(max(0.0, start_at - time.time()))
    p0, pg0, m0 = process_cpu(proxy_pid), process_tree_cpu(postgres_pid) if postgres_pid else {}, machine_busy()
    time.sleep(sizes.load_seconds)
    p1, pg1, m1 = process_cpu(proxy_pid), process_tree_cpu(postgres_pid) if postgres_pid else {}, machine_busy()
    outs = [json.loads(p.communicate(timeout=sizes.load_seconds + 120)[0]) for p in procs]
    latencies = sorted(x for o in outs for x in o["latencies"])
    errors = sum(len(o["errors"]) for o in outs)
    if errors:
        print("load errors:", [e for o in outs for e in o["errors"]][:5], file=sys.stderr)
    n = len(latencies)
    seconds = sizes.load_seconds
    proxy = p1 - p0
    postgres = sum(cpu - pg0.get(pid, 0.0) for pid, cpu in pg1.items())
    clients = sum(o["cpu"] for o in outs)
    return Throughput(
        clients=sizes.clients, processes=sizes.processes, seconds=seconds, queries=n,
        qps=n / seconds,
        p50_ms=latencies[n // 2] * 1e3 if n else float("nan"),
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1e3 if n else float("nan"),
        errors=errors, connections=sum(o["connections"] for o in outs),
        proxy_cpu=proxy / seconds,
        proxy_cpu_us=proxy / n * 1e6 if n else float("nan"),
        client_cpu=clients / seconds,
        postgres_cpu=postgres / seconds,
        other_cpu=max(0.0, (m1 - m0) - proxy - postgres - clients) / seconds,
        load_average=load_average,
    )


# ---------------------------------------------------------------------------------- round trips


def _time_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def rtt_samples(make: Callable[[str], Driver], url: str, sizes: Sizes) -> tuple[float, float]:
    """(warm, cold) milliseconds: best of a few queries on a warm connection, and of first queries."""
    warm = make(url)
    warm.run(0)
    warm_ms = min(_time_ms(lambda: warm.run(1)) for _ in range(sizes.rtt_warm))
    warm.close()
    cold: list[float] = []
    for _ in range(sizes.rtt_cold):
        d = make(url)
        cold.append(_time_ms(lambda: d.run(1)))
        d.close()
    return warm_ms, min(cold)


def count_round_trips(
    cases: Sequence[tuple[str, str, Callable[[str], Driver], str, int]], sizes: Sizes, log: Callable[[str], None]
) -> list[tuple[str, str, float, float]]:
    """(driver, scheme, warm RTTs, cold RTTs) for each case (name, scheme, factory, direct url, port)."""
    out = []
    relays: dict[int, tuple[subprocess.Popen[str], int]] = {}
    try:
        for name, scheme, make, direct_url, port in cases:
            if port not in relays:
                relays[port] = start_relay(port, sizes.rtt_delay)
            relay_port = relays[port][1]
            relayed_url = direct_url.replace(f":{port}/", f":{relay_port}/")
            d_warm, d_cold = rtt_samples(make, direct_url, sizes)
            r_warm, r_cold = rtt_samples(make, relayed_url, sizes)
            two_d = 2 * sizes.rtt_delay * 1e3
            out.append((name, scheme, (r_warm - d_warm) / two_d, (r_cold - d_cold) / two_d))
            log(f"  round trips {name} {scheme}: warm {out[-1][2]:.2f}, cold {out[-1][3]:.2f}")
    finally:
        for proc, _port in relays.values():
            stop(proc)
    return out


# ---------------------------------------------------------------------------------- report


def report(latency: dict[str, Latency], latency_tls: dict[str, Latency], load: Throughput,
           rtts: list[tuple[str, str, float, float]], sizes: Sizes, info: list[tuple[str, str]]) -> str:
    ours_name, ns_name, tcp_name = "neon_sync.neon (ours)", "neon-serverless (httpx)", "neon_sync.Client (TCP)"
    lines = ["# SQL over HTTP: neon_sync.neon() vs neon-serverless vs TCP", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info] + [""]

    def latency_table(title: str, results: dict[str, Latency], transport: str) -> None:
        lines.append(f"## {title}")
        lines.append("")
        lines.append(f"`{QUERY}` with one parameter on a warm connection ({transport}); medians of "
                     f"{sizes.rounds} interleaved rounds of {sizes.queries} queries.")
        lines.append("")
        lines.append("| driver | wall µs/query | client CPU µs/query | proxy CPU µs/query | wall vs neon-serverless |")
        lines.append("|---|---:|---:|---:|---:|")
        base = results.get(ns_name)
        for name, r in results.items():
            ratio = f"{r.wall_us / base.wall_us:.2f}x" if base else ""
            proxy = f"{r.proxy_cpu_us:.0f}" if r.proxy_cpu_us is not None else "-"
            lines.append(f"| {name} | {r.wall_us:.0f} | {r.cpu_us:.0f} | {proxy} | {ratio} |")
        lines.append("")
        if base and ours_name in results:
            o = results[ours_name]
            text = (f"Ours vs neon-serverless: wall **{o.wall_us / base.wall_us:.2f}x**, client CPU "
                    f"**{o.cpu_us / base.cpu_us:.2f}x** (target <= 0.5x).")
            if tcp_name in results:
                text += f" Ours vs TCP: wall {o.wall_us / results[tcp_name].wall_us:.1f}x."
            lines.extend([text, ""])

    latency_table("Warm query latency over HTTP", latency, "plain HTTP")
    if ours_name in latency and ns_name in latency and latency[ours_name].proxy_cpu_us is not None:
        o, b = latency[ours_name], latency[ns_name]
        assert o.proxy_cpu_us is not None
        proxy_gap = f"{b.proxy_cpu_us - o.proxy_cpu_us:+.0f}" if b.proxy_cpu_us is not None else "?"
        lines.append(f"Where the time goes: of ours' {o.wall_us:.0f} µs, the proxy process burns "
                     f"{o.proxy_cpu_us:.0f} µs of CPU per request and our client {o.cpu_us:.0f} µs "
                     "(send, receive, HTTP and JSON); the rest is Postgres and waking processes up. "
                     f"neon-serverless takes {b.wall_us - o.wall_us:+.0f} µs of wall time per query: "
                     f"{b.cpu_us - o.cpu_us:+.0f} µs of client CPU and {proxy_gap} µs of proxy CPU "
                     "(httpx sends the body apart from the head, so the proxy reads twice).")
        lines.append("")
    latency_table("Warm query latency over HTTPS", latency_tls, "HTTPS, TLS 1.3, certificate verified")

    lines.append("## Proxy throughput")
    lines.append("")
    lines.append(f"{load.clients} keep-alive clients (each a `neon()` with its own connection) in {load.processes} "
                 f"other processes, `{QUERY}` in a loop for {load.seconds:g} s, plain HTTP, proxy defaults "
                 f"(upstream pool of 20 per user and database).")
    lines.append("")
    lines.append("| queries/s | p50 ms | p99 ms | queries | errors | client connections | proxy CPU µs/query |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|")
    lines.append(f"| {load.qps:.0f} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.queries} | {load.errors} | "
                 f"{load.connections} | {load.proxy_cpu_us:.0f} |")
    lines.append("")
    lines.append(f"Target >= 2000 queries/s: **{'met' if load.qps >= 2000 else 'not met'}**.")
    lines.append("")
    cores = os.cpu_count() or 1
    busy = load.proxy_cpu + load.client_cpu + load.postgres_cpu + load.other_cpu
    lines.append(f"Where the machine's {cores} cores went during the run (1-minute load average before it: "
                 f"{load.load_average:.2f}); \"other\" is every process outside this benchmark:")
    lines.append("")
    lines.append("| proxy | load clients | Postgres | other | idle |")
    lines.append("|---:|---:|---:|---:|---:|")
    lines.append(f"| {load.proxy_cpu:.2f} | {load.client_cpu:.2f} | {load.postgres_cpu:.2f} | {load.other_cpu:.2f} | "
                 f"{max(0.0, cores - busy):.2f} |")
    lines.append("")

    lines.append("## Round trips")
    lines.append("")
    lines.append(f"Through a relay delaying each direction by {sizes.rtt_delay * 1e3:g} ms: (relayed - direct) / "
                 f"(2 x {sizes.rtt_delay * 1e3:g} ms), best of {sizes.rtt_warm} warm and {sizes.rtt_cold} cold "
                 "queries. The relay accepts locally, so the TCP handshake is not counted: over a real network "
                 "add 1 to the cold column.")
    lines.append("")
    lines.append("| driver | scheme | warm query | cold query (excl. TCP) | cold, with TCP |")
    lines.append("|---|---|---:|---:|---:|")
    for name, scheme, warm, cold in rtts:
        lines.append(f"| {name} | {scheme} | {warm:.2f} | {cold:.2f} | {cold + 1:.2f} |")
    lines.append("")
    lines.append("Expected: warm 1; cold HTTP 1 (+1 TCP); cold HTTPS 2 (TLS 1.3 + POST, +1 TCP).")
    lines.append("")
    return "\n".join(lines)


def machine_info() -> list[tuple[str, str]]:
    import h11

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M")),
        ("python", platform.python_version()),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu}"),
        ("h11", getattr(h11, "__version__", "?")),
    ]


# ---------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--output", default=os.path.join(HERE, "RESULTS_HTTP.md"))
    args, _unknown = parser.parse_known_args(argv)  # ./dev bench passes bench_tcp's flags too
    sizes = QUICK if args.quick else FULL

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from neon_sync.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tls=True).start()
    procs: list[subprocess.Popen[str]] = []
    try:
        assert pg.server_cert_path and pg.server_key_path and pg.ca_cert_path
        # Upstream without TLS, like the TCP baseline: the proxy and Postgres share the machine.
        upstream = f"postgres://127.0.0.1:{pg.port}?sslmode=disable"
        http_proxy, http_url = start_proxy(upstream)
        procs.append(http_proxy)
        https_proxy, https_url = start_proxy(upstream, (pg.server_cert_path, pg.server_key_path))
        procs.append(https_proxy)
        password = quote(pg.superuser_password, safe="")
        dsn = f"postgresql://{pg.superuser}:{password}@ep-bench.localhost:{pg.port}/postgres"
        tcp_dsn = pg.dsn(sslmode="disable")
        ca = pg.ca_cert_path
        log(f"postgres on {pg.port}, proxies at {http_url} and {https_url}")

        log("latency, HTTP:")
        drivers = [ours(dsn, http_url), neon_serverless(dsn, http_url), tcp(tcp_dsn)]
        latency = measure_latency(drivers, sizes, http_proxy.pid, log)
        for d in drivers:
            d.close()

        log("latency, HTTPS:")
        drivers = [ours(dsn, https_url, ca), neon_serverless(dsn, https_url, ca)]
        latency_tls = measure_latency(drivers, sizes, https_proxy.pid, log)
        for d in drivers:
            d.close()

        log(f"throughput: {sizes.clients} clients for {sizes.load_seconds:g} s ...")
        load = measure_throughput(http_url, dsn, sizes, http_proxy.pid, pg.pid)
        log(f"  {load.qps:.0f} queries/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
            f"proxy {load.proxy_cpu_us:.0f} µs CPU/query; cores: proxy {load.proxy_cpu:.2f}, clients "
            f"{load.client_cpu:.2f}, postgres {load.postgres_cpu:.2f}, other {load.other_cpu:.2f}")

        log("round trips:")
        http_port = int(http_url.rsplit(":", 1)[1].split("/", 1)[0])
        https_port = int(https_url.rsplit(":", 1)[1].split("/", 1)[0])
        rtts = count_round_trips(
            [
                ("neon_sync.neon (ours)", "http", lambda u: ours(dsn, u), http_url, http_port),
                ("neon_sync.neon (ours)", "https", lambda u: ours(dsn, u, ca), https_url, https_port),
                ("neon-serverless (httpx)", "http", lambda u: neon_serverless(dsn, u), http_url, http_port),
                ("neon-serverless (httpx)", "https", lambda u: neon_serverless(dsn, u, ca), https_url, https_port),
            ],
            sizes,
            log,
        )
        text = report(latency, latency_tls, load, rtts, sizes, machine_info())
    finally:
        for proc in procs:
            stop(proc)
        pg.stop()
    print(text)
    with open(args.output, "w") as f:
        f.write(text)
    log(f"written to {args.output}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load-worker":
        url_, dsn_, threads_, start_at_, seconds_ = sys.argv[2:7]
        load_worker(url_, dsn_, int(threads_), float(start_at_), float(seconds_))
    else:
        main()
