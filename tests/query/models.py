"""Typed models of the Postgres schema public, written by neon_query codegen.

Do not edit: rerun ``python -m neon_query codegen`` (``--check`` tells CI when this file is stale).
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Literal, Never, NotRequired, TypedDict

from neon_query import Col, ColumnSpec, JSONValue, Outer, Table


Mood = Literal["happy", "sad", "so-so"]
"""Enum public.mood."""


class ActiveAuthorsRow(TypedDict):
    """A whole row of public.active_authors."""

    id: int | None
    email: str | None
    posts: int | None


class ActiveAuthorsWhere(TypedDict, total=False):
    """Equality conditions on public.active_authors."""

    id: int | None
    email: str | None
    posts: int | None


class ActiveAuthorsOuter(Outer[ActiveAuthorsRow]):
    """The columns of public.active_authors typed nullable, for LEFT JOINs."""

    id: Col[int | None]
    email: Col[str | None]
    posts: Col[int | None]


class ActiveAuthorsTable(Table[ActiveAuthorsRow, Never, Never, ActiveAuthorsWhere]):
    """View public.active_authors: Users with at least one post."""

    __tablename__ = "active_authors"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("id", "id", "int8"),
        ColumnSpec("email", "email", "text"),
        ColumnSpec("posts", "posts", "int8"),
    )
    __outer_class__ = ActiveAuthorsOuter

    id: Col[int | None]
    """id bigint"""
    email: Col[str | None]
    """email email"""
    posts: Col[int | None]
    """posts bigint"""
    outer: ActiveAuthorsOuter


active_authors = ActiveAuthorsTable()
"""View public.active_authors: Users with at least one post."""


class CountersRow(TypedDict):
    """A whole row of public.counters."""

    name: str
    value: int
    hits: int
    notes: list[JSONValue] | None
    last_seen: datetime.datetime | None
    class_: str | None
    find_: int | None


class CountersInsert(TypedDict):
    """A row to insert into public.counters."""

    name: str
    value: NotRequired[int]
    hits: NotRequired[int]
    notes: NotRequired[list[JSONValue] | None]
    last_seen: NotRequired[datetime.datetime | None]
    class_: NotRequired[str | None]
    find_: NotRequired[int | None]


class CountersUpdate(TypedDict, total=False):
    """New values for public.counters."""

    name: str
    value: int
    hits: int
    notes: list[JSONValue] | None
    last_seen: datetime.datetime | None
    class_: str | None
    find_: int | None


class CountersWhere(TypedDict, total=False):
    """Equality conditions on public.counters."""

    name: str
    value: int
    hits: int
    notes: list[JSONValue] | None
    last_seen: datetime.datetime | None
    class_: str | None
    find_: int | None


class CountersOuter(Outer[CountersRow]):
    """The columns of public.counters typed nullable, for LEFT JOINs."""

    name: Col[str | None]
    value: Col[int | None]
    hits: Col[int | None]
    notes: Col[list[JSONValue] | None]
    last_seen: Col[datetime.datetime | None]
    class_: Col[str | None]
    find_: Col[int | None]


class CountersTable(Table[CountersRow, CountersInsert, CountersUpdate, CountersWhere]):
    """Table public.counters."""

    __tablename__ = "counters"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("name", "name", "text"),
        ColumnSpec("value", "value", "int8"),
        ColumnSpec("hits", "hits", "int4"),
        ColumnSpec("notes", "notes", "jsonb[]", json=True),
        ColumnSpec("last_seen", "last seen", "timestamptz"),
        ColumnSpec("class_", "class", "text"),
        ColumnSpec("find_", "find", "int4"),
    )
    __primary_key__ = ("name",)
    __outer_class__ = CountersOuter

    name: Col[str]
    """name text"""
    value: Col[int]
    """value bigint (identity by default)"""
    hits: Col[int]
    """hits integer (default 0)"""
    notes: Col[list[JSONValue] | None]
    """notes jsonb[]"""
    last_seen: Col[datetime.datetime | None]
    """last seen timestamp with time zone"""
    class_: Col[str | None]
    """class text"""
    find_: Col[int | None]
    """find integer"""
    outer: CountersOuter


counters = CountersTable()
"""Table public.counters."""


class MeasurementsRow(TypedDict):
    """A whole row of public.measurements."""

    city: str
    taken_on: datetime.date
    reading: decimal.Decimal


class MeasurementsInsert(TypedDict):
    """A row to insert into public.measurements."""

    city: str
    taken_on: datetime.date
    reading: decimal.Decimal


class MeasurementsUpdate(TypedDict, total=False):
    """New values for public.measurements."""

    city: str
    taken_on: datetime.date
    reading: decimal.Decimal


class MeasurementsWhere(TypedDict, total=False):
    """Equality conditions on public.measurements."""

    city: str
    taken_on: datetime.date
    reading: decimal.Decimal


class MeasurementsOuter(Outer[MeasurementsRow]):
    """The columns of public.measurements typed nullable, for LEFT JOINs."""

    city: Col[str | None]
    taken_on: Col[datetime.date | None]
    reading: Col[decimal.Decimal | None]


class MeasurementsTable(Table[MeasurementsRow, MeasurementsInsert, MeasurementsUpdate, MeasurementsWhere]):
    """Partitioned table public.measurements."""

    __tablename__ = "measurements"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("city", "city", "text"),
        ColumnSpec("taken_on", "taken_on", "date"),
        ColumnSpec("reading", "reading", "numeric"),
    )
    __outer_class__ = MeasurementsOuter

    city: Col[str]
    """city text"""
    taken_on: Col[datetime.date]
    """taken_on date"""
    reading: Col[decimal.Decimal]
    """reading numeric"""
    outer: MeasurementsOuter


measurements = MeasurementsTable()
"""Partitioned table public.measurements."""


class PostStatsRow(TypedDict):
    """A whole row of public.post_stats."""

    author_id: int | None
    n: int | None
    total_score: int | None


class PostStatsWhere(TypedDict, total=False):
    """Equality conditions on public.post_stats."""

    author_id: int | None
    n: int | None
    total_score: int | None


class PostStatsOuter(Outer[PostStatsRow]):
    """The columns of public.post_stats typed nullable, for LEFT JOINs."""

    author_id: Col[int | None]
    n: Col[int | None]
    total_score: Col[int | None]


class PostStatsTable(Table[PostStatsRow, Never, Never, PostStatsWhere]):
    """Materialized view public.post_stats."""

    __tablename__ = "post_stats"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("author_id", "author_id", "int8"),
        ColumnSpec("n", "n", "int8"),
        ColumnSpec("total_score", "total_score", "int8"),
    )
    __outer_class__ = PostStatsOuter

    author_id: Col[int | None]
    """author_id bigint"""
    n: Col[int | None]
    """n bigint"""
    total_score: Col[int | None]
    """total_score bigint"""
    outer: PostStatsOuter


post_stats = PostStatsTable()
"""Materialized view public.post_stats."""


class PostsRow(TypedDict):
    """A whole row of public.posts."""

    id: int
    author_id: int | None
    title: str
    body: str
    score: int
    rating: float | None
    meta: JSONValue | None
    token: uuid.UUID
    published_on: datetime.date | None


class PostsInsert(TypedDict):
    """A row to insert into public.posts."""

    id: NotRequired[int]
    author_id: NotRequired[int | None]
    title: str
    body: NotRequired[str]
    score: NotRequired[int]
    rating: NotRequired[float | None]
    meta: NotRequired[JSONValue | None]
    token: NotRequired[uuid.UUID]
    published_on: NotRequired[datetime.date | None]


class PostsUpdate(TypedDict, total=False):
    """New values for public.posts."""

    id: int
    author_id: int | None
    title: str
    body: str
    score: int
    rating: float | None
    meta: JSONValue | None
    token: uuid.UUID
    published_on: datetime.date | None


class PostsWhere(TypedDict, total=False):
    """Equality conditions on public.posts."""

    id: int
    author_id: int | None
    title: str
    body: str
    score: int
    rating: float | None
    meta: JSONValue | None
    token: uuid.UUID
    published_on: datetime.date | None


class PostsOuter(Outer[PostsRow]):
    """The columns of public.posts typed nullable, for LEFT JOINs."""

    id: Col[int | None]
    author_id: Col[int | None]
    title: Col[str | None]
    body: Col[str | None]
    score: Col[int | None]
    rating: Col[float | None]
    meta: Col[JSONValue | None]
    token: Col[uuid.UUID | None]
    published_on: Col[datetime.date | None]


class PostsTable(Table[PostsRow, PostsInsert, PostsUpdate, PostsWhere]):
    """Table public.posts."""

    __tablename__ = "posts"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("id", "id", "int4"),
        ColumnSpec("author_id", "author_id", "int8"),
        ColumnSpec("title", "title", "text"),
        ColumnSpec("body", "body", "text"),
        ColumnSpec("score", "score", "int4"),
        ColumnSpec("rating", "rating", "float8"),
        ColumnSpec("meta", "meta", "json", json=True),
        ColumnSpec("token", "token", "uuid"),
        ColumnSpec("published_on", "published_on", "date"),
    )
    __primary_key__ = ("id",)
    __unique__ = (("author_id", "title"),)
    __foreign_keys__ = (
        (("author_id",), "public.users", ("id",)),
    )
    __outer_class__ = PostsOuter

    id: Col[int]
    """id integer (default nextval('posts_id_seq'::regclass))"""
    author_id: Col[int | None]
    """author_id bigint"""
    title: Col[str]
    """title text"""
    body: Col[str]
    """body text (default ''::text)"""
    score: Col[int]
    """score integer (default 0)"""
    rating: Col[float | None]
    """rating double precision"""
    meta: Col[JSONValue | None]
    """meta json"""
    token: Col[uuid.UUID]
    """token uuid (default gen_random_uuid())"""
    published_on: Col[datetime.date | None]
    """published_on date"""
    outer: PostsOuter


posts = PostsTable()
"""Table public.posts."""


class UsersRow(TypedDict):
    """A whole row of public.users."""

    id: int
    email: str
    """Unique, checked by the email domain."""
    name: str | None
    mood: Mood
    moods: list[Mood]
    tags: list[str] | None
    settings: JSONValue
    balance: decimal.Decimal
    created_at: datetime.datetime
    CreatedBy: str | None
    order: int | None
    email_domain: str | None


class UsersInsert(TypedDict):
    """A row to insert into public.users."""

    email: str
    """Unique, checked by the email domain."""
    name: NotRequired[str | None]
    mood: NotRequired[Mood]
    moods: NotRequired[list[Mood]]
    tags: NotRequired[list[str] | None]
    settings: NotRequired[JSONValue]
    balance: NotRequired[decimal.Decimal]
    created_at: NotRequired[datetime.datetime]
    CreatedBy: NotRequired[str | None]
    order: NotRequired[int | None]


class UsersUpdate(TypedDict, total=False):
    """New values for public.users."""

    email: str
    """Unique, checked by the email domain."""
    name: str | None
    mood: Mood
    moods: list[Mood]
    tags: list[str] | None
    settings: JSONValue
    balance: decimal.Decimal
    created_at: datetime.datetime
    CreatedBy: str | None
    order: int | None


class UsersWhere(TypedDict, total=False):
    """Equality conditions on public.users."""

    id: int
    email: str
    """Unique, checked by the email domain."""
    name: str | None
    mood: Mood
    moods: list[Mood]
    tags: list[str] | None
    settings: JSONValue
    balance: decimal.Decimal
    created_at: datetime.datetime
    CreatedBy: str | None
    order: int | None
    email_domain: str | None


class UsersOuter(Outer[UsersRow]):
    """The columns of public.users typed nullable, for LEFT JOINs."""

    id: Col[int | None]
    email: Col[str | None]
    name: Col[str | None]
    mood: Col[Mood | None]
    moods: Col[list[Mood] | None]
    tags: Col[list[str] | None]
    settings: Col[JSONValue | None]
    balance: Col[decimal.Decimal | None]
    created_at: Col[datetime.datetime | None]
    CreatedBy: Col[str | None]
    order: Col[int | None]
    email_domain: Col[str | None]


class UsersTable(Table[UsersRow, UsersInsert, UsersUpdate, UsersWhere]):
    """Table public.users: People who sign in."""

    __tablename__ = "users"
    __schema__ = "public"
    __columns__ = (
        ColumnSpec("id", "id", "int8", generated=True),
        ColumnSpec("email", "email", "text"),
        ColumnSpec("name", "name", "text"),
        ColumnSpec("mood", "mood", "mood"),
        ColumnSpec("moods", "moods", "mood[]", param_cast="mood[]", select_cast="text[]"),
        ColumnSpec("tags", "tags", "text[]"),
        ColumnSpec("settings", "settings", "jsonb", json=True),
        ColumnSpec("balance", "balance", "numeric"),
        ColumnSpec("created_at", "created_at", "timestamptz"),
        ColumnSpec("CreatedBy", "CreatedBy", "varchar"),
        ColumnSpec("order", "order", "int4"),
        ColumnSpec("email_domain", "email_domain", "text", generated=True),
    )
    __primary_key__ = ("id",)
    __unique__ = (("email",),)
    __outer_class__ = UsersOuter

    id: Col[int]
    """id bigint (identity always)"""
    email: Col[str]
    """email email: Unique, checked by the email domain."""
    name: Col[str | None]
    """name text"""
    mood: Col[Mood]
    """mood mood (default 'happy'::mood)"""
    moods: Col[list[Mood]]
    """moods mood[] (default '{}'::mood[])"""
    tags: Col[list[str] | None]
    """tags text[]"""
    settings: Col[JSONValue]
    """settings jsonb (default '{}'::jsonb)"""
    balance: Col[decimal.Decimal]
    """balance numeric(12,2) (default 0)"""
    created_at: Col[datetime.datetime]
    """created_at timestamp with time zone (default now())"""
    CreatedBy: Col[str | None]
    """CreatedBy short_text"""
    order: Col[int | None]
    """order integer"""
    email_domain: Col[str | None]
    """email_domain text (generated always as split_part((email)::text, '@'::text, 2))"""
    outer: UsersOuter


users = UsersTable()
"""Table public.users: People who sign in."""
