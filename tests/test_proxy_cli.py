"""``python -m neon_proxy``: serve from flags or NEON_PROXY_* variables, ``dev`` with its own Postgres, signals."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest

from neon_proxy.testing import upstream_url
from neon_sync.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "neon_proxy", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(stream: IO[str], pattern: str, timeout: float = 30) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"{pattern!r} not seen in:\n{''.join(seen)}")


def post(port: int, connection_string: str, query: str) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/sql", body=json.dumps({"query": query}), headers={"Neon-Connection-String": connection_string})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


@pytest.mark.slow
def test_serve_from_environment_and_stop_on_sigterm(pg: EmbeddedPostgres) -> None:
    proc = start([], env={"NEON_PROXY_LISTEN": "127.0.0.1:0", "NEON_PROXY_UPSTREAM": upstream_url(pg)})
    try:
        assert proc.stderr is not None
        port = int(read_until(proc.stderr, r"listening on http://127\.0\.0\.1:(\d+)/sql").group(1))
        url = f"postgresql://postgres:{pg.superuser_password}@ep-test.localhost/postgres"
        assert post(port, url, "SELECT 1 AS one") == (200, {
            "fields": [{"name": "one", "dataTypeID": 23, "tableID": 0, "columnID": 0, "dataTypeSize": 4,
                        "dataTypeModifier": -1, "format": "text"}],
            "rows": [{"one": 1}], "command": "SELECT", "rowCount": 1, "rowAsArray": False,
        })  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert pg.superuser_password not in err
    finally:
        proc.kill()


@pytest.mark.slow
def test_dev_starts_postgres_prints_settings_and_stops_on_ctrl_c() -> None:
    proc = start(["dev", "--listen", "127.0.0.1:0"])
    try:
        assert proc.stdout is not None
        database_url = read_until(proc.stdout, r"^DATABASE_URL=(\S+)").group(1)
        endpoint = read_until(proc.stdout, r"^NEON_FETCH_ENDPOINT=(\S+)").group(1)
        port = urlsplit(endpoint).port
        assert port is not None and endpoint.endswith("/sql")
        status, body = post(port, database_url, "SELECT current_user AS u")
        assert (status, body) == (200, {
            "fields": [{"name": "u", "dataTypeID": 19, "tableID": 0, "columnID": 0, "dataTypeSize": 64,
                        "dataTypeModifier": -1, "format": "text"}],
            "rows": [{"u": "postgres"}], "command": "SELECT", "rowCount": 1, "rowAsArray": False,
        })  # fmt: skip
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        password = urlsplit(database_url).password
        assert password and password not in err
        assert "stopped and removed" in err  # the throwaway Postgres went with it
    finally:
        proc.kill()


def test_no_upstream_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEON_PROXY_")}
    result = subprocess.run(
        [sys.executable, "-m", "neon_proxy", "--listen", "127.0.0.1:0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "no upstream" in result.stderr
