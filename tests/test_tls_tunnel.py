"""neon_proto.tls.TLSTunnel: TLS over memory buffers, against an in-memory server (ssl's own)."""

from __future__ import annotations

import ssl

import pytest

from neon_proto.conninfo import ConnectionParams
from neon_proto.errors import OperationalError
from neon_proto.tls import TLSTunnel, make_ssl_context
from neon_sync.embedded import EmbeddedPostgres


class MemoryServer:
    def __init__(self, pg: EmbeddedPostgres) -> None:
        assert pg.server_cert_path and pg.server_key_path
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pg.server_cert_path, pg.server_key_path)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)

    def feed(self, data: bytes) -> bytes:
        self.incoming.write(data)
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()


def handshake(client: TLSTunnel, server: MemoryServer) -> None:
    out, done = client.handshake()
    while not done:
        client.receive_data(server.feed(out))
        out, done = client.handshake()
    client.receive_data(server.feed(out))  # TLS 1.3 session tickets follow the handshake


def test_handshake_and_data_both_ways(pg: EmbeddedPostgres) -> None:
    params = ConnectionParams(host="127.0.0.1", sslmode="verify-full", sslrootcert=pg.ca_cert_path)
    client = TLSTunnel(make_ssl_context(params), "127.0.0.1")
    server = MemoryServer(pg)
    handshake(client, server)
    assert client.handshake_done and client.server_certificate
    server.incoming.write(client.send(b"Q\x00\x00\x00\x0dSELECT 1\x00"))
    assert server.tls.read() == b"Q\x00\x00\x00\x0dSELECT 1\x00"
    server.tls.write(b"Z\x00\x00\x00\x05I")
    client.receive_data(server.outgoing.read())
    assert client.read() == b"Z\x00\x00\x00\x05I"
    assert client.read() == b""
    client.receive_data(b"")  # the stream ended without close_notify
    assert client.read() == b""


def test_a_certificate_from_another_ca_is_refused(pg: EmbeddedPostgres) -> None:
    params = ConnectionParams(host="127.0.0.1", sslmode="verify-full", sslrootcert="system")
    client = TLSTunnel(make_ssl_context(params), "127.0.0.1")
    server = MemoryServer(pg)
    with pytest.raises(OperationalError, match="certificate verification failed"):
        handshake(client, server)
