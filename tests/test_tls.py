"""TLS as libpq does it: every sslmode, certificate and host-name checks, channel binding, direct TLS."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from neon_proto.errors import OperationalError, ProgrammingError
from neon_sync import Client
from neon_sync.embedded import EmbeddedPostgres

ENCRYPTED_SQL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
def plain_pg() -> Iterator[EmbeddedPostgres]:
    """A second server without TLS."""
    with EmbeddedPostgres(tls=False) as server:
        yield server


def is_encrypted(client: Client) -> bool:
    return bool(client.query(ENCRYPTED_SQL).rows[0]["ssl"])


def server_certificate_names(pg: EmbeddedPostgres) -> tuple[set[str], set[str]]:
    from cryptography import x509

    assert pg.server_cert_path is not None
    cert = x509.load_pem_x509_certificate(pathlib.Path(pg.server_cert_path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def name_not_in_certificate(pg: EmbeddedPostgres) -> str:
    """A host name that reaches the server (loopback) but that its certificate does not list."""
    dns_names, ips = server_certificate_names(pg)
    for candidate in (socket.gethostname(), "127.1"):
        if candidate in dns_names or candidate in ips:
            continue
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(candidate, pg.port, type=socket.SOCK_STREAM)}
        except OSError:
            continue
        if pg.host in addresses:
            return candidate
    pytest.skip("no loopback name outside the certificate's SAN list")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA certificate that did not sign the server's certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some other CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("ca") / "other-ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


# ---------------------------------------------------------------- which sslmodes encrypt


@pytest.mark.parametrize(
    ("sslmode", "encrypted"),
    [("disable", False), ("allow", False), ("prefer", True), ("require", True)],
)
def test_sslmode_decides_encryption(pg: EmbeddedPostgres, sslmode: str, encrypted: bool) -> None:
    with Client(pg.dsn("scram_user"), sslmode=sslmode) as c:
        assert is_encrypted(c) is encrypted
        assert c._transport is not None and c._transport.is_tls is encrypted


@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_verifying_sslmodes_encrypt_with_the_right_ca(pg: EmbeddedPostgres, sslmode: str) -> None:
    with Client(pg.dsn("scram_user"), host="localhost", sslmode=sslmode, sslrootcert=pg.ca_cert_path) as c:
        assert is_encrypted(c)


def test_default_sslmode_is_prefer_and_encrypts(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn("scram_user")) as c:
        assert c.params.sslmode == "prefer"
        assert is_encrypted(c)


def test_verify_full_with_an_ip_address_in_the_certificate(pg: EmbeddedPostgres) -> None:
    assert pg.host in server_certificate_names(pg)[1]
    with Client(pg.dsn("scram_user"), sslmode="verify-full", sslrootcert=pg.ca_cert_path) as c:
        assert is_encrypted(c)


# ---------------------------------------------------------------- verification failures


@pytest.mark.parametrize("sslmode", ["verify-ca", "verify-full"])
def test_verification_with_the_wrong_ca_fails(pg: EmbeddedPostgres, other_ca: str, sslmode: str) -> None:
    with pytest.raises(OperationalError, match="certificate"):
        Client(pg.dsn("scram_user"), host="localhost", sslmode=sslmode, sslrootcert=other_ca).connect()


def test_require_with_a_root_certificate_verifies_the_chain(pg: EmbeddedPostgres, other_ca: str) -> None:
    """libpq: sslmode=require with an sslrootcert behaves like verify-ca."""
    with pytest.raises(OperationalError, match="certificate"):
        Client(pg.dsn("scram_user"), sslmode="require", sslrootcert=other_ca).connect()


def test_require_without_a_root_certificate_does_not_verify(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn("scram_user"), sslmode="require") as c:
        assert is_encrypted(c)


def test_verify_full_with_the_system_cas_rejects_a_private_ca(pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError, match="certificate"):
        Client(pg.dsn("scram_user"), host="localhost", sslmode="verify-full", sslrootcert="system").connect()


def test_verify_full_with_a_host_name_not_in_the_certificate_fails(pg: EmbeddedPostgres) -> None:
    host = name_not_in_certificate(pg)
    with pytest.raises(OperationalError, match="(?i)host ?name|mismatch|not valid for"):
        Client(pg.dsn("scram_user"), host=host, sslmode="verify-full", sslrootcert=pg.ca_cert_path).connect()


def test_verify_ca_accepts_a_host_name_not_in_the_certificate(pg: EmbeddedPostgres) -> None:
    host = name_not_in_certificate(pg)
    with Client(pg.dsn("scram_user"), host=host, sslmode="verify-ca", sslrootcert=pg.ca_cert_path) as c:
        assert is_encrypted(c)


def test_failed_verification_leaves_no_socket_open(pg: EmbeddedPostgres, other_ca: str) -> None:
    client = Client(pg.dsn("scram_user"), sslmode="verify-ca", sslrootcert=other_ca)
    with pytest.raises(OperationalError):
        client.connect()
    assert client.closed


# ---------------------------------------------------------------- SNI


def test_sni_is_the_host_name(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn("scram_user"), host="localhost", sslmode="require") as c:
        assert c._transport is not None
        sock = c._transport.sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.server_hostname == "localhost"


# ---------------------------------------------------------------- a server without TLS


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
def test_sslmode_needing_tls_fails_against_a_server_without_it(plain_pg: EmbeddedPostgres, sslmode: str) -> None:
    client = Client(plain_pg.dsn("scram_user"), sslmode=sslmode)
    with pytest.raises(OperationalError, match="does not support TLS"):
        client.connect()
    assert client.closed


@pytest.mark.parametrize("sslmode", ["disable", "allow", "prefer"])
def test_weak_sslmodes_connect_in_plain_to_a_server_without_tls(plain_pg: EmbeddedPostgres, sslmode: str) -> None:
    with Client(plain_pg.dsn("scram_user"), sslmode=sslmode) as c:
        assert is_encrypted(c) is False


# ---------------------------------------------------------------- channel binding


def test_channel_binding_require_works_with_scram_over_tls(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn("scram_user"), sslmode="require", channel_binding="require") as c:
        assert is_encrypted(c)


def test_channel_binding_require_fails_over_plain_tcp(pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError, match="channel.binding"):
        Client(pg.dsn("scram_user"), sslmode="disable", channel_binding="require").connect()


def test_channel_binding_require_fails_against_a_server_without_tls(plain_pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError, match="channel.binding"):
        Client(plain_pg.dsn("scram_user"), sslmode="prefer", channel_binding="require").connect()


@pytest.mark.parametrize("user", ["cleartext_user", "md5_user", "trust_user"])
def test_channel_binding_require_fails_without_scram(pg: EmbeddedPostgres, user: str) -> None:
    with pytest.raises(OperationalError, match="channel binding"):
        Client(pg.dsn(user), sslmode="require", channel_binding="require").connect()


def test_channel_binding_disable_still_authenticates_over_tls(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn("scram_user"), sslmode="require", channel_binding="disable") as c:
        assert is_encrypted(c)


def test_channel_binding_with_a_wrong_password_fails_as_a_wrong_password(pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError) as info:
        Client(pg.dsn("scram_user", password="wrong"), sslmode="require", channel_binding="require").connect()
    assert info.value.sqlstate == "28P01"


# ---------------------------------------------------------------- direct TLS (sslnegotiation=direct)


def server_major_version(pg: EmbeddedPostgres) -> int:
    with Client(pg.dsn(), sslmode="disable") as c:
        return int(c.server_parameters["server_version"].split(".")[0])


def test_direct_tls_needs_a_strong_sslmode() -> None:
    with pytest.raises(ProgrammingError, match="sslnegotiation"):
        Client(host="127.0.0.1", user="u", sslmode="prefer", sslnegotiation="direct")


def test_direct_tls_against_a_server_before_17_is_a_clear_error(pg: EmbeddedPostgres) -> None:
    if server_major_version(pg) >= 17:
        pytest.skip("the server supports direct TLS")
    started = time.monotonic()
    client = Client(pg.dsn("scram_user"), sslmode="require", sslnegotiation="direct", connect_timeout=5)
    with pytest.raises(OperationalError, match="sslnegotiation=direct needs .* PostgreSQL 17"):
        client.connect()
    assert time.monotonic() - started < 5
    assert client.closed


def test_direct_tls_works_on_17_and_later(pg: EmbeddedPostgres) -> None:
    if server_major_version(pg) < 17:
        pytest.skip("direct TLS needs PostgreSQL 17")
    with Client(pg.dsn("scram_user"), sslmode="require", sslnegotiation="direct") as c:
        assert is_encrypted(c)


# ---------------------------------------------------------------- the address forms


def test_host_names_that_are_ip_addresses_are_recognised() -> None:
    from neon_sync._io import is_ip_address

    assert is_ip_address("127.0.0.1") and is_ip_address("::1") and not is_ip_address("localhost")
    assert ipaddress.ip_address("127.0.0.1").is_loopback


def test_poll_over_tls_does_not_block(pg: EmbeddedPostgres) -> None:
    with Client(pg.dsn("scram_user"), sslmode="require") as c:
        started = time.monotonic()
        assert c.poll() is True
        assert time.monotonic() - started < 0.5
        assert c.query("SELECT 1 AS one").rows == [{"one": 1}]


# ---------------------------------------------------------------- which SASL mechanism was used


def sasl_initial_response(pg: EmbeddedPostgres, sslmode: str, channel_binding: str) -> bytes:
    """Run a real startup (the parts Client.connect uses) and return the SASLInitialResponse sent."""
    from neon_proto.conninfo import parse_connection_string
    from neon_proto.session import Op, Session
    from neon_sync._io import Transport, make_ssl_context, open_socket, run

    params = parse_connection_string(pg.dsn("scram_user"), sslmode=sslmode, channel_binding=channel_binding)
    session = Session()
    transport = Transport(open_socket(params, 10))
    written: list[bytes] = []

    def spy(op: Op[None]) -> Op[None]:
        value = None
        try:
            while True:
                out = op.send(value)
                if out:
                    written.append(out)
                value = yield out
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    try:
        if sslmode != "disable" and run(session.request_tls(), transport, session.conn):
            transport.start_tls(make_ssl_context(params), params.host)
        run(
            spy(session.startup(params.startup_parameters(), params.password, channel_binding=channel_binding,
                                server_certificate=transport.server_certificate)),
            transport,
            session.conn,
        )
    finally:
        transport.close()
    (initial,) = [m for m in written if m[:1] == b"p" and b"SCRAM-SHA-256" in m]
    return initial


@pytest.mark.parametrize("channel_binding", ["prefer", "require"])
def test_scram_over_tls_binds_the_channel(pg: EmbeddedPostgres, channel_binding: str) -> None:
    initial = sasl_initial_response(pg, "require", channel_binding)
    assert b"SCRAM-SHA-256-PLUS\x00" in initial
    assert b"p=tls-server-end-point," in initial


def test_scram_over_plain_tcp_does_not_bind(pg: EmbeddedPostgres) -> None:
    initial = sasl_initial_response(pg, "disable", "prefer")
    assert b"SCRAM-SHA-256\x00" in initial and b"PLUS" not in initial
    assert b"n,," in initial


def test_channel_binding_disable_uses_plain_scram_over_tls(pg: EmbeddedPostgres) -> None:
    initial = sasl_initial_response(pg, "require", "disable")
    assert b"SCRAM-SHA-256\x00" in initial and b"PLUS" not in initial


# ---------------------------------------------------------------- a server that refuses plain TCP


@pytest.fixture(scope="module")
def tls_only_pg() -> Iterator[EmbeddedPostgres]:
    """A server whose pg_hba.conf rejects connections without TLS."""
    with EmbeddedPostgres(tls=True) as server:
        hba = pathlib.Path(server.data_dir) / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        )
        with Client(host=server.socket_dir or server.host, port=server.port, user="postgres", dbname="postgres") as admin:
            admin.query("SELECT pg_reload_conf()")
        yield server


def test_allow_retries_with_tls_when_plain_is_rejected(tls_only_pg: EmbeddedPostgres) -> None:
    with Client(tls_only_pg.dsn("scram_user"), sslmode="allow") as c:
        assert is_encrypted(c)


def test_disable_fails_when_plain_is_rejected(tls_only_pg: EmbeddedPostgres) -> None:
    with pytest.raises(OperationalError) as info:
        Client(tls_only_pg.dsn("scram_user"), sslmode="disable").connect()
    assert info.value.sqlstate == "28000"
    assert "no encryption" in str(info.value)
