"""Recording a room: the listeners' mix, as Ogg Opus, written by a thread off the clock.

The tick hands each 20 ms of the room mix to `write()`, which copies it (2 kB) into a queue
and returns: encoding (~0.1-0.3 ms) and file writes happen on the recorder's own thread, so a
slow disk never delays the mix. Silent ticks cost nothing: they are written as a 3-byte
silence packet, no encode. A recording is one file per session of the room on this node
(from its first participant until it empties or ends), with a JSON sidecar saying whose it
is, so the moderator can still list and download it after the room is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voice.media.ogg import OggOpusWriter
from voice.media.opus import SILENCE, OpusEncoderStream

log = logging.getLogger("chorus.rooms")

MAX_BACKLOG = 3000  # 60 s of audio waiting for the disk: beyond that, frames are dropped
RECORDING_ID = re.compile(r"^[a-z0-9]{16}$")
_STOP = object()


@dataclass
class RecordingInfo:
    recording_id: str
    room_id: str
    room_name: str
    moderator_id: str | None
    started_at: float
    ended_at: float | None = None
    duration_s: float = 0.0
    bytes: int = 0
    dropped_frames: int = 0


class RoomRecorder:
    def __init__(
        self,
        directory: Path,
        info: RecordingInfo,
        *,
        bitrate: int = 32000,
        complexity: int = 10,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.info = info
        self.path = directory / f"{info.recording_id}.opus"
        self.meta_path = directory / f"{info.recording_id}.json"
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._backlog = 0
        self._bitrate = bitrate
        self._complexity = complexity
        self._write_meta()
        self._thread = threading.Thread(
            target=self._run, name=f"recorder-{info.room_id[:8]}", daemon=True
        )
        self._thread.start()

    def write(self, pcm: np.ndarray | None) -> None:
        """From the tick: 20 ms of the room mix, or None for silence. Never blocks."""
        if self._backlog >= MAX_BACKLOG:
            self.info.dropped_frames += 1
            return
        self._backlog += 1
        self._queue.put(None if pcm is None else pcm.copy())

    async def close(self) -> RecordingInfo:
        """Finish the file (flushes what is queued) without blocking the event loop."""
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        return self.info

    def _run(self) -> None:
        encoder = OpusEncoderStream(bitrate=self._bitrate, complexity=self._complexity)
        writer = OggOpusWriter(
            serial=secrets.randbits(32),
            comments=(f"TITLE={self.info.room_name}", "ENCODER=chorus"),
        )
        try:
            with open(self.path, "wb") as file:
                file.write(writer.header())
                while True:
                    item = self._queue.get()
                    if item is _STOP:
                        break
                    self._backlog -= 1
                    packet = SILENCE if item is None else encoder.encode(item)  # type: ignore[arg-type]
                    page = writer.add(packet)
                    if page:
                        file.write(page)
                        file.flush()
                file.write(writer.close())
        except Exception:
            log.exception("room=%s recording failed", self.info.room_id)
        self.info.ended_at = time.time()
        self.info.duration_s = round(writer.duration_s, 2)
        try:
            self.info.bytes = os.path.getsize(self.path)
        except OSError:
            self.info.bytes = 0
        self._write_meta()
        log.info(
            "room=%s recording %s: %.1f s, %d bytes",
            self.info.room_id,
            self.info.recording_id,
            self.info.duration_s,
            self.info.bytes,
        )

    def _write_meta(self) -> None:
        temporary = self.meta_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self.info)))
        temporary.replace(self.meta_path)


class RecordingStore:
    """The recordings under `<data_dir>/recordings/<room_id>/`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, room_id: str) -> Path:
        return self.root / room_id

    def new_id(self) -> str:
        return secrets.token_hex(8)

    def list(self, room_id: str) -> list[RecordingInfo]:
        directory = self.directory(room_id)
        if not _safe_id(room_id) or not directory.is_dir():
            return []
        found = []
        for meta in directory.glob("*.json"):
            try:
                found.append(RecordingInfo(**json.loads(meta.read_text())))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(found, key=lambda info: info.started_at)

    def get(self, room_id: str, recording_id: str) -> tuple[RecordingInfo, Path] | None:
        if not _safe_id(room_id) or not RECORDING_ID.match(recording_id):
            return None
        for info in self.list(room_id):
            if info.recording_id == recording_id:
                return info, self.directory(room_id) / f"{recording_id}.opus"
        return None


def _safe_id(value: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9_-]{1,64}$", value))
