"""``python -m neon_query codegen DSN -o models.py``: write (or ``--check``) typed table models."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from collections.abc import Sequence
from typing import Any

from neon_proto.errors import Error
from neon_query.codegen import CodegenError, Overrides, generate
from neon_query.execute import Database, Executor, HTTPDatabase
from neon_query.introspect import Schema, introspect

logger = logging.getLogger("neon_query.codegen")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m neon_query", description="Typed query builder tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    codegen = commands.add_parser("codegen", help="write typed table models read from a live schema")
    codegen.add_argument("dsn", nargs="?", help="postgres:// connection string (default: $DATABASE_URL)")
    codegen.add_argument("-o", "--output", help="the module to write (default: print to stdout)")
    codegen.add_argument("--schema", action="append", dest="schemas", help="a schema to read (repeatable; default public)")
    codegen.add_argument("--include", action="append", default=[], help="glob on schema.table or table (repeatable)")
    codegen.add_argument("--exclude", action="append", default=[], help="glob on schema.table or table (repeatable)")
    codegen.add_argument("--overrides", help="a TOML file: [types], [columns], imports")
    codegen.add_argument("--check", action="store_true", help="write nothing; exit 1 if the output file is stale")
    codegen.add_argument(
        "--transport", choices=("tcp", "http", "websocket"), default="tcp",
        help="how to reach the database: tcp (default), http (neon(), SQL over HTTP) or websocket",
    )
    codegen.add_argument("--fetch-endpoint", help="with --transport http: the URL to POST SQL to")
    codegen.add_argument("--ws-proxy", help="with --transport websocket: host:port/path of the WebSocket proxy")
    codegen.add_argument(
        "--insecure-websocket", action="store_true", help="with --transport websocket: ws:// instead of wss://"
    )
    return parser


def _read_schema(args: argparse.Namespace, schemas: Sequence[str]) -> str:
    overrides = Overrides()
    if args.overrides:
        try:
            with open(args.overrides, "rb") as f:
                overrides = Overrides.from_toml(tomllib.load(f))
        except OSError as e:
            raise CodegenError(f"cannot read {args.overrides}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise CodegenError(f"{args.overrides} is not valid TOML: {e}") from None
    dsn = args.dsn or os.environ.get("DATABASE_URL")
    if not dsn:
        raise CodegenError("no connection string: pass DSN or set DATABASE_URL")
    if args.transport == "http":
        from neon_sync.http import neon

        sql = neon(dsn, fetch_endpoint=args.fetch_endpoint) if args.fetch_endpoint else neon(dsn)
        try:
            schema = introspect(HTTPDatabase(sql), schemas)
        finally:
            sql.close()
    elif args.transport == "websocket":
        schema = _introspect_over_websocket(dsn, schemas, args.ws_proxy, not args.insecure_websocket)
    else:
        from neon_sync.client import Client

        client = Client(dsn).connect()
        try:
            executor: Executor = Database(client)
            schema = introspect(executor, schemas)
        finally:
            client.close()
    return generate(schema, schemas=schemas, include=args.include, exclude=args.exclude, overrides=overrides)


def _introspect_over_websocket(dsn: str, schemas: Sequence[str], ws_proxy: str | None, secure: bool) -> Schema:
    """The catalog read over the WebSocket transport (the Postgres protocol inside a WebSocket)."""
    from neon_sync.client import Client

    options: dict[str, Any] = {"transport": "websocket", "use_secure_websocket": secure}
    if ws_proxy:
        options["ws_proxy"] = ws_proxy
    client = Client(dsn, **options).connect()
    try:
        return introspect(Database(client), schemas)
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    schemas = args.schemas or ["public"]
    try:
        text = _read_schema(args, schemas)
    except (CodegenError, Error) as e:
        sys.stderr.write(f"neon_query codegen: {e}\n")
        return 2
    if args.check:
        if not args.output:
            sys.stderr.write("neon_query codegen: --check needs -o FILE (the file to compare)\n")
            return 2
        try:
            with open(args.output, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            sys.stderr.write(f"neon_query codegen: {args.output} is stale; rerun codegen to update it\n")
            return 1
        return 0
    if args.output:
        tmp = args.output + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.replace(tmp, args.output)
        except OSError as e:
            sys.stderr.write(f"neon_query codegen: cannot write {args.output}: {e.strerror}\n")
            return 2
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
