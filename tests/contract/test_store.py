"""The store contract: the same tests against SQLite (embedded) and PostgreSQL (multi-node),
through the same models and Alembic migrations."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from voice.errors import Conflict
from voice.store import CallInfo, Store
from voice.store.database import alembic_config
from voice.store.models import Base, Meta

# Every service's tables are on the one declarative base; load them all.
for _package in ("ringback", "hotline", "conference"):
    if importlib.util.find_spec(f"{_package}.models") is not None:
        importlib.import_module(f"{_package}.models")

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def call_info(call_id: str, caller: str, callee: str, started: datetime, **changes) -> CallInfo:
    fields = {
        "call_id": call_id,
        "caller_id": caller,
        "callee_id": callee,
        "from_": "alice",
        "to": "bob",
        "state": "ringing",
        "reason": None,
        "started_at": started,
        "answered_at": None,
        "ended_at": None,
        **changes,
    }
    return CallInfo(**fields)


# --------------------------------------------------------------------------- migrations


async def test_the_migrations_build_exactly_the_models(database_url):
    store = Store.open(database_url)
    try:
        await store.migrate()
        await store.migrate()  # idempotent: every node runs it on start

        def check(connection) -> tuple[list, set[str], str | None]:
            context = MigrationContext.configure(connection)
            diff = compare_metadata(context, Base.metadata)
            return diff, set(inspect(connection).get_table_names()), context.get_current_revision()

        async with store.engine.connect() as connection:
            diff, tables, revision = await connection.run_sync(check)
        assert diff == []
        assert set(Base.metadata.tables) <= tables
        assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()
    finally:
        await store.close()


async def test_nodes_starting_together_migrate_once(postgres_server):
    # Several nodes share a PostgreSQL (a SQLite file belongs to one node).
    url = postgres_server.url(postgres_server.create_database())
    stores = [Store.open(url) for _ in range(3)]
    try:
        await asyncio.gather(*(s.migrate() for s in stores))
        secrets = await asyncio.gather(*(s.shared_secret("token_signing_key") for s in stores))
        assert len(set(secrets)) == 1  # the nodes agree on the deployment's signing key
    finally:
        for store in stores:
            await store.close()


# -------------------------------------------------------------------------------- users


async def test_users_and_their_uniqueness(store: Store):
    alice = await store.create_user("a" * 32, "alice", "Alice", "hash-a", "+8613800138000")
    assert alice.created_at.tzinfo is not None
    assert await store.user_by_username("alice") == alice
    assert await store.user_by_id("a" * 32) == alice
    assert await store.password_hash("alice") == (alice, "hash-a")
    assert await store.user_by_username("nobody") is None
    with pytest.raises(Conflict) as taken:
        await store.create_user("b" * 32, "alice", "Other", "h", None)
    assert taken.value.code == "username_taken"
    with pytest.raises(Conflict) as phone:
        await store.create_user("b" * 32, "bob", "Bob", "h", "+8613800138000")
    assert phone.value.code == "phone_taken"
    bob = await store.create_user("b" * 32, "bob", "Bob", "h", None)
    with pytest.raises(Conflict):
        await store.update_user(bob.id, phone="+8613800138000")
    updated = await store.update_user(bob.id, display_name="Bobby", phone="+14155550100")
    assert (updated.display_name, updated.phone) == ("Bobby", "+14155550100")
    found = await store.users_by_phone(["+14155550100", "+8613800138000", "+10000000000"])
    assert sorted(u.username for u in found) == ["alice", "bob"]
    assert sorted(u.username for u in await store.users_with_phone()) == ["alice", "bob"]


async def test_two_nodes_creating_the_same_user_one_wins(store: Store, database_kind):
    results = await asyncio.gather(
        *(store.create_user(f"{i:032d}", "carol", "Carol", "h", None) for i in range(4)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1, results
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))


# ----------------------------------------------------------------------------- contacts


async def test_contacts_with_groups(store: Store):
    for letter, name in (("a", "alice"), ("b", "bob"), ("c", "carol")):
        await store.create_user(letter * 32, name, name.title(), "h", None)
    await store.put_contact("a" * 32, "c" * 32, None)
    await store.put_contact("a" * 32, "b" * 32, "family")
    await store.put_contact("a" * 32, "b" * 32, "work")  # changes the group
    assert [(c.username, c.group) for c in await store.contacts("a" * 32)] == [
        ("bob", "work"),
        ("carol", None),
    ]
    assert await store.contact_group("a" * 32, "b" * 32) == "work"
    assert await store.remove_contact("a" * 32, "b" * 32)
    assert not await store.remove_contact("a" * 32, "b" * 32)
    assert [c.username for c in await store.contacts("a" * 32)] == ["carol"]


# -------------------------------------------------------------------------------- calls


async def test_call_records_keep_their_times_and_history_is_newest_first(store: Store):
    first = call_info("1" * 32, "a", "b", T0)
    await store.save_call(first)
    assert await store.call(first.call_id) == first  # aware UTC, microseconds kept
    answered = call_info(
        "1" * 32,
        "a",
        "b",
        T0,
        state="ended",
        reason="completed",
        answered_at=T0 + timedelta(seconds=3),
        ended_at=T0 + timedelta(minutes=2),
    )
    await store.save_call(answered)
    assert await store.call(first.call_id) == answered
    for n in range(2, 6):
        await store.save_call(call_info(str(n) * 32, "b", "a", T0 + timedelta(hours=n)))
    await store.save_call(call_info("9" * 32, "c", "d", T0))
    history = await store.history("a", limit=3)
    assert [c.call_id for c in history] == ["5" * 32, "4" * 32, "3" * 32]
    assert len(await store.history("b", limit=100)) == 5
    assert await store.call("0" * 32) is None


async def test_unfinished_calls_are_closed_after_a_crash(store: Store):
    await store.save_call(call_info("1" * 32, "a", "b", T0))
    await store.save_call(call_info("2" * 32, "a", "b", T0, state="answered"))
    await store.save_call(call_info("3" * 32, "a", "b", T0, state="ended", reason="declined"))
    now = T0 + timedelta(hours=1)
    assert await store.end_unfinished_calls("failed", now) == 2
    closed = [await store.call(n * 32) for n in "123"]
    assert [(c.state, c.reason, c.ended_at) for c in closed if c] == [
        ("ended", "failed", now),
        ("ended", "failed", now),
        ("ended", "declined", None),
    ]
    assert await store.end_unfinished_calls("failed", now) == 0


# --------------------------------------------------------------------------- transactions


async def test_a_transaction_is_all_or_nothing(store: Store):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.session() as session:
            session.add(Meta(key="first", value="1"))
            await session.flush()  # really sent to the database
            session.add(Meta(key="second", value="2"))
            raise Boom
    async with store.session() as session:
        keys = await session.scalars(select(Meta.key).where(Meta.key.in_(["first", "second"])))
        assert list(keys) == []


async def test_shared_secrets_are_the_same_for_every_node(store: Store):
    values = await asyncio.gather(*(store.shared_secret("phone_hash_salt") for _ in range(5)))
    assert len(set(values)) == 1 and len(values[0]) >= 32


# ----------------------------------------------------------------------------- services


async def test_catalog_order_is_the_same_on_both_databases(store: Store):
    """Tones without a category come first (SQLite's NULL order; PostgreSQL's is the other
    way round unless the query says so)."""
    from ringback.catalog import Catalog
    from ringback.models import Tone

    async with store.session() as session:
        for n, (title, category) in enumerate(
            [("Spring", "festive"), ("Pop Song", None), ("Jasmine", "folk"), ("Alpha", None)]
        ):
            session.add(
                Tone(
                    id=f"{n:032d}",
                    clip_id="c" * 32,
                    title=title,
                    category=category,
                    price_cents=0,
                    duration_s=1.0,
                    created_at=T0,
                )
            )
    catalog = Catalog(store, None, max_seconds=60, longest_source_s=600, personal_quota=1)  # type: ignore[arg-type]
    tones = await catalog.search(query=None, category=None, limit=10, offset=0)
    assert [t.title for t in tones] == ["Alpha", "Pop Song", "Spring", "Jasmine"]
    assert await catalog.categories() == ["festive", "folk"]
