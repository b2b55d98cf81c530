"""Tones: the catalog (admin) and personal uploads (each user's own), on top of voice clips."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, or_, select

from ringback.models import Tone
from voice.clips import ClipLibrary, decode_audio, prepare_loop
from voice.errors import BadRequest, Forbidden, NotFound
from voice.store import Store


@dataclass(frozen=True)
class ToneInfo:
    tone_id: str
    clip_id: str
    owner_id: str | None
    title: str
    artist: str | None
    category: str | None
    price_cents: int
    validity_days: int | None
    duration_s: float

    @property
    def personal(self) -> bool:
        return self.owner_id is not None

    @classmethod
    def of(cls, row: Tone) -> ToneInfo:
        return cls(
            row.id,
            row.clip_id,
            row.owner_id,
            row.title,
            row.artist,
            row.category,
            row.price_cents,
            row.validity_days,
            row.duration_s,
        )


@dataclass(frozen=True)
class NewTone:
    title: str
    artist: str | None = None
    category: str | None = None
    price_cents: int = 0
    validity_days: int | None = None


class Catalog:
    def __init__(
        self,
        store: Store,
        clips: ClipLibrary,
        *,
        max_seconds: float,
        longest_source_s: float,
        personal_quota: int,
    ):
        self.store = store
        self.clips = clips
        self.max_seconds = max_seconds
        self.longest_source_s = longest_source_s
        self.personal_quota = personal_quota

    async def add(self, path: Path, tone: NewTone, *, owner_id: str | None) -> ToneInfo:
        """Decodes, normalises, encodes once and stores an uploaded file as a tone.
        `owner_id` None adds to the catalog; otherwise it is that user's personal tone."""
        if not tone.title.strip():
            raise BadRequest("a tone needs a title", code="bad_title", status=422)
        if owner_id is not None and await self.personal_count(owner_id) >= self.personal_quota:
            raise BadRequest(
                f"you have {self.personal_quota} personal tones already; delete one first",
                code="quota_exceeded",
                status=422,
            )
        pcm = await asyncio.to_thread(
            decode_audio, path, keep_s=self.max_seconds, longest_s=self.longest_source_s
        )
        prepared = await asyncio.to_thread(prepare_loop, pcm)
        clip = await self.clips.add(prepared)
        row = Tone(
            id=uuid.uuid4().hex,
            clip_id=clip.clip_id,
            owner_id=owner_id,
            title=tone.title.strip()[:200],
            artist=(tone.artist or "").strip()[:200] or None,
            category=(tone.category or "").strip()[:64] or None,
            price_cents=tone.price_cents if owner_id is None else 0,
            validity_days=tone.validity_days if owner_id is None else None,
            duration_s=clip.duration_s,
            created_at=datetime.now(UTC),
        )
        async with self.store.session() as session:
            session.add(row)
        return ToneInfo.of(row)

    async def personal_count(self, owner_id: str) -> int:
        async with self.store.session() as session:
            return (
                await session.scalar(
                    select(func.count()).select_from(Tone).where(Tone.owner_id == owner_id)
                )
                or 0
            )

    async def search(
        self, *, query: str | None, category: str | None, limit: int, offset: int
    ) -> list[ToneInfo]:
        statement = select(Tone).where(Tone.owner_id.is_(None))
        if query:
            pattern = f"%{query.lower()}%"
            statement = statement.where(
                or_(func.lower(Tone.title).like(pattern), func.lower(Tone.artist).like(pattern))
            )
        if category:
            statement = statement.where(Tone.category == category)
        # NULLs first, said explicitly: SQLite's default, PostgreSQL's is the opposite.
        statement = statement.order_by(Tone.category.asc().nulls_first(), Tone.title)
        statement = statement.limit(limit).offset(offset)
        async with self.store.session() as session:
            return [ToneInfo.of(r) for r in await session.scalars(statement)]

    async def personal(self, owner_id: str) -> list[ToneInfo]:
        async with self.store.session() as session:
            rows = await session.scalars(
                select(Tone).where(Tone.owner_id == owner_id).order_by(Tone.created_at)
            )
            return [ToneInfo.of(r) for r in rows]

    async def get(self, tone_id: str) -> ToneInfo | None:
        async with self.store.session() as session:
            row = await session.get(Tone, tone_id)
            return ToneInfo.of(row) if row else None

    async def visible(self, tone_id: str, user_id: str | None) -> ToneInfo:
        """A catalog tone, or the user's own personal tone; anything else is 'not found' so
        nobody learns that another user's personal tone exists."""
        tone = await self.get(tone_id)
        if tone is None or (tone.personal and tone.owner_id != user_id):
            raise NotFound("no such tone", code="tone_not_found")
        return tone

    async def delete(self, tone_id: str, *, user_id: str | None, admin: bool) -> None:
        tone = await self.visible(tone_id, user_id) if not admin else await self.get(tone_id)
        if tone is None:
            raise NotFound("no such tone", code="tone_not_found")
        if not admin and not tone.personal:
            raise Forbidden("only an administrator removes catalog tones", code="admin_only")
        async with self.store.session() as session:
            row = await session.get(Tone, tone_id)
            if row is not None:
                await session.delete(row)  # box entries and gifts go with it (cascade)
        await self.clips.delete(tone.clip_id)

    async def categories(self) -> list[str]:
        async with self.store.session() as session:
            rows = await session.scalars(
                select(Tone.category)
                .where(Tone.owner_id.is_(None), Tone.category.is_not(None))
                .distinct()
                .order_by(Tone.category)
            )
            return [r for r in rows if r]
