"""Round trips of connect + first query (TCP and WebSocket), and per-query time over WebSocket.

Run ``.venv/bin/python bench/bench_ws.py [--quick]``; writes bench/RESULTS_WS.md.

1. Round trips of "connect, first query, close" through bench/relay.py, which delays each
   direction by ``delay``: round trips = (time through the relay - time direct) / (2 * delay).
   neon_sync over TCP (SCRAM pipelined and not, trust), psycopg 3, asyncpg and pg8000 over TCP,
   neon_sync over WebSocket through neon_proxy (the relay sits between the client and the
   proxy: the proxy's own login to Postgres is not delayed, as it is not for Neon's proxy
   next to its database), and the JS driver's Client over the same proxy when node and the
   test suite's copy of @neondatabase/serverless are there.
2. ``SELECT $1::int`` per query on one warm connection: neon_sync over WebSocket through
   neon_proxy against neon_sync over direct TCP (and the JS driver's Client.query over the
   same proxy), round-robin repetitions, medians.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from relay import DelayRelay  # noqa: E402

from neon_proto.auth import auth_method_memory  # noqa: E402
from neon_sync import Client  # noqa: E402
from neon_sync.embedded import EmbeddedPostgres  # noqa: E402

JS_SCRIPT = r"""
const serverless = await import(process.env.NEON_SERVERLESS_MODULE);
const { default: ws } = await import(process.env.NEON_WS_MODULE);
const { Client, neonConfig } = serverless;
neonConfig.webSocketConstructor = ws;
neonConfig.wsProxy = process.env.NEON_WS_PROXY;
neonConfig.useSecureWebSocket = false;
const mode = process.argv[2];
const n = Number(process.argv[3]);
const url = process.env.DATABASE_URL;
const out = [];
if (mode === 'connect') {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const c = new Client(url);
    await c.connect();
    await c.query('SELECT 1');
    await c.end();
    out.push(performance.now() - t0);
  }
} else {
  const c = new Client(url);
  await c.connect();
  for (let i = 0; i < 200; i++) await c.query('SELECT $1::int', [i]);
  for (let r = 0; r < 3; r++) {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await c.query('SELECT $1::int', [i]);
      out.push(performance.now() - t0);
    }
  }
  await c.end();
}
console.log(JSON.stringify(out));
"""


def js_paths() -> tuple[str, str] | None:
    """The JS driver and ws from the test suite's cache (tests install them), if node is here."""
    if shutil.which("node") is None:
        return None
    for base in (os.path.join(ROOT, ".cache", "js"), "/work/main/.cache/js"):
        module = os.path.join(base, "node_modules", "@neondatabase", "serverless", "index.mjs")
        ws = os.path.join(base, "node_modules", "ws", "wrapper.mjs")
        if os.path.exists(module) and os.path.exists(ws):
            return "file://" + module, "file://" + ws
    return None


def run_js(mode: str, n: int, env: dict[str, str]) -> list[float]:
    path = os.path.join(HERE, ".bench_ws.mjs")
    with open(path, "w", encoding="utf-8") as f:
        f.write(JS_SCRIPT)
    try:
        done = subprocess.run(["node", path, mode, str(n)], env=env, capture_output=True, text=True, timeout=300)
    finally:
        os.unlink(path)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return [float(x) for x in json.loads(done.stdout.strip().splitlines()[-1])]


