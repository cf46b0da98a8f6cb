"""The async clients drive neon_proto's connect plan, as neon_sync does: Postgres TLS inside a
WebSocket through neon_proxy's relay mode, several hosts with target_session_attrs, and the
password file, on trio, asyncio and uvloop against the real Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aio import Loop, backends_of, loop, admin  # noqa: F401  (fixtures)
from test_conninfo_server import clean_env, dead_port, read_only_pg  # noqa: F401  (fixtures: the sync side's servers and files)
from neon_proto.auth import auth_method_memory
from neon_proto.errors import OperationalError
from neon_sync import Client as SyncClient
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    """Each test starts without learned authentication methods (they are process-wide)."""
    auth_method_memory.clear()
    yield
    auth_method_memory.clear()


# ---------------------------------------------------------------- TLS inside the tunnel (relay mode)


@pytest.fixture(scope="module")
def relay(pg: EmbeddedPostgres) -> Iterator[Any]:
    """neon_proxy in relay mode (Neon's wsproxy): raw bytes to Postgres, whose TLS and auth run end to end."""
    from neon_proxy.config import ProxyConfig
    from neon_proxy.testing import DevStack

    with DevStack(postgres=pg, config=ProxyConfig(listen_port=0, ws_relay=True, shutdown_timeout=5.0)) as stack:
        yield stack


def through_relay(relay: Any, **extra: Any) -> dict[str, Any]:
    return {"ws_proxy": relay.server.ws_proxy, "use_secure_websocket": False, **extra}


@pytest.mark.parametrize("pipeline_connect", ["scram", False])
def test_tls_inside_the_websocket_through_a_relay(loop: Loop, relay: Any, pg: EmbeddedPostgres, pipeline_connect: Any) -> None:
    assert pg.ca_cert_path is not None
    options = through_relay(
        relay, force_disable_pg_ssl=False, sslmode="verify-full", sslrootcert=pg.ca_cert_path,
        pipeline_connect=pipeline_connect,
    )  # fmt: skip

    async def main() -> None:
        async with loop.mod.Client(pg.dsn("scram_user"), **options) as client:
            assert client.transport_name == "websocket"
            assert (await client.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).rows == [{"ssl": True}]
            text = "through TLS in a WebSocket"
            assert (await client.query("SELECT $1::text AS t", [text])).rows == [{"t": text}]
            rows = (await client.query("SELECT g FROM generate_series(1, 20000) g", array_mode=True)).rows
            assert len(rows) == 20000 and rows[-1] == [20000]
            await client.query("CREATE TEMP TABLE items (n int)")
            assert await client.copy_from("COPY items FROM STDIN", [f"{i}\n" for i in range(3000)]) == 3000
            async with client.copy_to("COPY items TO STDOUT") as chunks:
                assert sum([len(c) async for c in chunks]) > 3000

    loop.run(main)


def test_channel_binding_inside_the_websocket(loop: Loop, relay: Any, pg: EmbeddedPostgres) -> None:
    """SCRAM-SHA-256-PLUS binds the login to the TLS session that runs inside the tunnel."""
    assert pg.ca_cert_path is not None
    options = through_relay(relay, force_disable_pg_ssl=False, sslmode="verify-full", sslrootcert=pg.ca_cert_path)

    async def main() -> None:
        async with loop.mod.Client(pg.dsn("scram_user"), channel_binding="require", **options) as client:
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_a_cancelled_query_inside_the_tls_tunnel_is_cancelled(loop: Loop, relay: Any, pg: EmbeddedPostgres) -> None:
    """The CancelRequest goes through a second WebSocket (cancel_plan), the query ends, and the
    connection stays usable."""
    from neon_proto.errors import QueryCanceled

    assert pg.ca_cert_path is not None
    options = through_relay(
        relay, force_disable_pg_ssl=False, sslmode="verify-full", sslrootcert=pg.ca_cert_path, pipeline_connect="scram"
    )

    async def main() -> None:
        async with loop.mod.Client(pg.dsn("scram_user"), **options) as client:
            with pytest.raises(QueryCanceled):
                await client.query("SELECT pg_sleep(30)", [], timeout=0.3)
            assert (await client.query("SELECT 2 AS two")).rows == [{"two": 2}]

    loop.run(main)


def test_a_wrong_cleartext_guess_through_a_relay_reconnects_once(loop: Loop, relay: Any, pg: EmbeddedPostgres) -> None:
    """Cleartext pipelining (the WebSocket default) guessed wrong: Postgres itself asks SCRAM
    through a relay. The first query connects again with what the server asks and runs."""

    async def main() -> None:
        async with loop.mod.Client(pg.dsn("scram_user"), **through_relay(relay)) as client:
            assert (await client.query("SELECT current_user AS u")).rows == [{"u": "scram_user"}]
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]

    loop.run(main)


