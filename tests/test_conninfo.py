"""Connection strings parse the way libpq parses them; the password never leaks into text."""

from __future__ import annotations

import string
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neon_proto.conninfo import ConnectionParams, FrozenParams, parse_connection_string
from neon_proto.errors import ProgrammingError

# --- URIs ----------------------------------------------------------------------------------


def test_empty_and_none_give_the_defaults() -> None:
    assert parse_connection_string() == ConnectionParams()
    assert parse_connection_string("") == ConnectionParams()
    assert parse_connection_string("   ") == ConnectionParams()
    p = ConnectionParams()
    assert (p.host, p.port, p.user, p.password, p.database) == ("localhost", 5432, None, None, None)
    assert (p.sslmode, p.sslnegotiation, p.channel_binding) == ("prefer", "postgres", "prefer")
    assert p.connect_timeout is None and dict(p.extra) == {}


def test_full_uri() -> None:
    p = parse_connection_string("postgresql://alice:pw@db.example.com:6543/shop")
    assert (p.host, p.port, p.user, p.password, p.database) == ("db.example.com", 6543, "alice", "pw", "shop")


def test_postgres_scheme_is_accepted() -> None:
    assert parse_connection_string("postgres://u@h/d") == parse_connection_string("postgresql://u@h/d")


def test_scheme_is_case_insensitive() -> None:
    assert parse_connection_string("PostgreSQL://h").host == "h"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("postgresql://", {}),
        ("postgresql://localhost", {"host": "localhost"}),
        ("postgresql://localhost:5433", {"host": "localhost", "port": 5433}),
        ("postgresql://localhost/mydb", {"host": "localhost", "database": "mydb"}),
        ("postgresql://user@localhost", {"host": "localhost", "user": "user"}),
        ("postgresql://user:secret@localhost", {"user": "user", "password": "secret"}),
        ("postgresql:///mydb", {"host": "localhost", "database": "mydb"}),
        ("postgresql://:5433", {"port": 5433}),
        ("postgresql://:pw@h", {"user": None, "password": "pw", "host": "h"}),
        ("postgresql://u:@h", {"user": "u", "password": None}),
        ("postgresql://h:/db", {"host": "h", "port": 5432, "database": "db"}),
        ("postgresql://h/", {"host": "h", "database": None}),
        ("postgresql://h?", {"host": "h"}),
        ("postgresql://h/db?", {"database": "db"}),
        ("postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
         {"user": "other", "database": "otherdb", "connect_timeout": 10.0, "application_name": "myapp"}),
    ],
)  # fmt: skip
def test_uri_shapes_from_the_libpq_docs(uri: str, expected: dict[str, Any]) -> None:
    p = parse_connection_string(uri)
    for name, value in expected.items():
        assert getattr(p, name) == value, name


def test_ipv6_host_in_brackets() -> None:
    p = parse_connection_string("postgresql://[::1]:5433/db")
    assert (p.host, p.port, p.database) == ("::1", 5433, "db")


def test_ipv6_host_without_port() -> None:
    assert parse_connection_string("postgresql://[2001:db8::1234]/database").host == "2001:db8::1234"


def test_ipv6_zone_is_percent_decoded() -> None:
    assert parse_connection_string("postgresql://[fe80::1%25eth0]:5432").host == "fe80::1%eth0"


def test_percent_encoding_everywhere() -> None:
    p = parse_connection_string(
        "postgresql://us%40er:p%3Aw%2F%40%25@my%2Dhost/d%C3%A9j%C3%A0%20vu?application_name=caf%C3%A9&op%74ions=x"
    )
    assert p.user == "us@er"
    assert p.password == "p:w/@%"
    assert p.host == "my-host"
    assert p.database == "déjà vu"
    assert p.application_name == "café"
    assert p.options == "x"


def test_plus_is_not_a_space() -> None:
    assert parse_connection_string("postgresql://h/a+b").database == "a+b"


