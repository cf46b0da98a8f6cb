"""``python -m neon_proxy``: serve Neon's SQL-over-HTTP protocol in front of a Postgres.

``python -m neon_proxy --upstream postgres://HOST:PORT`` serves; ``python -m neon_proxy dev``
also starts a throwaway Postgres when no upstream is given, and prints the two settings a
client needs. Every flag has a NEON_PROXY_* environment variable. SIGINT or SIGTERM lets
in-flight requests finish, then stops (a second one stops at once).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import ssl
import sys
from typing import Callable, Sequence, TypeVar

import attrs
import trio

from neon_proxy.config import MiB, ProxyConfig, parse_endpoint_table, parse_listen
from neon_proxy.server import ProxyServer
from neon_proxy.testing import upstream_url

__all__ = ["main", "build_parser", "config_from_args"]

logger = logging.getLogger("neon_proxy")

_N = TypeVar("_N", int, float)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"NEON_PROXY_{name}", default)


def _env_flag(name: str) -> bool:
    """An on/off default from NEON_PROXY_<name> (1, true, yes, on)."""
    return (_env(name, "") or "").lower() in ("1", "true", "yes", "on")


def _number(parse: Callable[[str], _N], name: str, default: str) -> _N:
    """A numeric default from NEON_PROXY_<name>; a bad value is a usage error naming the variable."""
    text = _env(name, default) or default
    try:
        return parse(text)
    except ValueError:
        raise _UsageError(f"NEON_PROXY_{name}={text!r} is not a number") from None


class _UsageError(Exception):
    """A person's mistake: reported as one line, exit status 2."""


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default (as set by NEON_PROXY_* variables, if any)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is argparse.SUPPRESS:
            return text
        return f"{text} (default: {'none' if action.default is None else '%(default)s'})"


