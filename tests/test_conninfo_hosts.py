"""Connection strings as libpq reads them: several hosts, target_session_attrs, load_balance_hosts,
password files and service files (pure parsing, files through a fake reader)."""

from __future__ import annotations

import logging
import stat

import pytest

from neon_proto.conninfo import (
    ConnectionParams,
    HostTarget,
    connection_attempts,
    match_pgpass,
    parse_connection_string,
    parse_pgpass,
    parse_service_file,
    session_matches,
    session_state,
)
from neon_proto.errors import ProgrammingError

PRIVATE = stat.S_IFREG | 0o600


def reader(files: dict[str, tuple[str, int]]):  # type: ignore[no-untyped-def]
    return lambda path: files.get(path)


def hosts_of(params: ConnectionParams) -> list[tuple[str, int]]:
    return [(h.host, h.port) for h in params.hosts]


# ---------------------------------------------------------------- several hosts


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("host=a,b port=1,2", [("a", 1), ("b", 2)]),
        ("host=a,b,c port=7", [("a", 7), ("b", 7), ("c", 7)]),
        ("host=a,b", [("a", 5432), ("b", 5432)]),
        ("host=a,,c port=1,,3", [("a", 1), ("localhost", 5432), ("c", 3)]),
        ("postgresql://a:1,b:2/db", [("a", 1), ("b", 2)]),
        ("postgresql://a,b:2/db", [("a", 5432), ("b", 2)]),
        ("postgresql://[::1]:1,[fe80::2]/db", [("::1", 1), ("fe80::2", 5432)]),
        ("postgresql://a%2Dx:1,b/db", [("a-x", 1), ("b", 5432)]),
    ],
)
def test_host_and_port_lists(dsn: str, expected: list[tuple[str, int]]) -> None:
    params = parse_connection_string(dsn)
    assert hosts_of(params) == expected
    assert (params.host, params.port) == expected[0]


def test_host_list_from_the_environment_and_keywords() -> None:
    assert hosts_of(parse_connection_string(env={"PGHOST": "a,b", "PGPORT": "1,2"})) == [("a", 1), ("b", 2)]
    assert hosts_of(parse_connection_string("host=x", host="a,b", port=9)) == [("a", 9), ("b", 9)]


def test_every_host_gets_the_given_password_but_repr_shows_none() -> None:
    params = parse_connection_string("host=a,b password=s3cret")
    assert [h.password for h in params.hosts] == ["s3cret", "s3cret"]
    assert "s3cret" not in repr(params)


def test_to_url_writes_every_host_and_parses_back() -> None:
    params = parse_connection_string("host=a,::1 port=1,2 user=u target_session_attrs=read-write load_balance_hosts=random")
    url = params.to_url()
    assert url.startswith("postgresql://u@a:1,[::1]:2")
    assert parse_connection_string(url) == params


def test_with_host_leaves_one_server() -> None:
    params = parse_connection_string("host=a,b password=pw")
    single = params.with_(host="c")
    assert hosts_of(single) == [("c", 5432)] and single.hosts[0].password == "pw"
    assert [h.password for h in params.with_(password="new").hosts] == ["new", "new"]


def test_connection_attempts_in_order_each_for_one_host() -> None:
    params = parse_connection_string("host=a,b port=1,2 user=u target_session_attrs=read-write")
    attempts = connection_attempts(params)
    assert [(p.host, p.port, len(p.hosts), w) for p, w in attempts] == [("a", 1, 1, "read-write"), ("b", 2, 1, "read-write")]


def test_prefer_standby_tries_every_host_for_a_standby_then_any() -> None:
    params = parse_connection_string("host=a,b target_session_attrs=prefer-standby")
    assert [(p.host, w) for p, w in connection_attempts(params)] == [("a", "standby"), ("b", "standby"), ("a", "any"), ("b", "any")]