def test_unix_socket_directory_as_encoded_host() -> None:
    assert parse_connection_string("postgresql://%2Fvar%2Frun%2Fpostgresql/db").host == "/var/run/postgresql"


def test_unencoded_at_sign_in_password_is_forgiven() -> None:
    p = parse_connection_string("postgresql://u:p@ss@h/db")
    assert (p.user, p.password, p.host) == ("u", "p@ss", "h")


def test_slash_in_database_name_is_kept() -> None:
    assert parse_connection_string("postgresql://h/a/b").database == "a/b"


def test_query_parameters() -> None:
    p = parse_connection_string(
        "postgresql://h/db?sslmode=require&options=endpoint%3Dep-x&application_name=a&connect_timeout=10"
    )
    assert p.sslmode == "require"
    assert p.options == "endpoint=ep-x"
    assert p.application_name == "a"
    assert p.connect_timeout == 10.0


def test_query_host_and_port_override_the_authority() -> None:
    p = parse_connection_string("postgresql://a:1/db?host=b&port=2")
    assert (p.host, p.port) == ("b", 2)


def test_query_host_can_be_a_socket_directory() -> None:
    assert parse_connection_string("postgresql:///db?host=/tmp").host == "/tmp"


def test_query_dbname_user_password() -> None:
    p = parse_connection_string("postgresql://h/x?dbname=y&user=u&password=p%26q")
    assert (p.database, p.user, p.password) == ("y", "u", "p&q")


def test_unencoded_equals_in_a_query_value_is_kept() -> None:
    # libpq refuses this; Neon users write it often enough that we take the first "=" as the separator.
    assert parse_connection_string("postgresql://h?options=endpoint=ep-x").options == "endpoint=ep-x"


def test_empty_query_segments_are_skipped() -> None:
    assert parse_connection_string("postgresql://h?&sslmode=require&&").sslmode == "require"


def test_later_query_parameter_wins() -> None:
    assert parse_connection_string("postgresql://h?sslmode=disable&sslmode=require").sslmode == "require"


def test_ssl_true_means_sslmode_require() -> None:
    assert parse_connection_string("postgresql://h?ssl=true").sslmode == "require"


def test_unknown_query_parameters_are_kept_in_extra() -> None:
    p = parse_connection_string("postgresql://h?target_session_attrs=read-only&search_path=app&keepalives=1")
    assert dict(p.extra) == {"search_path": "app", "keepalives": "1"}
    assert p.target_session_attrs == "read-only"


def test_neon_url() -> None:
    p = parse_connection_string(
        "postgresql://neondb_owner:npg_Abc123@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"
        "?sslmode=require&channel_binding=require"
    )
    assert p.endpoint_id == "ep-cool-darkness-123456"
    assert p.sslmode == "require" and p.channel_binding == "require"
    assert p.database == "neondb" and p.user == "neondb_owner"


# --- key=value strings ---------------------------------------------------------------------


def test_keyword_value_string() -> None:
    p = parse_connection_string("host=localhost port=5433 dbname=x user=u password=pw sslmode=disable")
    assert (p.host, p.port, p.database, p.user, p.password, p.sslmode) == (
        "localhost", 5433, "x", "u", "pw", "disable",
    )  # fmt: skip


def test_keyword_value_quoted_with_escapes() -> None:
    p = parse_connection_string(r"host=localhost password='it''s a \' q \\ z' user = 'a b'")
    assert p.password == "it's a ' q \\ z"
    assert p.user == "a b"


def test_keyword_value_empty_quoted_value_means_not_given() -> None:
    assert parse_connection_string("user='' host=h").user is None


def test_keyword_value_backslash_in_unquoted_value() -> None:
    assert parse_connection_string(r"password=a\ b\\c host=h").password == "a b\\c"


def test_keyword_value_spaces_around_equals() -> None:
    assert parse_connection_string("  host =  h \t port=\n1 ").port == 1


def test_keyword_value_no_space_needed_after_a_quoted_value() -> None:
    p = parse_connection_string("user='a'host=h")
    assert (p.user, p.host) == ("a", "h")


