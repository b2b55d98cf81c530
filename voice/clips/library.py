"""Clip storage and the in-memory cache that makes one encoding serve every listener."""

from __future__ import annotations

import asyncio
import io
import struct
import uuid
import wave
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from voice.media.opus import OpusClip, OpusDecoderStream, encode_loop
from voice.store import Store
from voice.store.models import Clip

_LENGTH = struct.Struct(">H")


@dataclass(frozen=True)
class ClipInfo:
    clip_id: str
    duration_s: float


def pack(clip: OpusClip) -> bytes:
    return b"".join(_LENGTH.pack(len(p)) + p for p in clip.packets)


def unpack(blob: bytes) -> OpusClip:
    packets, offset = [], 0
    while offset < len(blob):
        (size,) = _LENGTH.unpack_from(blob, offset)
        packets.append(blob[offset + 2 : offset + 2 + size])
        offset += 2 + size
    return OpusClip(tuple(packets))


class ClipLibrary:
    def __init__(self, store: Store, *, bitrate: int, cache_size: int = 256):
        self.store = store
        self.bitrate = bitrate
        self._cache: OrderedDict[str, OpusClip] = OrderedDict()
        self._cache_size = cache_size

    async def add(self, pcm: np.ndarray) -> ClipInfo:
        """Encodes prepared PCM (int16, whole 20 ms frames) once and stores it."""
        clip = await asyncio.to_thread(encode_loop, pcm, self.bitrate)
        clip_id = uuid.uuid4().hex
        async with self.store.session() as session:
            session.add(
                Clip(
                    id=clip_id,
                    packets=pack(clip),
                    duration_s=clip.duration_s,
                    created_at=datetime.now(UTC),
                )
            )
        self._remember(clip_id, clip)
        return ClipInfo(clip_id, clip.duration_s)

    async def get(self, clip_id: str) -> OpusClip | None:
        clip = self._cache.get(clip_id)
        if clip is not None:
            self._cache.move_to_end(clip_id)
            return clip
        async with self.store.session() as session:
            row = await session.get(Clip, clip_id)
            if row is None:
                return None
            clip = unpack(row.packets)
        self._remember(clip_id, clip)
        return clip

    async def delete(self, clip_id: str) -> None:
        self._cache.pop(clip_id, None)
        async with self.store.session() as session:
            row = await session.get(Clip, clip_id)
            if row is not None:
                await session.delete(row)

    async def wav(self, clip_id: str) -> bytes | None:
        """The clip as a 48 kHz mono WAV, for previews."""
        clip = await self.get(clip_id)
        return None if clip is None else await asyncio.to_thread(_to_wav, clip)

    def _remember(self, clip_id: str, clip: OpusClip) -> None:
        self._cache[clip_id] = clip
        self._cache.move_to_end(clip_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _to_wav(clip: OpusClip) -> bytes:
    decoder = OpusDecoderStream()
    pcm = np.concatenate([decoder.decode(p) for p in clip.packets]).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return out.getvalue()
