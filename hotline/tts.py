"""Text to speech: espeak-ng by default (Mandarin and English, a Debian package), behind a
small interface so a better engine (piper-tts, sherpa-onnx) can be plugged in.

Speech is cached by engine, voice and text as a stored clip, so a prompt heard by a thousand
callers is synthesised and encoded once."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from hotline.models import Speech
from voice.clips import ClipLibrary, decode_audio, prepare_loop
from voice.errors import Unavailable
from voice.media.opus import OpusClip
from voice.store import Store

VOICES = {"en": "en-us", "zh": "cmn"}


class SpeechEngine(Protocol):
    name: str

    async def synthesize(self, text: str, language: str, target: Path) -> None:
        """Write speech for `text` as an audio file (any format PyAV reads) to `target`."""
        ...


class EspeakEngine:
    name = "espeak-ng"

    def __init__(self, binary: str = "espeak-ng", words_per_minute: int = 150):
        self.binary = binary
        self.speed = words_per_minute

    async def synthesize(self, text: str, language: str, target: Path) -> None:
        if shutil.which(self.binary) is None:
            raise Unavailable("espeak-ng is not installed (apt-get install espeak-ng)")
        process = await asyncio.create_subprocess_exec(
            self.binary,
            "-v",
            VOICES.get(language, "en-us"),
            "-s",
            str(self.speed),
            "-w",
            str(target),
            "--",
            text,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), 30)
        except BaseException:  # timed out or cancelled (shutdown): leave no process behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            raise Unavailable(f"espeak-ng failed: {err.decode(errors='replace')[:200]}")


class Speaker:
    """Speech clips, cached by (engine, language, text)."""

    def __init__(self, store: Store, clips: ClipLibrary, engine: SpeechEngine):
        self.store = store
        self.clips = clips
        self.engine = engine
        self._locks: dict[str, asyncio.Lock] = {}

    async def say(self, text: str, language: str) -> OpusClip:
        key = hashlib.sha256(f"{self.engine.name}|{language}|{text}".encode()).hexdigest()
        async with self._locks.setdefault(key, asyncio.Lock()):  # one synthesis per text
            async with self.store.session() as session:
                row = await session.get(Speech, key)
                clip_id = row.clip_id if row else None
            if clip_id is not None:
                clip = await self.clips.get(clip_id)
                if clip is not None:
                    return clip
            clip_id = await self._synthesize(text, language)
            async with self.store.session() as session:
                row = await session.get(Speech, key)
                if row is None:
                    session.add(Speech(key=key, clip_id=clip_id))
                else:
                    row.clip_id = clip_id
        self._locks.pop(key, None)
        clip = await self.clips.get(clip_id)
        assert clip is not None
        return clip

    async def _synthesize(self, text: str, language: str) -> str:
        with tempfile.TemporaryDirectory(prefix="chorus-tts-") as tmp:
            target = Path(tmp) / "speech.wav"
            await self.engine.synthesize(text, language, target)
            pcm = await asyncio.to_thread(decode_audio, target, keep_s=120, longest_s=600)
        info = await self.clips.add(await asyncio.to_thread(prepare_loop, pcm))
        return info.clip_id
