"""Client-side authentication: cleartext, MD5 and SCRAM-SHA-256(-PLUS) through scramp."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from typing import Any, Hashable

from neon_proto.errors import InterfaceError, OperationalError

__all__ = [
    "md5_password",
    "ScramSession",
    "ScramKeyCache",
    "AuthMethodMemory",
    "scram_key_cache",
    "auth_method_memory",
    "tls_server_end_point",
]


class ScramKeyCache:
    """SCRAM ClientKey and ServerKey per (server, user, password, salt, iterations), in memory only.

    PBKDF2 with Postgres's 4096 iterations is most of a connect's CPU: a reconnect to the same
    server skips it. The password itself is not stored: the key includes a SHA-256 of it, so
    a changed password misses the cache instead of failing. Bounded (least recently used out).
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._keys: OrderedDict[tuple[Hashable, ...], tuple[bytes, bytes]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"<ScramKeyCache entries={len(self._keys)} hits={self.hits} misses={self.misses}>"

    def keys_for(
        self, server: Hashable, user: str, password: bytes, salt: bytes, iterations: int
    ) -> tuple[bytes, bytes]:
        """(ClientKey, ServerKey) for a salted password: from the cache, else computed and kept."""
        key = (server, user, hashlib.sha256(password).digest(), salt, iterations)
        found = self._keys.get(key)
        if found is not None:
            self._keys.move_to_end(key)
            self.hits += 1
            return found
        self.misses += 1
        salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
        keys = (
            hmac.new(salted, b"Client Key", hashlib.sha256).digest(),
            hmac.new(salted, b"Server Key", hashlib.sha256).digest(),
        )
        self._keys[key] = keys
        while len(self._keys) > self.max_entries:
            self._keys.popitem(last=False)
        return keys

    def clear(self) -> None:
        """Forget every key."""
        self._keys.clear()


scram_key_cache = ScramKeyCache()
"""The process-wide SCRAM key cache every connection uses by default."""


class AuthMethodMemory:
    """The authentication method each (server, user) asked for last time, so the next connect
    can pipeline the right flight (and skip what the server will not ask). In memory, bounded."""

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._methods: OrderedDict[tuple[Hashable, str], str] = OrderedDict()

    def get(self, server: Hashable, user: str) -> str | None:
        """``trust``, ``cleartext``, ``md5``, ``scram``, or None if never seen."""
        return self._methods.get((server, user))

    def remember(self, server: Hashable, user: str, method: str) -> None:
        """Record what the server asked this user for."""
        key = (server, user)
        self._methods[key] = method
        self._methods.move_to_end(key)
        while len(self._methods) > self.max_entries:
            self._methods.popitem(last=False)

    def clear(self) -> None:
        """Forget everything."""
        self._methods.clear()


auth_method_memory = AuthMethodMemory()
"""The process-wide memory of authentication methods."""


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
        key_cache: ScramKeyCache | None = None,
        server: Hashable = None,
    ) -> None:
        import scramp

        self._key_cache = key_cache
        self._server = server
        self._user = user
        self._cb_data = b""
        self._server_signature: bytes | None = None
        self._client_first = ""
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
            self._cb_data = tls_server_end_point(server_certificate)
            cb = ("tls-server-end-point", self._cb_data)
            chosen = ["SCRAM-SHA-256-PLUS"]
        try:
            self._client = scramp.ScramClient(chosen, user, password, channel_binding=cb)
        except scramp.ScramException:
            # PostgreSQL ignores SCRAM's user name (it takes the StartupMessage's), so a name
            # that SASLprep refuses but Postgres allows (control characters) goes as a placeholder.
            try:
                self._client = scramp.ScramClient(chosen, "*", password, channel_binding=cb)
            except scramp.ScramException as exc:
                raise InterfaceError(f"SCRAM setup failed: {exc}") from None
        self.mechanism: str = self._client.mechanism_name

    def __repr__(self) -> str:
        return f"<ScramSession {self.mechanism}>"

    def client_first(self) -> bytes:
        """The client-first message."""
        first = str(self._client.get_client_first())
        self._client_first = first
        return first.encode("utf-8")

    def client_final(self, server_first: bytes) -> bytes:
        """The client-final message, given the server-first one.

        scramp checks the server-first message; the proof is computed here so the salted
        password's keys can come from the cache (RFC 5802, section 3).
        """
        import scramp

        client = self._client
        try:
            text = server_first.decode("utf-8")
            client.set_server_first(text)
        except (scramp.ScramException, UnicodeDecodeError) as exc:
            raise OperationalError(f"SCRAM exchange failed: {exc}") from None
        password = bytes(client.password)
        salt = bytes(client.salt)
        iterations = int(client.iterations)
        if self._key_cache is not None:
            client_key, server_key = self._key_cache.keys_for(self._server, self._user, password, salt, iterations)
        else:
            client_key, server_key = ScramKeyCache(max_entries=0).keys_for(None, "", password, salt, iterations)
        bare = str(client.client_first_bare)
        gs2_header = self._client_first[: len(self._client_first) - len(bare)]
        channel = base64.b64encode(gs2_header.encode("utf-8") + self._cb_data).decode("ascii")
        without_proof = f"c={channel},r={client.nonce}"
        auth_message = f"{bare},{text},{without_proof}".encode("utf-8")
        stored_key = hashlib.sha256(client_key).digest()
        client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        self._server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode('ascii')}".encode("ascii")

    def verify_server_final(self, server_final: bytes) -> None:
        """Check the server's signature: proof that the server knows the password too."""
        try:
            text = server_final.decode("utf-8")
        except UnicodeDecodeError:
            raise OperationalError("SCRAM server verification failed: the server-final message is not UTF-8") from None
        attributes = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "e" in attributes:
            raise OperationalError(f"SCRAM server verification failed: the server returned an error: {attributes['e']}")
        expected = self._server_signature
        try:
            signature = base64.b64decode(attributes.get("v", ""), validate=True)
        except ValueError:
            signature = b""
        if expected is None or not signature or not hmac.compare_digest(signature, expected):
            raise OperationalError("SCRAM server verification failed: the server signature does not match")
