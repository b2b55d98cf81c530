"""The one outgoing audio track of a leg: pre-encoded Opus packets, never PCM frames.

aiortc's sender encodes `av.AudioFrame`s itself, as stereo 96 kb/s through PyAV in an
executor thread (7-8 % of a core per stream here). Given an `av.Packet` it only packetises
and encrypts it (`OpusEncoder.pack`), so this track only ever yields packets: a shared clip,
paced by our clock, or payloads relayed unchanged from another leg, at the pace they arrive.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from voice.media.opus import OpusClip, packet_samples
from voice.webrtc.timeline import FRAME, RATE, Timeline

TIME_BASE = fractions.Fraction(1, RATE)
MAX_RELAY_BACKLOG = 10  # 200 ms: if our sender stalls, drop the oldest rather than lag


class PacketTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._timeline = Timeline()
        self._clip: OpusClip | None = None
        self._clip_pos = 0
        self._clip_loop = True
        self._clip_resumed = True  # the clip is (again) what we send: start it on the clock
        self._relay_source: object | None = None
        self._relayed: deque[tuple[bytes, int, int]] = deque(maxlen=MAX_RELAY_BACKLOG)
        self._ticks: deque[tuple[bytes, int]] = deque(maxlen=MAX_RELAY_BACKLOG)
        self._ticking = False  # a mixer sends frames: the clip waits
        self._waiter: asyncio.Future[None] | None = None
        self.packets_sent = 0
        self.first_packet_sent_monotonic: float | None = None

    # -- control, from the leg ----------------------------------------------------------

    def play(self, clip: OpusClip | None, loop: bool) -> None:
        self._clip, self._clip_pos, self._clip_loop = clip, 0, loop
        self._clip_resumed = True
        if self._ticking:
            self._ticking = False
            self._ticks.clear()
            self._timeline.end_ticks()
        self._wake()

    def push_tick(self, payload: bytes, tick: int) -> None:
        """One pre-encoded 20 ms packet of a mixer's `tick`; from now on the clip waits."""
        if self.readyState == "live":
            self._ticking = True
            self._ticks.append((payload, tick))
            self._wake()

    def set_relay_source(self, source: object | None) -> None:
        """Packets from `source` now take precedence over the clip (None: the clip again)."""
        if source is not self._relay_source:
            self._relay_source = source
            self._clip_resumed = source is None
            self._relayed.clear()
            self._timeline.end_relay()
            self._wake()

    @property
    def relay_source(self) -> object | None:
        return self._relay_source

    def push_relayed(self, source: object, payload: bytes, timestamp: int, ssrc: int) -> None:
        if source is self._relay_source and self.readyState == "live":
            self._relayed.append((payload, timestamp, ssrc))
            self._wake()

    def stop(self) -> None:
        super().stop()
        self._wake()

    # -- aiortc's sender pulls from here -------------------------------------------------

    async def recv(self) -> av.Packet:  # type: ignore[override]
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            now = self._loop.time()
            if self._relayed:
                payload, timestamp, ssrc = self._relayed.popleft()
                samples = packet_samples(payload)
                pts = self._timeline.relay_pts(self._relay_source, ssrc, timestamp, samples, now)
                if pts is not None:
                    return self._packet(payload, pts)
            elif self._ticks:
                payload, tick = self._ticks.popleft()
                pts = self._timeline.tick_pts(tick, now)
                if pts is not None:
                    return self._packet(payload, pts)
            elif self._relay_source is not None or self._ticking or self._clip is None:
                await self._sleep(None)
            elif (due := self._timeline.clip_due(now)) > now:
                await self._sleep(due - now)
            else:
                return self._clip_packet(now)

    def _clip_packet(self, now: float) -> av.Packet:
        if self._clip_resumed:
            self._clip_resumed = False
            self._timeline.clip_resume(now)
        expected = self._timeline.next_pts
        pts = self._timeline.clip_pts(now)
        # We fell behind (a stalled event loop) and the timestamps skip ahead: skip as much
        # of the clip, so that a tone keeps its cadence on the clock instead of stretching.
        self._skip_clip((pts - expected) // FRAME)
        return self._packet(self._next_clip_packet(), pts)

    def _skip_clip(self, frames: int) -> None:
        clip = self._clip
        if frames <= 0 or clip is None:
            return
        if self._clip_loop:
            self._clip_pos = (self._clip_pos + frames) % len(clip.packets)
        else:
            self._clip_pos = min(self._clip_pos + frames, len(clip.packets) - 1)

    def _next_clip_packet(self) -> bytes:
        clip = self._clip
        assert clip is not None
        payload = clip.packets[self._clip_pos]
        self._clip_pos += 1
        if self._clip_pos == len(clip.packets):
            self._clip_pos = 0
            if not self._clip_loop:
                self._clip = None
        return payload

    def _packet(self, payload: bytes, pts: int) -> av.Packet:
        packet = av.Packet(payload)
        packet.pts = pts
        packet.time_base = TIME_BASE
        self.packets_sent += 1
        if self.first_packet_sent_monotonic is None:
            self.first_packet_sent_monotonic = time.monotonic()
        return packet

    async def _sleep(self, timeout: float | None) -> None:
        """Wait for `timeout` seconds or until `_wake`: one future and at most one timer,
        since this runs 50 times a second per leg."""
        waiter = self._loop.create_future()
        self._waiter = waiter
        timer = None if timeout is None else self._loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