def test_load_balance_random_shuffles_and_disable_keeps_the_order() -> None:
    hosts = ",".join(f"h{i}" for i in range(6))
    calls: list[list[HostTarget]] = []

    def reverse(items: list[HostTarget]) -> None:
        calls.append(list(items))
        items.reverse()

    shuffled = connection_attempts(parse_connection_string(f"host={hosts} load_balance_hosts=random"), reverse)
    assert [p.host for p, _ in shuffled] == [f"h{i}" for i in reversed(range(6))] and len(calls) == 1
    kept = connection_attempts(parse_connection_string(f"host={hosts}"), reverse)
    assert [p.host for p, _ in kept] == [f"h{i}" for i in range(6)] and len(calls) == 1


@pytest.mark.parametrize(
    ("wanted", "standby", "read_only", "fits"),
    [
        ("any", True, True, True),
        ("read-write", False, False, True),
        ("read-write", False, True, False),
        ("read-write", True, True, False),
        ("read-only", False, True, True),
        ("read-only", False, False, False),
        ("primary", False, True, True),
        ("primary", True, True, False),
        ("standby", True, True, True),
        ("standby", False, False, False),
    ],
)
def test_session_matches(wanted: str, standby: bool, read_only: bool, fits: bool) -> None:
    assert session_matches(wanted, standby, read_only) is fits


def test_session_state_from_parameter_status() -> None:
    assert session_state({"in_hot_standby": "off", "default_transaction_read_only": "on"}) == (False, True)
    assert session_state({"in_hot_standby": "on", "default_transaction_read_only": "off"}) == (True, True)
    assert session_state({"server_version": "13.1"}) is None


# ---------------------------------------------------------------- password files


def test_pgpass_lines_escapes_comments_and_wildcards() -> None:
    text = "# comment\n\nh1:5432:db:alice:pw1\n*:*:*:bob:p\\:w\\\\2\nshort:line\n"
    entries = parse_pgpass(text)
    assert entries == [("h1", "5432", "db", "alice", "pw1"), ("*", "*", "*", "bob", "p:w\\2")]
    assert match_pgpass(entries, "h1", 5432, "db", "alice") == "pw1"
    assert match_pgpass(entries, "h1", 5433, "db", "alice") is None
    assert match_pgpass(entries, "anywhere", 1, "x", "bob") == "p:w\\2"


def test_pgpass_first_match_wins_and_a_socket_directory_is_localhost() -> None:
    entries = parse_pgpass("localhost:*:*:u:first\n*:*:*:u:second\n")
    assert match_pgpass(entries, "/var/run/postgresql", 5432, "db", "u") == "first"
    assert match_pgpass(entries, "db.internal", 5432, "db", "u") == "second"


def test_passfile_gives_each_host_its_own_password() -> None:
    files = reader({"/home/u/.pgpass": ("a:1:shop:alice:pa\nb:2:shop:alice:pb\n", PRIVATE)})
    params = parse_connection_string("host=a,b,c port=1,2,3 user=alice dbname=shop", env={"HOME": "/home/u"}, read_file=files)
    assert [h.password for h in params.hosts] == ["pa", "pb", None]
    assert params.password == "pa"


def test_passfile_location_keyword_then_pgpassfile_then_home() -> None:
    files = reader({"/k": ("*:*:*:*:from-keyword\n", PRIVATE), "/e": ("*:*:*:*:from-env\n", PRIVATE), "/h/.pgpass": ("*:*:*:*:from-home\n", PRIVATE)})
    env = {"HOME": "/h", "PGPASSFILE": "/e"}
    assert parse_connection_string("user=u passfile=/k", env=env, read_file=files).password == "from-keyword"
    assert parse_connection_string("user=u", env=env, read_file=files).password == "from-env"
    assert parse_connection_string("user=u", env={"HOME": "/h"}, read_file=files).password == "from-home"


def test_passfile_is_not_read_when_a_password_is_given_or_without_a_reader() -> None:
    files = reader({"/h/.pgpass": ("*:*:*:*:filepw\n", PRIVATE)})
    assert parse_connection_string("user=u password=given", env={"HOME": "/h"}, read_file=files).password == "given"
    assert parse_connection_string("user=u", env={"HOME": "/h", "PGPASSWORD": "envpw"}, read_file=files).password == "envpw"
    assert parse_connection_string("user=u", env={"HOME": "/h"}).password is None


def test_passfile_matches_the_database_defaulting_to_the_user() -> None:
    files = reader({"/h/.pgpass": ("*:*:alice:alice:own-db\n*:*:*:alice:other\n", PRIVATE)})
    assert parse_connection_string("user=alice", env={"HOME": "/h"}, read_file=files).password == "own-db"
    assert parse_connection_string("user=alice dbname=x", env={"HOME": "/h"}, read_file=files).password == "other"


@pytest.mark.parametrize(("mode", "warning"), [(stat.S_IFREG | 0o640, "group or world access"), (stat.S_IFREG | 0o604, "group or world access"), (stat.S_IFDIR | 0o700, "not a plain file")])
def test_passfile_with_loose_permissions_is_ignored_with_a_warning(mode: int, warning: str, caplog: pytest.LogCaptureFixture) -> None:
    files = reader({"/h/.pgpass": ("*:*:*:*:secretpw\n", mode)})
    with caplog.at_level(logging.WARNING, logger="neon_proto"):
        params = parse_connection_string("user=u", env={"HOME": "/h"}, read_file=files)
    assert params.password is None
    assert warning in caplog.text and "secretpw" not in caplog.text


# ---------------------------------------------------------------- service files

SERVICES = """
# shared settings
[shop]
host=db.internal
port = 6543
dbname=shop
application_name=from-service

[other]
host=other.internal
"""


def test_service_from_pgservicefile() -> None:
    files = reader({"/s.conf": (SERVICES, PRIVATE)})
    params = parse_connection_string("service=shop user=u", env={"PGSERVICEFILE": "/s.conf"}, read_file=files)
    assert (params.host, params.port, params.database, params.user) == ("db.internal", 6543, "shop", "u")
    assert "service" in params.extra and "service" not in params.startup_parameters()


def test_service_precedence_string_over_service_over_environment() -> None:
    files = reader({"/s.conf": (SERVICES, PRIVATE)})
    env = {"PGSERVICEFILE": "/s.conf", "PGHOST": "env-host", "PGUSER": "env-user", "PGAPPNAME": "env-app"}
    params = parse_connection_string("service=shop application_name=given", env=env, read_file=files)
    assert params.host == "db.internal"  # service beats the environment
    assert params.user == "env-user"  # the environment fills what the service leaves out
    assert params.application_name == "given"  # the string beats the service


def test_service_from_pgservice_variable_home_file_and_sysconfdir() -> None:
    files = reader({"/h/.pg_service.conf": ("[a]\nhost=from-home\n", PRIVATE), "/etc/pg/pg_service.conf": (SERVICES, PRIVATE)})
    env = {"HOME": "/h", "PGSYSCONFDIR": "/etc/pg"}
    assert parse_connection_string(env={**env, "PGSERVICE": "a"}, read_file=files).host == "from-home"
    assert parse_connection_string("service=other", env=env, read_file=files).host == "other.internal"


def test_servicefile_keyword() -> None:
    files = reader({"/mine.conf": ("[x]\nport=7\n", PRIVATE)})
    assert parse_connection_string("service=x servicefile=/mine.conf", read_file=files).port == 7


def test_unknown_service_is_an_error() -> None:
    files = reader({"/s.conf": (SERVICES, PRIVATE)})
    with pytest.raises(ProgrammingError, match="definition of service 'nope' not found"):
        parse_connection_string("service=nope", env={"PGSERVICEFILE": "/s.conf"}, read_file=files)


def test_service_file_syntax_errors_name_the_line() -> None:
    with pytest.raises(ProgrammingError, match=r"syntax error in service file '/s', line 3"):
        parse_service_file("[a]\nhost=x\nnot a setting\n", "/s")
    with pytest.raises(ProgrammingError, match="nested service"):
        parse_service_file("[a]\nservice=b\n", "/s")


def test_service_file_sections() -> None:
    assert parse_service_file(SERVICES) == {
        "shop": {"host": "db.internal", "port": "6543", "dbname": "shop", "application_name": "from-service"},
        "other": {"host": "other.internal"},
    }


def test_sql_over_http_refuses_several_hosts() -> None:
    from neon_proto.http import neon_connection_string

    with pytest.raises(ProgrammingError, match="one endpoint"):
        neon_connection_string("postgresql://u:pw@ep-a.example.com,ep-b.example.com/db")
