"""Several hosts, target_session_attrs, .pgpass and service files against real servers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from neon_proto.errors import OperationalError
from neon_sync import Client, Pool
from neon_sync.embedded import EmbeddedPostgres


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def read_only_pg(pg: EmbeddedPostgres) -> Iterator[EmbeddedPostgres]:
    """A second server whose sessions are read-only by default (same superuser password as `pg`)."""
    with EmbeddedPostgres(tls=False, superuser_password=pg.superuser_password) as server:
        with Client(server.dsn(), sslmode="disable") as admin:
            admin.query("ALTER SYSTEM SET default_transaction_read_only = on")
            admin.query("SELECT pg_reload_conf()")
        yield server


def two_hosts(first: int, second: int, password: str, **extra: str) -> str:
    words = [f"host=127.0.0.1,127.0.0.1 port={first},{second} user=postgres password={password} sslmode=disable"]
    words += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(words)


def test_a_dead_host_first_then_the_live_one(pg: EmbeddedPostgres) -> None:
    dead = dead_port()
    with Client(f"postgresql://postgres:{pg.superuser_password}@127.0.0.1:{dead},127.0.0.1:{pg.port}/postgres?sslmode=disable") as client:
        assert client.query("SELECT 1 AS one").rows == [{"one": 1}]
        assert client.params.port == pg.port and len(client.params.hosts) == 1


def test_every_host_dead_names_each_failure(pg: EmbeddedPostgres) -> None:
    a, b = dead_port(), dead_port()
    with pytest.raises(OperationalError) as info:
        Client(two_hosts(a, b, pg.superuser_password)).connect()
    message = str(info.value)
    assert f"127.0.0.1:{a}" in message and f"127.0.0.1:{b}" in message
    assert pg.superuser_password not in message


def test_read_write_skips_a_read_only_server(pg: EmbeddedPostgres, read_only_pg: EmbeddedPostgres) -> None:
    dsn = two_hosts(read_only_pg.port, pg.port, pg.superuser_password, target_session_attrs="read-write")
    with Client(dsn) as client:
        assert client.params.port == pg.port
        assert client.query("SHOW transaction_read_only", array_mode=True).rows == [["off"]]


def test_read_only_picks_the_read_only_server(pg: EmbeddedPostgres, read_only_pg: EmbeddedPostgres) -> None:
    dsn = two_hosts(pg.port, read_only_pg.port, pg.superuser_password, target_session_attrs="read-only")
    with Client(dsn) as client:
        assert client.params.port == read_only_pg.port


def test_primary_and_prefer_standby_take_the_first_server_without_standbys(
    pg: EmbeddedPostgres, read_only_pg: EmbeddedPostgres
) -> None:
    for attrs in ("primary", "prefer-standby", "any"):
        with Client(two_hosts(read_only_pg.port, pg.port, pg.superuser_password, target_session_attrs=attrs)) as client:
            assert client.params.port == read_only_pg.port, attrs


def test_standby_with_no_standby_is_a_clear_error(pg: EmbeddedPostgres, read_only_pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError, match=r"no server matched \(target_session_attrs=standby\).*session is not standby"):
        Client(two_hosts(pg.port, read_only_pg.port, pg.superuser_password, target_session_attrs="standby")).connect()


def test_pool_over_several_hosts(pg: EmbeddedPostgres) -> None:
    with Pool(two_hosts(dead_port(), pg.port, pg.superuser_password), max_size=1) as pool:
        assert pool.query("SELECT 2 AS two").rows == [{"two": 2}]


# ---------------------------------------------------------------- files


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("PG"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_pgpass_supplies_the_password(pg: EmbeddedPostgres, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    password = pg.role("scram_user").password
    passfile = clean_env / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg.port}:*:scram_user:{password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with Client(f"host=127.0.0.1 port={pg.port} user=scram_user dbname=postgres sslmode=disable") as client:
        assert client.query("SELECT current_user AS u").rows == [{"u": "scram_user"}]


def test_home_pgpass_with_group_access_is_ignored(pg: EmbeddedPostgres, clean_env: Path) -> None:
    passfile = clean_env / ".pgpass"
    passfile.write_text(f"*:*:*:scram_user:{pg.role('scram_user').password}\n")
    passfile.chmod(0o640)
    with pytest.raises(OperationalError, match="password"):
        Client(f"host=127.0.0.1 port={pg.port} user=scram_user dbname=postgres sslmode=disable").connect(wait=True)
    passfile.chmod(0o600)
    with Client(f"host=127.0.0.1 port={pg.port} user=scram_user dbname=postgres sslmode=disable") as client:
        assert client.query("SELECT 1 AS one").rows == [{"one": 1}]


def test_service_file_names_the_server(pg: EmbeddedPostgres, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    services = clean_env / "services.conf"
    services.write_text(f"[main]\nhost=127.0.0.1\nport={pg.port}\ndbname=postgres\nsslmode=disable\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    with Client("service=main", user="postgres", password=pg.superuser_password) as client:
        assert client.params.port == pg.port
        assert client.query("SELECT current_database() AS d").rows == [{"d": "postgres"}]
    with pytest.raises(Exception, match="definition of service 'missing' not found"):
        Client("service=missing")


def test_dbapi_connect_over_several_hosts(pg: EmbeddedPostgres) -> None:
    from neon_sync import connect

    conn = connect(two_hosts(dead_port(), pg.port, pg.superuser_password), autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SELECT inet_server_port()")
        assert cur.fetchone() == (pg.port,)
    finally:
        conn.close()
