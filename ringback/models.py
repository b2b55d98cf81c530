"""Ringback tables, on the shared declarative base so one Alembic history covers them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from voice.store.models import Base


class Tone(Base):
    __tablename__ = "rb_tones"
    __table_args__ = (Index("ix_rb_tones_owner", "owner_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    clip_id: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None: catalog
    title: Mapped[str] = mapped_column(String(200))
    artist: Mapped[str | None] = mapped_column(String(200), nullable=True)
    category: Mapped[str | None] = mapped_column(String(64), nullable=True)
    price_cents: Mapped[int] = mapped_column(Integer, default=0)
    validity_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BoxEntry(Base):
    """A tone a user may use: bought, personal, gifted or copied."""

    __tablename__ = "rb_box"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tone_id: Mapped[str] = mapped_column(
        ForeignKey("rb_tones.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(16))
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Charge(Base):
    __tablename__ = "rb_charges"
    __table_args__ = (Index("ix_rb_charges_user", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32))
    tone_id: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    amount_cents: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Setting(Base):
    __tablename__ = "rb_settings"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    rotation: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Gift(Base):
    __tablename__ = "rb_gifts"
    __table_args__ = (Index("ix_rb_gifts_to", "to_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    from_id: Mapped[str] = mapped_column(String(32))
    to_id: Mapped[str] = mapped_column(String(32))
    tone_id: Mapped[str] = mapped_column(ForeignKey("rb_tones.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
