"""Fixtures shared by every test: one throwaway PostgreSQL for the session, databases per test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import pytest

# The project is not installed into the venv; make its packages importable from the checkout.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from neon_sync.embedded import EmbeddedPostgres  # noqa: E402

# Under CI the property tests replay the same examples every run (a failure there is one a
# developer can reproduce, not a new draw); locally each run explores new inputs.
if os.environ.get("CI") == "true":
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    _hypothesis_settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes seconds (starts its own server or a subprocess)")


@pytest.fixture(scope="session")
def pg() -> Iterator[EmbeddedPostgres]:
    """A started server with TLS and the default roles (trust_user, cleartext_user, md5_user, scram_user)."""
    with EmbeddedPostgres(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def superuser_dsn(pg: EmbeddedPostgres) -> str:
    """A postgresql:// URI for the superuser `postgres`, password included."""
    return pg.dsn()


def admin_execute(pg: EmbeddedPostgres, sql: str) -> None:
    """Run one statement as the superuser, outside any transaction (CREATE/DROP DATABASE)."""
    # TODO: use neon_sync once it can run SQL; psycopg is only a test dependency (differential tests).
    import psycopg

    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(sql.encode())


@pytest.fixture
def fresh_db(pg: EmbeddedPostgres) -> Iterator[str]:
    """The name of a new, empty database, dropped (sessions and all) after the test."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin_execute(pg, f'CREATE DATABASE "{name}"')
    yield name
    admin_execute(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def proxy(pg: EmbeddedPostgres) -> Iterator[object]:
    """neon_proxy in front of `pg` (TLS verified upstream), from a background thread.

    A ``neon_proxy.testing.DevStack``: ``.url`` is http://127.0.0.1:PORT/sql, ``.pg`` the server,
    ``.database_url(user, password, database)`` a connection string for the proxy's clients,
    ``.server`` the running ProxyServer (its pool). Default limits (10 MiB each way).
    """
    from neon_proxy.config import ProxyConfig
    from neon_proxy.testing import DevStack

    with DevStack(postgres=pg, config=ProxyConfig(listen_port=0, shutdown_timeout=5.0)) as stack:
        yield stack
