"""neon_query against the real Postgres, over TCP and WebSocket (Client) and HTTP (neon() through our proxy):
every clause, NULLs, arrays, enums, JSON, ON CONFLICT, RETURNING, joins with missing rows."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any, NamedTuple

import pytest

from neon_proto.errors import IntegrityError, ProgrammingError
from neon_query import (
    INT4,
    INT8,
    TEXT,
    Database,
    NoRowsError,
    TooManyRowsError,
    and_,
    avg,
    cast,
    coalesce,
    count,
    delete,
    exists,
    fn,
    insert,
    max_,
    min_,
    not_,
    or_,
    param,
    raw,
    select,
    sql_expr,
    sum_,
    update,
)
from neon_sync import Client, Pool, connect
from neon_sync.embedded import EmbeddedPostgres
from tests.query.fixtures import client, db, http_sql, query_db, ws_client  # noqa: F401 - fixtures
from tests.query.models import MeasurementsInsert, counters, measurements, posts, users

pytestmark = pytest.mark.slow


def seed(db: Any) -> tuple[int, int, int]:
    """Three users (one without posts), four posts."""
    ann, bob, cid = db.all(
        insert(users)
        .values([
            {"email": "ann@example.com", "name": "Ann", "mood": "happy", "tags": ["a", "b"], "settings": {"theme": "dark"}},
            {"email": "bob@example.org", "name": None, "mood": "sad", "moods": ["sad", "so-so"], "balance": decimal.Decimal("12.50")},
            {"email": "cid@example.com", "name": "Cid", "order": 3},
        ])
        .returning(users.id)
        .scalars()
    )
    db.execute(
        insert(posts).values([
            {"author_id": ann, "title": "first", "score": 5, "rating": 4.5, "meta": [1, "x"]},
            {"author_id": ann, "title": "second", "score": 7, "published_on": datetime.date(2026, 12, 1)},
            {"author_id": bob, "title": "hello", "score": 1},
            {"author_id": None, "title": "orphan", "score": 0},
        ])
    )
    return ann, bob, cid


def test_whole_row_select_decodes_every_type(db: Any) -> None:
    ann, bob, _ = seed(db)
    row = db.one(users.find({"id": bob}))
    assert row["email"] == "bob@example.org"
    assert row["name"] is None
    assert row["mood"] == "sad"
    assert row["moods"] == ["sad", "so-so"]  # an enum array decodes to a list of labels
    assert row["balance"] == decimal.Decimal("12.50")
    assert row["settings"] == {}
    assert row["email_domain"] == "example.org"  # GENERATED ALWAYS, computed by the server
    assert isinstance(row["created_at"], datetime.datetime) and row["created_at"].tzinfo is not None
    assert set(row) == {a.attr for a in users._columns}
    first = db.one(users.find({"id": ann}))
    assert first["tags"] == ["a", "b"] and first["settings"] == {"theme": "dark"}
    post = db.one(posts.find({"title": "first"}))
    assert post["meta"] == [1, "x"] and post["rating"] == 4.5 and isinstance(post["token"], uuid.UUID)


def test_column_select_gives_tuples_and_scalars(db: Any) -> None:
    seed(db)
    rows = db.all(select(users.email, users.name).order_by(users.email))
    assert rows == [("ann@example.com", "Ann"), ("bob@example.org", None), ("cid@example.com", "Cid")]
    emails = db.all(select(users.email).where(users.email.like("%.com")).order_by(users.email.desc()).scalars())
    assert emails == ["cid@example.com", "ann@example.com"]


def test_every_comparison(db: Any) -> None:
    seed(db)
    score = posts.score

    def titles(cond: Any) -> list[str]:
        result: list[str] = db.all(select(posts.title).where(cond).order_by(posts.title).scalars())
        return result

    assert titles(score.eq(5)) == ["first"]
    assert titles(score.ne(5)) == ["hello", "orphan", "second"]
    assert titles(score.lt(5)) == ["hello", "orphan"]
    assert titles(score.le(5)) == ["first", "hello", "orphan"]
    assert titles(score.gt(5)) == ["second"]
    assert titles(score.ge(5)) == ["first", "second"]
    assert titles(score.in_([1, 7])) == ["hello", "second"]
    assert titles(score.in_([])) == []
    assert titles(score.between(1, 5)) == ["first", "hello"]
    assert titles(posts.title.like("%o%")) == ["hello", "orphan", "second"]
    assert titles(posts.title.ilike("F%")) == ["first"]
    assert titles(posts.author_id.is_null()) == ["orphan"]
    assert titles(posts.author_id.eq(None)) == ["orphan"]
    assert titles(posts.published_on.is_not_null()) == ["second"]
    assert titles(and_(score.gt(0), or_(posts.title.eq("first"), posts.title.eq("hello")))) == ["first", "hello"]
    assert titles(not_(score.gt(0))) == ["orphan"]
    assert titles((score.gt(4)) & ~(posts.title.eq("second"))) == ["first"]
    assert titles(posts.author_id.in_(select(users.id).where(users.mood.eq("sad")))) == ["hello"]
    assert titles(and_()) == ["first", "hello", "orphan", "second"]
    assert titles(or_()) == []


def test_null_comparisons_follow_sql(db: Any) -> None:
    seed(db)
    # rating = NULL is unknown in SQL; eq(None) becomes IS NULL instead
    assert db.one(select(count()).from_(posts).where(posts.rating.eq(None)).scalars()) == 3
    assert db.one(select(count()).from_(posts).where(posts.rating.ne(None)).scalars()) == 1
    assert db.one(select(count()).from_(posts).where(posts.rating.lt(10.0)).scalars()) == 1  # NULLs never match


def test_aggregates_group_by_having(db: Any) -> None:
    ann, bob, _ = seed(db)
    q = (
        select(posts.author_id, count(), sum_(posts.score), max_(posts.score), min_(posts.title), avg(posts.score))
        .where(posts.author_id.is_not_null())
        .group_by(posts.author_id)
        .having(count().ge(1))
        .order_by(posts.author_id)
    )
    assert db.all(q) == [
        (ann, 2, 12, 7, "first", decimal.Decimal("6.0000000000000000")),
        (bob, 1, 1, 1, "hello", decimal.Decimal("1.00000000000000000000")),
    ]
    assert db.one(select(sum_(posts.score)).where(posts.score.gt(100)).scalars()) is None
    assert db.one(select(count(posts.author_id, distinct=True)).scalars()) == 2


def test_inner_and_left_joins(db: Any) -> None:
    ann, bob, cid = seed(db)
    inner = db.all(select(users.email, posts.title).join(posts, posts.author_id.eq(users.id)).order_by(posts.title))
    assert [t for _, t in inner] == ["first", "hello", "second"]
    left = db.all(
        select(users.email, posts.outer.title, posts.outer)
        .left_join(posts, posts.author_id.eq(users.id))
        .order_by(users.email, posts.title)
    )
    assert [(e, t) for e, t, _ in left] == [
        ("ann@example.com", "first"), ("ann@example.com", "second"), ("bob@example.org", "hello"), ("cid@example.com", None)
    ]
    assert left[3][2] is None  # the whole missing row is None
    assert left[0][2]["title"] == "first" and left[0][2]["author_id"] == ann


def test_selecting_a_left_joined_column_without_outer_is_refused(db: Any) -> None:
    q = select(users.email, posts.title).left_join(posts, posts.author_id.eq(users.id))
    with pytest.raises(ProgrammingError, match=r"posts.outer.title"):
        q.compile()


def test_self_join_through_an_alias(db: Any) -> None:
    seed(db)
    other = users.alias("other")
    q = (
        select(users.email, other.email)
        .join(other, and_(other.mood.eq(users.mood), other.id.ne(users.id)))
        .order_by(users.email, other.email)
    )
    assert db.all(q) == [("ann@example.com", "cid@example.com"), ("cid@example.com", "ann@example.com")]
    assert "users AS other" in q.compile().sql


def test_whole_tables_side_by_side(db: Any) -> None:
    seed(db)
    rows = db.all(select(posts, users).join(users, users.id.eq(posts.author_id)).where(posts.title.eq("hello")))
    ((post, user),) = rows
    assert post["title"] == "hello" and user["email"] == "bob@example.org"


def test_limit_offset_distinct_order(db: Any) -> None:
    seed(db)
    q = select(posts.title).order_by(posts.score.desc(), posts.title).limit(2).offset(1).scalars()
    assert db.all(q) == ["first", "hello"]
    assert db.all(select(posts.author_id).distinct().where(posts.author_id.is_not_null()).scalars()).__len__() == 2
    on = select(posts.author_id, posts.title).distinct(posts.author_id).order_by(posts.author_id, posts.score.desc())
    assert [t for _, t in db.all(on)] == ["second", "hello", "orphan"]
    nulls = db.all(select(posts.rating).order_by(posts.rating.desc(nulls="last"), posts.title).scalars())
    assert nulls == [4.5, None, None, None]


def test_subqueries_and_exists(db: Any) -> None:
    ann, bob, cid = seed(db)
    has_posts = exists(select(posts.id).where(posts.author_id.eq(users.id)))
    assert db.all(select(users.id).where(not_(has_posts)).scalars()) == [cid]
    post_count = select(count()).from_(posts).where(posts.author_id.eq(users.id)).as_scalar()
    rows = db.all(select(users.email, post_count.label("n")).order_by(users.email))
    assert rows == [("ann@example.com", 2), ("bob@example.org", 1), ("cid@example.com", 0)]


def test_expressions_functions_and_casts(db: Any) -> None:
    seed(db)
    q = select(
        posts.score * 2,
        fn("upper", posts.title, returns=TEXT),
        cast(posts.score, INT8),
        coalesce(posts.rating, 0.0),
        sql_expr("length($1) + $2", "abc", 1, returns=INT4),
        param("p"),
    ).where(posts.title.eq("first"))
    assert db.one(q) == (10, "FIRST", 5, 4.5, 4, "p")


def test_for_update_locks_in_a_transaction(client: Client) -> None:
    db = Database(client)
    seed(db)
    client.query("BEGIN")
    rows = db.all(select(posts.id).where(posts.score.gt(4)).for_update(skip_locked=True))
    assert len(rows) == 2
    client.query("ROLLBACK")
    assert select(posts.id).for_update(mode="share", nowait=True).compile().sql.endswith("FOR SHARE NOWAIT")


def test_insert_returning_whole_rows_and_defaults(db: Any) -> None:
    (made,) = db.all(users.insert({"email": "dee@example.com"}))
    assert made["mood"] == "happy" and made["moods"] == [] and made["balance"] == decimal.Decimal("0.00")
    assert made["id"] >= 1 and made["email_domain"] == "example.com"
    (c,) = db.all(counters.insert({"name": "x"}))
    assert c["value"] == 1 and c["hits"] == 0  # identity by default, default


def test_insert_with_some_columns_missing_uses_default(db: Any) -> None:
    rows = db.all(
        insert(users)
        .values([{"email": "e1@x.io", "mood": "sad"}, {"email": "e2@x.io"}])
        .returning(users.email, users.mood)
    )
    assert rows == [("e1@x.io", "sad"), ("e2@x.io", "happy")]


def test_on_conflict_do_nothing_and_do_update(db: Any) -> None:
    db.execute(insert(counters).values({"name": "a", "hits": 1}))
    skipped = db.all(insert(counters).values({"name": "a", "hits": 5}).on_conflict_do_nothing(counters.name).returning(counters.name))
    assert skipped == []
    upserted = db.one(
        insert(counters).values({"name": "a", "hits": 5}).on_conflict_do_update(counters.name).returning(counters.hits).scalars()
    )
    assert upserted == 5
    added = db.one(
        insert(counters)
        .values({"name": "a", "hits": 1})
        .on_conflict_do_update(counters.name, {"hits": 100}, where=counters.hits.lt(10))
        .returning(counters)
    )
    assert added["hits"] == 100
    none = db.all(
        insert(counters).values({"name": "a"}).on_conflict_do_update([counters.name], {"hits": 0}, where=counters.hits.lt(10)).returning(counters.name)
    )
    assert none == []


def test_update_and_delete_with_returning(db: Any) -> None:
    ann, bob, cid = seed(db)
    changed = db.all(update(posts).set({"score": 50, "meta": {"edited": True}}).where(posts.author_id.eq(ann)).returning(posts.title, posts.meta))
    assert sorted(changed) == [("first", {"edited": True}), ("second", {"edited": True})]
    assert db.execute(update(users).set({"name": None}).where(users.id.eq(cid))) == 1
    assert db.one(users.find({"id": cid}))["name"] is None
    renamed = db.all(users.update({"email": "bob@example.org"}, {"name": "Bob", "moods": ["happy"]}))
    assert renamed[0]["name"] == "Bob" and renamed[0]["moods"] == ["happy"]
    gone = db.all(delete(posts).where(posts.author_id.is_null()).returning(posts.title).scalars())
    assert gone == ["orphan"]
    assert db.all(posts.delete({"title": "hello"}))[0]["author_id"] == bob
    assert db.execute(delete(posts).where(posts.score.gt(1000))) == 0


def test_shortcuts_find_find_one_count(db: Any) -> None:
    ann, _, _ = seed(db)
    assert db.one(posts.count()) == 4
    assert db.one(posts.count({"author_id": ann})) == 2
    assert db.one(posts.count(posts.score.gt(1))) == 2
    assert db.maybe_one(users.find_one({"email": "nobody@x.io"})) is None
    assert db.maybe_one(users.find_one(users.email.like("%.com")))["email"].endswith(".com")
    assert len(db.all(users.find())) == 3


def test_one_and_maybe_one_insist(db: Any) -> None:
    seed(db)
    with pytest.raises(NoRowsError):
        db.one(users.find({"email": "nobody@x.io"}))
    with pytest.raises(TooManyRowsError):
        db.one(users.find())
    with pytest.raises(TooManyRowsError):
        db.maybe_one(users.find())


def test_stream_yields_every_row(db: Any) -> None:
    seed(db)
    assert [t for t in db.stream(select(posts.title).order_by(posts.title).scalars())] == ["first", "hello", "orphan", "second"]


def test_stream_reads_a_portal_in_chunks(client: Client) -> None:
    db = Database(client)
    db.execute(raw("INSERT INTO counters (name, hits) SELECT 'c' || g, g FROM generate_series(1, 1050) g"))
    got = list(db.stream(select(counters.hits).order_by(counters.hits).scalars(), chunk_size=100))
    assert got == list(range(1, 1051))
    stream = db.stream(select(counters.name).where(counters.hits.gt(param(0))).scalars(), chunk_size=10)
    assert next(stream).startswith("c")
    stream.close()  # stopping early closes the portal: the connection is usable again
    assert client.transaction_status == "I"
    assert db.one(counters.count()) == 1050


def test_stream_as_the_first_operation_of_a_new_connection(pg: EmbeddedPostgres, query_db: str, client: Client) -> None:
    Database(client).execute(insert(counters).values([{"name": "a"}, {"name": "b"}]))
    with Client(pg.dsn(database=query_db), sslmode="disable") as fresh:  # a pipelined connect
        assert list(Database(fresh).stream(select(counters.name).order_by(counters.name).scalars())) == ["a", "b"]


def test_raw_queries_typed_by_codecs(db: Any) -> None:
    seed(db)
    rows = db.all(raw("SELECT id, name FROM users WHERE mood = $1 ORDER BY id", ("sad",), returns=(INT8, TEXT.null)))
    assert len(rows) == 1 and rows[0][1] is None
    with pytest.raises(ProgrammingError, match="column 1 has type OID 25"):
        db.all(raw("SELECT 'x'::text", returns=(INT4,)))
    with pytest.raises(ProgrammingError, match="column 1 is NULL"):
        db.all(raw("SELECT NULL::int4", returns=(INT4,)))
    with pytest.raises(ProgrammingError, match="returns 2 columns"):
        db.all(raw("SELECT 1, 2", returns=(INT4,)))

    class Pair(NamedTuple):
        a: int
        b: str

    assert db.all(raw("SELECT 1 AS a, 'x' AS b", returns=Pair)) == [Pair(1, "x")]
    assert db.all(raw("SELECT $1::int + $2::int", (2, 3))) == [(5,)]


def test_values_are_never_inlined(db: Any) -> None:
    evil = "x'); DROP TABLE users; --"
    compiled = select(users.id).where(users.email.eq(evil), users.name.in_([evil, "b"])).limit(3).compile()
    assert evil not in compiled.sql
    assert compiled.params == (evil, evil, "b", 3)
    assert db.all(select(users.id).where(users.email.eq(evil))) == []
    db.execute(insert(posts).values({"title": evil}))
    assert db.one(select(posts.title).scalars()) == evil


def test_keyword_and_mixed_case_columns_are_quoted(db: Any) -> None:
    db.execute(insert(users).values({"email": "q@x.io", "order": 9, "CreatedBy": "ops"}))
    assert db.one(select(users.order, users.CreatedBy)) == (9, "ops")
    sql = select(users.order, users.CreatedBy).compile().sql
    assert 'users."order"' in sql and 'users."CreatedBy"' in sql and "users.id" not in sql


def test_partitioned_parent_and_other_schema(db: Any) -> None:
    rows: list[MeasurementsInsert] = [{"city": "Oslo", "taken_on": datetime.date(2025, 6, 1), "reading": decimal.Decimal("1.5")},
            {"city": "Oslo", "taken_on": datetime.date(2026, 6, 1), "reading": decimal.Decimal("2.5")}]
    assert db.execute(insert(measurements).values(rows)) == 2
    assert db.one(select(sum_(measurements.reading)).scalars()) == decimal.Decimal("4.0")


def test_views_and_materialized_views(db: Any, client: Client) -> None:
    ann, bob, _ = seed(db)
    from tests.query.models import active_authors, post_stats

    assert db.all(select(active_authors.email, active_authors.posts).order_by(active_authors.email)) == [
        ("ann@example.com", 2), ("bob@example.org", 1)
    ]
    client.query("REFRESH MATERIALIZED VIEW post_stats")
    stats = db.all(post_stats.find({"author_id": ann}))
    assert stats == [{"author_id": ann, "n": 2, "total_score": 12}]


def test_server_errors_keep_their_class(db: Any) -> None:
    db.execute(insert(users).values({"email": "dup@x.io"}))
    with pytest.raises(IntegrityError) as info:
        db.execute(insert(users).values({"email": "dup@x.io"}))
    assert info.value.sqlstate == "23505"


def test_unknown_keys_and_generated_columns_are_refused_before_sending() -> None:
    with pytest.raises(ProgrammingError, match="no column 'emial'"):
        insert(users).values({"emial": "x"}).compile()  # type: ignore[arg-type]
    with pytest.raises(ProgrammingError, match="GENERATED ALWAYS"):
        update(users).set({"email_domain": "x"}).compile()  # type: ignore[typeddict-unknown-key]


def test_pool_and_dbapi_connections_run_queries(pg: EmbeddedPostgres, query_db: str, client: Client) -> None:
    seed(Database(client))
    with Pool(pg.dsn(database=query_db), max_size=2) as pool:
        pdb = Database(pool)
        assert pdb.one(users.count()) == 3
        assert [r for r in pdb.stream(select(users.email).order_by(users.email).scalars())][0] == "ann@example.com"
    conn = connect(pg.dsn(database=query_db))
    try:
        ddb = Database(conn)
        ddb.execute(insert(counters).values({"name": "dbapi"}))
        assert conn.client.transaction_status == "T"  # the DB-API transaction is the caller's
        conn.rollback()
        assert ddb.maybe_one(counters.find_one({"name": "dbapi"})) is None
        conn.commit()
        conn.autocommit = True
        ddb.execute(insert(counters).values({"name": "dbapi"}))
        assert ddb.one(counters.count({"name": "dbapi"})) == 1
    finally:
        conn.close()


def test_batch_runs_in_one_round_trip_and_one_transaction(db: Any) -> None:
    seed(db)
    ids, everyone, n = db.batch(
        select(users.id).order_by(users.id), users.find(), posts.count(), isolation_level="Serializable", read_only=True
    )
    assert len(ids) == 3 and isinstance(ids[0], tuple)
    assert {u["email"] for u in everyone} == {"ann@example.com", "bob@example.org", "cid@example.com"}
    assert n == [4]
    (made,), (again,) = db.batch(counters.insert({"name": "b1"}), counters.find({"name": "b1"}))
    assert made == again  # the second query sees the first one's row: same transaction
    with pytest.raises(IntegrityError):
        db.batch(counters.insert({"name": "once"}), counters.insert({"name": "once"}))
    assert db.maybe_one(counters.find_one({"name": "once"})) is None  # the first insert was rolled back
    with pytest.raises(Exception, match="read-only"):
        db.batch(counters.insert({"name": "ro"}), read_only=True)
    assert db.maybe_one(counters.find_one({"name": "ro"})) is None
    assert db.one(counters.count()) == 1
    assert db.batch() == ()


def test_a_python_comparison_instead_of_a_condition_gets_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"not bool \(== and != compare Python objects: write users.id.eq\(1\)\)"):
        select(users.id).where(users.id == 1)  # type: ignore[arg-type, comparison-overlap]
    with pytest.raises(TypeError, match="having"):
        select(users.id).group_by(users.id).having("count(*) > 1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="and_"):
        and_(users.id.eq(1), None)  # type: ignore[arg-type]


def test_compiled_queries_are_immutable_values() -> None:
    q = select(users.id).where(users.id.eq(1))
    first = q.compile()
    assert first == q.compile() and hash(first) == hash(q.compile())
    with pytest.raises(AttributeError):
        first.sql = "DROP TABLE users"  # type: ignore[misc]
    narrower = q.where(users.name.eq("x"))  # a builder step returns a new query; q is unchanged
    assert q.compile() == first and narrower.compile().params == (1, "x")


def test_json_arrays_round_trip(db: Any) -> None:
    notes: list[Any] = [{"a": 1}, [1, 2], "text", None]
    (row,) = db.all(counters.insert({"name": "j", "notes": notes}))
    assert row["notes"] == notes
    assert db.one(select(counters.notes).where(counters.name.eq("j")).scalars()) == notes


def test_columns_whose_names_are_not_identifiers(db: Any) -> None:
    when = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
    (row,) = db.all(counters.insert({"name": "odd", "last_seen": when, "class_": "c", "find_": 3}))
    assert (row["last_seen"], row["class_"], row["find_"]) == (when, "c", 3)
    assert db.one(select(counters.last_seen, counters.class_).where(counters.find_.eq(3))) == (when, "c")
    assert db.one(counters.find({"class_": "c"}))["name"] == "odd"
    sql = select(counters.last_seen).compile().sql
    assert sql == 'SELECT counters."last seen" AS last_seen FROM counters'
