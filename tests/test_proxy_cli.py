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


# ---------------------------------------------------------------- mistakes: one line, no traceback


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEON_PROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "neon_proxy", *args], cwd=ROOT, env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("python -m neon_proxy: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_dev_with_the_port_in_use_fails_before_postgres_starts(taken_port: int) -> None:
    started = time.monotonic()
    result = run_cli(["dev", "--listen", f"127.0.0.1:{taken_port}"])
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{taken_port}", "in use", "--listen")
    assert time.monotonic() - started < 10  # no initdb ran


def test_serve_with_the_port_in_use_is_one_line(taken_port: int, pg: EmbeddedPostgres) -> None:
    assert_one_line_error(run_cli(["--listen", f"127.0.0.1:{taken_port}", "--upstream", upstream_url(pg)]), "in use")


def test_dev_without_postgres_binaries_is_one_line(tmp_path: Path) -> None:
    result = run_cli(["dev", "--listen", "127.0.0.1:0"], env={"PG_BINDIR": str(tmp_path)})
    assert_one_line_error(result, "initdb, postgres not found", str(tmp_path), "apt-get install postgresql")


def test_unreadable_tls_files_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = run_cli(["--upstream", "postgres://127.0.0.1:5432", "--tls-cert", str(missing), "--tls-key", str(missing)])
    assert_one_line_error(result, f"cannot read --tls-cert {missing}", "No such file")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    result = run_cli(["--upstream", "postgres://127.0.0.1:5432", "--tls-cert", str(garbage), "--tls-key", str(garbage)])
    assert_one_line_error(result, "not a PEM certificate chain and its private key")


def test_tls_files_without_their_pair_are_one_line(pg: EmbeddedPostgres) -> None:
    assert pg.server_cert_path is not None
    result = run_cli(["--upstream", upstream_url(pg), "--tls-cert", pg.server_cert_path])
    assert_one_line_error(result, "--tls-cert and --tls-key go together")


@pytest.mark.parametrize(
    ("upstream", "fragment"),
    [
        ("http://db.internal:5432", "unsupported URI scheme 'http'"),
        ("postgres://db.internal:notaport", "invalid port"),
        ("postgres://user:hunter2@db.internal:5432", "credentials come from each request"),
        ("postgres://db1.internal:5432,db2.internal:5432", "give one host"),
    ],
)
def test_a_bad_upstream_url_is_one_line(upstream: str, fragment: str) -> None:
    for command in ([], ["dev"]):
        result = run_cli([*command, "--listen", "127.0.0.1:0", "--upstream", upstream])
        assert_one_line_error(result, "invalid upstream URL", fragment)
        assert "hunter2" not in result.stderr


def test_a_bad_number_in_the_environment_is_one_line() -> None:
    result = run_cli(["--upstream", "postgres://127.0.0.1:5432"], env={"NEON_PROXY_POOL_MAX_TOTAL": "lots"})
    assert_one_line_error(result, "NEON_PROXY_POOL_MAX_TOTAL='lots' is not a number")


def test_every_option_has_help_and_shows_its_default() -> None:
    from neon_proxy.__main__ import build_parser

    options = [a for a in build_parser()._actions if a.dest != "help"]
    assert len(options) >= 14 and all(a.help for a in options)
    text = run_cli(["--help"]).stdout
    entries = {
        match.group(1): " ".join(match.group(2).split())
        for match in re.finditer(r"^  (--[a-z-]+|\{serve,dev\})(.*?)(?=^  \S|^\S|\Z)", text, re.MULTILINE | re.DOTALL)
    }
    shown = {a.option_strings[0] if a.option_strings else "{serve,dev}" for a in options}
    assert set(entries) == shown
    for name, entry in entries.items():
        assert re.search(r"\w.* \(default: \S+\)$", entry), (name, entry)
    assert "(default: 127.0.0.1:4444)" in entries["--listen"] and "(default: none)" in entries["--upstream"]
    assert "(default: serve)" in entries["{serve,dev}"]


def test_an_os_error_inside_the_server_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The port taken between the check and the bind: trio reports it inside an exception group."""
    import socket

    import neon_proxy.__main__ as cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(cli, "_check_port_free", lambda host, port: None)
        monkeypatch.setattr(cli.logging, "basicConfig", lambda **kw: None)
        assert cli.main(["--listen", f"127.0.0.1:{port}", "--upstream", "postgres://127.0.0.1:5432"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m neon_proxy: error: ") and "in use" in err, err
