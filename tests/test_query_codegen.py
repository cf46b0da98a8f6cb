"""python -m neon_query codegen against the real schema in tests/query/schema.sql: every feature,
byte-identical reruns (TCP and HTTP read the same), --check, globs, schemas, overrides, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neon_query.__main__ import main
from neon_sync.embedded import EmbeddedPostgres
from tests.query.fixtures import query_db  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "tests" / "query" / "models.py"

pytestmark = pytest.mark.slow


def codegen(*args: str) -> int:
    return main(["codegen", *args])


def test_codegen_reproduces_the_committed_models_byte_for_byte(pg: EmbeddedPostgres, query_db: str, tmp_path: Path) -> None:
    out = tmp_path / "models.py"
    assert codegen(pg.dsn(database=query_db), "-o", str(out)) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()
    assert codegen(pg.dsn(database=query_db), "-o", str(out)) == 0  # a rerun changes nothing
    assert out.read_bytes() == COMMITTED.read_bytes()


def test_over_http_the_output_is_the_same(proxy: Any, query_db: str, tmp_path: Path) -> None:
    out = tmp_path / "models.py"
    dsn = proxy.database_url(database=query_db)
    assert codegen(dsn, "--transport", "http", "--fetch-endpoint", proxy.url, "-o", str(out)) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()


def test_over_websocket_the_output_is_the_same(proxy: Any, query_db: str, tmp_path: Path) -> None:
    out = tmp_path / "models.py"
    dsn = proxy.database_url(database=query_db)
    ws = f"127.0.0.1:{proxy.port}/v2"
    assert codegen(dsn, "--transport", "websocket", "--ws-proxy", ws, "--insecure-websocket", "-o", str(out)) == 0
    assert out.read_bytes() == COMMITTED.read_bytes()


def test_generated_module_covers_every_feature() -> None:
    text = COMMITTED.read_text()
    assert 'Mood = Literal["happy", "sad", "so-so"]' in text  # enum
    assert "    moods: list[Mood]\n" in text  # array of an enum
    assert 'ColumnSpec("moods", "moods", "mood[]", param_cast="mood[]", select_cast="text[]")' in text
    row = text[text.index("class UsersRow") : text.index("class UsersInsert")]
    insert = text[text.index("class UsersInsert") : text.index("class UsersUpdate")]
    update = text[text.index("class UsersUpdate") : text.index("class UsersWhere")]
    assert "    email: str\n" in row  # domain with NOT NULL resolved to its base type
    assert "    CreatedBy: str | None\n" in row  # domain over varchar, nullable, mixed case kept
    assert "    email_domain: str | None\n" in row
    assert "email_domain" not in insert and "email_domain" not in update  # GENERATED ALWAYS ... STORED
    assert "    id:" not in insert and "    id:" not in update  # identity ALWAYS
    assert "    email: str\n" in insert and "    name: NotRequired[str | None]\n" in insert
    assert "    mood: NotRequired[Mood]\n" in insert  # default
    counters_insert = text[text.index("class CountersInsert") : text.index("class CountersUpdate")]
    assert "    value: NotRequired[int]\n" in counters_insert  # identity BY DEFAULT may be given
    posts_insert = text[text.index("class PostsInsert") : text.index("class PostsUpdate")]
    assert "    id: NotRequired[int]\n" in posts_insert  # serial
    assert "    meta: NotRequired[JSONValue | None]\n" in posts_insert  # json
    assert "    token: NotRequired[uuid.UUID]\n" in posts_insert
    assert '"""Table public.users: People who sign in."""' in text  # table comment
    assert '    """Unique, checked by the email domain."""' in text  # column comment
    assert "class ActiveAuthorsTable(Table[ActiveAuthorsRow, Never, Never, ActiveAuthorsWhere]):" in text  # view
    assert '"""View public.active_authors: Users with at least one post."""' in text
    assert "class PostStatsTable(Table[PostStatsRow, Never, Never, PostStatsWhere]):" in text  # matview
    assert "    id: int | None\n" in text[text.index("class ActiveAuthorsRow") :]  # view columns nullable
    assert "class MeasurementsTable" in text and "measurements_2025" not in text  # partitions skipped
    assert '__primary_key__ = ("id",)' in text and '__unique__ = (("author_id", "title"),)' in text
    assert '(("author_id",), "public.users", ("id",)),' in text  # foreign key
    assert "    order: Col[int | None]\n" in text  # a keyword as a column name stays usable
    assert "audit" not in text  # other schemas only when asked


def test_check_exits_nonzero_on_a_stale_file(pg: EmbeddedPostgres, query_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models.py"
    out.write_bytes(COMMITTED.read_bytes())
    assert codegen(pg.dsn(database=query_db), "-o", str(out), "--check") == 0
    out.write_text(COMMITTED.read_text().replace("so-so", "meh"))
    assert codegen(pg.dsn(database=query_db), "-o", str(out), "--check") == 1
    assert "is stale" in capsys.readouterr().err
    assert "meh" in out.read_text()  # --check writes nothing
    missing = tmp_path / "absent.py"
    assert codegen(pg.dsn(database=query_db), "-o", str(missing), "--check") == 1
    assert not missing.exists()


def test_the_command_line_runs_as_a_module(pg: EmbeddedPostgres, query_db: str, tmp_path: Path) -> None:
    out = tmp_path / "m.py"
    env = {**os.environ, "DATABASE_URL": pg.dsn(database=query_db), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "neon_query", "codegen", "-o", str(out), "--include", "users", "--include", "posts"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "class UsersTable" in text and "class PostsTable" in text and "class CountersTable" not in text
    proc = subprocess.run(
        [sys.executable, "-m", "neon_query", "codegen", "postgresql://nobody:wrong@127.0.0.1:1/x", "-o", str(out)],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("neon_query codegen: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_an_unwritable_output_is_one_line(pg: EmbeddedPostgres, query_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert codegen(pg.dsn(database=query_db), "-o", str(tmp_path / "missing" / "m.py")) == 2
    err = capsys.readouterr().err
    assert err.startswith("neon_query codegen: cannot write ") and len(err.strip().splitlines()) == 1


def test_globs_and_several_schemas(pg: EmbeddedPostgres, query_db: str, tmp_path: Path) -> None:
    out = tmp_path / "m.py"
    dsn = pg.dsn(database=query_db)
    assert codegen(dsn, "--schema", "public", "--schema", "audit", "--exclude", "public.*", "-o", str(out)) == 0
    text = out.read_text()
    assert "class AuditEventsTable(Table[AuditEventsRow" in text and "audit_events = AuditEventsTable()" in text
    assert '__schema__ = "audit"' in text and "class UsersTable" not in text
    assert codegen(dsn, "--exclude", "*s", "-o", str(out)) == 0
    assert "class UsersTable" not in out.read_text() and "class PostStatsTable" not in out.read_text()


def test_overrides_file(pg: EmbeddedPostgres, query_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = tmp_path / "overrides.toml"
    overrides.write_text(
        'imports = ["from myapp.types import Settings"]\n'
        "[types]\n"
        'jsonb = "dict[str, object]"\n'
        "[columns]\n"
        '"users.settings" = "Settings"\n'
        '"active_authors.id" = { nullable = false }\n'
        '"public.posts.meta" = { type = "list[int]", nullable = true }\n'
    )
    out = tmp_path / "m.py"
    assert codegen(pg.dsn(database=query_db), "--overrides", str(overrides), "-o", str(out)) == 0
    text = out.read_text()
    assert "from myapp.types import Settings" in text
    assert "    settings: Settings\n" in text
    assert "    meta: list[int] | None\n" in text
    view_row = text[text.index("class ActiveAuthorsRow") : text.index("class ActiveAuthorsWhere")]
    assert "    id: int\n" in view_row and "    email: str | None\n" in view_row
    overrides.write_text('[columns]\n"users.nope" = "int"\n')
    assert codegen(pg.dsn(database=query_db), "--overrides", str(overrides), "-o", str(out)) == 2
    assert "'users.nope' matches no column" in capsys.readouterr().err
    overrides.write_text("[colums]\n")
    assert codegen(pg.dsn(database=query_db), "--overrides", str(overrides), "-o", str(out)) == 2
    assert "unknown section 'colums'" in capsys.readouterr().err


def test_generated_module_passes_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "-m", "tests.query.models"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout
