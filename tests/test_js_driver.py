"""The real JS driver, @neondatabase/serverless 1.2.0, against neon_proxy (tests/js/*.mjs under Node).

The package (and ``ws``) is installed with npm into ``.cache/js`` once and reused. Node and
npm must be on the machine: without them these tests fail, they are never skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from neon_proxy.testing import DevStack

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "js"
CACHE = ROOT / ".cache" / "js"
PACKAGE = "@neondatabase/serverless"
VERSION = "1.2.0"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the JS driver tests need Node.js and npm "
            "(e.g. `apt-get install nodejs npm`, or https://nodejs.org)"
        )
    return path


def _installed_version() -> str | None:
    manifest = CACHE / "node_modules" / PACKAGE / "package.json"
    if not manifest.exists() or not (CACHE / "node_modules" / "ws" / "package.json").exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


@pytest.fixture(scope="session")
def serverless_module() -> Path:
    """The driver's ESM entry point, installed into .cache/js if it is not there yet."""
    _tool("node")
    if _installed_version() != VERSION:
        npm = _tool("npm")
        CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--save-exact", f"{PACKAGE}@{VERSION}", "ws"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0 or _installed_version() != VERSION:
            pytest.fail(f"npm could not install {PACKAGE}@{VERSION} and ws:\n{result.stdout}\n{result.stderr}")
    return CACHE / "node_modules" / PACKAGE / "index.mjs"


@pytest.fixture
def js_env(proxy: DevStack, fresh_db: str, serverless_module: Path) -> Iterator[dict[str, str]]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TZ": "UTC",
        "NODE_NO_WARNINGS": "1",
        "NEON_SERVERLESS_MODULE": serverless_module.as_uri(),
        "NEON_FETCH_ENDPOINT": proxy.url,
        "DATABASE_URL": proxy.database_url(database=fresh_db),
    }
    yield env


@pytest.mark.slow
@pytest.mark.parametrize("script", ["queries.mjs", "transactions.mjs", "large.mjs", "errors.mjs"])
def test_js_driver(script: str, js_env: dict[str, str]) -> None:
    node = _tool("node")
    result = subprocess.run(
        [node, str(SCRIPTS / script)], env=js_env, capture_output=True, text=True, timeout=120, cwd=SCRIPTS
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    assert "FAILED" not in result.stdout
