"""The README is the front door: its type table must be the one the types package documents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_type_sections_match_the_types_docs() -> None:
    check = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_readme.py"), "--check"])
    assert check.returncode == 0, "README.md is stale: run `python tools/sync_readme.py`"


def test_readme_starts_with_the_demo_and_test_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("```")[1]
    assert "./dev demo" in head and "./dev test" in head
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "./dev test" in ci
