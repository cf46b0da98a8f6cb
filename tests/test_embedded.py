"""The throwaway server the other tests stand on: roles and their auth methods, TLS, lifecycle."""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from neon_sync.embedded import EmbeddedPostgres, PostgresNotFound, Role

ROLE_AUTH = {
    "postgres": "scram-sha-256",
    "trust_user": "trust",
    "cleartext_user": "password",
    "md5_user": "md5",
    "scram_user": "scram-sha-256",
}
PASSWORD_ROLES = [name for name, auth in ROLE_AUTH.items() if auth != "trust"]
# The AuthenticationRequest code a server sends for each pg_hba method.
AUTH_REQUEST_CODE = {"trust": 0, "password": 3, "md5": 5, "scram-sha-256": 10}
# libpq's require_auth values: the connection fails unless the server uses exactly this method.
LIBPQ_REQUIRE_AUTH = {"trust": "none", "password": "password", "md5": "md5", "scram-sha-256": "scram-sha-256"}


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    def read_exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "server closed the connection"
            data += chunk
        return data

    header = read_exactly(5)
    (length,) = struct.unpack("!i", header[1:])
    return header[:1], read_exactly(length - 4)


def _send(sock: socket.socket, kind: bytes, body: bytes) -> None:
    sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)


def answer_auth_wrongly(pg: EmbeddedPostgres, user: str) -> tuple[int, dict[str, str]]:
    """Start up as ``user`` over plain TCP and answer the server's auth request with a wrong secret.

    Returns the AuthenticationRequest code the server sent and the fields of its ErrorResponse
    (empty when it let us in without asking). libpq hides the SQLSTATE of a failed connection,
    hence this minimal protocol exchange.
    """
    with socket.create_connection((pg.host, pg.port), timeout=10) as sock:
        params = b"user\0" + user.encode() + b"\0database\0postgres\0\0"
        sock.sendall(struct.pack("!ii", len(params) + 8, 3 << 16) + params)
        kind, body = _read_message(sock)
        assert kind == b"R"
        (code,) = struct.unpack("!i", body[:4])
        if code == 0:
            return code, {}
        if code == 3:
            _send(sock, b"p", b"wrong\0")
        elif code == 5:
            _send(sock, b"p", b"md5" + b"0" * 32 + b"\0")
        elif code == 10:
            assert b"SCRAM-SHA-256\0" in body[4:]
            client_first = b"n,,n=,r=" + base64.b64encode(os.urandom(18))
            _send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(client_first)) + client_first)
            kind, body = _read_message(sock)
            assert kind == b"R" and struct.unpack("!i", body[:4])[0] == 11  # SASLContinue
            server_nonce = dict(item.split(b"=", 1) for item in body[4:].split(b","))[b"r"]
            _send(sock, b"p", b"c=biws,r=" + server_nonce + b",p=" + base64.b64encode(bytes(32)))
        kind, body = _read_message(sock)
        assert kind == b"E"
        fields = {chr(f[0]): f[1:].decode() for f in body.split(b"\0") if f}
        return code, fields


def test_server_accepts_the_superuser(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_default_roles_cover_every_auth_method(pg: EmbeddedPostgres) -> None:
    assert {role.name: role.auth for role in pg.roles} == ROLE_AUTH
    assert pg.role("postgres").password == pg.superuser_password


@pytest.mark.parametrize("name", ROLE_AUTH)
def test_role_logs_in_with_its_password_through_its_method(pg: EmbeddedPostgres, name: str) -> None:
    require_auth = LIBPQ_REQUIRE_AUTH[pg.role(name).auth]
    with psycopg.connect(pg.dsn(name, require_auth=require_auth)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)


@pytest.mark.parametrize("name", ROLE_AUTH)
def test_server_asks_each_role_for_its_method(pg: EmbeddedPostgres, name: str) -> None:
    code, _ = answer_auth_wrongly(pg, name)
    assert code == AUTH_REQUEST_CODE[ROLE_AUTH[name]]


@pytest.mark.parametrize("name", PASSWORD_ROLES)
def test_wrong_password_fails_with_28P01(pg: EmbeddedPostgres, name: str) -> None:
    _, fields = answer_auth_wrongly(pg, name)
    assert fields["C"] == "28P01"
    assert fields["V"] == "FATAL"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn(name, "not-the-password"))


