"""Type-checked (never run): what mypy --strict and pyright strict infer for neon_query code.

tests/test_query_typing.py runs both checkers once over this file. Every line ending in
``# expect-error`` must get an error from each checker; every other line must get none.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Generator
from dataclasses import dataclass
from typing import NamedTuple, assert_type

from neon_query import (
    INT4,
    INT8,
    TEXT,
    Col,
    AsyncDatabase,
    AsyncExecutor,
    AsyncHTTPDatabase,
    AsyncTx,
    Database,
    Executor,
    Expr,
    HTTPDatabase,
    JSONValue,
    ReadCommitted,
    RepeatableRead,
    Select,
    Serializable,
    Tx,
    and_,
    avg,
    count,
    delete,
    exists,
    insert,
    max_,
    or_,
    raw,
    run_in_transaction,
    run_in_transaction_async,
    select,
    sum_,
    update,
)
from neon_sync import Client
from neon_trio import Client as AsyncClient
from tests.query.models import (
    CountersRow,
    Mood,
    PostsRow,
    UsersInsert,
    UsersRow,
    active_authors,
    counters,
    posts,
    users,
)


class Contact(NamedTuple):
    id: int
    email: str


@dataclass(frozen=True)
class Headline:
    title: str
    score: int


def selects(db: Database) -> None:
    assert_type(db.all(select(users)), list[UsersRow])
    assert_type(db.all(select(users.id, users.email)), list[tuple[int, str]])
    assert_type(db.one(select(users.name)), tuple[str | None])
    assert_type(db.all(select(users.email).scalars()), list[str])
    assert_type(db.maybe_one(select(users.mood).scalars()), Mood | None)
    assert_type(db.stream(select(posts.score).scalars()), Generator[int, None, None])
    assert_type(
        db.one(
            select(
                users.id, users.email, users.name, users.mood, users.moods, users.tags,
                users.settings, users.balance, users.created_at, users.CreatedBy, users.order, users.email_domain,
            )
        ),
        tuple[
            int, str, str | None, Mood, list[Mood], list[str] | None,
            JSONValue, decimal.Decimal, datetime.datetime, str | None, int | None, str | None,
        ],
    )
    assert_type(db.all(select(users, posts)), list[tuple[UsersRow, PostsRow]])
    assert_type(
        db.all(select(users.email, posts.outer.title, posts.outer).left_join(posts, posts.author_id.eq(users.id))),
        list[tuple[str, str | None, PostsRow | None]],
    )
    assert_type(db.all(select(users.id, users.email).map(Contact)), list[Contact])
    assert_type(db.all(select(posts.title, posts.score).map(Headline)), list[Headline])
    assert_type(db.one(select(count(), sum_(posts.score), max_(posts.title))), tuple[int, int | None, str | None])
    assert_type(db.one(select((posts.score + 1).label("next"))), tuple[int])
    assert_type(db.one(select(avg(posts.score), avg(posts.rating), avg(users.balance))), tuple[decimal.Decimal | None, float | None, decimal.Decimal | None])
    assert_type(db.all(select(users.id).where(users.id.in_(select(posts.author_id)))), list[tuple[int]])
    assert_type(
        select(users.id).where(and_(users.mood.eq("sad"), or_(users.name.is_null(), users.name.like("A%")))),
        Select[tuple[int]],
    )
    assert_type(exists(select(posts.id).where(posts.author_id.eq(users.id))), Expr[bool])
    assert_type(select(count()).from_(posts).where(posts.author_id.eq(users.id)).as_scalar(), Expr[int | None])
    assert_type(users.id, Col[int])
    assert_type(posts.outer.id, Col[int | None])
    posts.author_id.eq(users.id)
    users.id.eq(posts.author_id)
    users.mood.in_(["happy", "sad"])
    users.created_at.between(datetime.datetime(2026, 1, 1), datetime.datetime(2027, 1, 1))


def shortcuts(db: Database) -> None:
    assert_type(db.all(users.find({"mood": "sad"})), list[UsersRow])
    assert_type(db.maybe_one(users.find_one(users.email.eq("a@b.c"))), UsersRow | None)
    assert_type(db.all(users.insert({"email": "a@b.c"})), list[UsersRow])
    assert_type(db.all(users.update({"id": 1}, {"name": None})), list[UsersRow])
    assert_type(db.all(users.delete({"id": 1})), list[UsersRow])
    assert_type(db.one(users.count()), int)
    assert_type(db.one(counters.insert({"name": "x"})), CountersRow)


def writes(db: Database) -> None:
    row: UsersInsert = {"email": "x@y.z", "mood": "happy", "settings": {"a": [1, None]}}
    assert_type(db.one(insert(users).values(row).returning(users.id)), tuple[int])
    assert_type(db.all(insert(users).values([row, row]).returning(users.id).scalars()), list[int])
    assert_type(db.execute(insert(users).values(row).on_conflict_do_nothing(users.email)), int)
    assert_type(
        db.one(insert(counters).values({"name": "a"}).on_conflict_do_update(counters.name, {"hits": 1}).returning(counters)),
        CountersRow,
    )
    assert_type(db.all(update(users).set({"name": None}).where(users.id.eq(1)).returning(users.name)), list[tuple[str | None]])
    assert_type(db.execute(delete(posts).where(posts.score.lt(0))), int)


def raw_sql(db: Database, hdb: HTTPDatabase) -> None:
    assert_type(db.all(raw("SELECT id, name FROM users WHERE id = $1", (7,), returns=(INT8, TEXT.null))), list[tuple[int, str | None]])
    assert_type(db.all(raw("SELECT 1")), list[tuple[object, ...]])
    assert_type(db.all(raw("SELECT * FROM users", returns=UsersRow)), list[UsersRow])
    assert_type(db.all(raw("SELECT 1 AS id, 'a' AS email", returns=Contact)), list[Contact])
    assert_type(hdb.batch(select(users.id), users.find()), tuple[list[tuple[int]], list[UsersRow]])
    assert_type(db.batch(users.count(), posts.find(), read_only=True), tuple[list[int], list[PostsRow]])
    assert_type(hdb.batch(select(users.id), users.find(), users.count()), tuple[list[tuple[int]], list[UsersRow], list[int]])


def protocol(db: Database, hdb: HTTPDatabase) -> None:
    executors: list[Executor] = [db, hdb]  # both implement the one protocol
    for ex in executors:
        assert_type(ex.all(users.find()), list[UsersRow])
        assert_type(list(ex.stream(select(users.id).scalars())), list[int])


async def async_code(adb: AsyncDatabase) -> None:
    assert_type(await adb.all(select(users)), list[UsersRow])
    assert_type(await adb.one(select(users.id, users.email)), tuple[int, str])
    assert_type(await adb.maybe_one(users.find_one({"id": 1})), UsersRow | None)
    assert_type([h async for h in adb.stream(select(posts.score).scalars())], list[int])
    assert_type(await adb.execute(delete(posts)), int)
    assert_type(await adb.batch(users.count(), select(users.email)), tuple[list[int], list[tuple[str]]])


async def async_protocol(adb: AsyncDatabase, ahdb: AsyncHTTPDatabase) -> None:
    executors: list[AsyncExecutor] = [adb, ahdb]
    for ex in executors:
        assert_type(await ex.all(users.find()), list[UsersRow])
        assert_type([i async for i in ex.stream(select(users.id).scalars())], list[int])


async def async_http(ahdb: AsyncHTTPDatabase) -> None:
    assert_type(await ahdb.batch(select(users.id), users.find()), tuple[list[tuple[int]], list[UsersRow]])
    assert_type(await ahdb.one(users.count()), int)


async def async_transfer(tx: AsyncTx[Serializable]) -> int:
    return await tx.one(users.count())


async def async_transactions(client: AsyncClient) -> None:
    assert_type(await run_in_transaction_async(client, async_transfer), int)


def transfer(tx: Tx[RepeatableRead]) -> int:
    return tx.one(users.count())


def transactions(client: Client) -> None:
    assert_type(run_in_transaction(client, transfer), int)
    assert_type(run_in_transaction(client, transfer, isolation=Serializable), int)
    assert_type(run_in_transaction(client, lambda tx: tx.all(users.find())), list[UsersRow])


def errors(db: Database, client: Client) -> None:
    users.insert({"emial": "x@y.z"})  # expect-error
    users.insert({"name": "no email"})  # expect-error
    users.insert({"email": 1})  # expect-error
    users.insert({"email": "x@y.z", "id": 1})  # expect-error
    users.insert({"email": "x@y.z", "email_domain": "y.z"})  # expect-error
    insert(users).values({"email": "x@y.z", "mood": "angry"})  # expect-error
    users.update({"id": 1}, {"id": 2})  # expect-error
    users.find({"nope": 1})  # expect-error
    users.find({"id": "1"})  # expect-error
    active_authors.insert({"id": 1})  # expect-error
    users.mood.eq("deleted")  # expect-error
    users.id.eq("1")  # expect-error
    users.email.in_([1, 2])  # expect-error
    users.created_at.gt("2020-01-01")  # expect-error
    users.id.eq(users.email)  # expect-error
    select(users.email, users.id).map(Contact)  # expect-error
    select(users.id, users.email).scalars()  # expect-error
    db.all(insert(users).values({"email": "x@y.z"}))  # expect-error
    wrong: list[int] = db.all(select(users.email).scalars())  # expect-error
    run_in_transaction(client, transfer, isolation=ReadCommitted)  # expect-error
    raw("SELECT 1", returns=(INT4, "text"))  # expect-error
    update(users).set({"balance": 1.5})  # expect-error
