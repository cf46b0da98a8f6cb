"""neon_proto is sans-IO: no sockets, no event loops, no threads, no clocks.

Two checks: the source of every module (what it names), and a real import with the forbidden
modules poisoned (what actually runs, including imports hidden behind helpers of our own).
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

import neon_proto

PACKAGE_DIR = pathlib.Path(next(iter(neon_proto.__path__))).resolve()
FORBIDDEN = frozenset({"socket", "select", "selectors", "threading", "_thread", "time", "asyncio", "trio", "anyio", "ssl"})
# The sans-IO classes, plus constants and exception classes they need (no I/O in any of them).
SSL_ALLOWED = frozenset(
    {
        "MemoryBIO", "SSLObject", "SSLContext", "PROTOCOL_TLS_CLIENT", "TLSVersion", "CERT_NONE",
        "CERT_REQUIRED", "SSLError", "SSLWantReadError", "SSLCertVerificationError",
    }
)  # fmt: skip

MODULE_FILES = sorted(PACKAGE_DIR.rglob("*.py"))


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def violations(path: pathlib.Path) -> list[str]:
    """Imports of forbidden modules, and uses of ssl beyond the sans-IO trio."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    ssl_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top == "ssl":
                    ssl_aliases.add(alias.asname or "ssl")
                elif top in FORBIDDEN:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top == "ssl":
                for alias in node.names:
                    if alias.name not in SSL_ALLOWED:
                        found.append(f"line {node.lineno}: from ssl import {alias.name}")
            elif top in FORBIDDEN:
                found.append(f"line {node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append(f"line {node.lineno}: __import__(...)")
    if ssl_aliases:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ssl_aliases:
                if node.attr not in SSL_ALLOWED:
                    found.append(f"line {node.lineno}: ssl.{node.attr}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module":
            found.append(f"line {node.lineno}: importlib.import_module(...) (dynamic import: check by hand)")
    return found


def test_every_module_is_found() -> None:
    names = {module_name(p) for p in MODULE_FILES}
    assert {"neon_proto.frontend", "neon_proto.session", "neon_proto.events", "neon_proto.messages"} <= names


@pytest.mark.parametrize("path", MODULE_FILES, ids=module_name)
def test_module_source_imports_nothing_with_io(path: pathlib.Path) -> None:
    assert violations(path) == []


def test_the_source_check_catches_forbidden_imports(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import socket\nfrom time import monotonic\nimport ssl\nfrom ssl import MemoryBIO, wrap_socket\n"
        "ctx = ssl.SSLContext()\nssl.create_default_context()\n"
        "def f():\n    import threading\n"
    )
    assert len(violations(bad)) == 5


def external_imports() -> set[str]:
    """Top-level modules neon_proto imports that are not neon_proto itself."""
    names: set[str] = set()
    for path in MODULE_FILES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - {"neon_proto", "__future__"}


POISONED_IMPORT = textwrap.dedent(
    """
    import importlib, json, sys, types

    allowed_deps, forbidden, modules, ssl_allowed = json.loads(sys.argv[1])
    # The dependencies (stdlib and third party) may use threads or clocks inside: load them first.
    for dep in allowed_deps:
        importlib.import_module(dep)
    # From here, an `import time` (etc.) executed by neon_proto's own code fails.
    import ssl as real_ssl  # loaded before the poisoning: it needs socket itself
    for name in forbidden:
        sys.modules[name] = None
    # ssl: only the sans-IO classes exist.
    restricted = types.ModuleType("ssl")
    for name in ssl_allowed:
        setattr(restricted, name, getattr(real_ssl, name))
    sys.modules["ssl"] = restricted
    failures = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            failures.append(f"{name}: {exc}")
    # Operations that import lazily (the type registry, SCRAM): run them too.
    try:
        from neon_proto.session import Session
        session = Session()
        from neon_proto.frontend import FrontendConnection
        conn = FrontendConnection()
        conn.send_startup({"user": "u"})
    except ImportError as exc:
        failures.append(f"lazy import: {exc}")
    leaked = [m for m in forbidden if sys.modules.get(m) is not None]
    print(json.dumps({"failures": failures, "leaked": leaked}))
    """
)


@pytest.mark.slow
def test_importing_neon_proto_with_io_modules_poisoned() -> None:
    deps = sorted(external_imports() - FORBIDDEN - {"scramp"})
    forbidden = sorted(FORBIDDEN - {"ssl"})
    modules = sorted(module_name(p) for p in MODULE_FILES)
    proc = subprocess.run(
        [sys.executable, "-c", POISONED_IMPORT, json.dumps([deps, forbidden, modules, sorted(SSL_ALLOWED)])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(PACKAGE_DIR.parent),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"failures": [], "leaked": []}