def test_keyword_database_is_an_alias_of_dbname() -> None:
    assert parse_connection_string("database=x").database == "x"


def test_keyword_value_last_one_wins() -> None:
    assert parse_connection_string("port=1 port=2").port == 2


def test_keyword_value_unknown_keys_are_kept() -> None:
    assert dict(parse_connection_string("search_path=app keepalives=0").extra) == {
        "search_path": "app",
        "keepalives": "0",
    }


def test_keyword_value_percent_is_not_decoded() -> None:
    assert parse_connection_string("password=a%20b").password == "a%20b"


# --- environment and overrides -------------------------------------------------------------

ENV = {
    "PGHOST": "envhost",
    "PGPORT": "6000",
    "PGUSER": "envuser",
    "PGPASSWORD": "envpw",
    "PGDATABASE": "envdb",
    "PGSSLMODE": "require",
    "PGSSLROOTCERT": "/root.crt",
    "PGSSLCERT": "/client.crt",
    "PGSSLKEY": "/client.key",
    "PGSSLNEGOTIATION": "direct",
    "PGCHANNELBINDING": "require",
    "PGAPPNAME": "envapp",
    "PGOPTIONS": "-c search_path=x",
    "PGCONNECT_TIMEOUT": "7",
}


def test_environment_fills_everything() -> None:
    p = parse_connection_string(env=ENV)
    assert p == ConnectionParams(
        host="envhost",
        port=6000,
        user="envuser",
        password="envpw",
        database="envdb",
        sslmode="require",
        sslrootcert="/root.crt",
        sslcert="/client.crt",
        sslkey="/client.key",
        sslnegotiation="direct",
        channel_binding="require",
        options="-c search_path=x",
        application_name="envapp",
        connect_timeout=7.0,
    )


def test_no_environment_when_env_is_none() -> None:
    assert parse_connection_string(None).host == "localhost"


def test_connection_string_beats_environment() -> None:
    p = parse_connection_string("postgresql://u@h/db", env={"PGHOST": "e", "PGUSER": "eu", "PGPASSWORD": "epw"})
    assert (p.host, p.user, p.database, p.password) == ("h", "u", "db", "epw")


def test_overrides_beat_connection_string() -> None:
    p = parse_connection_string("postgresql://u:pw@h:1/db", host="o", port=2, dbname="odb", password="opw")
    assert (p.host, p.port, p.database, p.password, p.user) == ("o", 2, "odb", "opw", "u")


def test_override_database_alias() -> None:
    assert parse_connection_string("dbname=a", database="b").database == "b"


def test_override_port_as_str() -> None:
    assert parse_connection_string(port="5555").port == 5555


def test_override_none_is_ignored() -> None:
    p = parse_connection_string("postgresql://u:pw@h/db", user=None, password=None, port=None)
    assert (p.user, p.password, p.port) == ("u", "pw", 5432)


def test_override_connect_timeout_float() -> None:
    assert parse_connection_string(connect_timeout=2.5).connect_timeout == 2.5


def test_override_unknown_key_goes_to_extra() -> None:
    assert parse_connection_string(keepalives=1).extra == {"keepalives": "1"}


def test_override_bad_type() -> None:
    with pytest.raises(ProgrammingError, match="str, int or float"):
        parse_connection_string(port=[1])
    with pytest.raises(ProgrammingError):
        parse_connection_string(port=True)


def test_empty_value_falls_through_to_the_environment() -> None:
    assert parse_connection_string("host=''", env={"PGHOST": "e"}).host == "e"


def test_empty_environment_value_is_ignored() -> None:
    assert parse_connection_string(env={"PGHOST": ""}).host == "localhost"


def test_other_libpq_environment_variables_go_to_extra() -> None:
    p = parse_connection_string(env={"PGTARGETSESSIONATTRS": "read-write", "PGCLIENTENCODING": "LATIN1", "PGGSSLIB": "gssapi"})
    assert dict(p.extra) == {"gsslib": "gssapi"}
    assert p.target_session_attrs == "read-write"


