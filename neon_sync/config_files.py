"""Reading the libpq service and password files, for every binding.

``neon_proto.conninfo`` parses them but reads nothing itself (it is sans-IO): a binding hands
it this reader. The files are small and local, so the async bindings use the same blocking
read, once, when a client is made.
"""

from __future__ import annotations

import os

__all__ = ["read_config_file"]


def read_config_file(path: str) -> tuple[str, int] | None:
    """A service or password file's text and mode (``neon_proto.conninfo.ConfigFileReader``);
    None when it is missing or unreadable, which libpq treats as absent."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8", errors="replace") as f:
            mode = os.fstat(f.fileno()).st_mode
            return f.read(), mode
    except OSError:
        return None
