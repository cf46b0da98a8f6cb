"""mypy --strict and pyright strict over tests/query/typing_cases.py (pyright also over the generated
models and examples/places): inferred types and expected errors.

Each checker runs once over the whole file. A line marked ``# expect-error`` passes only if
the checker reports an error on it; any error elsewhere fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "query" / "typing_cases.py"

pytestmark = pytest.mark.slow


def expected_error_lines() -> set[int]:
    lines = CASES.read_text().splitlines()
    return {i for i, line in enumerate(lines, 1) if line.rstrip().endswith("# expect-error")}


def compare(checker: str, reported: dict[int, list[str]]) -> None:
    expected = expected_error_lines()
    assert len(expected) >= 20
    missing = sorted(expected - set(reported))
    unexpected = {line: msgs for line, msgs in sorted(reported.items()) if line not in expected}
    assert not missing, f"{checker} accepted lines that must be type errors: {missing}"
    assert not unexpected, f"{checker} reported errors on lines that must check: {unexpected}"


def test_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes",
         "--cache-dir", str(ROOT / ".mypy_cache"), "-m", "tests.query.typing_cases"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    reported: dict[int, list[str]] = {}
    pattern = re.compile(rf"^{re.escape(str(CASES.relative_to(ROOT)))}:(\d+): error: (.*)$")
    for line in proc.stdout.splitlines():
        m = pattern.match(line)
        if m:
            reported.setdefault(int(m.group(1)), []).append(m.group(2))
        elif ": error:" in line:
            pytest.fail(f"mypy reported an error outside the cases file: {line}")
    assert proc.returncode in (0, 1), proc.stderr
    compare("mypy", reported)


def test_pyright_strict() -> None:
    pyright = Path(sys.executable).parent / "pyright"
    if not pyright.exists():
        pytest.fail("pyright is a test dependency (pip install -e '.[test]')")
    proc = subprocess.run(
        [str(pyright), "--outputjson", "-p", str(CASES.parent / "pyrightconfig.json"), "--pythonpath", sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright did not report: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    reported: dict[int, list[str]] = {}
    for diag in report["generalDiagnostics"]:
        if diag["severity"] != "error":
            continue
        if Path(diag["file"]).resolve() != CASES:
            pytest.fail(f"pyright reported an error outside the cases file: {diag}")
        reported.setdefault(diag["range"]["start"]["line"] + 1, []).append(diag["message"].splitlines()[0])
    compare("pyright", reported)


def test_a_module_of_200_typical_queries_checks_clean(tmp_path: Path) -> None:
    from tests.query.typical_queries import typical_queries_module

    module = tmp_path / "typical_200.py"
    module.write_text(typical_queries_module(200))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(ROOT / ".mypy_cache"), str(module)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
