"""The real JS driver's Client and Pool over WebSocket through neon_proxy (tests/js/websocket.mjs).

@neondatabase/serverless 1.2.0 with ``ws``, ``neonConfig.wsProxy`` at the proxy and
``useSecureWebSocket = false``; every upstream auth method (SCRAM for the superuser).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from neon_proxy.testing import DevStack
from tests.test_js_driver import SCRIPTS, _tool, serverless_module  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("user", ["postgres", "scram_user", "md5_user", "cleartext_user"])
def test_js_client_and_pool_over_websocket(user: str, proxy: DevStack, fresh_db: str, serverless_module: Path) -> None:  # noqa: F811
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TZ": "UTC",
        "NODE_NO_WARNINGS": "1",
        "NEON_WS_MODULE": (serverless_module.parents[2] / "ws" / "wrapper.mjs").as_uri(),
        "NEON_SERVERLESS_MODULE": serverless_module.as_uri(),
        "NEON_FETCH_ENDPOINT": proxy.url,
        "NEON_WS_PROXY": proxy.server.ws_proxy,
        "DATABASE_URL": proxy.database_url(user, database=fresh_db),
    }
    node = _tool("node")
    result = subprocess.run(
        [node, str(SCRIPTS / "websocket.mjs")], env=env, capture_output=True, text=True, timeout=120, cwd=SCRIPTS
    )
    assert result.returncode == 0, f"websocket.mjs as {user} failed:\n{result.stdout}\n{result.stderr}"
    assert "FAILED" not in result.stdout
    assert result.stdout.count("ok ") == 10, result.stdout
