"""The README is the front door: every Python block in it runs, and its type table is the types package's.

Each ```python block runs as a script in a fresh interpreter, in a directory of its own, with
the environment the README promises (GUIDE.md): ``DATABASE_URL`` (the test Postgres over TCP,
user and password included; a fresh database per block, so blocks may create tables freely),
``NEON_FETCH_ENDPOINT`` (a running neon_proxy's /sql in front of it) and ``NEON_WS_PROXY`` (the
same proxy's WebSocket endpoint, ``127.0.0.1:PORT/v2``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# Languages a fenced block may carry: python blocks run; the others are shell commands or output.
KNOWN_LANGUAGES = {"python", "bash", "console", "text", "js"}  # js: the JS driver side, not run here
BLOCK_TIMEOUT = 60


def fenced_blocks() -> list[tuple[str, str, str]]:
    """(language, code, the heading above it) for every fenced block of the README."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        headings = re.findall(r"^#+ (.+)$", text[: match.start()], re.MULTILINE)
        blocks.append((match.group(1).strip(), match.group(2), headings[-1] if headings else "top"))
    return blocks


def python_blocks() -> list[Any]:
    params = []
    for number, (language, code, heading) in enumerate(fenced_blocks(), 1):
        if language == "python":
            slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
            params.append(pytest.param(code, id=f"{number}-{slug}"))
    return params


def test_readme_type_sections_match_the_types_docs() -> None:
    check = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_readme.py"), "--check"])
    assert check.returncode == 0, "README.md is stale: run `python tools/sync_readme.py`"


def test_readme_starts_with_the_demo_and_test_commands() -> None:
    language, head, _ = fenced_blocks()[0]
    assert language in ("bash", "console")
    assert "./dev demo" in head and "./dev test" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "./dev test" in ci


def test_every_readme_block_says_its_language() -> None:
    """A block without a known language would escape the run below."""
    languages = [language for language, _, _ in fenced_blocks()]
    assert set(languages) <= KNOWN_LANGUAGES, languages
    assert languages.count("python") >= 5


@pytest.fixture
def readme_env(proxy: Any, fresh_db: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "NEON_"))}
    env.update(
        DATABASE_URL=proxy.database_url(database=fresh_db),
        NEON_FETCH_ENDPOINT=proxy.url,
        NEON_WS_PROXY=f"127.0.0.1:{proxy.port}/v2",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.mark.parametrize("code", python_blocks())
def test_readme_python_block_runs(code: str, readme_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=readme_env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
    )
    assert result.returncode == 0, f"block failed:\n{code}\n--- stderr:\n{result.stderr}"
