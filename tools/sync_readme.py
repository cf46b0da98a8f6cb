"""Copy neon_proto/types/TYPES.md and DIFFERENCES.md into README.md between their markers.

Usage: python tools/sync_readme.py [--check]   (--check exits 1 when README.md is stale)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "TYPES.md": ROOT / "neon_proto" / "types" / "TYPES.md",
    "DIFFERENCES.md": ROOT / "neon_proto" / "types" / "DIFFERENCES.md",
}


def body(text: str) -> str:
    """The document without its title; its sections one level deeper to sit under README's."""
    lines = [line for line in text.splitlines() if not line.startswith("# ")]
    out = "\n".join("##" + line if line.startswith("## ") else line for line in lines)
    return out.strip()


def synced(readme: str) -> str:
    """README text with every marked section replaced by its source."""
    for name, path in SOURCES.items():
        pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(<!-- /{re.escape(name)} -->)", re.S)
        replacement = body(path.read_text(encoding="utf-8"))
        readme, n = pattern.subn(lambda m: m.group(1) + replacement + "\n" + m.group(2), readme)
        if n != 1:
            raise SystemExit(f"README.md needs exactly one <!-- {name} --> section (found {n})")
    return readme


def main() -> None:
    path = ROOT / "README.md"
    current = path.read_text(encoding="utf-8")
    new = synced(current)
    if "--check" in sys.argv:
        sys.exit(0 if new == current else 1)
    path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
