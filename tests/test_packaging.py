"""The README's setup (an editable install) is clean and gives type checkers our packages."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

USER_SCRIPT = '''\
from neon_sync import Client, Pool, neon
from neon_proto.errors import OperationalError

def count(client: Client) -> int:
    return client.query("SELECT 1 AS one").row_count or 0

wrong: int = Pool
pool = Pool("postgresql://localhost/db", max_sise=3)
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh venv outside the repository with the project installed as ./dev installs it (editable)."""
    target = tmp_path_factory.mktemp("venv")
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-e", str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return python, result.stdout + result.stderr


@pytest.mark.slow
def test_editable_install_prints_no_warning_of_ours(installed: tuple[Path, str]) -> None:
    _, output = installed
    # pip's own notes about this machine's package index are not ours; the build backend's are.
    ours = [line for line in output.splitlines() if "warning" in line.lower() and "Location 'file:" not in line]
    assert ours == []
    assert "deprecat" not in output.lower()


@pytest.mark.slow
def test_mypy_strict_on_a_script_outside_the_repository_sees_our_types(
    installed: tuple[Path, str], tmp_path: Path
) -> None:
    python, _ = installed
    script = tmp_path / "app.py"
    script.write_text(USER_SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", str(python), str(script)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = result.stdout
    assert "Cannot find implementation or library stub" not in out, out
    # The deliberate mistakes are found, with the real types: mypy read neon_sync, not Any.
    assert 'app.py:7: error: Incompatible types in assignment (expression has type "type[Pool]"' in out, out
    # A misspelt keyword is caught in user code, before anything runs.
    assert 'app.py:8: error: Unexpected keyword argument "max_sise" for "Pool"' in out, out
    assert out.count("error:") == 2, out
