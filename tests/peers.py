"""A stock aiortc client for loopback tests: it sends a sine and records what it hears.

It uses aiortc's normal paths (PCM frames in, aiortc's Opus encoder and decoder), like any
third-party WebRTC client would, so what it records is what a real caller would hear.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time

import av
import numpy as np
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from tests.audio import band_energy
from voice.webrtc import close_peer_connection, configure_host_candidates

RATE = 48000
FRAME = 960
MAX_GAP_S = 10.0  # a pts jump beyond this is a new stream, not a gap to fill with silence


class SineTrack(AudioStreamTrack):
    """A wall-clock paced sine as s16 mono 20 ms `av.AudioFrame`s (frequency 0: silence)."""

    def __init__(self, freq: float, level: float = 0.3) -> None:
        super().__init__()
        self.freq = freq
        self.level = level
        self._start: float | None = None
        self._pts = 0
        self.pending = np.zeros(0, np.int16)  # audio to send before the sine (e.g. DTMF)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            delay = self._start + self._pts / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        t = (self._pts + np.arange(FRAME)) / RATE
        samples = np.round(np.sin(2 * np.pi * self.freq * t) * self.level * 32767)
        if len(self.pending):
            chunk, self.pending = self.pending[:FRAME], self.pending[FRAME:]
            samples = np.zeros(FRAME)
            samples[: len(chunk)] = chunk
        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        return frame


class SinePeer:
    """One client peer connection: `offer()`, hand the SDP to the server, `accept_answer()`.

    The host-candidate patch is process-wide, so creating a peer also points the server's
    legs in this process at `host` (127.0.0.1 keeps everything on loopback).
    """

    def __init__(self, freq: float = 440.0, *, host: str = "127.0.0.1", level: float = 0.3):
        configure_host_candidates(host)
        self.freq = freq
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = SineTrack(freq, level)
        self.pc.addTrack(self.track)
        # (arrival monotonic time, pts in samples, mono int16 samples)
        self.chunks: list[tuple[float, int, np.ndarray]] = []
        self._reader: asyncio.Task[None] | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for mono in self._resampler.resample(frame):
                    samples = mono.to_ndarray().reshape(-1).astype(np.int16)
                    pts = mono.pts if mono.pts is not None else self._next_pts()
                    self.chunks.append((time.monotonic(), pts, samples))

    def _next_pts(self) -> int:
        if not self.chunks:
            return 0
        _, pts, samples = self.chunks[-1]
        return pts + len(samples)

    # -- signalling ----------------------------------------------------------------------

    async def offer(self, timeout: float = 10.0) -> str:
        """Create the offer and wait until it carries all our candidates (non-trickle)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._until(lambda: self.pc.iceGatheringState == "complete", timeout)
        return self.pc.localDescription.sdp

    async def accept_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def wait_connected(self, timeout: float = 15.0) -> None:
        await self._until(lambda: self.pc.connectionState == "connected", timeout)

    # -- what was heard ------------------------------------------------------------------

    def received_pcm(self, since_s: float | None = None) -> np.ndarray:
        """Everything heard (frames that arrived at or after monotonic time `since_s`), laid
        out by RTP timestamp: a gap in the stream (DTX, loss) is filled with silence."""
        chunks = [c for c in self.chunks if since_s is None or c[0] >= since_s]
        if not chunks:
            return np.zeros(0, np.int16)
        parts = []
        expected = chunks[0][1]
        for _, pts, samples in chunks:
            gap, end = pts - expected, pts + len(samples)
            if abs(gap) > MAX_GAP_S * RATE:
                expected = pts  # a new stream (the sender restarted): continue after it
            elif gap > 0:
                parts.append(np.zeros(gap, np.int16))
            elif gap < 0:
                samples = samples[-gap:]  # a duplicate or overlap: keep only what is new
            parts.append(samples)
            expected = max(expected, end)
        return np.concatenate(parts)

    def heard_seconds(self, since_s: float | None = None) -> float:
        return len(self.received_pcm(since_s)) / RATE

    def hears(self, freq: float, window_s: float = 0.3, share: float = 0.5) -> bool:
        """True if the last `window_s` of audio is mostly `freq`."""
        recent = self.received_pcm()[-round(window_s * RATE) :]
        return len(recent) > 0 and band_energy(recent, RATE, freq) >= share

    async def wait_for_audio(self, freq: float, timeout: float = 10.0) -> float:
        """Wait until `freq` is heard; returns the monotonic time it was first noticed."""
        await self._until(lambda: self.hears(freq), timeout, what=f"{freq} Hz")
        return time.monotonic()

    async def wait_heard(self, seconds: float, since_s: float | None = None, timeout=15.0):
        """Wait until `seconds` of audio (by timestamp) arrived since `since_s`."""
        await self._until(lambda: self.heard_seconds(since_s) >= seconds, timeout)

    async def _until(self, condition, timeout: float, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout} s")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self.track.stop()
        await close_peer_connection(self.pc)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
