"""json and jsonb: loaders, and the ``Json`` wrapper that marks a parameter as JSON."""

from __future__ import annotations

import json
import json.scanner
from typing import Any, Callable

import attrs

from neon_proto.errors import DataError

__all__ = ["Json", "load_json", "load_jsonb_binary", "dump_json"]

JSONB_OID = 3802

_scan_once: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def load_json(data: bytes) -> Any:
    """json/jsonb text. The server's canonical text scans in one pass; anything else goes to json.loads."""
    text = data.decode()
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value


def load_jsonb_binary(data: bytes) -> Any:
    """jsonb binary: a version byte (1) then the JSON text."""
    if data[:1] != b"\x01":
        raise DataError(f"unknown jsonb binary format version: {data[:1]!r}")
    return load_json(data[1:])


@attrs.frozen
class Json:
    """A parameter to send as jsonb: any JSON-able value, serialized with ``dumps``.

    Needed because a bare dict or list is ambiguous (a list is a Postgres array).
    """

    obj: Any
    dumps: Callable[[Any], str] = json.dumps



def dump_json(value: Json) -> tuple[int, int, bytes]:
    """Json as jsonb.

    What ``dumps`` cannot serialize (a date, a set, a circular structure) raises DataError
    before anything is sent, instead of the TypeError or ValueError of ``json.dumps``.
    """
    try:
        return (JSONB_OID, 0, value.dumps(value.obj).encode())
    except (TypeError, ValueError) as exc:
        raise DataError(f"can't dump {type(value.obj).__name__} as JSON: {exc}") from exc
