"""The async clients drive neon_proto's connect plan, as neon_sync does: a pipelined connect
over TCP that returns before the login is answered, Postgres TLS inside a WebSocket through
neon_proxy's relay mode, several hosts with target_session_attrs, and the password file, on
trio, asyncio and uvloop against the real Postgres."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aio import Loop, backends_of, loop, admin  # noqa: F401  (fixtures)
from test_conninfo_server import clean_env, dead_port, read_only_pg  # noqa: F401  (fixtures: the sync side's servers and files)
from neon_proto.auth import auth_method_memory
from neon_proto.errors import ConnectionClosed, InterfaceError, OperationalError
from neon_proto.sqlstate import InvalidCatalogName, InvalidPassword
from neon_sync import Client as SyncClient
from neon_sync.embedded import EmbeddedPostgres


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    """Each test starts without learned authentication methods (they are process-wide)."""
    auth_method_memory.clear()
    yield
    auth_method_memory.clear()


# ---------------------------------------------------------------- pipelined connect over TCP, as neon_sync


@pytest.mark.parametrize(
    "user, pipeline",
    [
        ("scram_user", "scram"),
        ("cleartext_user", "password"),  # loopback: the cleartext password may travel
        ("md5_user", False),  # the salt comes from the server: nothing to pipeline
        ("trust_user", "startup"),  # the server asks nothing
    ],
)
def test_a_pipelined_tcp_connect_returns_before_the_login_is_answered(
    loop: Loop, pg: EmbeddedPostgres, user: str, pipeline: Any
) -> None:
    """connect() returns once its last flight is written (no backend key yet) and the first
    query follows in the same round trip, finishing the login. The first connect guesses
    SCRAM; a server that asks otherwise answers that guess at once, so the connect tries
    again with what it asks, as will every later connect."""

    async def main() -> None:
        for _ in range(2):
            client = await loop.mod.Client(pg.dsn(user), sslmode="disable").connect()
            assert client.connect_pipeline == pipeline
            assert client.session.conn.startup_in_background == (pipeline is not False)
            assert (client.backend_pid is None) == (pipeline is not False)
            assert (await client.query("SELECT current_user AS u, $1::int AS n", [5])).rows == [{"u": user, "n": 5}]
            assert client.backend_pid is not None and not client.session.conn.startup_in_background
            await client.close()

    loop.run(main)


@pytest.mark.parametrize("pipeline", ["scram", False])
def test_a_failed_pipelined_login_surfaces_at_the_first_query_with_its_class(
    loop: Loop, pg: EmbeddedPostgres, pipeline: Any
) -> None:
    async def main() -> None:
        for options, error in (
            ({"password": "nope"}, InvalidPassword),
            ({"dbname": "no_such_db_async"}, InvalidCatalogName),
        ):
            url = pg.dsn("scram_user", sslmode="disable")
            client = loop.mod.Client(url, pipeline_connect=pipeline, **options)
            if pipeline:
                await client.connect()  # nothing answered yet
                with pytest.raises(error):
                    await client.query("SELECT 1")
            else:
                with pytest.raises(error):
                    await client.connect()  # not pipelined: the login is answered before connect() returns
            assert client.closed
            with pytest.raises(error):
                await loop.mod.Client(url, pipeline_connect=pipeline, **options).connect(wait=True)

    loop.run(main)


def test_wait_finishes_the_login_of_a_connected_client(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        client = await loop.mod.Client(pg.dsn("scram_user"), sslmode="disable").connect()
        assert client.backend_pid is None
        assert await client.connect(wait=True) is client
        assert client.backend_pid is not None and client.server_parameters["server_version"]
        assert (await client.query("SELECT pg_backend_pid() AS pid")).rows == [{"pid": client.backend_pid}]
        await client.close()

    loop.run(main)


def test_pools_and_dbapi_connect_wait_for_the_login(loop: Loop, pg: EmbeddedPostgres) -> None:
    async def main() -> None:
        url = pg.dsn("scram_user", sslmode="disable")
        conn = await loop.mod.connect(url)
        assert conn.client.backend_pid is not None and conn.client.connect_pipeline == "scram"
        await conn.close()
        with pytest.raises(InvalidPassword):
            await loop.mod.connect(url, password="nope")
        async with loop.mod.Pool(url, max_size=1) as pool:
            async with pool.connection() as c:
                assert c.backend_pid is not None and c.connect_pipeline == "scram"
        async with loop.mod.Pool(url, password="nope", max_size=1) as pool:
            with pytest.raises(InvalidPassword):
                await pool.query("SELECT 1")

    loop.run(main)


def test_a_first_query_cancelled_after_a_pipelined_connect_is_cancelled_on_the_server(
    loop: Loop, pg: EmbeddedPostgres, admin: SyncClient
) -> None:
    app = f"pipelined_cancel_{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        client = await loop.mod.Client(pg.dsn("scram_user"), sslmode="disable", application_name=app).connect()
        async with loop.timeout(0.3) as scope:
            await client.query("SELECT pg_sleep(30)")
        assert scope.expired and not client.closed and client.transaction_status == "I"
        assert (await client.query("SELECT 1 AS one")).rows == [{"one": 1}]
        rows = admin.query("SELECT state FROM pg_stat_activity WHERE pid = $1::int", [client.backend_pid]).rows
        assert rows == [{"state": "idle"}]
        await client.close()

    loop.run(main)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel accepts connections that nobody ever answers."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        yield silent.getsockname()[1]
    finally:
        silent.close()


@pytest.mark.parametrize("loop", [Loop("trio"), Loop("asyncio")], ids=["trio", "asyncio"])
def test_connect_timeout_bounds_a_pipelined_login_behind_the_first_query(loop: Loop, silent_port: int) -> None:
    """Without a password the StartupMessage alone is the last flight: connect() returns, and
    the first query gives up at connect_timeout (2 s at least, as libpq) with the connection closed."""

    async def main() -> None:
        client = await loop.mod.Client(f"postgresql://u@127.0.0.1:{silent_port}/db", sslmode="disable", connect_timeout=2).connect()
        assert client.connect_pipeline == "startup"
        started = time.monotonic()
        with pytest.raises(OperationalError, match="timed out"):
            await client.query("SELECT 1")
        assert time.monotonic() - started < 6
        assert client.closed
        with pytest.raises(ConnectionClosed):
            await client.query("SELECT 1")

    loop.run(main)


@pytest.mark.parametrize("loop", [Loop("trio"), Loop("asyncio")], ids=["trio", "asyncio"])
def test_a_first_query_cancelled_before_the_login_is_answered_closes_the_connection(loop: Loop, silent_port: int) -> None:
    """No backend key yet, so nothing to cancel with: the connection is closed at once rather
    than drained for cancel_timeout."""

    async def main() -> None:
        client = loop.mod.Client(f"postgresql://u@127.0.0.1:{silent_port}/db", sslmode="disable", cancel_timeout=30)
        await client.connect()
        started = time.monotonic()
        async with loop.timeout(0.2) as scope:
            await client.query("SELECT 1")
        assert scope.expired and time.monotonic() - started < 5
        assert client.closed
        with pytest.raises((ConnectionClosed, InterfaceError)):
            await client.query("SELECT 1")

    loop.run(main)


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
            await loop.mod.Client(dsn).connect(wait=True)

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