# --- derived values ------------------------------------------------------------------------


def test_dbname_defaults_to_user() -> None:
    assert parse_connection_string("user=alice").dbname == "alice"
    assert parse_connection_string("user=alice dbname=shop").dbname == "shop"
    assert ConnectionParams().dbname is None


def test_startup_parameters() -> None:
    p = parse_connection_string(
        "postgresql://u:pw@h/db?application_name=app&options=-c%20x%3D1&sslmode=require"
        "&search_path=s&target_session_attrs=any&keepalives=1&sslpassword=k"
    )
    assert p.startup_parameters() == {
        "user": "u",
        "database": "db",
        "application_name": "app",
        "options": "-c x=1",
        "client_encoding": "UTF8",
        "search_path": "s",
    }


def test_startup_parameters_database_defaults_to_user() -> None:
    assert parse_connection_string("user=u").startup_parameters() == {
        "user": "u",
        "database": "u",
        "client_encoding": "UTF8",
    }


def test_startup_parameters_never_include_the_password() -> None:
    assert "password" not in parse_connection_string("user=u password=pw").startup_parameters()


def test_fallback_application_name() -> None:
    assert parse_connection_string("fallback_application_name=fb").startup_parameters()["application_name"] == "fb"
    p = parse_connection_string("fallback_application_name=fb application_name=app")
    assert p.startup_parameters()["application_name"] == "app"


def test_replication_is_sent_to_the_server() -> None:
    assert parse_connection_string("replication=database").startup_parameters()["replication"] == "database"


@pytest.mark.parametrize("encoding", ["UTF8", "utf-8", "unicode", "auto"])
def test_utf8_client_encoding_is_accepted(encoding: str) -> None:
    p = parse_connection_string(client_encoding=encoding)
    assert p.startup_parameters()["client_encoding"] == "UTF8"


def test_other_client_encoding_is_refused() -> None:
    with pytest.raises(ProgrammingError, match="client_encoding"):
        parse_connection_string("client_encoding=LATIN1")


@pytest.mark.parametrize(
    ("dsn", "endpoint"),
    [
        ("postgresql://ep-cool-123.us-east-2.aws.neon.tech/db", "ep-cool-123"),
        ("postgresql://ep-cool-123-pooler.us-east-2.aws.neon.tech/db", "ep-cool-123"),
        ("postgresql://ep-cool-123-local-proxy.example.com/db", "ep-cool-123"),
        ("postgresql://h.example.com/db?options=endpoint%3Dep-opt", "ep-opt"),
        ("postgresql://h.example.com/db?options=project%3Dep-old", "ep-old"),
        ("postgresql://h/db?options=-c%20a%3Db%20endpoint%3Dep-mid", "ep-mid"),
        ("postgresql://localhost/db", None),
        ("postgresql://127.0.0.1/db", None),
        ("postgresql://[::ffff:1.2.3.4]/db", None),
        ("postgresql://[::1]/db", None),
        ("postgresql:///db?host=/var/run/x.y", None),
        ("postgresql://h/db?options=endpoint%3D", None),
    ],
)
def test_endpoint_id(dsn: str, endpoint: str | None) -> None:
    assert parse_connection_string(dsn).endpoint_id == endpoint


def test_connect_timeout_rules() -> None:
    assert parse_connection_string("connect_timeout=0").connect_timeout is None
    assert parse_connection_string("connect_timeout=-5").connect_timeout is None
    assert parse_connection_string("connect_timeout=1").connect_timeout == 2.0
    assert parse_connection_string("connect_timeout=10").connect_timeout == 10.0
    assert ConnectionParams(connect_timeout=0.5).connect_timeout == 2.0


def test_sslrootcert_system_implies_verify_full() -> None:
    assert parse_connection_string("sslrootcert=system").sslmode == "verify-full"


