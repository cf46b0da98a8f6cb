"""The client's side of startup and authentication, pipelined or not, as one event handler.

``Authenticator`` turns the server's startup messages into the client's answers. It knows what
the pipelined first flight already said (a cleartext password, or the SCRAM client-first
message), so it can tell when the server asks for something else: then the connection cannot
be saved (the server read our early message as the answer to its question) and
``AuthPipelineMismatch`` says so; ``auth_method_memory`` remembers what the server asked, and
the next connect (the connect plan retries at once when it can) sends the right flight.

Pipelining modes (``StartupPipeline``):

- ``False``: StartupMessage, then answer each request; done at ReadyForQuery.
- ``"password"``: StartupMessage + PasswordMessage in one flight (the JS driver's default over
  WebSocket); nothing more to send, so queries may follow at once.
- ``"scram"``: StartupMessage + SASLInitialResponse; the client-final message is the last
  flight, and queries may follow it at once.
- ``"startup"``: StartupMessage alone, queries at once: for a server that asks nothing (trust)
  or a client without a password.
"""

from __future__ import annotations

import logging
from typing import Any, Hashable, Literal, Mapping

from neon_proto import events as ev
from neon_proto.auth import AuthMethodMemory, ScramKeyCache, ScramSession, md5_password
from neon_proto.errors import ConnectionClosed, OperationalError
from neon_proto.frontend import FrontendConnection

__all__ = ["StartupPipeline", "Authenticator", "AuthPipelineMismatch"]

logger = logging.getLogger("neon_proto.startup")

StartupPipeline = Literal["password", "scram", "startup", False]

_METHOD_NAMES = {"trust": "no password", "cleartext": "a cleartext password", "md5": "MD5", "scram": "SCRAM"}


class AuthPipelineMismatch(OperationalError):
    """The server asked for another authentication than the pipelined first flight assumed.

    Nothing is lost but this connection attempt: the next connect knows what to send.
    """

    def __init__(self, message: str, asked: str) -> None:
        super().__init__(message)
        self.asked = asked


