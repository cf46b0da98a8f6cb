"""TLS without sockets: the client's SSLContext per sslmode, and TLS over memory buffers.

``make_ssl_context`` turns libpq's sslmode into an ``ssl.SSLContext`` that every binding uses
(a socket wraps it, or ``TLSTunnel`` runs it over ``MemoryBIO``). ``TLSTunnel`` is TLS inside
another stream (a WebSocket carrying Postgres through a plain relay): ciphertext in, plaintext
out, plaintext in, ciphertext out, with no socket anywhere.
"""

from __future__ import annotations

from ssl import (
    CERT_NONE,
    CERT_REQUIRED,
    PROTOCOL_TLS_CLIENT,
    MemoryBIO,
    SSLCertVerificationError,
    SSLContext,
    SSLError,
    SSLObject,
    SSLWantReadError,
    TLSVersion,
)

from neon_proto.conninfo import ConnectionParams
from neon_proto.errors import OperationalError

__all__ = ["make_ssl_context", "TLSTunnel"]


def make_ssl_context(params: ConnectionParams) -> SSLContext:
    """An SSLContext for a sslmode: verify-full checks chain and name, verify-ca the chain only.

    ``require`` with an sslrootcert behaves as verify-ca, as libpq does.
    """
    mode = params.sslmode
    ctx = SSLContext(PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = TLSVersion.TLSv1_2
    verify = mode in ("verify-ca", "verify-full") or (mode == "require" and params.sslrootcert)
    if verify:
        if params.sslrootcert and params.sslrootcert != "system":
            ctx.load_verify_locations(cafile=params.sslrootcert)
        else:
            ctx.load_default_certs()
        ctx.check_hostname = mode == "verify-full"
        ctx.verify_mode = CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = CERT_NONE
    if params.sslcert:
        ctx.load_cert_chain(params.sslcert, params.sslkey)
    if params.sslnegotiation == "direct":
        ctx.set_alpn_protocols(["postgresql"])
    return ctx


class TLSTunnel:
    """A TLS client over memory buffers.

    ``receive_data(ciphertext)`` then ``read()`` gives plaintext; ``send(plaintext)`` gives
    ciphertext to write. ``handshake()`` returns the ciphertext to send and whether the
    handshake is complete; call it again after feeding the server's answer.
    """

    def __init__(self, context: SSLContext, server_hostname: str | None) -> None:
        self._incoming = MemoryBIO()
        self._outgoing = MemoryBIO()
        self._ssl: SSLObject = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self.handshake_done = False

    def handshake(self) -> tuple[bytes, bool]:
        """Advance the handshake: the bytes to send, and whether it has completed."""
        try:
            self._ssl.do_handshake()
        except SSLWantReadError:
            return self._outgoing.read(), False
        except SSLCertVerificationError as exc:
            raise OperationalError(f"TLS certificate verification failed: {exc.verify_message}") from exc
        except SSLError as exc:
            raise OperationalError(f"TLS handshake failed: {exc}") from exc
        self.handshake_done = True
        return self._outgoing.read(), True

    @property
    def server_certificate(self) -> bytes | None:
        """The server's certificate (DER), for SCRAM channel binding."""
        return self._ssl.getpeercert(binary_form=True) if self.handshake_done else None

    def receive_data(self, data: bytes) -> None:
        """Ciphertext from the peer; ``b""`` means EOF."""
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    def read(self) -> bytes:
        """All plaintext available now (``b""`` if none)."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._ssl.read(65536)
            except SSLWantReadError:
                break
            except SSLError as exc:
                raise OperationalError(f"TLS error: {exc}") from exc
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, data: bytes) -> bytes:
        """Encrypt ``data``: the ciphertext to write."""
        view = memoryview(data)
        while view:
            written = self._ssl.write(view)
            view = view[written:]
        return self._outgoing.read()
