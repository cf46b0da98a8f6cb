"""The Postgres byte stream inside a WebSocket, for the async clients on any loop.

``WebSocketStream`` is a ``Stream`` over another (TCP, or TLS for ``wss://``): it drives the
sans-IO ``neon_proto.websocket.WebSocketTunnel`` and moves its bytes, nothing more. The
client above it cannot tell it from a socket.
"""

from __future__ import annotations

import ssl
from typing import Any

from neon_async.backend import Backend, Sink, Stream
from neon_proto.errors import ConnectionClosed, NotSupportedError, OperationalError
from neon_proto.options import WebSocketTarget
from neon_proto.websocket import WebSocketTunnel

__all__ = ["WebSocketStream", "open_websocket"]

_default_context: ssl.SSLContext | None = None


def _secure_context() -> ssl.SSLContext:
    global _default_context
    if _default_context is None:
        _default_context = ssl.create_default_context()
        _default_context.set_alpn_protocols(["http/1.1"])
    return _default_context


class WebSocketStream:
    """Postgres bytes carried in binary WebSocket messages over ``inner``."""

    def __init__(self, inner: Stream, tunnel: WebSocketTunnel) -> None:
        self.inner = inner
        self.tunnel = tunnel
        self.server_certificate: bytes | None = None

    @property
    def closed(self) -> bool:
        return self.inner.closed

    @closed.setter
    def closed(self, value: bool) -> None:
        self.inner.closed = value

    @property
    def is_tls(self) -> bool:
        return False  # Postgres-level TLS: the wss:// layer below is the WebSocket's own

    @property
    def socket(self) -> Any:
        return getattr(self.inner, "socket", None)

    async def receive(self) -> bytes:
        tunnel = self.tunnel
        while True:
            data = tunnel.read()
            if data is not None:
                return data
            raw = await self.inner.receive()
            tunnel.receive_data(raw)
            owed = tunnel.data_to_send()
            if owed and not self.inner.closed:
                await self.inner.send(owed)

    def receive_nowait(self) -> bytes | None:
        tunnel = self.tunnel
        data = tunnel.read()
        if data is not None:
            return data
        raw = self.inner.receive_nowait()
        if raw is None:
            return None
        tunnel.receive_data(raw)
        return tunnel.read()

    async def send(self, data: bytes | memoryview, sink: Sink | None = None) -> None:
        await self.inner.send(self.tunnel.send(data))

    async def start_tls(self, ctx: ssl.SSLContext, server_hostname: str | None) -> None:
        raise NotSupportedError(
            "TLS inside the WebSocket is not supported by the async clients; "
            "use a wss:// proxy (use_secure_websocket=True)"
        )

    async def aclose(self) -> None:
        if not self.inner.closed:
            goodbye = self.tunnel.close()
            try:
                if goodbye:
                    self.inner.receive_nowait()  # nothing is owed for what may be pending
                    await self.inner.send(goodbye)
            except ConnectionClosed:
                pass
        await self.inner.aclose()


async def open_websocket(backend: Backend, target: WebSocketTarget, ctx: ssl.SSLContext | None = None) -> WebSocketStream:
    """Connect to a WebSocket proxy and complete the upgrade."""
    inner = await backend.open_stream(target.host, target.port)
    try:
        if target.secure:
            await inner.start_tls(ctx or _secure_context(), target.host)
        tunnel = WebSocketTunnel(target)
        await inner.send(tunnel.start())
        while not tunnel.handshake_complete:
            raw = await inner.receive()
            tunnel.receive_data(raw)
            if not raw and not tunnel.handshake_complete:
                raise OperationalError(f"the WebSocket proxy at {target.url} closed the connection during the upgrade")
    except BaseException:
        await inner.aclose()
        raise
    return WebSocketStream(inner, tunnel)
