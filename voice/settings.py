"""The one settings object. Built by the entry point (CLI or tests) and passed down; nothing
reads the environment anywhere else."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REGIONS = ("cn", "us", "eu", "uk", "jp")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHORUS_", extra="ignore")

    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0: pick a free one)")
    data_dir: Path = Field(Path("data"), description="SQLite database, admin key, uploads")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite in data_dir (postgresql://... works)"
    )
    redis_url: str | None = Field(None, description="redis://... for multi-node live state")
    redis_key_prefix: str = Field(
        "", pattern=r"^[^{}]*$", description="prefix of every Redis key and channel (no braces)"
    )
    media_host: str | None = Field(None, description="address for ICE/RTP; default: host")
    public_host: str | None = Field(None, description="address advertised behind NAT")
    ice_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="STUN/TURN URLs, e.g. stun:stun.example.org:3478"
    )
    admin_key: str | None = Field(None, description="bearer key for admin requests")
    allow_signup: bool = Field(True, description="open sign-up; else only the admin creates users")
    token_ttl_s: int = Field(7 * 24 * 3600, gt=0, description="session token lifetime")
    no_answer_timeout_s: float = Field(45.0, gt=0, description="ringing time before no_answer")
    region: str = Field("cn", description="call-progress tones: " + ", ".join(REGIONS))
    opus_bitrate: int = Field(32000, ge=6000, le=510000, description="Opus bitrate for encodes")
    tone_max_seconds: float = Field(60.0, gt=0, description="tones are trimmed to this length")
    tone_longest_source_s: float = Field(
        600.0, gt=0, description="uploads longer than this are refused, not trimmed"
    )
    tone_max_upload_mb: int = Field(20, gt=0, description="largest audio upload accepted")
    personal_tone_quota: int = Field(10, ge=0, description="personal tones per user")
    hotline_inband_dtmf: bool = Field(
        True, description="detect keys sent as tones in hotline callers' audio (costs a decode)"
    )
    sample_hotlines: bool = Field(
        True, description="install the sample hotlines 12580 (Chinese) and 114 (English)"
    )
    log_level: str = Field("info", description="debug, info, warning, error")
    media_workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        le=256,
        description="media worker processes for WebRTC legs and rooms (default: CPU count); "
        "0 keeps media in the server process",
    )
    # Audio rooms
    rtp_port_min: int = Field(
        40000, ge=1024, le=65534, description="lowest UDP port of plain-RTP room participants"
    )
    rtp_port_max: int = Field(
        49999, ge=1025, le=65535, description="highest UDP port (two per participant: RTP, RTCP)"
    )
    room_speakers: int = Field(
        3, ge=0, le=64, description="K: talkers mixed at once per room by default; 0 mixes all"
    )
    room_max_participants: int = Field(
        100, ge=2, le=10000, description="room size when create gives none, and the largest"
    )
    mix_bitrate: int = Field(32000, ge=6000, le=510000, description="Opus bitrate of room mixes")
    mix_complexity: int = Field(
        10, ge=0, le=10, description="Opus encoder complexity of room mixes (Janus uses 4)"
    )
    mix_dtx: bool = Field(
        True, description="Opus DTX on room mixes (below complexity 7 it mutes steady tones)"
    )
    room_pin_attempts: int = Field(
        5, ge=1, le=100, description="wrong PINs per user and room before a lock-out"
    )
    room_pin_lockout_s: float = Field(
        600.0, gt=0, description="how long a user who ran out of PIN attempts is refused"
    )
    room_connect_timeout_s: float = Field(
        20.0, gt=0, description="a WebRTC participant not connected by then is removed"
    )

    # SIP
    sip_port: int = Field(
        5060, ge=0, le=65535, description="SIP over UDP on this port; 0 turns SIP off"
    )
    sip_public_host: str | None = Field(
        None, description="address in SIP Record-Route, Contact and SDP; default: public_host"
    )
    sip_workers: int = Field(
        32, ge=1, le=1000, description="most pjsua2 worker processes (4 calls each)"
    )
    sip_spare_calls: int = Field(
        4, ge=1, le=400, description="call slots kept ready in started SIP workers"
    )
    sip_rate_per_source: float = Field(
        50.0, gt=0, description="SIP messages a second accepted from one address (bursts 4x)"
    )
    sip_guests: bool = Field(
        True,
        description="SIP callers without credentials may reach rooms and hotlines (users: never)",
    )
    sip_trunks: list[dict[str, Any]] = Field(
        default_factory=list,
        description="trunks applied at start (JSON list, as PUT /v1/sip/trunks/{name} takes "
        "them plus a name); they are stored like trunks made through the API",
    )

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in REGIONS:
            raise ValueError(f"region must be one of {', '.join(REGIONS)}")
        return value

    @field_validator("ice_servers", mode="before")
    @classmethod
    def _split_ice_servers(cls, value: object) -> object:
        # From the environment a comma-separated string is friendlier than JSON.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @model_validator(mode="after")
    def _port_range(self) -> Settings:
        if self.rtp_port_max - self.rtp_port_min < 3:
            raise ValueError("rtp_port_max must be at least rtp_port_min + 3 (one RTP/RTCP pair)")
        return self

    @property
    def effective_media_host(self) -> str:
        if self.media_host:
            return self.media_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "localhost") else self.host

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'chorus.db').resolve()}"
