"""``python -m neon_proxy``: serve Neon's SQL-over-HTTP protocol in front of a Postgres.

``python -m neon_proxy --upstream postgres://HOST:PORT`` serves; ``python -m neon_proxy dev``
also starts a throwaway Postgres when no upstream is given, and prints the two settings a
client needs. Every flag has a NEON_PROXY_* environment variable. SIGINT or SIGTERM lets
in-flight requests finish, then stops (a second one stops at once).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Callable, Sequence

import trio

from neon_proxy.config import MiB, ProxyConfig, parse_endpoint_table, parse_listen
from neon_proxy.server import ProxyServer
from neon_proxy.testing import upstream_url

__all__ = ["main", "build_parser", "config_from_args"]

logger = logging.getLogger("neon_proxy")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"NEON_PROXY_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    """The command line; defaults come from NEON_PROXY_* variables."""
    parser = argparse.ArgumentParser(
        prog="python -m neon_proxy",
        description="Neon's SQL-over-HTTP (POST /sql) and WebSocket (/v2) endpoints in front of any Postgres.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "dev"),
        default="serve",
        help="serve (default), or dev: also start a throwaway Postgres when no upstream is given",
    )
    parser.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:4444"), help="HOST:PORT (NEON_PROXY_LISTEN)")
    parser.add_argument(
        "--upstream",
        default=_env("UPSTREAM"),
        help="postgres://HOST:PORT[?sslmode=...] serving every endpoint (NEON_PROXY_UPSTREAM)",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        default=None,
        metavar="NAME=URL",
        help="route one endpoint name to its own upstream; repeatable (NEON_PROXY_ENDPOINTS, space-separated)",
    )
    parser.add_argument("--tls-cert", default=_env("TLS_CERT"), help="serve HTTPS with this certificate (NEON_PROXY_TLS_CERT)")
    parser.add_argument("--tls-key", default=_env("TLS_KEY"), help="its private key (NEON_PROXY_TLS_KEY)")
    parser.add_argument(
        "--max-request-size", type=int, default=int(_env("MAX_REQUEST_SIZE", str(10 * MiB)) or 0), help="bytes (413 past it)"
    )
    parser.add_argument(
        "--max-response-size", type=int, default=int(_env("MAX_RESPONSE_SIZE", str(10 * MiB)) or 0), help="bytes (507 past it)"
    )
    parser.add_argument("--pool-max-per-key", type=int, default=int(_env("POOL_MAX_PER_KEY", "20") or 0))
    parser.add_argument("--pool-max-total", type=int, default=int(_env("POOL_MAX_TOTAL", "20000") or 0))
    parser.add_argument("--pool-idle-timeout", type=float, default=float(_env("POOL_IDLE_TIMEOUT", "300") or 0))
    parser.add_argument("--connect-timeout", type=float, default=float(_env("CONNECT_TIMEOUT", "15") or 0))
    parser.add_argument("--shutdown-timeout", type=float, default=float(_env("SHUTDOWN_TIMEOUT", "30") or 0))
    parser.add_argument(
        "--ws-relay",
        action="store_true",
        default=(_env("WS_RELAY", "") or "").lower() in ("1", "true", "yes", "on"),
        help="WebSocket relay mode (Neon's wsproxy): raw bytes to ?address=host:port, no authentication "
        "by the proxy (NEON_PROXY_WS_RELAY=1); default: auth mode, the proxy logs in to the upstream",
    )
    parser.add_argument(
        "--ws-relay-allow",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="an address relay mode may reach (*.suffix:PORT allowed); repeatable; default: the configured "
        "upstreams alone (NEON_PROXY_WS_RELAY_ALLOW, space-separated)",
    )
    parser.add_argument(
        "--ws-max-connections",
        type=int,
        default=int(_env("WS_MAX_CONNECTIONS", "1000") or 0),
        help="concurrent WebSocket connections; past it upgrades get 503 (default 1000)",
    )
    parser.add_argument(
        "--ws-handshake-timeout",
        type=float,
        default=float(_env("WS_HANDSHAKE_TIMEOUT", "10") or 0),
        help="seconds a WebSocket client has to send its startup message and password (default 10)",
    )
    parser.add_argument(
        "--ws-idle-timeout",
        type=float,
        default=float(_env("WS_IDLE_TIMEOUT", "600") or 0),
        help="seconds a WebSocket session may sit idle, no query running, before it is closed (default 600)",
    )
    parser.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"), help="DEBUG, INFO, WARNING... (NEON_PROXY_LOG_LEVEL)")
    return parser


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    """A ProxyConfig from parsed arguments; ValueError for bad values."""
    host, port = parse_listen(args.listen)
    endpoints: dict[str, str] = parse_endpoint_table(_env("ENDPOINTS", "") or "")
    for item in args.endpoint or ():
        endpoints.update(parse_endpoint_table(item))
    return ProxyConfig(
        listen_host=host,
        listen_port=port,
        upstream=args.upstream,
        endpoints=endpoints,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        max_request_size=args.max_request_size,
        max_response_size=args.max_response_size,
        pool_max_per_key=args.pool_max_per_key,
        pool_max_total=args.pool_max_total,
        pool_idle_timeout=args.pool_idle_timeout,
        connect_timeout=args.connect_timeout,
        shutdown_timeout=args.shutdown_timeout,
        ws_relay=args.ws_relay,
        ws_relay_allow=_relay_allowlist(args.ws_relay_allow),
        ws_max_connections=args.ws_max_connections,
        ws_handshake_timeout=args.ws_handshake_timeout,
        ws_idle_timeout=args.ws_idle_timeout,
    )


def _relay_allowlist(given: list[str] | None) -> tuple[str, ...]:
    entries = given if given else (_env("WS_RELAY_ALLOW", "") or "").split()
    return tuple(entries)


async def run_until_signalled(server: ProxyServer, on_ready: Callable[[ProxyServer], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM: the first shuts down gracefully, a second at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def watch_signals() -> None:
                async for signum in signals:
                    logger.info("received %s", signal.Signals(signum).name)
                    server.shutdown()

            async def serve(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
                await server.run(task_status=task_status)
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_signals)
            await nursery.start(serve)
            if on_ready is not None:
                on_ready(server)


def _print_dev_settings(database_url: str | None) -> Callable[[ProxyServer], None]:
    def show(server: ProxyServer) -> None:
        lines = []
        if database_url is not None:
            lines.append(f"DATABASE_URL={database_url}")
        lines.append(f"NEON_FETCH_ENDPOINT={server.url}")
        lines.append(f"NEON_WS_PROXY={server.ws_proxy}")
        lines.append("# JS: neonConfig.fetchEndpoint = process.env.NEON_FETCH_ENDPOINT; neon(process.env.DATABASE_URL)")
        lines.append("# Ctrl-C stops the proxy" + (" and Postgres" if database_url is not None else ""))
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()

    return show


def _run_dev(args: argparse.Namespace) -> int:
    if args.upstream or args.endpoint or _env("ENDPOINTS"):
        config = config_from_args(args)
        trio.run(run_until_signalled, ProxyServer(config), _print_dev_settings(None))
        return 0
    from urllib.parse import quote

    from neon_sync.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tls=False)
    try:
        pg.start()
        args.upstream = upstream_url(pg)
        config = config_from_args(args)
        password = quote(pg.superuser_password, safe="")
        database_url = f"postgresql://{pg.superuser}:{password}@localhost:{pg.port}/postgres"
        trio.run(run_until_signalled, ProxyServer(config), _print_dev_settings(database_url))
    finally:
        pg.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m neon_proxy`` and the ``neon-proxy`` script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "dev":
            return _run_dev(args)
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not config.has_upstream:
        parser.error("no upstream: give --upstream (or NEON_PROXY_UPSTREAM) or --endpoint, or use `dev`")
    trio.run(run_until_signalled, ProxyServer(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
