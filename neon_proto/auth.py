"""Client-side authentication: cleartext, MD5 and SCRAM-SHA-256(-PLUS) through scramp."""

from __future__ import annotations

import hashlib
from typing import Any

from neon_proto.errors import InterfaceError, OperationalError

__all__ = ["md5_password", "ScramSession", "tls_server_end_point"]


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """The ``md5...`` response: md5(md5(password + user) + salt), hex, with the prefix."""
    inner = hashlib.md5(password.encode("utf-8") + user.encode("utf-8")).hexdigest()
    outer = hashlib.md5(inner.encode("ascii") + salt).hexdigest()
    return b"md5" + outer.encode("ascii")


def tls_server_end_point(certificate_der: bytes) -> bytes:
    """The tls-server-end-point channel-binding data for a server certificate (RFC 5929)."""
    from scramp.core import CBindData

    data: bytes = CBindData.from_der(certificate_der).data
    return data


class ScramSession:
    """One SCRAM-SHA-256 exchange, with channel binding when the server certificate is known.

    ``channel_binding`` is libpq's setting: ``disable``, ``prefer`` or ``require``.
    """

    def __init__(
        self,
        mechanisms: tuple[str, ...],
        user: str,
        password: str,
        *,
        channel_binding: str = "prefer",
        server_certificate: bytes | None = None,
    ) -> None:
        import scramp

        use_plus = (
            channel_binding != "disable"
            and server_certificate is not None
            and "SCRAM-SHA-256-PLUS" in mechanisms
        )
        if channel_binding == "require" and not use_plus:
            raise OperationalError(
                "channel binding is required, but the server did not offer SCRAM-SHA-256-PLUS over TLS"
            )
        if not use_plus and "SCRAM-SHA-256" not in mechanisms:
            raise InterfaceError(f"none of the server's SASL mechanisms is supported: {', '.join(mechanisms)}")
        cb: Any = None
        chosen = ["SCRAM-SHA-256"]
        if use_plus:
            assert server_certificate is not None
            cb = ("tls-server-end-point", tls_server_end_point(server_certificate))
            chosen = ["SCRAM-SHA-256-PLUS"]
        try:
            self._client = scramp.ScramClient(chosen, user, password, channel_binding=cb)
        except scramp.ScramException as exc:
            raise InterfaceError(f"SCRAM setup failed: {exc}") from None
        self.mechanism: str = self._client.mechanism_name

    def __repr__(self) -> str:
        return f"<ScramSession {self.mechanism}>"

    def client_first(self) -> bytes:
        """The client-first message."""
        return str(self._client.get_client_first()).encode("utf-8")

    def client_final(self, server_first: bytes) -> bytes:
        """The client-final message, given the server-first one."""
        import scramp

        try:
            self._client.set_server_first(server_first.decode("utf-8"))
            return str(self._client.get_client_final()).encode("utf-8")
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            raise OperationalError(f"SCRAM exchange failed: {exc}") from None

    def verify_server_final(self, server_final: bytes) -> None:
        """Check the server's signature: proof that the server knows the password too."""
        import scramp

        try:
            self._client.set_server_final(server_final.decode("utf-8"))
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            raise OperationalError(f"SCRAM server verification failed: {exc}") from None
