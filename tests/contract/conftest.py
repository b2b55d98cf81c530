"""Backends for the contract tests: the suite starts its own Redis and PostgreSQL (once per
session, on free ports) and always stops them, even when a test fails or the run is
interrupted."""

from __future__ import annotations

import atexit
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.backends import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    postgres_bin_dir,
    redis_binary,
)
from voice.bus import Bus, LocalBus
from voice.bus.redis import RedisBus
from voice.store import Store

TEMPLATE = "chorus_template"


NO_REDIS = "redis-server is not installed (scripts/system-packages.sh installs it)"
NO_POSTGRES = "PostgreSQL is not installed (scripts/system-packages.sh installs it)"


def _served(
    make: Callable[[], Any], installed: bool, missing: str, *, session: bool = True
) -> Iterator[Any]:
    """A server made by `make`, started for the fixture's lifetime and always stopped (a
    session's servers also at exit, should the session end without running finalizers)."""
    if not installed:
        pytest.fail(missing)
    server = make()
    if session:
        atexit.register(server.close)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from _served(RedisServer, redis_binary() is not None, NO_REDIS)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    yield from _served(RedisClusterServer, redis_binary() is not None, NO_REDIS)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    yield from _served(PostgresServer, postgres_bin_dir() is not None, NO_POSTGRES)


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that kill it."""
    yield from _served(RedisServer, redis_binary() is not None, NO_REDIS, session=False)


@pytest.fixture(params=["local", "redis", "redis-cluster"])
def bus_kind(request) -> str:
    return request.param


@pytest.fixture
async def make_bus(bus_kind, request) -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """Builds buses of the parametrised kind; two buses of one test are two nodes sharing the
    same state (with the local kind, one LocalBus stands for both nodes)."""
    made: list[Bus] = []
    shared = LocalBus()
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    async def make(**options: Any) -> Bus:
        if bus_kind == "local":
            return shared
        if bus_kind == "redis-cluster":
            url = request.getfixturevalue("redis_cluster").url
        else:
            url = request.getfixturevalue("redis_server").url
        bus = RedisBus(url, prefix=prefix, **options)
        await bus.start()
        made.append(bus)
        return bus

    try:
        yield make
    finally:
        for bus in made:
            await bus.close()
        await shared.close()


@pytest.fixture
async def bus(make_bus) -> Bus:
    return await make_bus()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request) -> str:
    return request.param


@pytest.fixture
def database_url(database_kind, request, tmp_path) -> str:
    """An empty database of the parametrised kind (nothing migrated)."""
    if database_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'chorus.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


@pytest.fixture
async def store(database_kind, request, tmp_path) -> AsyncIterator[Store]:
    """A migrated store of the parametrised kind (PostgreSQL: a copy of a migrated template)."""
    if database_kind == "sqlite":
        opened = Store.open(f"sqlite:///{tmp_path / 'chorus.db'}")
        await opened.migrate()
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        if not getattr(server, "template_ready", False):
            server.create_database(TEMPLATE)
            template = Store.open(server.url(TEMPLATE))
            await template.migrate()
            await template.close()
            server.template_ready = True  # type: ignore[attr-defined]
        opened = Store.open(server.url(server.create_database(template=TEMPLATE)))
    try:
        yield opened
    finally:
        await opened.close()
