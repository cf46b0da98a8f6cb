"""The proxy in a background thread, alone or with a throwaway Postgres behind it.

For synchronous code: tests, notebooks, the README's demo. ``ProxyThread`` runs a
``ProxyServer`` under its own ``trio.run``; ``DevStack`` adds an ``EmbeddedPostgres`` (or
takes yours) and gives the two URLs a client needs: ``database_url()`` and ``url``.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any
from urllib.parse import quote

import attrs
import trio

from neon_proxy.config import ProxyConfig
from neon_proxy.server import ProxyServer
from neon_sync.embedded import EmbeddedPostgres

__all__ = ["ProxyThread", "DevStack", "upstream_url"]

logger = logging.getLogger("neon_proxy")


class ProxyThread:
    """A ``ProxyServer`` serving from a daemon thread until ``stop()``."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.server = ProxyServer(config)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<ProxyThread {self.url if self.server.port else 'not started'}>"

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self.server.port is None:
            raise RuntimeError("the proxy is not started")
        return self.server.port

    @property
    def url(self) -> str:
        """The fetch endpoint, ``http://host:port/sql``."""
        self.port  # noqa: B018 - raises if not started
        return self.server.url

    def start(self, timeout: float = 30.0) -> "ProxyThread":
        """Start serving; return once the port is bound."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._main, name="neon-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the proxy did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the proxy failed to start: {self._error}") from self._error
        return self

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # reported to start() or logged
            self._error = exc
            if self._ready.is_set():
                logger.error("the proxy thread stopped with an error: %r", exc)
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.run)
            self._ready.set()

    def stop(self, timeout: float | None = None) -> None:
        """Shut down gracefully (in-flight requests finish) and wait for the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if self._token is not None:
            try:
                trio.from_thread.run_sync(self.server.shutdown, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        thread.join(timeout if timeout is not None else self.config.shutdown_timeout + 5)

    def __enter__(self) -> "ProxyThread":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def upstream_url(pg: EmbeddedPostgres, *, tls: bool = True) -> str:
    """How the proxy reaches an embedded server: TLS verified against its CA when it has TLS (and ``tls``)."""
    host = f"[{pg.host}]" if ":" in pg.host else pg.host
    if tls and pg.tls and pg.ca_cert_path:
        return f"postgres://{host}:{pg.port}?sslmode=verify-full&sslrootcert={quote(pg.ca_cert_path, safe='')}"
    return f"postgres://{host}:{pg.port}?sslmode=disable"


class DevStack:
    """Postgres plus the proxy in front of it, started and stopped together.

    Without ``postgres`` an ``EmbeddedPostgres(tls=False)`` is started (and stopped) here.
    ``config`` gives the proxy's other settings; its upstream is set to the server, over TLS
    where the server has it unless ``upstream_tls`` is False.
    """

    def __init__(
        self, *, postgres: EmbeddedPostgres | None = None, config: ProxyConfig | None = None, upstream_tls: bool = True
    ) -> None:
        self._upstream_tls = upstream_tls
        self._given_postgres = postgres
        self._config = config if config is not None else ProxyConfig(listen_port=0)
        self._own_postgres: EmbeddedPostgres | None = None
        self.proxy: ProxyThread | None = None

    def __repr__(self) -> str:
        return f"<DevStack proxy={self.proxy!r} pg={self._given_postgres or self._own_postgres!r}>"

    @property
    def pg(self) -> EmbeddedPostgres:
        """The Postgres behind the proxy."""
        pg = self._given_postgres or self._own_postgres
        if pg is None:
            raise RuntimeError("the DevStack is not started")
        return pg

    @property
    def url(self) -> str:
        """The fetch endpoint (``neonConfig.fetchEndpoint`` for the JS driver)."""
        if self.proxy is None:
            raise RuntimeError("the DevStack is not started")
        return self.proxy.url

    @property
    def port(self) -> int:
        """The proxy's port."""
        if self.proxy is None:
            raise RuntimeError("the DevStack is not started")
        return self.proxy.port

    @property
    def server(self) -> ProxyServer:
        """The running proxy server (its pool, its settings)."""
        if self.proxy is None:
            raise RuntimeError("the DevStack is not started")
        return self.proxy.server

    def database_url(
        self, user: str | None = None, password: str | None = None, database: str = "postgres", *, host: str = "localhost"
    ) -> str:
        """A connection string for the proxy's clients: its host only names the endpoint.

        The password defaults to the role's own; the port is the server's (the proxy ignores it).
        """
        pg = self.pg
        user = user or pg.superuser
        if password is None:
            password = pg.role(user).password or ""
        return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{pg.port}/{quote(database, safe='')}"

    def start(self) -> "DevStack":
        """Start Postgres (unless given) and the proxy."""
        if self.proxy is not None:
            return self
        if self._given_postgres is None and self._own_postgres is None:
            self._own_postgres = EmbeddedPostgres(tls=False).start()
        try:
            config = attrs.evolve(self._config, upstream=upstream_url(self.pg, tls=self._upstream_tls))
            self.proxy = ProxyThread(config).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the proxy, then the Postgres started here."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self._own_postgres is not None:
            self._own_postgres.stop()
            self._own_postgres = None

    def __enter__(self) -> "DevStack":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
