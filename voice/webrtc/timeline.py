"""The outgoing RTP timeline of one leg: pure arithmetic, no aiortc.

A leg sends from changing sources (a clip paced by our clock, then packets relayed from
another leg at the pace they arrive, then a clip again). The far end's jitter buffer must
see one continuous stream: timestamps that advance with wall-clock time, never go back, and
keep the gaps of the source (Opus DTX) so silence lasts as long as it did.

Timestamps are in 48 kHz samples since the first packet (aiortc adds its random origin).
"""

from __future__ import annotations

RATE = 48000
FRAME = 960
MAX_LAG_S = 0.06  # a clip this late (a busy loop) skips ahead instead of bursting
MAX_LEAD_S = 1.0  # relayed timestamps this far ahead of our clock mean the source jumped
MAX_LATE_S = 5.0  # relayed timestamps this far behind mean the source restarted


class Timeline:
    def __init__(self) -> None:
        self._t0: float | None = None  # clock time of pts 0
        self._next_pts = 0  # the earliest pts the next packet may carry
        self._offset: int | None = None  # relay: our pts = unwrapped source ts + offset
        self._source: tuple[object, int] | None = None  # (relay source, ssrc) anchored on
        self._last_ts = 0  # last source timestamp seen, 32-bit
        self._unwrapped = 0  # the same, unwrapped
        self._tick_offset: int | None = None  # ticks: our pts = tick * FRAME + offset

    def _wall_pts(self, now: float) -> int:
        if self._t0 is None:
            self._t0 = now
        return round((now - self._t0) * RATE)

    def clip_due(self, now: float) -> float:
        """When the next clip packet should go out."""
        if self._t0 is None:
            return now
        return self._t0 + self._next_pts / RATE

    @property
    def next_pts(self) -> int:
        return self._next_pts

    def clip_resume(self, now: float) -> None:
        """A clip starts or resumes (after silence, a relay, a mixer): it starts on the clock
        now, which is not lag to catch up on."""
        self._next_pts = max(self._next_pts, self._wall_pts(now))

    def clip_pts(self, now: float, samples: int = FRAME) -> int:
        """Timestamp for a clip packet sent at `now`, skipping ahead if we fell behind."""
        wall = self._wall_pts(now)
        pts = self._next_pts
        if wall - pts > MAX_LAG_S * RATE:
            pts = wall
        self._next_pts = pts + samples
        return pts

    def relay_pts(self, source: object, ssrc: int, ts: int, samples: int, now: float) -> int | None:
        """Timestamp for a relayed packet with RTP timestamp `ts`, or None to drop it
        (a duplicate or a late, reordered packet that would go backwards)."""
        wall = self._wall_pts(now)
        if self._offset is None or self._source != (source, ssrc):
            return self._anchor(source, ssrc, ts, samples, wall)
        delta = (ts - self._last_ts) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        pts = self._unwrapped + delta + self._offset
        if pts < self._next_pts:
            if self._next_pts - pts < MAX_LATE_S * RATE:
                return None
            return self._anchor(source, ssrc, ts, samples, wall)
        if pts - wall > MAX_LEAD_S * RATE:
            return self._anchor(source, ssrc, ts, samples, wall)
        self._last_ts, self._unwrapped = ts, self._unwrapped + delta
        self._next_pts = pts + samples
        return pts

    def _anchor(self, source: object, ssrc: int, ts: int, samples: int, wall: int) -> int:
        pts = max(self._next_pts, wall)
        self._source = (source, ssrc)
        self._last_ts, self._unwrapped = ts, 0
        self._offset = pts
        self._next_pts = pts + samples
        return pts

    def tick_pts(self, tick: int, now: float) -> int | None:
        """Timestamp for a packet of a mixer's 20 ms `tick`, or None to drop it (a tick
        that is not newer than the last one sent).

        Ticks map to timestamps by a fixed offset, so ticks with nothing sent (silence,
        Opus DTX) leave gaps of the right length; the offset is set anew when the stream
        would go backwards (after a clip or a relay) or drift off our clock.
        """
        wall = self._wall_pts(now)
        offset = self._tick_offset
        if offset is not None:
            pts = offset + tick * FRAME
            if pts < self._next_pts and self._next_pts - pts <= MAX_LAG_S * RATE:
                return None  # the same or an older tick: never send time backwards
            if self._next_pts <= pts and abs(pts - wall) <= MAX_LEAD_S * RATE:
                self._next_pts = pts + FRAME
                return pts
        pts = max(self._next_pts, wall)
        self._tick_offset = pts - tick * FRAME
        self._next_pts = pts + FRAME
        return pts

    def end_ticks(self) -> None:
        """The mixer stopped sending: the next tick re-anchors."""
        self._tick_offset = None

    def end_relay(self) -> None:
        """The relay source went away: the next relayed packet re-anchors."""
        self._offset = None
        self._source = None
