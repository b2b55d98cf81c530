"""A user's tone box (what they may use), purchases with their ledger, and gifts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ringback.catalog import Catalog, ToneInfo
from ringback.models import BoxEntry, Charge, Gift, Tone
from voice.errors import BadRequest, Conflict, NotFound
from voice.store import Store, as_utc


@dataclass(frozen=True)
class BoxItem:
    tone: ToneInfo
    source: str  # bought, personal, gifted, copied
    acquired_at: datetime
    expires_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.expires_at is None or as_utc(self.expires_at) > now


@dataclass(frozen=True)
class ChargeInfo:
    charge_id: str
    tone_id: str
    title: str
    amount_cents: int
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class GiftInfo:
    gift_id: str
    from_id: str
    to_id: str
    tone: ToneInfo
    state: str
    created_at: datetime


class ToneBox:
    def __init__(self, store: Store, catalog: Catalog):
        self.store = store
        self.catalog = catalog

    async def items(self, user_id: str) -> list[BoxItem]:
        async with self.store.session() as session:
            rows = await session.execute(
                select(BoxEntry, Tone)
                .join(Tone, Tone.id == BoxEntry.tone_id)
                .where(BoxEntry.user_id == user_id)
                .order_by(BoxEntry.acquired_at, Tone.id)
            )
            return [
                BoxItem(ToneInfo.of(t), e.source, as_utc(e.acquired_at), as_utc(e.expires_at))
                for e, t in rows
            ]

    async def add_personal(self, user_id: str, tone: ToneInfo, now: datetime) -> None:
        async with self.store.session() as session:
            session.add(
                BoxEntry(user_id=user_id, tone_id=tone.tone_id, source="personal", acquired_at=now)
            )

    async def acquire(self, user_id: str, tone_id: str, now: datetime, *, reason: str) -> BoxItem:
        """Buys (or copies) a catalog tone: records the charge, and starts or extends its
        validity period. Personal tones of others are invisible here."""
        tone = await self.catalog.visible(tone_id, user_id)
        if tone.personal:
            raise BadRequest("your own tones are in your box already", code="already_owned")
        return await self._grant(user_id, tone, now, source=reason, charge_to=user_id)

    async def remove(self, user_id: str, tone_id: str) -> None:
        async with self.store.session() as session:
            entry = await session.get(BoxEntry, (user_id, tone_id))
            if entry is None:
                raise NotFound("that tone is not in your box", code="tone_not_found")
            await session.delete(entry)

    async def charges(self, user_id: str, limit: int = 200) -> list[ChargeInfo]:
        async with self.store.session() as session:
            rows = await session.scalars(
                select(Charge)
                .where(Charge.user_id == user_id)
                .order_by(Charge.created_at.desc())
                .limit(limit)
            )
            return [
                ChargeInfo(c.id, c.tone_id, c.title, c.amount_cents, c.reason, as_utc(c.created_at))
                for c in rows
            ]

    # --------------------------------------------------------------------------- gifts

    async def send_gift(self, from_id: str, to_id: str, tone_id: str, now: datetime) -> GiftInfo:
        tone = await self.catalog.visible(tone_id, from_id)
        if tone.personal:
            raise BadRequest("personal tones cannot be given away", code="not_giftable")
        if from_id == to_id:
            raise BadRequest("a gift goes to someone else", code="cannot_gift_self")
        gift = Gift(
            id=uuid.uuid4().hex,
            from_id=from_id,
            to_id=to_id,
            tone_id=tone.tone_id,
            state="pending",
            created_at=now,
        )
        async with self.store.session() as session:
            session.add(gift)
            session.add(_charge(from_id, tone, tone.price_cents, "gift", now))
        return GiftInfo(gift.id, from_id, to_id, tone, "pending", now)

    async def gifts(self, user_id: str) -> list[GiftInfo]:
        async with self.store.session() as session:
            rows = await session.execute(
                select(Gift, Tone)
                .join(Tone, Tone.id == Gift.tone_id)
                .where((Gift.to_id == user_id) | (Gift.from_id == user_id))
                .order_by(Gift.created_at.desc())
            )
            return [
                GiftInfo(g.id, g.from_id, g.to_id, ToneInfo.of(t), g.state, as_utc(g.created_at))
                for g, t in rows
            ]

    async def decide_gift(
        self, user_id: str, gift_id: str, accept: bool, now: datetime
    ) -> GiftInfo:
        async with self.store.session() as session:
            gift = await session.get(Gift, gift_id)
            if gift is None or gift.to_id != user_id:
                raise NotFound("no such gift", code="gift_not_found")
            if gift.state != "pending":
                raise Conflict(f"the gift was {gift.state} already", code="gift_decided")
            gift.state = "accepted" if accept else "declined"
            tone = ToneInfo.of(await session.get(Tone, gift.tone_id))  # type: ignore[arg-type]
            if not accept:  # the giver gets the price back
                session.add(_charge(gift.from_id, tone, -tone.price_cents, "gift_refund", now))
            info = GiftInfo(
                gift.id, gift.from_id, gift.to_id, tone, gift.state, as_utc(gift.created_at)
            )
            if accept:  # in the same transaction: never "accepted" without the tone
                await self._grant_in(session, user_id, tone, now, source="gifted", charge_to=None)
        return info

    # ------------------------------------------------------------------------- helpers

    async def _grant(
        self, user_id: str, tone: ToneInfo, now: datetime, *, source: str, charge_to: str | None
    ) -> BoxItem:
        async with self.store.session() as session:
            return await self._grant_in(
                session, user_id, tone, now, source=source, charge_to=charge_to
            )

    async def _grant_in(
        self,
        session: AsyncSession,
        user_id: str,
        tone: ToneInfo,
        now: datetime,
        *,
        source: str,
        charge_to: str | None,
    ) -> BoxItem:
        entry = await session.get(BoxEntry, (user_id, tone.tone_id))
        start = now
        if entry is not None and entry.expires_at is not None and as_utc(entry.expires_at) > now:
            start = as_utc(entry.expires_at)  # buying again extends the validity
        expires = start + timedelta(days=tone.validity_days) if tone.validity_days else None
        if entry is None:
            entry = BoxEntry(user_id=user_id, tone_id=tone.tone_id, source=source, acquired_at=now)
            session.add(entry)
        entry.expires_at = expires
        if charge_to is not None:
            session.add(_charge(charge_to, tone, tone.price_cents, source, now))
        return BoxItem(tone, entry.source, as_utc(entry.acquired_at), expires)


def _charge(user_id: str, tone: ToneInfo, amount: int, reason: str, now: datetime) -> Charge:
    return Charge(
        id=uuid.uuid4().hex,
        user_id=user_id,
        tone_id=tone.tone_id,
        title=tone.title,
        amount_cents=amount,
        reason=reason,
        created_at=now,
    )
