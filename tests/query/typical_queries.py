"""A module of N typical neon_query queries, as text: what bench/bench_query.py times mypy on."""

from __future__ import annotations

HEADER = '''"""{n} typical queries (generated for the type-checking benchmark)."""

from __future__ import annotations

import datetime

from neon_query import Database, and_, count, insert, max_, or_, select, sum_, update
from tests.query.models import CountersRow, Mood, PostsRow, UsersRow, counters, posts, users

'''

TEMPLATES = [
    '''def q{i}(db: Database, uid: int) -> UsersRow | None:
    return db.maybe_one(users.find_one({{"id": uid + {i}}}))
''',
    '''def q{i}(db: Database) -> list[tuple[int, str]]:
    return db.all(select(users.id, users.email).where(users.mood.eq("sad"), users.id.gt({i})).order_by(users.email).limit(10))
''',
    '''def q{i}(db: Database) -> list[tuple[str, str | None, int | None]]:
    return db.all(
        select(users.email, posts.outer.title, posts.outer.score)
        .left_join(posts, and_(posts.author_id.eq(users.id), posts.score.ge({i})))
        .where(or_(users.name.is_null(), users.name.ilike("%{i}%")))
    )
''',
    '''def q{i}(db: Database) -> list[tuple[int | None, int, int | None]]:
    return db.all(
        select(posts.author_id, count(), sum_(posts.score)).group_by(posts.author_id).having(count().gt({i}))
    )
''',
    '''def q{i}(db: Database) -> int:
    return db.one(insert(users).values({{"email": "u{i}@example.com", "mood": "happy"}}).returning(users.id).scalars())
''',
    '''def q{i}(db: Database) -> list[PostsRow]:
    return db.all(posts.update({{"author_id": {i}}}, {{"score": {i}, "title": "t{i}"}}))
''',
    '''def q{i}(db: Database) -> list[str]:
    return db.all(select(posts.title).where(posts.author_id.in_(select(users.id).where(users.mood.eq("happy")))).scalars())
''',
    '''def q{i}(db: Database) -> CountersRow:
    return db.one(
        insert(counters).values({{"name": "c{i}", "hits": {i}}}).on_conflict_do_update(counters.name).returning(counters)
    )
''',
    '''def q{i}(db: Database) -> tuple[Mood, datetime.datetime] | None:
    return db.maybe_one(select(users.mood, users.created_at).where(users.email.eq("x{i}@example.com")))
''',
    '''def q{i}(db: Database) -> list[tuple[str | None]]:
    return db.all(update(users).set({{"name": "n{i}"}}).where(users.id.eq({i})).returning(users.name))
''',
    '''def q{i}(db: Database) -> str | None:
    return db.one(select(max_(posts.title)).where(posts.published_on.lt(datetime.date(2026, 1, {d}))).scalars())
''',
]


def typical_queries_module(n: int = 200) -> str:
    """The module's source: ``n`` functions, cycling through the templates."""
    parts = [HEADER.format(n=n)]
    for i in range(n):
        parts.append("\n" + TEMPLATES[i % len(TEMPLATES)].format(i=i, d=1 + i % 28) + "\n")
    return "".join(parts)
