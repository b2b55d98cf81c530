"""Hotline tables: menus (versioned), cached speech, provider data, queues, agents, and one
record per hotline call (for statistics and billing)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from voice.store.models import Base


class MenuVersion(Base):
    __tablename__ = "hl_menus"

    number: Mapped[str] = mapped_column(String(24), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Speech(Base):
    """Text already spoken by the TTS engine, as a stored clip: said once, heard by many."""

    __tablename__ = "hl_speech"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    clip_id: Mapped[str] = mapped_column(String(32))


class ProviderData(Base):
    __tablename__ = "hl_provider_data"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QueueConfig(Base):
    __tablename__ = "hl_queues"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[str] = mapped_column(Text)


class Agent(Base):
    __tablename__ = "hl_agents"

    queue: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    state_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    idle_since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    calls_taken: Mapped[int] = mapped_column(Integer, default=0)


class HotlineCall(Base):
    __tablename__ = "hl_calls"
    __table_args__ = (Index("ix_hl_calls_number", "number", "started_at"),)

    call_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    number: Mapped[str] = mapped_column(String(24))
    caller_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    path: Mapped[str] = mapped_column(Text, default="[]")  # JSON: nodes and options
    outcome: Mapped[str] = mapped_column(String(24), default="in_progress")
    queue: Mapped[str | None] = mapped_column(String(64), nullable=True)
    operator_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    wait_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    menu_version: Mapped[int] = mapped_column(Integer, default=0)
