"""Request and response shapes of the public API (API.md). Requests forbid unknown fields so a
typo is a clear 422 instead of a silently ignored option."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Request):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    display_name: str | None = Field(None, max_length=128)
    phone: str | None = Field(None, max_length=32)


class UserUpdate(Request):
    display_name: str | None = Field(None, min_length=1, max_length=128)
    phone: str | None = Field(None, max_length=32, description="E.164 or local; '' removes it")


class SipPassword(Request):
    password: str | None = Field(
        max_length=256, description="what desk phones register with; null turns it off"
    )


class UserPublic(BaseModel):
    id: str
    username: str
    display_name: str
    phone: str | None = None


class SessionCreate(Request):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class SessionPublic(BaseModel):
    token: str
    expires_at: datetime
    user: UserPublic


class ContactCreate(Request):
    username: str = Field(min_length=1, max_length=64)
    group: str | None = Field(None, max_length=64)


class ContactPublic(BaseModel):
    username: str
    display_name: str
    group: str | None = None


class MatchRequest(Request):
    phones: list[str] | None = Field(None, max_length=5000)
    phone_hashes: list[str] | None = Field(None, max_length=5000)


class Match(BaseModel):
    phone: str | None = None
    phone_hash: str | None = None
    username: str


class MatchPublic(BaseModel):
    matches: list[Match]


class SaltPublic(BaseModel):
    salt: str
    algorithm: str = "sha256(salt + e164)"


class CallCreate(Request):
    to: str = Field(min_length=1, max_length=256)
    sdp: str = Field(min_length=1, max_length=65536)


class CallAnswer(Request):
    sdp: str = Field(min_length=1, max_length=65536)
    device_id: str | None = Field(
        None, max_length=64, description="the answering device (from the events socket's hello)"
    )


class Dtmf(Request):
    digits: str = Field(min_length=1, max_length=32)


class CallCreated(BaseModel):
    call_id: str
    state: str
    reason: str | None = None
    sdp: str


class SdpAnswer(BaseModel):
    sdp: str


class CallPublic(BaseModel):
    call_id: str
    from_: str = Field(serialization_alias="from")
    to: str
    state: str
    reason: str | None = None
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None


class Ok(BaseModel):
    ok: bool = True