def test_md5_role_password_is_stored_as_md5(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:
        stored: dict[str, str] = dict(conn.execute("SELECT rolname, left(rolpassword, 6) FROM pg_authid").fetchall())
    assert stored["md5_user"].startswith("md5")
    assert stored["scram_user"] == "SCRAM-"


def test_roles_can_create_tables_and_databases(pg: EmbeddedPostgres) -> None:
    with psycopg.connect(pg.dsn("scram_user"), autocommit=True) as conn:
        conn.execute("CREATE TABLE scram_user_table (x int)")
        conn.execute("DROP TABLE scram_user_table")
        conn.execute("CREATE DATABASE scram_user_db")
        conn.execute("DROP DATABASE scram_user_db")


def test_fresh_db_lets_every_role_create_tables(pg: EmbeddedPostgres, fresh_db: str) -> None:
    with psycopg.connect(pg.dsn("md5_user", database=fresh_db)) as conn:
        conn.execute("CREATE TABLE t (x int)")
        assert conn.execute("SELECT current_database()").fetchone() == (fresh_db,)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_verifies_against_the_generated_ca(pg: EmbeddedPostgres, host: str) -> None:
    assert pg.ca_cert_path is not None
    dsn = pg.dsn(sslmode="verify-full", sslrootcert=pg.ca_cert_path)
    with psycopg.connect(dsn, host=host) as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert row == (True,)


def test_tls_with_another_ca_is_refused(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    other_ca = tmp_path / "other.crt"
    assert pg.server_cert_path is not None
    other_ca.write_text(Path(pg.server_cert_path).read_text())  # a leaf, not the CA
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        psycopg.connect(pg.dsn(sslmode="verify-full", sslrootcert=str(other_ca)))


def test_ssl_setting_is_on(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:
        assert conn.execute("SHOW ssl").fetchone() == ("on",)


def test_plain_tcp_is_accepted_too(pg: EmbeddedPostgres) -> None:
    with psycopg.connect(pg.dsn("cleartext_user", sslmode="disable")) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (False,)


def test_server_key_is_private(pg: EmbeddedPostgres) -> None:
    assert pg.server_key_path is not None and pg.ca_cert_path is not None
    assert os.stat(pg.server_key_path).st_mode & 0o777 == 0o600
    assert os.stat(pg.ca_cert_path).st_mode & 0o777 == 0o644


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_server_process_is_not_root(pg: EmbeddedPostgres) -> None:
    assert pg.pid is not None
    assert os.stat(f"/proc/{pg.pid}").st_uid != 0


def test_dsn_percent_encodes_and_appends_params() -> None:
    server = EmbeddedPostgres(port=5999, superuser_password="p@ss:/ wörd", tls=False)
    dsn = server.dsn(database="my db", sslmode="disable", application_name="a b+c")
    parts = urlsplit(dsn)
    assert (parts.scheme, parts.hostname, parts.port) == ("postgresql", "127.0.0.1", 5999)
    assert unquote(parts.password or "") == "p@ss:/ wörd"
    assert unquote(parts.path) == "/my db"
    assert parts.query == "sslmode=disable&application_name=a%20b%2Bc"  # libpq reads '+' literally


def test_dsn_uses_the_roles_password_by_default() -> None:
    server = EmbeddedPostgres(port=5999, roles=[Role("app", "s3cret", "md5")])
    assert server.dsn("app") == "postgresql://app:s3cret@127.0.0.1:5999/postgres"
    assert server.dsn("stranger") == "postgresql://stranger@127.0.0.1:5999/postgres"


def test_role_rejects_unknown_auth_method() -> None:
    with pytest.raises(ValueError, match="auth must be one of"):
        Role("someone", "pw", "ident")


def test_restart_keeps_data_and_port() -> None:
    with EmbeddedPostgres(tls=False) as server:
        port, pid = server.port, server.pid
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE survivor (x int); INSERT INTO survivor VALUES (42)")
        server.restart()
        assert server.port == port and server.pid not in (None, pid)
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT x FROM survivor").fetchone() == (42,)


def test_stop_removes_the_directory_and_frees_the_port() -> None:
    server = EmbeddedPostgres(tls=False).start()
    work_dir, port, host = server.work_dir, server.port, server.host
    server.stop()
    assert not os.path.exists(work_dir)
    assert not server.running
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()


def test_stop_is_safe_twice_and_after_the_server_died() -> None:
    server = EmbeddedPostgres(tls=False).start()
    assert server.pid is not None
    os.kill(server.pid, 9)
    server.stop()
    server.stop()
    assert not server.running


def test_missing_binaries_raise_postgres_not_found(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFound, match="PG_BINDIR"):
        EmbeddedPostgres(bindir=str(tmp_path)).start()


def test_start_failure_reports_the_server_log() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = EmbeddedPostgres(tls=False, port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="could not bind") as info:
            server.start()
    assert "did not start" in str(info.value)
    assert not server.running


@pytest.mark.slow
def test_server_left_running_is_stopped_at_interpreter_exit() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {root!r})
        from neon_sync.embedded import EmbeddedPostgres
        server = EmbeddedPostgres(tls=False).start()
        print(server.pid, server.work_dir, flush=True)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pid, work_dir = result.stdout.split()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert not os.path.exists(work_dir)


@pytest.fixture
def shared_parent_dir() -> Iterator[str]:
    """A parent directory for work directories, searchable by the server's user (nobody under root)."""
    import shutil
    import tempfile

    parent = tempfile.mkdtemp(prefix="neon-orphans-")
    os.chmod(parent, 0o755)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def _start_in_a_child(parent: str) -> tuple[subprocess.Popen[str], int, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {root!r})
        from neon_sync.embedded import EmbeddedPostgres
        server = EmbeddedPostgres(tls=False, base_dir={parent!r}).start()
        print(server.pid, server.work_dir, flush=True)
        time.sleep(120)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    pid, work_dir = child.stdout.readline().split()
    return child, int(pid), work_dir


def _gone(pid: int) -> bool:
    from neon_sync.embedded import _process_alive

    return not _process_alive(pid)


@pytest.mark.slow
def test_server_of_an_owner_killed_with_sigkill_is_stopped_and_removed_by_the_next_start(shared_parent_dir: str) -> None:
    child, pid, work_dir = _start_in_a_child(shared_parent_dir)
    child.kill()  # SIGKILL: no finalizer, no atexit
    child.wait(10)
    assert not _gone(pid) and os.path.isdir(work_dir)  # the orphan lives on...
    with EmbeddedPostgres(tls=False, base_dir=shared_parent_dir) as server:  # ...until the next start
        assert _gone(pid)
        assert not os.path.exists(work_dir)
        assert os.path.isdir(server.work_dir) and server.running


@pytest.mark.slow
def test_a_live_owners_server_is_left_alone(shared_parent_dir: str) -> None:
    from neon_sync.embedded import remove_orphans

    child, pid, work_dir = _start_in_a_child(shared_parent_dir)
    try:
        with EmbeddedPostgres(tls=False, base_dir=shared_parent_dir):
            assert not _gone(pid) and os.path.isdir(work_dir)
    finally:
        child.kill()
        child.wait(30)
        assert work_dir in remove_orphans(shared_parent_dir)
    assert _gone(pid)


def test_directories_without_an_owner_file_are_left_alone(shared_parent_dir: str) -> None:
    from neon_sync.embedded import remove_orphans

    legacy = os.path.join(shared_parent_dir, "neon-pg-legacy")
    os.makedirs(os.path.join(legacy, "data"))
    assert remove_orphans(shared_parent_dir) == []
    assert os.path.isdir(legacy)
