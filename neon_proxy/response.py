"""Writing SQL-over-HTTP responses: results and errors as the JSON Neon's proxy sends.

Key order matters to byte-for-byte comparisons, so the JSON is written by hand here:
results ``fields, rows, command, rowCount, rowAsArray``; errors ``message, code, detail,
hint, position, internalPosition, internalQuery, severity, where, table, column, schema,
dataType, constraint, file, line, routine``.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from neon_proto.errors import Diagnostic
from neon_proto.events import FieldDescription
from neon_proxy.cells import json_string

__all__ = [
    "ERROR_KEYS",
    "CANCELLED_MESSAGE",
    "error_json",
    "pg_error_json",
    "command_and_row_count",
    "result_json",
    "results_json",
    "fields_json",
    "rows_json",
]

ERROR_KEYS = (
    "message", "code", "detail", "hint", "position", "internalPosition", "internalQuery", "severity",
    "where", "table", "column", "schema", "dataType", "constraint", "file", "line", "routine",
)  # fmt: skip

CANCELLED_MESSAGE = "Query cancelled, connection was terminated"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_json(message: str, *, code: str = "", severity: str = "") -> bytes:
    """An error that is not Postgres's: ``code`` and ``severity`` empty, the rest null."""
    body = dict.fromkeys(ERROR_KEYS)
    body["message"] = message
    body["code"] = code
    body["severity"] = severity
    return _dumps(body).encode("utf-8")


def pg_error_json(diag: Diagnostic, fallback_message: str = "") -> bytes:
    """A Postgres ErrorResponse with every field; ``position`` and ``line`` are strings.

    A position inside an internal query (``p``) goes to ``internalPosition`` with its
    ``internalQuery``, and only when there is no ordinary ``position``.
    """
    position = diag.position
    internal_position = internal_query = None
    if position is None and diag.internal_position is not None:
        internal_position, internal_query = diag.internal_position, diag.internal_query
    body = {
        "message": diag.message if diag.message is not None else fallback_message,
        "code": diag.code,
        "detail": diag.detail,
        "hint": diag.hint,
        "position": position,
        "internalPosition": internal_position,
        "internalQuery": internal_query,
        "severity": diag.severity_local or diag.severity,
        "where": diag.where,
        "table": diag.table,
        "column": diag.column,
        "schema": diag.schema,
        "dataType": diag.data_type,
        "constraint": diag.constraint,
        "file": diag.file,
        "line": diag.line,
        "routine": diag.routine,
    }
    return _dumps(body).encode("utf-8")


def command_and_row_count(tag: str | None) -> tuple[str, int | None]:
    """The command word and row count of a tag, as Neon's proxy splits it.

    ``INSERT oid n`` counts its third word, other tags their second; a word that is not a
    number, or its absence, gives None.
    """
    if not tag:
        return "", None
    name, sep, rest = tag.partition(" ")
    if not sep:
        return tag, None
    if name == "INSERT":
        _oid, sep, rest = rest.partition(" ")
        if not sep:
            return name, None
    try:
        return name, int(rest)
    except ValueError:
        return name, None


def fields_json(fields: Sequence[FieldDescription]) -> str:
    """The ``fields`` array: name, type OID, table OID, column number, size, modifier, text format."""
    return (
        "["
        + ",".join(
            '{"name":%s,"dataTypeID":%d,"tableID":%d,"columnID":%d,"dataTypeSize":%d,"dataTypeModifier":%d,"format":"text"}'
            % (json_string(f.name), f.type_oid, f.table_oid, f.column_id, f.type_size, f.type_modifier)
            for f in fields
        )
        + "]"
    )


def rows_json(names: Sequence[str], rows: Iterable[Sequence[str | None]], array_mode: bool) -> str:
    """Rows whose cells are already JSON text (None for NULL), as arrays or as objects.

    In object mode a repeated column name is written twice; JSON readers keep the later
    value, as the JS driver does.
    """
    if array_mode:
        texts = ["[" + ",".join(["null" if c is None else c for c in row]) + "]" for row in rows]
    else:
        keys = [json_string(name) + ":" for name in names]
        texts = [
            "{" + ",".join([k + ("null" if c is None else c) for k, c in zip(keys, row)]) + "}" for row in rows
        ]
    return "[" + ",".join(texts) + "]"


def result_json(
    fields: Sequence[FieldDescription],
    rows: Iterable[Sequence[str | None]],
    tag: str | None,
    array_mode: bool,
) -> str:
    """One query's result object."""
    command, row_count = command_and_row_count(tag)
    return '{"fields":%s,"rows":%s,"command":%s,"rowCount":%s,"rowAsArray":%s}' % (
        fields_json(fields),
        rows_json([f.name for f in fields], rows, array_mode),
        json_string(command),
        "null" if row_count is None else str(row_count),
        "true" if array_mode else "false",
    )


def results_json(results: Iterable[str]) -> str:
    """A batch's ``{"results": [...]}`` from result objects already written."""
    return '{"results":[' + ",".join(results) + "]}"
