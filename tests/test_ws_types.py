"""The type corpus gives identical values over TCP, WebSocket (through neon_proxy) and HTTP.

test_types_differential.py proves TCP equals psycopg and HTTP equals TCP; here every case read
over a WebSocket equals the same case over TCP, in text and in binary, and over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from test_types_differential import (
    CASE_IDS,
    Runner,
    exactly_equal,
    http_value,
    ours_binary,
    ours_text,
    register_psycopg_types,
)
from type_corpus import CASES, Case, corpus_database, neon_registry, read_catalog

from neon_sync import Client, neon
from neon_sync.embedded import EmbeddedPostgres


class Transports:
    def __init__(self, ws: Runner, tcp_text: Client, tcp_binary: Client) -> None:
        self.ws = ws
        self.tcp_text = tcp_text
        self.tcp_binary = tcp_binary

    def set(self, settings: tuple[tuple[str, str], ...]) -> None:
        self.ws.set(settings)
        for name, value in settings:
            self.tcp_text.query(f"SET {name} TO '{value}'")
            self.tcp_binary.query(f"SET {name} TO '{value}'")

    def reset(self) -> None:
        self.ws.reset()
        self.tcp_text.query("RESET ALL")
        self.tcp_binary.query("RESET ALL")


@pytest.fixture(scope="module")
def transports(pg: EmbeddedPostgres, proxy: Any) -> Iterator[Transports]:
    with corpus_database(pg) as db:
        dsn = pg.dsn(database=db.name)
        ref = psycopg.connect(dsn, autocommit=True, sslmode="disable")
        types = read_catalog(ref)
        registry = neon_registry(types, ref)
        register_psycopg_types(ref, types, db.extensions)
        ws = {"transport": "websocket", "ws_proxy": proxy.server.ws_proxy, "use_secure_websocket": False}
        url = proxy.database_url(database=db.name)
        clients = [
            Client(url, array_mode=True, registry=registry, **ws),  # type: ignore[arg-type]
            Client(url, array_mode=True, registry=registry, binary=True, **ws),  # type: ignore[arg-type]
            Client(dsn, sslmode="disable", array_mode=True, registry=registry),
            Client(dsn, sslmode="disable", array_mode=True, registry=registry, binary=True),
        ]
        for client in clients:
            client.connect()
        http = neon(url, fetch_endpoint=proxy.url, array_mode=True, types=registry)
        try:
            runner = Runner(types, registry, clients[0], clients[1], ref, http, db.extensions, db.missing)
            yield Transports(runner, clients[2], clients[3])
        finally:
            http.close()
            for client in clients:
                client.close()
            ref.close()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_websocket_results_equal_tcp_and_http(transports: Transports, case: Case) -> None:
    t = transports
    t.ws.skip_if_missing(case)
    over_http = http_value(t.ws, case)
    t.set(case.settings)
    try:
        ws_text, ws_binary = ours_text(t.ws, case), ours_binary(t.ws, case)
        tcp_text = ours_text(Runner(t.ws.types, t.ws.registry, t.tcp_text, t.tcp_binary, t.ws.ref, t.ws.http, t.ws.extensions, t.ws.missing), case)
        tcp_binary = ours_binary(Runner(t.ws.types, t.ws.registry, t.tcp_text, t.tcp_binary, t.ws.ref, t.ws.http, t.ws.extensions, t.ws.missing), case)
    finally:
        t.reset()
    for over_ws, over_tcp in ((ws_text, tcp_text), (ws_binary, tcp_binary)):
        if over_tcp.error is not None:
            assert type(over_ws.error) is type(over_tcp.error), over_ws
            assert str(over_ws.error) == str(over_tcp.error)
        else:
            assert over_ws.error is None, over_ws.error
            exactly_equal(over_ws.value, over_tcp.value)
    if ws_text.error is None:
        assert over_http.error is None, over_http.error
        exactly_equal(over_http.value, ws_text.value)