def median_time(fn: Callable[[], None], reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class ProxyProcess:
    """``python -m neon_proxy`` in front of the server, in its own process (its CPU is not ours)."""

    def __init__(self, pg_port: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.pg_port = pg_port
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> int:
        import socket

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "neon_proxy", "--listen", f"127.0.0.1:{self.port}",
             "--upstream", f"postgres://127.0.0.1:{self.pg_port}?sslmode=disable", "--log-level", "WARNING"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self.port
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("neon_proxy did not start")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


# ----------------------------------------------------------------------------- connect cycles


def neon_tcp(host: str, port: int, user: str, password: str | None, **kw: Any) -> Callable[[], None]:
    def cycle() -> None:
        with Client(host=host, port=port, user=user, password=password, dbname="postgres", sslmode="disable", **kw) as c:
            c.query("SELECT 1")

    return cycle


def neon_ws(url: str, ws_proxy: str, **kw: Any) -> Callable[[], None]:
    def cycle() -> None:
        with Client(url, transport="websocket", ws_proxy=ws_proxy, use_secure_websocket=False, **kw) as c:
            c.query("SELECT 1")

    return cycle


def psycopg_cycle(host: str, port: int, user: str, password: str | None) -> Callable[[], None]:
    import psycopg

    def cycle() -> None:
        with psycopg.connect(host=host, port=port, user=user, password=password or "", dbname="postgres",
                             sslmode="disable", autocommit=True) as c:  # fmt: skip
            c.execute("SELECT 1").fetchall()

    return cycle


def asyncpg_cycle(host: str, port: int, user: str, password: str | None) -> Callable[[], None]:
    import asyncpg

    async def once() -> None:
        c = await asyncpg.connect(host=host, port=port, user=user, password=password, database="postgres", ssl=False)
        await c.fetch("SELECT 1")
        await c.close()

    return lambda: asyncio.run(once())


def pg8000_cycle(host: str, port: int, user: str, password: str | None) -> Callable[[], None]:
    import pg8000.native

    def cycle() -> None:
        c = pg8000.native.Connection(user, host=host, port=port, password=password, database="postgres")
        c.run("SELECT 1")
        c.close()

    return cycle


def framing_cpu(exchanges: int = 50_000, reps: int = 5) -> tuple[float, float]:
    """CPU µs per query spent in WebSocket framing alone, in memory: our tunnel, then wsproto.

    One exchange is what a ``SELECT $1::int`` costs the client's WebSocket layer: one binary
    message out (Bind/Execute/Sync, 64 bytes), one in (the result, 80 bytes), read back.
    """
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Message, Request

    from neon_proto.options import WebSocketTarget
    from neon_proto.websocket import WebSocketTunnel

    out, back = b"B" * 64, b"D" * 80

    def accepted(client_start: bytes) -> tuple[WSConnection, bytes]:
        server = WSConnection(ConnectionType.SERVER)
        server.receive_data(client_start)
        list(server.events())
        return server, server.send(AcceptConnection())

    tunnel = WebSocketTunnel(WebSocketTarget(False, "127.0.0.1", 80, "/v2"))
    server, accept = accepted(tunnel.start())
    tunnel.receive_data(accept)
    frame = server.send(Message(data=back))

    def ours() -> None:
        for _ in range(exchanges):
            tunnel.send(out)
            tunnel.receive_data(frame)
            tunnel.data_to_send()
            tunnel.read()

    ws = WSConnection(ConnectionType.CLIENT)
    server, accept = accepted(ws.send(Request(host="127.0.0.1", target="/v2")))
    ws.receive_data(accept)
    list(ws.events())

    def wsproto_client() -> None:
        for _ in range(exchanges):
            ws.send(Message(data=out))
            ws.receive_data(frame)
            chunks = [bytes(e.data) for e in ws.events() if type(e) is BytesMessage]
            assert chunks

    results = []
    for fn in (ours, wsproto_client):
        best = float("inf")
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        results.append(best / exchanges * 1e6)
    return results[0], results[1]


START, END = "<!-- bench_ws.py: start -->", "<!-- bench_ws.py: end -->"


def write_section(path: str, text: str) -> None:
    """Put ``text`` between this benchmark's markers in RESULTS_WS.md, leaving other sections alone."""
    try:
        with open(path, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = "# WebSocket benchmarks\n"
    block = f"{START}\n{text}\n{END}"
    if START in current and END in current:
        before, rest = current.split(START, 1)
        _, after = rest.split(END, 1)
        current = before + block + after
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument(
        "--latency-only", action="store_true", help="only the per-query section (no relay, no JS driver); writes nothing"
    )
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    reps = 3 if args.quick else 5
    queries = 1000 if args.quick else 3000
    started = time.time()

    lines: list[str] = []
    with EmbeddedPostgres(tls=False) as pg, ProxyProcess(pg.port) as proxy_port:
        scram = pg.role("scram_user")
        ws_proxy_direct = f"127.0.0.1:{proxy_port}/v2"
        url = f"postgresql://scram_user:{scram.password}@localhost:{pg.port}/postgres"
        rows: list[tuple[str, str, float]] = []

        js_env: dict[str, str] | None = None
        if not args.latency_only:
            with DelayRelay(pg.port, delay=delay) as pg_relay, DelayRelay(proxy_port, delay=delay) as proxy_relay:
                ws_proxy_relayed = f"127.0.0.1:{proxy_relay.port}/v2"

                def count(name: str, path: str, make: Callable[[str, int], Callable[[], None]], *, ws: bool = False) -> None:
                    direct = make("127.0.0.1", proxy_port if ws else pg.port)
                    relayed = make("127.0.0.1", proxy_relay.port if ws else pg_relay.port)
                    direct()  # warm: caches, learned auth method
                    relayed()
                    t_direct = median_time(direct, reps)
                    t_relay = median_time(relayed, reps)
                    rtts = (t_relay - t_direct) / (2 * delay)
                    rows.append((name, path, rtts))
                    print(f"{name:<52} {path:<34} {rtts:5.2f} round trips", flush=True)

                pw = scram.password
                count("neon_sync, SCRAM, pipeline_connect='scram' (default)", "TCP",
                      lambda h, p: neon_tcp(h, p, "scram_user", pw))  # fmt: skip
                count("neon_sync, SCRAM, pipeline_connect=False", "TCP",
                      lambda h, p: neon_tcp(h, p, "scram_user", pw, pipeline_connect=False))  # fmt: skip
                count("psycopg 3, SCRAM", "TCP", lambda h, p: psycopg_cycle(h, p, "scram_user", pw))
                count("asyncpg, SCRAM", "TCP", lambda h, p: asyncpg_cycle(h, p, "scram_user", pw))
                count("pg8000, SCRAM", "TCP", lambda h, p: pg8000_cycle(h, p, "scram_user", pw))
                count("neon_sync, trust, no password (default)", "TCP", lambda h, p: neon_tcp(h, p, "trust_user", None))
                count("neon_sync, trust, pipeline_connect=False", "TCP",
                      lambda h, p: neon_tcp(h, p, "trust_user", None, pipeline_connect=False))  # fmt: skip
                count("psycopg 3, trust", "TCP", lambda h, p: psycopg_cycle(h, p, "trust_user", None))
                count("asyncpg, trust", "TCP", lambda h, p: asyncpg_cycle(h, p, "trust_user", None))
                count("pg8000, trust", "TCP", lambda h, p: pg8000_cycle(h, p, "trust_user", None))
                count("neon_sync, pipeline_connect='password' (default)", "WebSocket via neon_proxy (ws://)",
                      lambda h, p: neon_ws(url, f"{h}:{p}/v2"), ws=True)  # fmt: skip
                count("neon_sync, pipeline_connect=False", "WebSocket via neon_proxy (ws://)",
                      lambda h, p: neon_ws(url, f"{h}:{p}/v2", pipeline_connect=False), ws=True)  # fmt: skip
                js = js_paths()
                if js is not None:
                    js_env = dict(os.environ, NEON_SERVERLESS_MODULE=js[0], NEON_WS_MODULE=js[1], DATABASE_URL=url)
                    try:
                        direct_js = statistics.median(run_js("connect", reps, {**js_env, "NEON_WS_PROXY": ws_proxy_direct}))
                        relay_js = statistics.median(run_js("connect", reps, {**js_env, "NEON_WS_PROXY": ws_proxy_relayed}))
                        rtts = (relay_js - direct_js) / 1000 / (2 * delay)
                        rows.append(("JS driver Client (@neondatabase/serverless), pipelineConnect 'password';"
                                     " its cycle ends with `await client.end()`, which waits for the socket to close",
                                     "WebSocket via neon_proxy (ws://)", rtts))  # fmt: skip
                        print(f"JS driver: {rtts:.2f} round trips", flush=True)
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                        print(f"JS driver skipped: {exc}", flush=True)
                        js_env = None

        # Per query, warm, no relay.
        per_query: dict[str, list[float]] = {"tcp": [], "ws": [], "tcp_proxy": []}  # every query's own time
        client_cpu: dict[str, list[float]] = {"tcp": [], "ws": [], "tcp_proxy": []}
        tcp_client = Client(host="127.0.0.1", port=pg.port, user="scram_user", password=scram.password,
                            dbname="postgres", sslmode="disable").connect()  # fmt: skip
        ws_client = Client(url, transport="websocket", ws_proxy=ws_proxy_direct, use_secure_websocket=False).connect()
        # Plain Postgres protocol to the proxy's port: the same hop as the WebSocket, without the WebSocket.
        tcp_proxy_client = Client(host="127.0.0.1", port=proxy_port, user="scram_user", password=scram.password,
                                  dbname="postgres", sslmode="disable", transport="tcp").connect()  # fmt: skip
        clients = (("tcp", tcp_client), ("ws", ws_client), ("tcp_proxy", tcp_proxy_client))
        for _key, c in clients:
            for i in range(200):
                c.query("SELECT $1::int", [i])
        for _ in range(reps):
            for key, c in clients:
                times = per_query[key]
                clock = time.perf_counter
                cpu0 = time.process_time()
                for i in range(queries):
                    t0 = clock()
                    c.query("SELECT $1::int", [i])
                    times.append(clock() - t0)
                client_cpu[key].append((time.process_time() - cpu0) / queries)
        for _key, c in clients:
            c.close()
        js_query: list[float] = []
        if js_env is not None:
            try:
                js_query = [ms / 1000 for ms in run_js("query", queries, {**js_env, "NEON_WS_PROXY": ws_proxy_direct})]
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                print(f"JS driver per-query skipped: {exc}", flush=True)

    tcp_us = statistics.median(per_query["tcp"]) * 1e6
    ws_us = statistics.median(per_query["ws"]) * 1e6
    tcp_mean = statistics.mean(per_query["tcp"]) * 1e6
    ws_mean = statistics.mean(per_query["ws"]) * 1e6
    tcp_cpu = statistics.median(client_cpu["tcp"]) * 1e6
    ws_cpu = statistics.median(client_cpu["ws"]) * 1e6
    proxy_us = statistics.median(per_query["tcp_proxy"]) * 1e6
    proxy_mean = statistics.mean(per_query["tcp_proxy"]) * 1e6
    proxy_cpu = statistics.median(client_cpu["tcp_proxy"]) * 1e6
    ours_framing, wsproto_framing = framing_cpu()
    js_us = statistics.median(js_query) * 1e6 if js_query else None
    js_mean = statistics.mean(js_query) * 1e6 if js_query else None
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    lines += [
        "## Pipelined connects and the WebSocket client (bench/bench_ws.py)",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC{' (--quick)' if args.quick else ''},"
        f" Python {platform.python_version()}, PostgreSQL from neon_sync.embedded (no TLS), neon_proxy in auth mode;"
        f" relay delay {args.delay_ms:g} ms each way, {reps} repetitions, medians. Load average at the end:"
        f" {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores shared with other developers' runs,"
        " so absolute times are noisy; round trips are robust to it (they are differences of tens of ms).",
        "",
        "### Round trips: connect + first query + close",
        "",
        "Beyond the TCP handshake (the relay accepts locally). Through the WebSocket the relay sits between",
        "the client and neon_proxy; the upgrade counts as one round trip.",
        "",
        "| Client | Path | Round trips |",
        "|---|---|---|",
    ]
    for name, path, rtts in rows:
        lines.append(f"| {name} | {path} | {rtts:.2f} |")
    lines += [
        "",
        "### `SELECT $1::int`, per query, one warm connection",
        "",
        "neon_proxy runs in its own process (python -m neon_proxy). Client CPU is the client process's own",
        "CPU time per query; the rest of the wall time is the proxy's hop and the scheduler.",
        "",
        "| Client | Path | median µs | mean µs | median vs neon_sync TCP | client CPU µs per query |",
        "|---|---|---|---|---|---|",
        f"| neon_sync | TCP, direct | {tcp_us:.0f} | {tcp_mean:.0f} | 1.00x | {tcp_cpu:.0f} |",
        f"| neon_sync | WebSocket via neon_proxy (ws://) | {ws_us:.0f} | {ws_mean:.0f} | {ws_us / tcp_us:.2f}x | {ws_cpu:.0f} |",
        f"| neon_sync | TCP via neon_proxy (Postgres protocol to its port) | {proxy_us:.0f} | {proxy_mean:.0f} |"
        f" {proxy_us / tcp_us:.2f}x | {proxy_cpu:.0f} |",
    ]
    if js_us is not None:
        lines.append(
            f"| JS driver Client.query | WebSocket via neon_proxy (ws://) | {js_us:.0f} | {js_mean:.0f} |"
            f" {js_us / tcp_us:.2f}x | (node) |"
        )
    lines += [
        "",
        f"Over WebSocket the client spends {ws_cpu - tcp_cpu:.0f} µs more CPU per query than over direct TCP,",
        f"and {ws_cpu - proxy_cpu:.0f} µs more than over TCP through the same proxy. The WebSocket framing itself",
        f"(one message each way, measured alone in memory) costs {ours_framing:.1f} µs per query in the tunnel,",
        f"which reads and writes whole binary frames itself; the same exchange through wsproto's event API costs",
        f"{wsproto_framing:.1f} µs. The rest is the binding's tunnel plumbing (coalesced writes, the link between",
        "socket and Postgres machine) and the noise of CPU time on shared cores, a few µs either way. Between",
        "the medians, the TCP via neon_proxy row is the hop without the WebSocket: its own work is in the",
        "proxy section, with reference relays that only copy bytes.",
        "",
        f"({queries} queries per repetition; took {time.time() - started:.0f} s in all.)",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick and not args.latency_only:
        write_section(os.path.join(HERE, "RESULTS_WS.md"), text)
    auth_method_memory.clear()


if __name__ == "__main__":
    main()
