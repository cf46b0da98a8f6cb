"""Typed models of the Postgres schema public, written by neon_query codegen.

Do not edit: rerun ``python -m neon_query codegen`` (``--check`` tells CI when this file is stale).
"""

from __future__ import annotations

import datetime
from typing import Literal, NotRequired, TypedDict

from neon_query import Col, ColumnSpec, Outer, Table


PlaceKind = Literal["cafe", "park", "museum", "library"]
"""Enum public.place_kind."""


class PlacesRow(TypedDict):
    """A whole row of public.places."""

    id: int
    name: str
    kind: PlaceKind
    lat: float
    lon: float
    tags: list[str]
    opened_on: datetime.date | None


class PlacesInsert(TypedDict):
    """A row to insert into public.places."""

    id: NotRequired[int]
    name: str
    kind: PlaceKind
    lat: float
    lon: float
    tags: NotRequired[list[str]]
    opened_on: NotRequired[datetime.date | None]


class PlacesUpdate(TypedDict, total=False):
    """New values for public.places."""

    id: int
    name: str
    kind: PlaceKind
    lat: float
    lon: float
    tags: list[str]
    opened_on: datetime.date | None


class PlacesWhere(TypedDict, total=False):
    """Equality conditions on public.places."""

    id: int
    name: str
    kind: PlaceKind
    lat: float
    lon: float
    tags: list[str]
    opened_on: datetime.date | None


class PlacesOuter(Outer[PlacesRow]):
    """The columns of public.places typed nullable, for LEFT JOINs."""

    id: Col[int | None]
    name: Col[str | None]
    kind: Col[PlaceKind | None]
    lat: Col[float | None]
    lon: Col[float | None]
    tags: Col[list[str] | None]
    opened_on: Col[datetime.date | None]


class PlacesTable(Table[PlacesRow, PlacesInsert, PlacesUpdate, PlacesWhere]):
    """Table public.places: Points of interest with WGS84 coordinates."""

    __tablename__ = "places"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("id", "id", "int4"),
        ColumnSpec("name", "name", "text"),
        ColumnSpec("kind", "kind", "place_kind"),
        ColumnSpec("lat", "lat", "float8"),
        ColumnSpec("lon", "lon", "float8"),
        ColumnSpec("tags", "tags", "text[]"),
        ColumnSpec("opened_on", "opened_on", "date"),
    )
    __primary_key__ = ("id",)
    __unique__ = (("name",),)
    __outer_class__ = PlacesOuter

    id: Col[int]
    """id integer (default nextval('places_id_seq'::regclass))"""
    name: Col[str]
    """name text"""
    kind: Col[PlaceKind]
    """kind place_kind"""
    lat: Col[float]
    """lat double precision"""
    lon: Col[float]
    """lon double precision"""
    tags: Col[list[str]]
    """tags text[] (default '{}'::text[])"""
    opened_on: Col[datetime.date | None]
    """opened_on date"""
    outer: PlacesOuter


places = PlacesTable()
"""Table public.places: Points of interest with WGS84 coordinates."""


class VisitsRow(TypedDict):
    """A whole row of public.visits."""

    id: int
    place_id: int
    visitor: str
    visited_at: datetime.datetime


class VisitsInsert(TypedDict):
    """A row to insert into public.visits."""

    place_id: int
    visitor: str
    visited_at: NotRequired[datetime.datetime]


class VisitsUpdate(TypedDict, total=False):
    """New values for public.visits."""

    place_id: int
    visitor: str
    visited_at: datetime.datetime


class VisitsWhere(TypedDict, total=False):
    """Equality conditions on public.visits."""

    id: int
    place_id: int
    visitor: str
    visited_at: datetime.datetime


class VisitsOuter(Outer[VisitsRow]):
    """The columns of public.visits typed nullable, for LEFT JOINs."""

    id: Col[int | None]
    place_id: Col[int | None]
    visitor: Col[str | None]
    visited_at: Col[datetime.datetime | None]


class VisitsTable(Table[VisitsRow, VisitsInsert, VisitsUpdate, VisitsWhere]):
    """Table public.visits."""

    __tablename__ = "visits"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("id", "id", "int8", generated=True),
        ColumnSpec("place_id", "place_id", "int4"),
        ColumnSpec("visitor", "visitor", "text"),
        ColumnSpec("visited_at", "visited_at", "timestamptz"),
    )
    __primary_key__ = ("id",)
    __foreign_keys__ = (
        (("place_id",), "public.places", ("id",)),
    )
    __outer_class__ = VisitsOuter

    id: Col[int]
    """id bigint (identity always)"""
    place_id: Col[int]
    """place_id integer"""
    visitor: Col[str]
    """visitor text"""
    visited_at: Col[datetime.datetime]
    """visited_at timestamp with time zone (default now())"""
    outer: VisitsOuter


visits = VisitsTable()
"""Table public.visits."""
