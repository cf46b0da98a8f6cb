"""examples/places: the "nearest places" app runs over HTTP through our proxy, its generated models
are up to date with its schema, and it type-checks under mypy --strict."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from neon_query.__main__ import main as codegen_main
from neon_sync.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "places" / "app.py"

pytestmark = pytest.mark.slow


@pytest.fixture
def places_db(fresh_db: str) -> Iterator[str]:
    yield fresh_db


def test_the_app_prints_the_nearest_places(proxy: Any, places_db: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": proxy.database_url(database=places_db),
        "NEON_FETCH_ENDPOINT": proxy.url,
    }
    proc = subprocess.run([sys.executable, str(APP)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Nearest cafés and parks")
    assert [line[2:20].strip() for line in lines[1:4]] == ["Kaffebrenneriet", "Fuglen", "Tim Wendelboe"]
    assert all(float(line.split()[-2]) < 2.0 for line in lines[1:4])
    assert "Places per kind: cafe 4, park 2, museum 1, library 1" in proc.stdout
    assert "Visited: Kaffebrenneriet (2)" in proc.stdout
    assert "Newest: Munch Museum (2021-10-22)" in proc.stdout
    # running it again recreates the dataset: same output
    again = subprocess.run([sys.executable, str(APP)], capture_output=True, text=True, env=env, timeout=60)
    assert again.stdout == proc.stdout


def test_the_models_match_the_schema(pg: EmbeddedPostgres, places_db: str) -> None:
    from neon_sync import Client

    with Client(pg.dsn(database=places_db)) as client:
        client.query((ROOT / "examples" / "places" / "schema.sql").read_text())
    models = ROOT / "examples" / "places" / "models.py"
    assert codegen_main(["codegen", pg.dsn(database=places_db), "-o", str(models), "--check"]) == 0


def test_the_app_type_checks() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "-m", "examples.places.app"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout
