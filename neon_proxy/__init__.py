"""neon_proxy: Neon's SQL-over-HTTP protocol (``POST /sql``) and its WebSocket endpoint (``/v2``), served with
trio, h11 and wsproto in front of any Postgres (``neon_proxy.websocket``: auth and relay modes).

``ProxyServer(config).run()`` serves; ``serve(config)`` does the same under a nursery;
``neon_proxy.testing.ProxyThread`` and ``DevStack`` run it from a background thread;
``python -m neon_proxy`` is the command line.
"""

from neon_proxy.config import ProxyConfig
from neon_proxy.pool import PoolKey, PoolTimeout, UpstreamPool
from neon_proxy.server import ProxyServer, serve
from neon_proxy.testing import DevStack, ProxyThread

__all__ = ["ProxyConfig", "ProxyServer", "serve", "UpstreamPool", "PoolKey", "PoolTimeout", "ProxyThread", "DevStack"]
