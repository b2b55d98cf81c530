"""What only PostgreSQL goes through: restarts, lost connections, values SQLite would take,
and `chorus db upgrade` against it."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from api.cli import app
from tests.backends import PostgresServer
from tests.waiting import until
from voice.errors import BadRequest, Unavailable
from voice.store import Store
from voice.store.models import Meta


async def keys(url: str) -> list[str]:
    connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        rows = await connection.fetch("SELECT key FROM meta WHERE key LIKE 'k%' ORDER BY key")
        return [row["key"] for row in rows]
    finally:
        await connection.close()


@pytest.fixture
async def pg_store(postgres_server: PostgresServer):
    url = postgres_server.url(postgres_server.create_database())
    store = Store.open(url)
    await store.migrate()
    try:
        yield store, url
    finally:
        await store.close()


async def test_a_postgresql_restart_is_a_503_meanwhile_and_service_resumes(
    pg_store, postgres_server: PostgresServer
):
    store, url = pg_store
    await store.create_user("a" * 32, "alice", "Alice", "h", None)  # the pool holds connections
    await asyncio.to_thread(postgres_server.stop)
    try:
        for attempt in (
            store.user_by_username("alice"),
            store.create_user("b" * 32, "bob", "Bob", "h", None),
            store.shared_secret("k-while-down"),
        ):
            started = time.monotonic()
            with pytest.raises(Unavailable) as refused:
                await attempt
            assert refused.value.status == 503
            assert time.monotonic() - started < 3.0
    finally:
        await asyncio.to_thread(postgres_server.start)

    async def back() -> bool:
        try:
            return (await store.user_by_username("alice")) is not None
        except Unavailable:
            return False

    await until(back, timeout=10, every=0.05)
    assert await store.user_by_username("bob") is None  # the refused write left nothing
    await store.create_user("b" * 32, "bob", "Bob", "h", None)
    assert await keys(url) == []


async def test_a_connection_lost_mid_transaction_writes_nothing(pg_store):
    store, url = pg_store
    admin = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
    try:
        with pytest.raises(Unavailable):
            async with store.session() as session:
                session.add(Meta(key="k1", value="v"))
                await session.flush()
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                session.add(Meta(key="k2", value="v"))
    finally:
        await admin.close()
    assert await keys(url) == []
    async with store.session() as session:  # the pool replaced the dead connection
        session.add(Meta(key="k3", value="v"))
    assert await keys(url) == ["k3"]


async def test_a_value_postgresql_refuses_is_a_client_error_not_a_503(pg_store):
    store, _ = pg_store
    with pytest.raises(BadRequest) as refused:
        await store.create_user("a" * 32, "x" * 65, "X", "h", None)  # username is VARCHAR(64)
    assert refused.value.status == 422


async def test_a_statement_error_is_not_reported_as_an_outage(pg_store):
    store, _ = pg_store
    with pytest.raises(Exception) as failed:
        async with store.session() as session:
            await session.execute(select(text("no_such_column")).select_from(Meta))
    assert not isinstance(failed.value, Unavailable)


def test_chorus_db_upgrade_migrates_postgresql(postgres_server: PostgresServer, tmp_path):
    url = postgres_server.url(postgres_server.create_database())
    # In-process (the command as `chorus db upgrade` runs it, without a second interpreter).
    for _ in range(2):  # and again: nothing to do
        done = CliRunner().invoke(
            app, ["db", "upgrade", "--database-url", url, "--data-dir", str(tmp_path)]
        )
        assert done.exit_code == 0, done.output
        assert "chorus: database is up to date" in done.output

    async def tables() -> set[str]:
        connection = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
        try:
            rows = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            return {row["tablename"] for row in rows}
        finally:
            await connection.close()

    found = asyncio.run(tables())
    assert {"users", "contacts", "call_records", "rb_tones", "hl_menus", "alembic_version"} <= found
