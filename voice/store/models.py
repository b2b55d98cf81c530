"""Durable tables. The same models serve SQLite (embedded) and PostgreSQL (multi-node)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(20), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # MD5(username:realm:SIP password) for SIP digest (REGISTER); None: no phones
    sip_ha1: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Contact(Base):
    __tablename__ = "contacts"

    owner_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    group: Mapped[str | None] = mapped_column("group_name", String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CallRecord(Base):
    __tablename__ = "call_records"
    __table_args__ = (
        Index("ix_call_records_caller", "caller_id", "started_at"),
        Index("ix_call_records_callee", "callee_id", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    caller_id: Mapped[str] = mapped_column(String(32))
    callee_id: Mapped[str] = mapped_column(String(32))
    from_: Mapped[str] = mapped_column("from_addr", String(256))
    to: Mapped[str] = mapped_column("to_addr", String(256))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Meta(Base):
    """Deployment-wide values that every node must share (token signing key, phone salt)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SipTrunk(Base):
    """A SIP trunk's settings as JSON (voice.sip.trunks.Trunk), password included: the server
    must answer the carrier's digest challenges with it."""

    __tablename__ = "sip_trunks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Clip(Base):
    """A prepared audio clip, stored pre-encoded (20 ms mono Opus packets, length-prefixed)
    in the database so every node plays the same bytes without a shared disk."""

    __tablename__ = "clips"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    packets: Mapped[bytes] = mapped_column(LargeBinary)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
