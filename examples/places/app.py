"""Nearest places, over SQL-over-HTTP with typed queries.

Creates a small dataset of places with coordinates, then asks: which places of a kind are
nearest to a point, how many of each kind are there, and which were visited. Every query is
built with neon_query on the generated models (examples/places/models.py) and runs through
``neon()``; the summary runs as one HTTP request (one transaction) with ``batch``.

    DATABASE_URL=postgres://... NEON_FETCH_ENDPOINT=http://127.0.0.1:PORT/sql python examples/places/app.py
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from neon_query import FLOAT8, Expr, HTTPDatabase, count, select, sql_expr  # noqa: E402
from neon_sync import neon  # noqa: E402

from examples.places.models import PlaceKind, PlacesInsert, places, visits  # noqa: E402

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.sql")

PLACES: list[PlacesInsert] = [
    {"name": "Kaffebrenneriet", "kind": "cafe", "lat": 59.9139, "lon": 10.7522, "tags": ["espresso"]},
    {"name": "Tim Wendelboe", "kind": "cafe", "lat": 59.9233, "lon": 10.7592, "tags": ["filter", "roastery"]},
    {"name": "Fuglen", "kind": "cafe", "lat": 59.9145, "lon": 10.7353, "opened_on": datetime.date(1963, 1, 1)},
    {"name": "Frogner Park", "kind": "park", "lat": 59.9270, "lon": 10.7003, "tags": ["sculptures"]},
    {"name": "St. Hanshaugen", "kind": "park", "lat": 59.9265, "lon": 10.7410},
    {"name": "Munch Museum", "kind": "museum", "lat": 59.9060, "lon": 10.7553, "opened_on": datetime.date(2021, 10, 22)},
    {"name": "Deichman Bjørvika", "kind": "library", "lat": 59.9087, "lon": 10.7520, "tags": ["books", "cinema"]},
    {"name": "Central Café Bergen", "kind": "cafe", "lat": 60.3913, "lon": 5.3221},
]


class Nearby(NamedTuple):
    name: str
    kind: PlaceKind
    km: float


def distance_km(lat: float, lon: float) -> Expr[float]:
    """Great-circle distance from (lat, lon) to each place, in SQL (haversine; no extension needed)."""
    return sql_expr(
        "2 * 6371 * asin(sqrt(power(sin(radians(places.lat - $1) / 2), 2)"
        " + cos(radians($1)) * cos(radians(places.lat)) * power(sin(radians(places.lon - $2) / 2), 2)))",
        lat,
        lon,
        returns=FLOAT8,
    )


def nearest(db: HTTPDatabase, lat: float, lon: float, kinds: list[PlaceKind], limit: int = 3) -> list[Nearby]:
    """The ``limit`` places of these kinds nearest to (lat, lon)."""
    km = distance_km(lat, lon)
    query = (
        select(places.name, places.kind, km)
        .where(places.kind.in_(kinds), km.lt(50.0))
        .order_by(km, places.name)
        .limit(limit)
        .map(Nearby)
    )
    return db.all(query)


def create(db: HTTPDatabase) -> None:
    """The schema and the dataset (one statement per request for the DDL, then one insert)."""
    with open(SCHEMA) as f:
        statements = [s.strip() for s in f.read().split(";")]
    for statement in statements:
        lines = [line for line in statement.splitlines() if not line.startswith("--")]
        if any(line.strip() for line in lines):
            db.sql("\n".join(lines))
    ids = db.all(places.insert(*PLACES))
    first_cafe = next(p["id"] for p in ids if p["kind"] == "cafe")
    db.all(visits.insert({"place_id": first_cafe, "visitor": "ada"}, {"place_id": first_cafe, "visitor": "bo"}))


def report(db: HTTPDatabase) -> str:
    """What the example prints."""
    lines = ["Nearest cafés and parks to Oslo Central Station (59.9111, 10.7528):"]
    for place in nearest(db, 59.9111, 10.7528, ["cafe", "park"]):
        lines.append(f"  {place.name:<18} {place.kind:<8} {place.km:5.2f} km")
    per_kind, visited, newest = db.batch(
        select(places.kind, count()).group_by(places.kind).order_by(places.kind),
        select(places.name, count(visits.id)).join(visits, visits.place_id.eq(places.id)).group_by(places.name),
        places.find(places.opened_on.is_not_null()).order_by(places.opened_on.desc()).limit(1),
    )
    lines.append("Places per kind: " + ", ".join(f"{kind} {n}" for kind, n in per_kind))
    lines.append("Visited: " + ", ".join(f"{name} ({n})" for name, n in visited))
    lines.append(f"Newest: {newest[0]['name']} ({newest[0]['opened_on']})")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run against $DATABASE_URL through the SQL-over-HTTP endpoint $NEON_FETCH_ENDPOINT."""
    endpoint = os.environ.get("NEON_FETCH_ENDPOINT")
    with neon(os.environ["DATABASE_URL"], fetch_endpoint=endpoint) as sql:
        db = HTTPDatabase(sql)
        create(db)
        sys.stdout.write(report(db))


if __name__ == "__main__":
    main()
