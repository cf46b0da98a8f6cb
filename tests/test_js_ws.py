"""The real JS driver's Client and Pool over WebSocket through neon_proxy (tests/js/websocket.mjs).

@neondatabase/serverless 1.2.0 with ``ws``, ``neonConfig.wsProxy`` at the proxy and
``useSecureWebSocket = false``; every upstream auth method (SCRAM for the superuser); and
once over ``wss`` with the proxy's ``--tls-cert``/``--tls-key``, the certificate checked.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from neon_proxy.testing import DevStack
from neon_sync.embedded import EmbeddedPostgres
from tests.test_js_driver import SCRIPTS, _tool, serverless_module  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def _run(env: dict[str, str], what: str) -> None:
    node = _tool("node")
    result = subprocess.run(
        [node, str(SCRIPTS / "websocket.mjs")], env=env, capture_output=True, text=True, timeout=120, cwd=SCRIPTS
    )
    assert result.returncode == 0, f"websocket.mjs {what} failed:\n{result.stdout}\n{result.stderr}"
    assert "FAILED" not in result.stdout
    assert result.stdout.count("ok ") == 10, result.stdout


def _env(proxy: DevStack, database_url: str, serverless_module: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TZ": "UTC",
        "NODE_NO_WARNINGS": "1",
        "NEON_WS_MODULE": (serverless_module.parents[2] / "ws" / "wrapper.mjs").as_uri(),
        "NEON_SERVERLESS_MODULE": serverless_module.as_uri(),
        "NEON_FETCH_ENDPOINT": proxy.url,
        "NEON_WS_PROXY": proxy.server.ws_proxy,
        "DATABASE_URL": database_url,
    }


@pytest.mark.parametrize("user", ["postgres", "scram_user", "md5_user", "cleartext_user"])
def test_js_client_and_pool_over_websocket(user: str, proxy: DevStack, fresh_db: str, serverless_module: Path) -> None:  # noqa: F811
    _run(_env(proxy, proxy.database_url(user, database=fresh_db), serverless_module), f"as {user}")


def test_js_client_and_pool_over_wss(pg: EmbeddedPostgres, fresh_db: str, serverless_module: Path) -> None:  # noqa: F811
    from neon_proxy.config import ProxyConfig

    assert pg.server_cert_path and pg.server_key_path and pg.ca_cert_path
    config = ProxyConfig(listen_port=0, shutdown_timeout=5.0, tls_cert=pg.server_cert_path, tls_key=pg.server_key_path)
    with DevStack(postgres=pg, config=config) as stack:
        env = _env(stack, stack.database_url("scram_user", database=fresh_db), serverless_module)
        env.update(NEON_WS_SECURE="1", NODE_EXTRA_CA_CERTS=pg.ca_cert_path)
        env["NEON_WS_PROXY"] = f"localhost:{stack.port}/v2"  # the name the certificate carries
        _run(env, "over wss")
