"""neon_proto.options: keywords become validated parameters and transport options, once for every binding."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from neon_proto.errors import ProgrammingError
from neon_proto.options import (
    NeonConfig,
    TransportOptions,
    WebSocketTarget,
    is_loopback_host,
    neon_config,
    resolve_connect_options,
)


@pytest.fixture(autouse=True)
def clean_config() -> Iterator[None]:
    neon_config.reset()
    yield
    neon_config.reset()


def test_a_misspelt_keyword_raises_type_error_with_a_suggestion() -> None:
    with pytest.raises(TypeError) as info:
        resolve_connect_options(None, {"pasword": "x"}, caller="Client")
    message = str(info.value)
    assert "Client() got an unexpected keyword argument 'pasword'" in message
    assert "did you mean 'password'?" in message
    assert "sslmode" in message  # the valid keywords are listed


def test_an_unknown_keyword_is_not_sent_as_a_server_setting() -> None:
    with pytest.raises(TypeError, match="server_settings"):
        resolve_connect_options(None, {"search_path": "app"})


def test_a_libpq_keyword_the_driver_does_not_implement_says_so() -> None:
    with pytest.raises(TypeError, match="libpq keyword this driver does not support"):
        resolve_connect_options(None, {"target_session_attrs": "any"})


def test_server_settings_reach_the_startup_parameters() -> None:
    options = resolve_connect_options("postgres://u@h/db", {"server_settings": {"search_path": "app", "jit": False}})
    startup = options.params.startup_parameters()
    assert startup["search_path"] == "app"
    assert startup["jit"] == "off"
    assert startup["user"] == "u" and startup["database"] == "db"


def test_server_settings_refuse_a_connection_keyword() -> None:
    with pytest.raises(ValueError, match="connection keyword"):
        resolve_connect_options(None, {"server_settings": {"sslmode": "disable"}})


def test_keywords_override_the_dsn_and_the_environment() -> None:
    options = resolve_connect_options(
        "postgres://u:pw@h:5433/db", {"port": 6000, "dbname": "other"}, env={"PGUSER": "envuser", "PGHOST": "x"}
    )
    assert (options.params.host, options.params.port, options.params.dbname, options.params.user) == (
        "h",
        6000,
        "other",
        "u",
    )


def test_bad_values_are_refused() -> None:
    with pytest.raises(ProgrammingError):
        resolve_connect_options(None, {"sslmode": "sometimes"})
    with pytest.raises(ValueError, match="transport"):
        resolve_connect_options(None, {"transport": "carrier-pigeon"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="pipeline_connect"):
        resolve_connect_options(None, {"pipeline_connect": True})
    with pytest.raises(ValueError, match="scheme"):
        resolve_connect_options(None, {"ws_proxy": "wss://proxy/v2"})
    with pytest.raises(ValueError, match="use_secure_websocket"):
        resolve_connect_options(None, {"use_secure_websocket": "yes"})


def test_auto_transport_is_tcp_without_a_ws_proxy_and_websocket_with_one() -> None:
    assert resolve_connect_options("postgres://h/db", {}).transport.transport == "tcp"
    assert resolve_connect_options("postgres://h/db", {"ws_proxy": "p/v2"}).transport.transport == "websocket"
    assert resolve_connect_options("postgres://h/db", {}, sockets_available=False).transport.transport == "websocket"
    neon_config.ws_proxy = "proxy.local/v2"
    assert resolve_connect_options("postgres://h/db", {}).transport.transport == "websocket"
    assert resolve_connect_options("postgres://h/db", {"transport": "tcp"}).transport.transport == "tcp"


def test_neon_config_supplies_defaults_and_validates_assignments() -> None:
    neon_config.use_secure_websocket = False
    neon_config.pipeline_connect = False
    transport = resolve_connect_options("postgres://h/db", {"transport": "websocket"}).transport
    assert transport.use_secure_websocket is False
    assert transport.pipeline_connect is False
    with pytest.raises(ValueError):
        neon_config.coalesce_writes = "no"  # type: ignore[assignment]
    with pytest.raises(ValueError):
        neon_config.ws_proxy = "ws://p"
    assert NeonConfig().pipeline_connect == "auto"


def test_default_websocket_url_is_neons_rule() -> None:
    target = TransportOptions(transport="websocket").websocket_target("ep-cool-123.us-east-2.aws.neon.tech", 5432)
    assert target == WebSocketTarget(True, "ep-cool-123.us-east-2.aws.neon.tech", 443, "/v2")
    assert target.url == "wss://ep-cool-123.us-east-2.aws.neon.tech/v2"


def test_a_string_ws_proxy_gets_the_address_appended() -> None:
    options = TransportOptions(transport="websocket", ws_proxy="127.0.0.1:8080/v2", use_secure_websocket=False)
    target = options.websocket_target("db.internal", 5432)
    assert target == WebSocketTarget(False, "127.0.0.1", 8080, "/v2?address=db.internal:5432")
    assert target.url == "ws://127.0.0.1:8080/v2?address=db.internal:5432"


def test_a_function_ws_proxy_chooses_the_location() -> None:
    options = TransportOptions(transport="websocket", ws_proxy=lambda host, port: f"[::1]:9000/ws/{host}/{port}")
    assert options.websocket_target("h", 5) == WebSocketTarget(True, "::1", 9000, "/ws/h/5")


def test_pipeline_auto_depends_on_the_transport() -> None:
    assert TransportOptions(transport="websocket").pipeline_for(has_password=True) == "password"
    assert TransportOptions(transport="tcp").pipeline_for(has_password=True) == "scram"
    assert TransportOptions(transport="tcp").pipeline_for(has_password=False) is False
    assert TransportOptions(transport="tcp", pipeline_connect=False).pipeline_for(has_password=True) is False


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("localhost")
    assert is_loopback_host("/tmp")
    assert not is_loopback_host("10.0.0.1") and not is_loopback_host("example.com")


def test_the_password_never_appears_in_the_options_repr() -> None:
    options = resolve_connect_options("postgres://u:s3cret-pw@h/db", {})
    assert "s3cret-pw" not in repr(options)


MYPY_SNIPPET = textwrap.dedent(
    """
    from neon_sync import Client, Pool, connect

    Client("postgres://h/db", pasword="x")
    Pool("postgres://h/db", sslmod="disable")
    connect("postgres://h/db", transprot="websocket")
    Client("postgres://h/db", password="x", transport="websocket", ws_proxy="p/v2", server_settings={"jit": "off"})
    """
)


@pytest.mark.slow
def test_mypy_catches_a_misspelt_keyword_in_user_code(tmp_path: pytest.TempPathFactory) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "user_code.py"
    path.write_text(MYPY_SNIPPET)
    root = pathlib.Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent", str(path)],
        capture_output=True,
        text=True,
        cwd=str(root),
        timeout=300,
    )
    out = proc.stdout
    assert 'Unexpected keyword argument "pasword"' in out
    assert 'Unexpected keyword argument "sslmod"' in out
    assert 'Unexpected keyword argument "transprot"' in out
    assert out.count("error:") == 3, out


def test_every_sync_entry_point_refuses_a_misspelt_keyword() -> None:
    from neon_sync import Client, Pool, connect

    with pytest.raises(TypeError, match="'pasword'.*did you mean 'password'"):
        Client("postgres://h/db", pasword="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Pool\\(\\).*'sslmod'"):
        Pool("postgres://h/db", sslmod="disable")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'arraymode'.*did you mean 'array_mode'"):
        connect("postgres://h/db", arraymode=True)  # type: ignore[call-arg]


def test_neon_config_is_exported_from_neon_sync() -> None:
    import neon_sync

    assert neon_sync.neon_config is neon_config