class Authenticator:
    """Startup and authentication for one connection attempt.

    ``first_flight()`` is what to send first; ``on_event(event)`` takes each server message
    and returns bytes to send (or None); ``finished`` turns true at ReadyForQuery, and
    ``last_flight_sent`` as soon as nothing more will be sent in the expected exchange.
    """

    def __init__(
        self,
        conn: FrontendConnection,
        parameters: Mapping[str, str],
        password: str | None,
        *,
        channel_binding: str = "prefer",
        server_certificate: bytes | None = None,
        pipeline: StartupPipeline = False,
        server: Hashable = None,
        scram_keys: ScramKeyCache | None = None,
        methods: AuthMethodMemory | None = None,
        on_notice: Any = None,
    ) -> None:
        if pipeline in ("password", "scram") and password is None:
            pipeline = "startup"
        self.conn = conn
        self.parameters = parameters
        self.user = parameters["user"]
        self.password = password
        self.channel_binding = channel_binding
        self.server_certificate = server_certificate
        self.pipeline: StartupPipeline = pipeline
        self.server = server
        self.scram_keys = scram_keys
        self.methods = methods
        self.on_notice = on_notice
        self.finished = False
        self.last_flight_sent = False
        #: Set once the caller went on with queries: no answer can be sent any more.
        self.detached = False
        self._scram: ScramSession | None = None
        self._asked: str | None = None  # the method the server asked for
        self._answered_early = False  # the server asked what the first flight answered

    def first_flight(self) -> bytes:
        """StartupMessage, with the pipelined answer when there is one."""
        out = self.conn.send_startup(self.parameters)
        if self.pipeline == "password":
            assert self.password is not None
            out += self.conn.send_password(self.password)
            self.last_flight_sent = True
        elif self.pipeline == "scram":
            assert self.password is not None
            guess = ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS") if self.server_certificate else ("SCRAM-SHA-256",)
            self._scram = self._new_scram(guess)
            out += self.conn.send_sasl_initial_response(self._scram.mechanism, self._scram.client_first())
        elif self.pipeline == "startup":
            self.last_flight_sent = True
        return out

    def _new_scram(self, mechanisms: tuple[str, ...]) -> ScramSession:
        assert self.password is not None
        return ScramSession(
            mechanisms,
            self.user,
            self.password,
            channel_binding=self.channel_binding,
            server_certificate=self.server_certificate,
            key_cache=self.scram_keys,
            server=self.server,
        )

    def _mismatch(self, asked: str) -> AuthPipelineMismatch:
        if self.methods is not None:
            self.methods.remember(self.server, self.user, asked)
        assumed = {"password": "cleartext", "scram": "scram", "startup": "trust"}.get(str(self.pipeline), "trust")
        message = (
            f"the server asked user {self.user!r} for {_METHOD_NAMES[asked]} authentication, but the pipelined"
            f" connect (pipeline_connect={self.pipeline!r}) assumed {_METHOD_NAMES[assumed]}; the next connect"
            " will send what this server asks"
        )
        logger.info("%s", message)
        return AuthPipelineMismatch(message, asked)

    def _need_password(self) -> str:
        if self.password is None:
            raise OperationalError(f"the server asked for a password for user {self.user!r}, and none was given")
        return self.password

    def on_event(self, event: Any) -> bytes | None:
        """Handle one server message during startup: the bytes to answer with, if any."""
        cls = type(event)
        conn = self.conn
        if cls is ev.ParameterStatus or cls is ev.BackendKeyData:
            return None
        if cls is ev.NoticeResponse:
            if self.on_notice is not None:
                self.on_notice(event)
            return None
        if cls is ev.AuthenticationOk:
            asked = self._asked or "trust"
            if self.pipeline in ("password", "scram") and not self._answered_early:
                # The server did not ask what our first flight answered: it will read that
                # early message as a protocol violation.
                raise self._mismatch(asked)
            if self.channel_binding == "require":
                scram = self._scram
                if scram is None:
                    raise OperationalError("channel binding is required, but the server authenticated without it")
                if not scram.mechanism.endswith("-PLUS"):
                    raise OperationalError("channel binding is required, but was not used")
            if self.methods is not None:
                self.methods.remember(self.server, self.user, asked)
            return None
        if cls is ev.AuthenticationCleartextPassword or cls is ev.AuthenticationMD5Password:
            method = "cleartext" if cls is ev.AuthenticationCleartextPassword else "md5"
            self._asked = method
            if self.channel_binding == "require":
                raise OperationalError("channel binding is required, but the server asked for a password")
            if self.pipeline == "password" and method == "cleartext":
                self._answered_early = True
                return None  # the first flight answered it
            if self.pipeline in ("password", "scram") or (self.detached and self.password is not None):
                raise self._mismatch(method)
            password = self._need_password()
            if method == "cleartext":
                return conn.send_password(password)
            return conn.send_password(md5_password(self.user, password, event.salt))
        if cls is ev.AuthenticationSASL:
            self._asked = "scram"
            if self.pipeline == "scram":
                assert self._scram is not None
                if self._scram.mechanism not in event.mechanisms:
                    raise self._mismatch("scram")
                self._answered_early = True
                return None
            if self.pipeline == "password" or (self.detached and self.password is not None):
                raise self._mismatch("scram")
            self._need_password()
            self._scram = self._new_scram(tuple(event.mechanisms))
            return conn.send_sasl_initial_response(self._scram.mechanism, self._scram.client_first())
        if cls is ev.AuthenticationSASLContinue:
            if self._scram is None:
                raise OperationalError("SASL continuation without SASL start")
            out = conn.send_sasl_response(self._scram.client_final(event.data))
            self.last_flight_sent = True
            return out
        if cls is ev.AuthenticationSASLFinal:
            if self._scram is None:
                raise OperationalError("SASL final message without SASL start")
            self._scram.verify_server_final(event.data)
            return None
        if cls is ev.NegotiateProtocolVersion:
            logger.debug("server negotiates protocol 3.%d", event.newest_minor_version)
            return None
        if cls is ev.ErrorResponse:
            raise event.to_exception()
        if cls is ev.ReadyForQuery:
            self.finished = True
            return None
        if cls is ev.EndOfStream:
            raise ConnectionClosed("the server closed the connection during startup")
        raise OperationalError(f"unexpected {cls.__name__} during startup")

    def on_background_event(self, event: Any) -> None:
        """``on_event`` once queries were sent behind the last flight: nothing can be answered."""
        out = self.on_event(event)
        if out:
            raise OperationalError("the server asked for more authentication after the pipelined connect")
