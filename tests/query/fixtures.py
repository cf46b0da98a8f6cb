"""Fixtures for the neon_query tests (imported by tests/test_query_*.py): a database with schema.sql, executors."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from neon_query import Database, HTTPDatabase
from neon_sync import Client, neon
from neon_sync.embedded import EmbeddedPostgres
from tests.conftest import admin_execute

SCHEMA_SQL = os.path.join(os.path.dirname(__file__), "schema.sql")


@pytest.fixture(scope="session")
def query_db(pg: EmbeddedPostgres) -> Iterator[str]:
    """A database holding tests/query/schema.sql (shared by the neon_query tests)."""
    name = f"query_{uuid.uuid4().hex[:12]}"
    admin_execute(pg, f'CREATE DATABASE "{name}"')
    client = Client(pg.dsn(database=name)).connect()
    try:
        with open(SCHEMA_SQL) as f:
            client.query(f.read())
    finally:
        client.close()
    yield name
    admin_execute(pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def client(pg: EmbeddedPostgres, query_db: str) -> Iterator[Client]:
    """A Client on the query database, its tables emptied first."""
    c = Client(pg.dsn(database=query_db)).connect()
    c.query("TRUNCATE users, posts, counters, measurements, audit.events RESTART IDENTITY CASCADE")
    yield c
    c.close()


@pytest.fixture
def http_sql(proxy: Any, query_db: str) -> Iterator[Any]:
    """neon() over our proxy on the query database."""
    with neon(proxy.database_url(database=query_db), fetch_endpoint=proxy.url) as sql:
        yield sql


@pytest.fixture
def ws_client(proxy: Any, query_db: str) -> Iterator[Client]:
    """A Client on the query database over WebSocket, through our proxy."""
    c = Client(
        proxy.database_url(database=query_db),
        transport="websocket",
        ws_proxy=f"127.0.0.1:{proxy.port}/v2",
        use_secure_websocket=False,
    ).connect()
    yield c
    c.close()


@pytest.fixture(params=["tcp", "http", "websocket"])
def db(request: pytest.FixtureRequest, client: Client) -> Any:
    """The executor under test: Database over a Client (TCP or WebSocket), or HTTPDatabase over neon()."""
    if request.param == "tcp":
        return Database(client)
    if request.param == "websocket":
        ws: Client = request.getfixturevalue("ws_client")
        assert ws.transport_name == "websocket"
        return Database(ws)
    return HTTPDatabase(request.getfixturevalue("http_sql"))