def test_sslrootcert_system_refuses_a_weaker_explicit_sslmode() -> None:
    with pytest.raises(ProgrammingError, match="sslrootcert=system"):
        parse_connection_string("sslrootcert=system sslmode=require")


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_direct_negotiation_with_strong_sslmode(mode: str) -> None:
    assert parse_connection_string(f"sslnegotiation=direct sslmode={mode}").sslnegotiation == "direct"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_direct_negotiation_refuses_weak_sslmode(mode: str) -> None:
    with pytest.raises(ProgrammingError, match=f'weak sslmode "{mode}"'):
        parse_connection_string(f"sslnegotiation=direct sslmode={mode}")


def test_direct_negotiation_refuses_the_default_sslmode() -> None:
    with pytest.raises(ProgrammingError, match="sslnegotiation=direct"):
        parse_connection_string("postgresql://h?sslnegotiation=direct")


def test_with_changes_fields() -> None:
    p = parse_connection_string("postgresql://u:pw@h/db")
    q = p.with_(host="other", dbname="db2")
    assert (q.host, q.database, q.password) == ("other", "db2", "pw")
    assert p.host == "h"


def test_with_validates() -> None:
    with pytest.raises(ProgrammingError):
        ConnectionParams().with_(sslmode="sometimes")


def test_params_are_frozen_and_hashable() -> None:
    p = parse_connection_string("postgresql://h?keepalives=1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        p.host = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.extra["a"] = "b"  # type: ignore[index]
    assert hash(p) == hash(parse_connection_string("postgresql://h?keepalives=1"))
    assert len({p, parse_connection_string("postgresql://h?keepalives=1")}) == 1


def test_extra_accepts_a_dict_or_pairs() -> None:
    assert ConnectionParams(extra={"a": "1"}) == ConnectionParams(extra=[("a", "1")])
    assert isinstance(ConnectionParams(extra={"a": "1"}).extra, FrozenParams)


def test_extra_cannot_shadow_a_field() -> None:
    with pytest.raises(ProgrammingError, match="field"):
        ConnectionParams(extra={"dbname": "x"})


def test_nul_is_refused_everywhere() -> None:
    with pytest.raises(ProgrammingError, match="NUL"):
        ConnectionParams(user="a\x00b")
    with pytest.raises(ProgrammingError, match="NUL"):
        ConnectionParams(extra={"a": "\x00"})
    with pytest.raises(ProgrammingError, match="%00"):
        parse_connection_string("postgresql://u%00@h")


# --- the password stays hidden -------------------------------------------------------------


def test_repr_and_str_hide_the_password() -> None:
    p = parse_connection_string("postgresql://u:s3cret@h/db?sslpassword=k3ypass")
    for text in (repr(p), str(p), f"{p}", repr([p])):
        assert "s3cret" not in text
        assert "k3ypass" not in text
    assert "'***'" in repr(p.extra)


def test_to_url_without_password() -> None:
    p = parse_connection_string("postgresql://u:s3cret@h/db?sslpassword=k3ypass&keepalives=1")
    url = p.to_url(include_password=False)
    assert url == "postgresql://u@h:5432/db?keepalives=1"


def test_to_url_with_password_but_no_user() -> None:
    p = ConnectionParams(password="pw")
    assert p.to_url() == "postgresql://:pw@localhost:5432"
    assert parse_connection_string(p.to_url()) == p


def test_to_url_brackets_ipv6_and_encodes() -> None:
    p = ConnectionParams(host="fe80::1%eth0", user="a b", password="p@ss:/?", database="d/b", options="endpoint=x")
    assert p.to_url() == "postgresql://a%20b:p%40ss%3A%2F%3F@[fe80::1%25eth0]:5432/d%2Fb?options=endpoint%3Dx"


def test_to_url_socket_directory() -> None:
    url = ConnectionParams(host="/tmp").to_url()
    assert url == "postgresql://%2Ftmp:5432"
    assert parse_connection_string(url).host == "/tmp"


def test_to_url_connect_timeout_formats() -> None:
    assert ConnectionParams(connect_timeout=10).to_url().endswith("?connect_timeout=10")
    assert ConnectionParams(connect_timeout=2.5).to_url().endswith("?connect_timeout=2.5")


BAD_INPUTS_WITH_SECRET = [
    "postgresql://u:s3cret@h:notaport/db",
    "postgresql://u:s3cret@h:99999/db",
    "postgresql://u:s3cret@h/db?sslmode=sometimes",
    "postgresql://u:s3cret@h/d%zzb",
    "postgresql://u:s3cret%@h/db",
    "postgresql://u:s3cret@[::1/db",
    "postgresql://u:s3cret@[::1]x/db",
    "postgresql://u:s3cret@h/db?sslmode",
    "postgresql://u:s3cret@h1:1,h2:x/db",
    "host=h1,h2 port=1,2,3 password=s3cret",
    "postgresql://u:s3cret/db",  # forgot "@host": the password lands where the port goes
    "mysql://u:s3cret@h/db",
    "postgresql://u:s3cret@h/db?sslnegotiation=direct",
    "postgresql://u:s3cret@h/db?connect_timeout=soon",
    "postgresql://u:s3cret@h/db?password=s3cret%",
    "postgresql://u:s3cret@h/db?client_encoding=latin1",
    "host=h password='s3cret",
    "host=h password=s3cret port=x",
    "host=h password=my s3cret port=1",  # unquoted space: "s3cret" becomes a bare keyword
    "host=h password=s3cret sslmode=sometimes",
    "host=h password=s3cret =x",
    "s3cret",
]


@pytest.mark.parametrize("dsn", BAD_INPUTS_WITH_SECRET)
def test_errors_never_show_the_password(dsn: str) -> None:
    with pytest.raises(ProgrammingError) as info:
        parse_connection_string(dsn)
    error = info.value
    assert "s3cret" not in str(error)
    assert "s3cret" not in repr(error)
    chained = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert chained is None or "s3cret" not in str(chained)


def test_error_for_bad_password_from_environment_is_hidden() -> None:
    with pytest.raises(ProgrammingError) as info:
        parse_connection_string("postgresql://h?password=s3cret&sslmode=x", env={"PGPASSWORD": "s3cret"})
    assert "s3cret" not in str(info.value)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://h:0", "port"),
        ("postgresql://h:65536", "port"),
        ("postgresql://h:-1", "port"),
        ("postgresql://h:1e3", "port"),
        ("port=abc", "invalid port 'abc'"),
        ("postgresql://h?port=%D9%A3", "port"),  # ARABIC-INDIC DIGIT THREE is not a port
        ("sslmode=sometimes", "invalid sslmode value 'sometimes'"),
        ("sslnegotiation=later", "sslnegotiation"),
        ("channel_binding=maybe", "channel_binding"),
        ("connect_timeout=soon", "connect_timeout"),
        ("connect_timeout=nan", "connect_timeout"),
        ("http://h/db", "unsupported URI scheme 'http'"),
        ("postgresql+psycopg://h/db", "unsupported URI scheme"),
        ("postgresql://h/%4", "percent-encoding"),
        ("postgresql://h/%g0", "percent-encoding"),
        ("postgresql://h/%ff", "UTF-8"),
        ("postgresql://h?%zz=1", "percent-encoding"),
        ("postgresql://h?=1", "empty query parameter name"),
        ("postgresql://[::1", "IPv6"),
        ("postgresql://[]:5", "IPv6"),
        ("postgresql://h1:5432,h2:5432,h3:1/db?port=1,2", "could not match 2 port numbers to 3 hosts"),
        ("host=a,b port=1,2,3", "could not match 3 port numbers to 2 hosts"),
        ("host=a target_session_attrs=writable", "invalid target_session_attrs"),
        ("host=a load_balance_hosts=yes", "invalid load_balance_hosts"),
        ("password='abc", "unterminated quoted value for 'password'"),
        ("password='abc\\'", "unterminated"),
        ("host", "missing '='"),
        ("host=h port", "missing '='"),
        ("=x", "empty keyword"),
        ("mydb", "missing '='"),
    ],
)
def test_bad_input(dsn: str, message: str) -> None:
    with pytest.raises(ProgrammingError, match=message):
        parse_connection_string(dsn)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ProgrammingError, match="PGPORT"):
        parse_connection_string(env={"PGPORT": "x"})


