"""Engine, sessions and migrations. SQLite by default; a PostgreSQL URL works unchanged."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
# pg_advisory_xact_lock key: nodes starting together run the migrations one after the other.
MIGRATION_LOCK = 0x43686F727573  # "Chorus"


def async_url(url: str) -> str:
    """Accept the URLs people write (`postgresql://`, `sqlite:///`) and pick async drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def create_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # Bounded waits: a database that does not answer is a 503 after a few seconds, not a
    # request hanging for the driver's default minute.
    return create_async_engine(
        url,
        pool_pre_ping=True,  # connections left over from before a database restart are replaced
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S},
    )


def refused_value(exc: BaseException) -> bool:
    """True if PostgreSQL refused a value (SQLSTATE class 22: too long for its column, out of
    range...). SQLite stores such values as they are, so input checks belong in the API;
    this keeps a value that slipped through a client error rather than a 500."""
    state = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(exc, DBAPIError) and isinstance(state, str) and state.startswith("22")


def unreachable(exc: BaseException) -> bool:
    """True if `exc` means the database cannot be reached or refused service for now (try
    again later: a 503), rather than a fault in the statement."""
    if isinstance(exc, (OSError, PoolTimeout)):  # refused, reset, timed out; pool exhausted
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
            return True
        # PostgreSQL (asyncpg) classes: 08 connection exception, 40 rolled back (serialization
        # failure, deadlock), 53 insufficient resources, 57 operator intervention (shutdown,
        # starting up), 58 system error.
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(state, str) and state[:2] in ("08", "40", "53", "57", "58")
    return False


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the history page read while a call record is written; foreign keys are off by
    # default in SQLite and we rely on ON DELETE CASCADE for contacts.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent; safe on every start)."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(run)
