"""A soft limiter for mixes: loud sums get quieter instead of clipping, quiet ones pass untouched.

Pure: numpy only. Summing three loud talkers overflows int16 by up to 10 dB; hard clipping
that sum sounds like a broken speaker, and wrapping it (a plain int16 cast) like gunfire.
Each distinct mix has its own gain, carried from frame to frame.

Two stages, both free of look-ahead latency (the mixer holds a whole 20 ms frame anyway):
1. A gain that follows the frame's peak: when the peak would exceed the knee, the gain drops
   to bring it to the knee, ramped over the first millisecond of the frame; when the peak
   falls, the gain recovers with a `release_ms` time constant, ramped across the frame.
   Gain ramps are smooth, so a steady loud sum comes out as the same waveform, only quieter:
   no new harmonics.
2. A tanh knee for what the gain stage cannot catch (the samples inside the 1 ms attack
   ramp): linear up to the knee, bending smoothly towards full scale, never reaching it.

A frame whose peak stays under the knee while its gain is 1 is copied bit-exactly.

`LimiterBank` limits all the mixes of a tick as the rows of one matrix: a numpy call costs
about a microsecond on small arrays, so a fixed number of calls per tick beats a number per mix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FULL_SCALE = 32767.0
_UNITY_SNAP = 0.999  # within 0.01 dB of unity: snap back, and to the bit-exact path


@dataclass(frozen=True)
class LimiterSettings:
    knee_dbfs: float = -3.0  # peaks above this are reduced; -3 dBFS leaves a single talker be
    attack_ms: float = 1.0  # short enough that the knee rarely works, long enough not to click
    release_ms: float = 150.0  # slower would duck the next quiet words, faster would pump
    frame_samples: int = 960
    sample_rate: int = 48000

    @property
    def knee(self) -> float:
        return FULL_SCALE * 10.0 ** (self.knee_dbfs / 20.0)


class LimiterBank:
    """Soft limiters for up to `rows` mixes, limited together; `gains` is their state."""

    def __init__(self, settings: LimiterSettings | None = None, rows: int = 1) -> None:
        self.settings = settings = settings or LimiterSettings()
        n = settings.frame_samples
        self._knee = settings.knee
        self._room = FULL_SCALE - self._knee  # the span the tanh bends into
        attack = round(settings.sample_rate * settings.attack_ms / 1000)
        self._attack = attack = max(1, min(n, attack))
        frame_ms = 1000.0 * n / settings.sample_rate
        self._release = 1.0 - math.exp(-frame_ms / settings.release_ms)
        # 0 -> 1 across the frame (release), and 0 -> 1 within the attack then flat.
        self._release_ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        self._attack_ramp = np.minimum(np.arange(n, dtype=np.float32) / attack, 1.0)
        self.gains = np.ones(0)
        # Whether the last `process` copied every mix unchanged (nothing needed limiting):
        # a mix of one stream is then that stream, bit for bit.
        self.exact = True
        self.resize(rows)

    @property
    def rows(self) -> int:
        return len(self.gains)

    @property
    def at_unity(self) -> bool:
        """Every gain is 1: the common case, where in-range mixes are copied as they are."""
        return self._unity

    def resize(self, rows: int) -> None:
        """Make room for `rows` mixes; existing gains stay, new rows start at unity."""
        n = self.settings.frame_samples
        gains = np.ones(rows)
        keep = min(rows, len(self.gains))
        gains[:keep] = self.gains[:keep]
        self.gains = gains
        self._unity = bool(gains.min(initial=1.0) == 1.0)
        # Working buffers, made once per size so that a tick allocates almost nothing.
        self._peaks = np.empty((rows, n), dtype=np.int32)
        self._ramps = np.empty((rows, n), dtype=np.float32)
        self._work = np.empty((rows, n), dtype=np.float32)

    def remap(self, sources: list[int]) -> None:
        """Reorder the state when the mixes change: row i takes the gain of row sources[i]."""
        self.gains[: len(sources)] = self.gains[sources]
        self._unity = bool(self.gains.min() == 1.0)

    def relax(self) -> None:
        """A tick with nothing to limit: let every gain recover all the same."""
        gains = self.gains
        gains += (1.0 - gains) * self._release
        gains[gains >= _UNITY_SNAP] = 1.0
        self._unity = bool(gains.min() == 1.0)

    def process(self, mixes: np.ndarray, out: np.ndarray) -> None:
        """Limit each row of `mixes` (int32 sums) into the same row of `out` (int16)."""
        m = len(mixes)
        magnitudes = np.abs(mixes, out=self._peaks[:m])
        if self._unity and np.maximum.reduce(magnitudes, axis=None) <= self._knee:
            np.copyto(out, mixes, casting="unsafe")  # all in range: the cast is exact
            self.exact = True
            return
        self.exact = False
        peaks = np.maximum.reduce(magnitudes, axis=1)
        start = self.gains[:m]
        wanted = np.minimum(1.0, self._knee / np.maximum(peaks, 1))
        attack = wanted < start
        end = np.where(attack, wanted, start + (wanted - start) * self._release)
        end[~attack & (end >= _UNITY_SNAP)] = 1.0
        # Per-sample gains: start + (end - start) * ramp, the ramp chosen per row.
        ramps = self._ramps[:m]
        ramps[...] = self._release_ramp
        ramps[attack] = self._attack_ramp
        ramps *= (end - start)[:, None].astype(np.float32)
        ramps += start[:, None].astype(np.float32)
        work = self._work[:m]
        np.copyto(work, mixes, casting="unsafe")
        work *= ramps
        if attack.any():
            # Past the attack ramp the gain is knee / peak: only the ramp can overshoot.
            head = work[attack, : self._attack]
            self._bend(head)
            work[attack, : self._attack] = head
        np.rint(work, out=out, casting="unsafe")
        start[...] = end
        self._unity = bool(self.gains.min() == 1.0)

    def _bend(self, work: np.ndarray) -> None:
        # Only the first millisecond of frames whose gain drops gets here: allocating is fine.
        over = np.abs(work) > self._knee
        if not over.any():
            return
        loud = work[over]
        excess = np.abs(loud) - self._knee
        work[over] = np.sign(loud) * (self._knee + self._room * np.tanh(excess / self._room))


class SoftLimiter:
    """One mix's limiter, for callers that have a single stream (recordings, tests)."""

    def __init__(self, settings: LimiterSettings | None = None) -> None:
        self._bank = LimiterBank(settings, rows=1)

    @property
    def gain(self) -> float:
        return float(self._bank.gains[0])

    def process(self, mix: np.ndarray, out: np.ndarray) -> None:
        """Limit one frame: `mix` int32 in, `out` int16 of the same length."""
        self._bank.process(mix.reshape(1, -1), out.reshape(1, -1))