def test_bad_dsn_type() -> None:
    with pytest.raises(ProgrammingError):
        parse_connection_string(b"host=h")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0},
        {"port": 70000},
        {"port": True},
        {"host": ""},
        {"sslmode": "Require"},
        {"sslnegotiation": "direct"},
        {"sslrootcert": "system"},
        {"channel_binding": "yes"},
        {"connect_timeout": float("inf")},
    ],
)
def test_constructor_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ProgrammingError):
        ConnectionParams(**kwargs)


# --- properties ----------------------------------------------------------------------------

_text = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), min_size=1, max_size=20)
_hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
    st.ip_addresses().map(str),
    st.just("/var/run/postgresql"),
    st.just("fe80::1%eth0"),
    _text.filter(lambda s: "," not in s),
)
_guc_names = st.from_regex(r"[a-z_][a-z0-9_.]{0,15}", fullmatch=True).filter(
    lambda k: k not in ("host", "port", "user", "password", "dbname", "database", "sslmode", "sslrootcert",
                        "sslcert", "sslkey", "sslnegotiation", "channel_binding", "options", "application_name",
                        "connect_timeout", "ssl", "client_encoding")
)  # fmt: skip


@st.composite
def connection_params(draw: st.DrawFn) -> ConnectionParams:
    sslmode = draw(st.sampled_from(["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]))
    return ConnectionParams(
        host=draw(_hosts),
        port=draw(st.integers(1, 65535)),
        user=draw(st.none() | _text),
        password=draw(st.none() | _text),
        database=draw(st.none() | _text),
        sslmode=sslmode,
        sslrootcert=draw(st.none() | _text.filter(lambda s: s != "system")),
        sslcert=draw(st.none() | _text),
        sslkey=draw(st.none() | _text),
        sslnegotiation="direct" if sslmode in ("require", "verify-ca", "verify-full") and draw(st.booleans())
        else "postgres",
        channel_binding=draw(st.sampled_from(["disable", "prefer", "require"])),
        options=draw(st.none() | _text),
        application_name=draw(st.none() | _text),
        connect_timeout=draw(st.none() | st.floats(2, 1e9) | st.integers(2, 10**6).map(float)),
        extra=draw(st.dictionaries(_guc_names, _text, max_size=3)),
    )  # fmt: skip


@settings(max_examples=300)
@given(connection_params())
def test_to_url_round_trips(params: ConnectionParams) -> None:
    assert parse_connection_string(params.to_url()) == params


@settings(max_examples=200)
@given(connection_params())
def test_to_url_without_password_never_contains_it(params: ConnectionParams) -> None:
    url = params.to_url(include_password=False)
    assert parse_connection_string(url) == params.with_(password=None)


@settings(max_examples=200)
@given(st.text(string.printable, max_size=30))
def test_keyword_value_quoting_round_trips(value: str) -> None:
    quoted = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    p = parse_connection_string(f"host=h application_name={quoted} port=1")
    assert p.application_name == (value or None)
    assert p.port == 1


@settings(max_examples=200)
@given(password=_text)
def test_password_never_in_repr(password: str) -> None:
    params = ConnectionParams(password="s3cret-" + password)
    assert "s3cret-" not in repr(params)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_arbitrary_input_parses_or_raises_programming_error(dsn: str) -> None:
    for candidate in (dsn, "postgresql://" + dsn):
        try:
            parse_connection_string(candidate)
        except ProgrammingError:
            pass
