"""neon_query: a typed query builder, schema introspection and codegen of typed table models.

``python -m neon_query codegen DSN -o models.py`` writes one module of typed tables; queries
built from them (``select(users.id).where(users.email.eq(...))``) compile to
``CompiledQuery(sql, params)`` and run through an executor (``Database``, ``HTTPDatabase``).
"""

from neon_query.codecs import (
    BOOL,
    BPCHAR,
    BYTEA,
    DATE,
    FLOAT4,
    FLOAT8,
    INT2,
    INT4,
    INT8,
    INTERVAL,
    JSON,
    JSONB,
    NAME,
    NUMERIC,
    OID,
    TEXT,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    TIMETZ,
    UUID,
    VARCHAR,
    Codec,
    JSONValue,
)
from neon_query.execute import (
    Database,
    Executor,
    HTTPDatabase,
    NoRowsError,
    NotExactlyOneError,
    TooManyRowsError,
    database,
)
from neon_query.execute_async import AsyncDatabase, AsyncExecutor, AsyncHTTPDatabase, AsyncTx, run_in_transaction_async
from neon_query.expr import (
    Col,
    Expr,
    Ordering,
    Selectable,
    and_,
    avg,
    cast,
    coalesce,
    count,
    exists,
    fn,
    max_,
    min_,
    not_,
    or_,
    param,
    quote_ident,
    sql_expr,
    sum_,
)
from neon_query.query import (
    CompiledQuery,
    Delete,
    Insert,
    Query,
    Raw,
    Returning,
    Select,
    Statement,
    Update,
    delete,
    insert,
    raw,
    select,
    update,
)
from neon_query.table import ColumnSpec, Outer, Table
from neon_query.transaction import ReadCommitted, RepeatableRead, Serializable, Tx, run_in_transaction

__all__ = [
    "select", "insert", "update", "delete", "raw",
    "CompiledQuery", "Statement", "Query", "Select", "Insert", "Update", "Delete", "Returning", "Raw",
    "Table", "Outer", "ColumnSpec", "Col", "Expr", "Selectable", "Ordering",
    "and_", "or_", "not_", "exists", "param", "cast", "fn", "sql_expr",
    "count", "sum_", "avg", "min_", "max_", "coalesce", "quote_ident",
    "Database", "HTTPDatabase", "Executor", "database", "AsyncDatabase", "AsyncHTTPDatabase", "AsyncExecutor", "AsyncTx", "run_in_transaction_async",
    "NotExactlyOneError", "NoRowsError", "TooManyRowsError",
    "Codec", "JSONValue",
    "run_in_transaction", "Tx", "ReadCommitted", "RepeatableRead", "Serializable",
    "BOOL", "INT2", "INT4", "INT8", "OID", "FLOAT4", "FLOAT8", "NUMERIC", "TEXT", "VARCHAR", "BPCHAR",
    "NAME", "BYTEA", "UUID", "DATE", "TIME", "TIMETZ", "TIMESTAMP", "TIMESTAMPTZ", "INTERVAL", "JSON", "JSONB",
]
