"""What neon_query queries compile to: exact SQL and parameters, identifier quoting, parameter
numbering across subqueries and fragments, and the mistakes refused before anything is sent."""

from __future__ import annotations

import pytest

from neon_proto.errors import ProgrammingError
from neon_query import (
    INT4,
    INT8,
    CompiledQuery,
    count,
    delete,
    exists,
    fn,
    insert,
    quote_ident,
    raw,
    select,
    sql_expr,
    update,
)
from tests.query.models import counters, posts, users


def test_a_select_with_every_clause() -> None:
    q = (
        select(users.mood, count())
        .where(users.email.like("%@x.io"), users.id.between(1, 9))
        .group_by(users.mood)
        .having(count().gt(1))
        .order_by(users.mood.desc(nulls="last"))
        .limit(5)
        .offset(10)
        .distinct()
        .for_update(skip_locked=True)
    )
    assert q.compile() == CompiledQuery(
        "SELECT DISTINCT users.mood, count(*) FROM users WHERE users.email LIKE $1 AND users.id BETWEEN $2 AND $3"
        " GROUP BY users.mood HAVING count(*) > $4 ORDER BY users.mood DESC NULLS LAST LIMIT $5 OFFSET $6"
        " FOR UPDATE SKIP LOCKED",
        ("%@x.io", 1, 9, 1, 5, 10),
    )


def test_a_whole_table_names_its_columns_and_aliases_casts() -> None:
    sql = select(users).compile().sql
    assert sql.startswith("SELECT users.id, users.email, users.name, users.mood, CAST(users.moods AS text[]) AS moods,")
    assert 'users."CreatedBy", users."order", users.email_domain FROM users' in sql


def test_identifiers_are_quoted_only_where_needed() -> None:
    assert quote_ident("users") == "users"
    assert quote_ident("order") == '"order"'
    assert quote_ident("CreatedBy") == '"CreatedBy"'
    assert quote_ident('we"ird name') == '"we""ird name"'
    assert quote_ident("_x1$") == "_x1$"


def test_parameters_are_numbered_through_subqueries_fragments_and_raw() -> None:
    inner = select(posts.author_id).where(posts.score.gt(5))
    q = select(users.id, sql_expr("$2 || $1", "a", "b", returns=INT4)).where(
        users.name.eq("n"),
        users.id.in_(inner),
        exists(select(posts.id).where(posts.author_id.eq(users.id), posts.title.eq("t"))),
        users.id.in_(raw("SELECT author_id FROM posts WHERE title = $1 AND score > $2", ("r", 3), returns=(INT8.null,))),
    )
    compiled = q.compile()
    assert compiled.params == ("a", "b", "n", 5, "t", "r", 3)
    assert "($2 || $1)" in compiled.sql
    assert "users.id IN (SELECT posts.author_id FROM posts WHERE posts.score > $4)" in compiled.sql
    assert "EXISTS (SELECT posts.id FROM posts WHERE posts.author_id = users.id AND posts.title = $5)" in compiled.sql
    assert "title = $6 AND score > $7" in compiled.sql


def test_dml_statements() -> None:
    assert insert(counters).values([{"name": "a", "hits": 1}, {"name": "b"}]).on_conflict_do_nothing(counters.name).compile() == (
        CompiledQuery(
            "INSERT INTO counters (name, hits) VALUES ($1, $2), ($3, DEFAULT) ON CONFLICT (name) DO NOTHING", ("a", 1, "b")
        )
    )
    upsert = insert(counters).values({"name": "a", "hits": 1}).on_conflict_do_update(counters.name).returning(counters.hits)
    assert upsert.compile().sql == (
        "INSERT INTO counters (name, hits) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET hits = EXCLUDED.hits"
        " RETURNING counters.hits"
    )
    assert update(users).set({"name": "x", "moods": ["sad"]}).where(users.id.eq(1)).compile() == CompiledQuery(
        "UPDATE users SET name = $1, moods = $2::mood[] WHERE users.id = $3", ("x", ["sad"], 1)
    )
    assert delete(posts).where(posts.id.eq(1)).returning(posts.id).compile() == CompiledQuery(
        "DELETE FROM posts WHERE posts.id = $1 RETURNING posts.id", (1,)
    )
    assert insert(counters).values({}).compile().sql == "INSERT INTO counters DEFAULT VALUES"  # type: ignore[arg-type]


def test_json_values_are_sent_as_json() -> None:
    from neon_proto.types import Json

    (value,) = update(users).set({"settings": {"a": 1}}).compile().params
    assert isinstance(value, Json)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: insert(users).values([]), "at least one row"),
        (lambda: select(users).scalars(), "exactly one column"),  # type: ignore[misc]
        (lambda: select(users.id).limit(-1), "non-negative"),
        (lambda: select(users.id).for_update(nowait=True, skip_locked=True), "not both"),
        (lambda: fn("lower(x); drop", users.name, returns=INT4), "not a function name"),
        (lambda: sql_expr("$2", 1, returns=INT4).sql(), "uses $2 but has 1 value"),
        (lambda: select(), "at least one"),
        (lambda: update(users).set({}).compile(), "nothing to set"),
        (lambda: insert(counters).values({"name": "a"}).on_conflict_do_update(counters.name).compile(), "nothing to set"),
        (lambda: users.update({}, {"name": "x"}) and users.delete(None), "where is required"),  # type: ignore[arg-type]
        (lambda: select(users.id).order_by(users.id.asc(nulls="middle")), "first' or 'last"),
        (lambda: raw("SELECT 1", returns=(1,)), "codecs"),  # type: ignore[arg-type]
        (lambda: users.find(42), "dict of column values"),  # type: ignore[arg-type]
    ],
)
def test_mistakes_are_refused_with_a_clear_message(build: object, message: str) -> None:
    with pytest.raises((ProgrammingError, ValueError, TypeError)) as info:
        build()  # type: ignore[operator]
    assert message in str(info.value)


def test_find_one_by_a_key_needs_no_limit() -> None:
    assert "LIMIT" not in users.find_one({"id": 1}).compile().sql  # primary key
    assert "LIMIT" not in users.find_one({"email": "a@b.c"}).compile().sql  # unique
    assert "LIMIT" not in posts.find_one({"author_id": 1, "title": "t"}).compile().sql  # unique pair
    assert users.find_one({"name": "Ann"}).compile().sql.endswith(" LIMIT $2")
    assert posts.find_one({"title": "t"}).compile().sql.endswith(" LIMIT $2")
    assert users.find_one({"id": None}).compile().sql.endswith(" LIMIT $1")  # type: ignore[arg-type]  # IS NULL pins nothing
    assert users.find_one(users.id.eq(1)).compile().sql.endswith(" LIMIT $2")