def test_a_cancelled_connect_through_the_relay_leaks_nothing(
    loop: Loop, relay: Any, pg: EmbeddedPostgres, admin: SyncClient
) -> None:
    assert pg.ca_cert_path is not None
    app = f"relay_cancel_{loop.name}"
    options = through_relay(relay, force_disable_pg_ssl=False, sslmode="verify-full", sslrootcert=pg.ca_cert_path)

    async def main() -> None:
        for delay in (0.0, 0.005, 0.02, 0.05):
            client = loop.mod.Client(pg.dsn("scram_user"), application_name=app, **options)
            async with loop.timeout(delay):
                await client.connect()
                await client.query("SELECT 1")
            await client.close()

    loop.run(main)
    from aio import wait_until

    wait_until(lambda: backends_of(admin, app) == 0)


# ---------------------------------------------------------------- several hosts


def test_a_dead_host_first_then_the_live_one(loop: Loop, pg: EmbeddedPostgres) -> None:
    dead = dead_port()
    dsn = f"postgresql://postgres:{pg.superuser_password}@127.0.0.1:{dead},127.0.0.1:{pg.port}/postgres?sslmode=disable"

    async def main() -> None:
        async with loop.mod.Client(dsn) as client:
            assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
            assert client.params.port == pg.port and len(client.params.hosts) == 1

    loop.run(main)


def test_every_host_dead_names_each_failure(loop: Loop, pg: EmbeddedPostgres) -> None:
    a, b = dead_port(), dead_port()
    dsn = f"host=127.0.0.1,127.0.0.1 port={a},{b} user=postgres password={pg.superuser_password} sslmode=disable"

    async def main() -> None:
        client = loop.mod.Client(dsn)
        with pytest.raises(OperationalError) as info:
            await client.connect()
        message = str(info.value)
        assert f"127.0.0.1:{a}" in message and f"127.0.0.1:{b}" in message
        assert pg.superuser_password not in message
        assert client.closed

    loop.run(main)


def two_hosts(first: int, second: int, password: str, attrs: str) -> str:
    return (
        f"host=127.0.0.1,127.0.0.1 port={first},{second} user=postgres password={password} sslmode=disable"
        f" target_session_attrs={attrs}"
    )


def test_target_session_attrs_picks_the_fitting_server(
    loop: Loop, pg: EmbeddedPostgres, read_only_pg: EmbeddedPostgres
) -> None:
    password = pg.superuser_password

    async def main() -> None:
        async with loop.mod.Client(two_hosts(read_only_pg.port, pg.port, password, "read-write")) as client:
            assert client.params.port == pg.port
            assert (await client.query("SHOW transaction_read_only", array_mode=True)).rows == [["off"]]
        async with loop.mod.Client(two_hosts(pg.port, read_only_pg.port, password, "read-only")) as client:
            assert client.params.port == read_only_pg.port
            assert (await client.query("SHOW transaction_read_only", array_mode=True)).rows == [["on"]]
        client = loop.mod.Client(two_hosts(pg.port, read_only_pg.port, password, "standby"))
        with pytest.raises(OperationalError, match=r"no server matched \(target_session_attrs=standby\).*session is not standby"):
            await client.connect()

    loop.run(main)


def test_a_pool_over_several_hosts(loop: Loop, pg: EmbeddedPostgres) -> None:
    dead = dead_port()
    dsn = f"postgresql://postgres:{pg.superuser_password}@127.0.0.1:{dead},127.0.0.1:{pg.port}/postgres?sslmode=disable"

    async def main() -> None:
        async with loop.mod.Pool(dsn, max_size=2) as pool:
            assert (await pool.query("SELECT 7 AS n")).rows == [{"n": 7}]

    loop.run(main)


# ---------------------------------------------------------------- the password and service files


def test_pgpass_supplies_the_password(
    loop: Loop, pg: EmbeddedPostgres, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passfile = clean_env / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg.port}:*:scram_user:{pg.role('scram_user').password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))

    async def main() -> None:
        dsn = f"host=127.0.0.1 port={pg.port} user=scram_user dbname=postgres sslmode=disable"
        async with loop.mod.Client(dsn) as c:
            assert (await c.query("SELECT current_user AS u")).rows == [{"u": "scram_user"}]

    loop.run(main)


def test_a_home_pgpass_with_group_access_is_ignored(loop: Loop, pg: EmbeddedPostgres, clean_env: Path) -> None:
    passfile = clean_env / ".pgpass"
    passfile.write_text(f"*:*:*:scram_user:{pg.role('scram_user').password}\n")
    passfile.chmod(0o640)
    dsn = f"host=127.0.0.1 port={pg.port} user=scram_user dbname=postgres sslmode=disable"

    async def main() -> None:
        with pytest.raises(OperationalError, match="password"):
            await loop.mod.Client(dsn).connect()

    loop.run(main)


def test_a_service_file_names_the_server(
    loop: Loop, pg: EmbeddedPostgres, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = clean_env / "services.conf"
    services.write_text(f"[main]\nhost=127.0.0.1\nport={pg.port}\ndbname=postgres\nsslmode=disable\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))

    async def main() -> None:
        async with loop.mod.Client("service=main", user="postgres", password=pg.superuser_password) as client:
            assert client.params.port == pg.port
            assert (await client.query("SELECT current_database() AS d")).rows == [{"d": "postgres"}]

    loop.run(main)