# Numeric flags: (flag, NEON_PROXY_ variable, type, default, metavar, help).
_NUMBER_OPTIONS: tuple[tuple[str, str, Callable[[str], float], str, str, str], ...] = (
    ("--max-request-size", "MAX_REQUEST_SIZE", int, str(10 * MiB), "BYTES", "largest request body; 413 past it"),
    ("--max-response-size", "MAX_RESPONSE_SIZE", int, str(10 * MiB), "BYTES", "largest response body; 507 past it"),
    ("--pool-max-per-key", "POOL_MAX_PER_KEY", int, "20", "N", "upstream connections per database, user and credentials"),
    ("--pool-max-total", "POOL_MAX_TOTAL", int, "20000", "N", "upstream connections in all"),
    ("--pool-idle-timeout", "POOL_IDLE_TIMEOUT", float, "300", "SECONDS", "close upstream connections idle this long"),
    ("--connect-timeout", "CONNECT_TIMEOUT", float, "15", "SECONDS", "to connect and authenticate to an upstream"),
    ("--shutdown-timeout", "SHUTDOWN_TIMEOUT", float, "30", "SECONDS",
     "in-flight requests get this long to finish after SIGINT/SIGTERM"),
    ("--ws-max-connections", "WS_MAX_CONNECTIONS", int, "1000", "N",
     "concurrent WebSocket connections; past it upgrades get 503"),
    ("--ws-handshake-timeout", "WS_HANDSHAKE_TIMEOUT", float, "10", "SECONDS",
     "a WebSocket client's time to send its startup message and password"),
    ("--ws-idle-timeout", "WS_IDLE_TIMEOUT", float, "600", "SECONDS",
     "a WebSocket session idle this long, no query running, is closed"),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command line; defaults come from NEON_PROXY_* variables."""
    parser = argparse.ArgumentParser(
        prog="python -m neon_proxy",
        description="Neon's SQL-over-HTTP (POST /sql) and WebSocket (/v2) endpoints in front of any Postgres. "
        "Every option has a NEON_PROXY_* environment variable (named in its help).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("serve", "dev"),
        default="serve",
        help="serve, or dev: also start a throwaway Postgres when no upstream is given",
    )
    parser.add_argument("--listen", default=_env("LISTEN", "127.0.0.1:4444"), metavar="HOST:PORT", help="where to listen (NEON_PROXY_LISTEN)")
    parser.add_argument(
        "--upstream",
        default=_env("UPSTREAM"),
        metavar="URL",
        help="postgres://HOST:PORT[?sslmode=...] serving every endpoint (NEON_PROXY_UPSTREAM)",
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        default=None,
        metavar="NAME=URL",
        help="route one endpoint name to its own upstream; repeatable (NEON_PROXY_ENDPOINTS, space-separated)",
    )
    parser.add_argument("--tls-cert", default=_env("TLS_CERT"), metavar="PEM", help="serve HTTPS with this certificate chain (NEON_PROXY_TLS_CERT)")
    parser.add_argument("--tls-key", default=_env("TLS_KEY"), metavar="PEM", help="the certificate's private key (NEON_PROXY_TLS_KEY)")
    for flag, variable, parse, default, metavar, text in _NUMBER_OPTIONS:
        parser.add_argument(
            flag, type=parse, default=_number(parse, variable, default), metavar=metavar,
            help=f"{text} (NEON_PROXY_{variable})",
        )  # fmt: skip
    parser.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "INFO"), choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper,
        help="how much to log, to stderr (NEON_PROXY_LOG_LEVEL)",
    )
    parser.add_argument(
        "--ws-relay",
        action="store_true",
        default=_env_flag("WS_RELAY"),
        help="WebSocket relay mode (Neon's wsproxy): raw bytes to ?address=host:port, no authentication "
        "by the proxy; off: auth mode, the proxy logs in to the upstream (NEON_PROXY_WS_RELAY=1)",
    )
    parser.add_argument(
        "--ws-trio-relay",
        action="store_true",
        default=_env_flag("WS_TRIO_RELAY"),
        help="relay WebSocket and TCP sessions' bytes in trio tasks always; off: on one relay thread (TLS included), "
        "about half the CPU per message (NEON_PROXY_WS_TRIO_RELAY=1)",
    )
    parser.add_argument(
        "--ws-relay-allow",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="an address relay mode may reach (*.suffix:PORT allowed); repeatable; none given: the configured "
        "upstreams alone (NEON_PROXY_WS_RELAY_ALLOW, space-separated)",
    )
    parser.add_argument(
        "--pool-max-per-user", type=int, default=_number(int, "POOL_MAX_PER_USER", "50"), metavar="N",
        help="upstream connections of one user, across databases, options and WebSocket sessions (NEON_PROXY_POOL_MAX_PER_USER)",
    )
    parser.add_argument(
        "--pool-rare-idle-timeout", type=float, default=_number(float, "POOL_RARE_IDLE_TIMEOUT", "30"), metavar="SECONDS",
        help="how long an idle connection of a rarely used pool key is kept (NEON_PROXY_POOL_RARE_IDLE_TIMEOUT)",
    )
    parser.add_argument(
        "--upstream-max-connections", type=int, default=_number(int, "UPSTREAM_MAX_CONNECTIONS", "0"), metavar="N",
        help="connections the proxy may open to each upstream server; 0: read from the server"
        " (max_connections minus reserved slots, less 5) (NEON_PROXY_UPSTREAM_MAX_CONNECTIONS)",
    )
    parser.add_argument(
        "--head-timeout", type=float, default=_number(float, "HEAD_TIMEOUT", "10"), metavar="SECONDS",
        help="a request head may take this long from its first byte; 408 past it (NEON_PROXY_HEAD_TIMEOUT)",
    )
    parser.add_argument(
        "--body-timeout", type=float, default=_number(float, "BODY_TIMEOUT", "30"), metavar="SECONDS",
        help="a request body may take this long after its head; 408 past it (NEON_PROXY_BODY_TIMEOUT)",
    )
    parser.add_argument(
        "--max-client-connections", type=int, default=_number(int, "MAX_CLIENT_CONNECTIONS", "0"), metavar="N",
        help="open client connections per listener, more are answered 503; 0: 4096, or half the"
        " descriptor limit (NEON_PROXY_MAX_CLIENT_CONNECTIONS)",
    )
    return parser


def _check_port_free(host: str, port: int) -> None:
    """Fail before anything starts (a throwaway Postgres, say) when the listen port is taken."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise _UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, type_, proto, _, address = infos[0]
    with socket.socket(family, type_, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind(address)
        except OSError as exc:
            hint = " (is another proxy running? choose another with --listen HOST:PORT)" if exc.errno == errno.EADDRINUSE else ""
            raise _UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None


def _check_tls_files(cert: str | None, key: str | None) -> None:
    """Unreadable or mismatched certificate files are named before the server starts."""
    if cert is None or key is None:
        return
    for path, what in ((cert, "--tls-cert"), (key, "--tls-key")):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise _UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise _UsageError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: not a PEM certificate chain and its private key "
            f"({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise _UsageError(f"cannot use --tls-cert {cert} with --tls-key {key}: {exc.strerror or exc}") from None


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    """A ProxyConfig from parsed arguments; ValueError for bad values."""
    host, port = parse_listen(args.listen)
    _check_tls_files(args.tls_cert, args.tls_key)
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
        pool_max_per_user=args.pool_max_per_user,
        pool_max_total=args.pool_max_total,
        pool_idle_timeout=args.pool_idle_timeout,
        pool_rare_idle_timeout=args.pool_rare_idle_timeout,
        upstream_max_connections=args.upstream_max_connections or None,
        head_timeout=args.head_timeout,
        body_timeout=args.body_timeout,
        **({"max_client_connections": args.max_client_connections} if args.max_client_connections else {}),
        connect_timeout=args.connect_timeout,
        shutdown_timeout=args.shutdown_timeout,
        ws_relay=args.ws_relay,
        ws_relay_allow=_relay_allowlist(args.ws_relay_allow),
        ws_relay_thread=not args.ws_trio_relay,
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
    config = config_from_args(args)  # a bad flag is reported before Postgres starts
    _check_port_free(config.listen_host, config.listen_port)
    if config.has_upstream:
        trio.run(run_until_signalled, ProxyServer(config), _print_dev_settings(None))
        return 0
    from urllib.parse import quote

    from neon_sync.embedded import EmbeddedPostgres, PostgresNotFound

    pg = EmbeddedPostgres(tls=False)
    try:
        try:
            pg.start()
        except PostgresNotFound as exc:
            raise _UsageError(str(exc)) from None
        except RuntimeError as exc:  # the server's own words (the end of its log) follow the first line
            sys.stderr.write(f"python -m neon_proxy: error: could not start the throwaway Postgres: {exc}\n")
            return 1
        config = attrs.evolve(config, upstream=upstream_url(pg))
        password = quote(pg.superuser_password, safe="")
        database_url = f"postgresql://{pg.superuser}:{password}@localhost:{pg.port}/postgres"
        trio.run(run_until_signalled, ProxyServer(config), _print_dev_settings(database_url))
    finally:
        pg.stop()
    return 0


def _serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not config.has_upstream:
        raise _UsageError("no upstream: give --upstream (or NEON_PROXY_UPSTREAM) or --endpoint, or use `dev`")
    _check_port_free(config.listen_host, config.listen_port)
    trio.run(run_until_signalled, ProxyServer(config))
    return 0


def _first_os_error(exc: BaseException) -> str | None:
    """The first OSError in ``exc`` (trio wraps what a nursery raises in a group), as one line."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_os_error(inner)
            if found is not None:
                return found
        return None
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m neon_proxy`` and the ``neon-proxy`` script.

    A mistake (a bad flag, a port in use, unreadable TLS files, no Postgres binaries) is one
    line on stderr and exit status 2, not a traceback.
    """
    prog = "python -m neon_proxy"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(level=getattr(logging, args.log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return _run_dev(args) if args.command == "dev" else _serve(args)
    except (_UsageError, ValueError) as exc:
        sys.stderr.write(f"{prog}: error: {exc}\n")
        return 2
    except (OSError, BaseExceptionGroup) as exc:  # the port was taken between the check and the bind, say
        error = _first_os_error(exc)
        if error is None:
            raise
        sys.stderr.write(f"{prog}: error: {error}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
