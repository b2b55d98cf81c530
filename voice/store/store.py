"""The durable store: users, contacts, call history, shared deployment values.

Callers get plain dataclasses back, never ORM objects, and database trouble arrives as the
domain errors the API answers with (a lost database is a 503, never a 500)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from voice.errors import BadRequest, Conflict, Unavailable
from voice.store import database
from voice.store.models import CallRecord, Contact, Meta, SipTrunk, User


@dataclass(frozen=True)
class UserInfo:
    id: str
    username: str
    display_name: str
    phone: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: User) -> UserInfo:
        return cls(row.id, row.username, row.display_name, row.phone, as_utc(row.created_at))


@dataclass(frozen=True)
class ContactInfo:
    username: str
    display_name: str
    group: str | None


@dataclass(frozen=True)
class CallInfo:
    call_id: str
    caller_id: str
    callee_id: str
    from_: str
    to: str
    state: str
    reason: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None


class Store:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self._sessions = database.session_factory(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        return cls(database.create_engine(url))

    async def migrate(self) -> None:
        await database.upgrade(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: everything in it is written, or nothing (a lost connection
        rolls it back). A database that cannot be reached is `Unavailable` (503)."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError:
            raise
        except (DBAPIError, OSError, PoolTimeout) as exc:
            if database.refused_value(exc):
                raise BadRequest(
                    "a value is too long or out of range", code="value_refused", status=422
                ) from exc
            if not database.unreachable(exc):
                raise  # a bug (bad SQL...): a 500, not a 503
            raise Unavailable("the database is not reachable, try again shortly") from exc

    # ------------------------------------------------------------------------------ users

    async def create_user(
        self, user_id: str, username: str, display_name: str, password_hash: str, phone: str | None
    ) -> UserInfo:
        row = User(
            id=user_id,
            username=username,
            display_name=display_name,
            password_hash=password_hash,
            phone=phone,
            created_at=_now(),
        )
        try:
            async with self.session() as session:
                if await session.scalar(select(User.id).where(User.username == username)):
                    raise Conflict("that username is taken", code="username_taken")
                if phone and await session.scalar(select(User.id).where(User.phone == phone)):
                    raise Conflict("that phone number belongs to another user", code="phone_taken")
                session.add(row)
        except IntegrityError as exc:  # lost a race with another node
            raise Conflict("that username is taken", code="username_taken") from exc
        return UserInfo.of(row)

    async def user_by_username(self, username: str) -> UserInfo | None:
        async with self.session() as session:
            row = await session.scalar(select(User).where(User.username == username))
            return UserInfo.of(row) if row else None

    async def user_by_id(self, user_id: str) -> UserInfo | None:
        async with self.session() as session:
            row = await session.get(User, user_id)
            return UserInfo.of(row) if row else None

    async def password_hash(self, username: str) -> tuple[UserInfo, str] | None:
        async with self.session() as session:
            row = await session.scalar(select(User).where(User.username == username))
            return (UserInfo.of(row), row.password_hash) if row else None

    async def put_trunk(self, name: str, config: str) -> None:
        async with self.session() as session:
            row = await session.get(SipTrunk, name)
            if row is None:
                session.add(SipTrunk(name=name, config=config, updated_at=_now()))
            else:
                row.config, row.updated_at = config, _now()

    async def trunks(self) -> dict[str, str]:
        async with self.session() as session:
            rows = await session.scalars(select(SipTrunk).order_by(SipTrunk.name))
            return {row.name: row.config for row in rows}

    async def delete_trunk(self, name: str) -> bool:
        async with self.session() as session:
            row = await session.get(SipTrunk, name)
            if row is None:
                return False
            await session.delete(row)
            return True

    async def user_by_phone(self, phone: str) -> UserInfo | None:
        async with self.session() as session:
            row = await session.scalar(select(User).where(User.phone == phone))
            return UserInfo.of(row) if row else None

    async def set_sip_ha1(self, user_id: str, ha1: str | None) -> None:
        async with self.session() as session:
            row = await session.get(User, user_id)
            if row is not None and row.sip_ha1 != ha1:
                row.sip_ha1 = ha1

    async def sip_ha1(self, username: str) -> tuple[UserInfo, str | None] | None:
        async with self.session() as session:
            row = await session.scalar(select(User).where(User.username == username))
            return (UserInfo.of(row), row.sip_ha1) if row else None

    async def update_user(
        self, user_id: str, *, display_name: str | None = None, phone: str | None = None
    ) -> UserInfo:
        try:
            async with self.session() as session:
                row = await session.get(User, user_id)
                assert row is not None
                if display_name is not None:
                    row.display_name = display_name
                if phone is not None:
                    taken = await session.scalar(
                        select(User.id).where(User.phone == phone, User.id != user_id)
                    )
                    if taken:
                        raise Conflict(
                            "that phone number belongs to another user", code="phone_taken"
                        )
                    row.phone = phone or None
                return UserInfo.of(row)
        except IntegrityError as exc:
            raise Conflict("that phone number belongs to another user", code="phone_taken") from exc

    async def users_by_phone(self, phones: list[str]) -> list[UserInfo]:
        if not phones:
            return []
        async with self.session() as session:
            rows = await session.scalars(select(User).where(User.phone.in_(phones)))
            return [UserInfo.of(r) for r in rows]

    async def users_with_phone(self) -> list[UserInfo]:
        async with self.session() as session:
            rows = await session.scalars(select(User).where(User.phone.is_not(None)))
            return [UserInfo.of(r) for r in rows]

    # --------------------------------------------------------------------------- contacts

    async def contacts(self, owner_id: str) -> list[ContactInfo]:
        async with self.session() as session:
            rows = await session.execute(
                select(User.username, User.display_name, Contact.group)
                .join(Contact, Contact.contact_id == User.id)
                .where(Contact.owner_id == owner_id)
                .order_by(User.username)
            )
            return [ContactInfo(u, d, g) for u, d, g in rows]

    async def put_contact(self, owner_id: str, contact_id: str, group: str | None) -> None:
        async with self.session() as session:
            row = await session.get(Contact, (owner_id, contact_id))
            if row is None:
                session.add(
                    Contact(
                        owner_id=owner_id, contact_id=contact_id, group=group, created_at=_now()
                    )
                )
            else:
                row.group = group

    async def remove_contact(self, owner_id: str, contact_id: str) -> bool:
        async with self.session() as session:
            result = await session.execute(
                delete(Contact).where(
                    Contact.owner_id == owner_id, Contact.contact_id == contact_id
                )
            )
            return bool(result.rowcount)

    async def contact_group(self, owner_id: str, contact_id: str) -> str | None:
        async with self.session() as session:
            row = await session.get(Contact, (owner_id, contact_id))
            return row.group if row else None

    # ------------------------------------------------------------------------------ calls

    async def save_call(self, info: CallInfo) -> None:
        async with self.session() as session:
            row = await session.get(CallRecord, info.call_id)
            if row is None:
                row = CallRecord(id=info.call_id)
                session.add(row)
            row.caller_id, row.callee_id = info.caller_id, info.callee_id
            row.from_, row.to = info.from_, info.to
            row.state, row.reason = info.state, info.reason
            row.started_at, row.answered_at, row.ended_at = (
                info.started_at,
                info.answered_at,
                info.ended_at,
            )

    async def end_unfinished_calls(self, reason: str, now: datetime) -> int:
        """Closes records a crashed node left ringing or answered; returns how many."""
        async with self.session() as session:
            rows = list(
                await session.scalars(select(CallRecord).where(CallRecord.state != "ended"))
            )
            for row in rows:
                row.state, row.reason, row.ended_at = "ended", reason, now
            return len(rows)

    async def call(self, call_id: str) -> CallInfo | None:
        async with self.session() as session:
            row = await session.get(CallRecord, call_id)
            return _call_info(row) if row else None

    async def history(self, user_id: str, limit: int) -> list[CallInfo]:
        async with self.session() as session:
            rows = await session.scalars(
                select(CallRecord)
                .where(or_(CallRecord.caller_id == user_id, CallRecord.callee_id == user_id))
                .order_by(CallRecord.started_at.desc())
                .limit(limit)
            )
            return [_call_info(r) for r in rows]

    # ------------------------------------------------------------------------------- meta

    async def shared_secret(self, key: str) -> str:
        """A random value created once per deployment and then shared by every node."""
        async with self.session() as session:
            row = await session.get(Meta, key)
            if row is not None:
                return row.value
        try:
            async with self.session() as session:
                session.add(Meta(key=key, value=secrets.token_urlsafe(32)))
        except IntegrityError:
            pass  # another node created it first; read theirs
        async with self.session() as session:
            row = await session.get(Meta, key)
            assert row is not None
            return row.value


def _now() -> datetime:
    return datetime.now(UTC)


def _call_info(row: CallRecord) -> CallInfo:
    return CallInfo(
        row.id,
        row.caller_id,
        row.callee_id,
        row.from_,
        row.to,
        row.state,
        row.reason,
        as_utc(row.started_at),
        as_utc(row.answered_at),
        as_utc(row.ended_at),
    )


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes even for timezone-aware columns; they are UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
