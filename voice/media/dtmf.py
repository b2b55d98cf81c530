"""In-band DTMF: a Goertzel detector for keys heard in decoded audio (PSTN trunks and phones
that send tones rather than RFC 4733 events), and a generator for tests and prompts.

Pure numpy. Audio comes in as 48 kHz int16 frames of any length; it is reduced to 8 kHz
(a 6-sample mean, which is also the low-pass filter) and analysed in 20 ms blocks of 160
samples. A block holds a key when one row tone and one column tone stand out:

- both carry most of the block's energy (speech and noise spread theirs);
- each beats the other tones of its group by 8 dB or more;
- the twist (column versus row level) is within +8 dB / -4 dB, as ITU-T Q.24 allows.

A key is reported once, when two blocks in a row (40 ms, the Q.24 minimum) agree, and a new
key needs 40 ms without one first, so a long press is one key and two presses are two."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
RATE = 8000
BLOCK = 160  # 20 ms at 8 kHz
DECIMATE = 6  # 48 kHz -> 8 kHz

MIN_SHARE = 0.55  # the two tones' share of the block energy
GROUP_MARGIN_DB = 8.0
MAX_NORMAL_TWIST_DB = 8.0  # column louder than row
MAX_REVERSE_TWIST_DB = 4.0  # row louder than column
MIN_LEVEL = 2000.0  # RMS (int16) of the block below which nothing counts: -24 dBFS
CONFIRM_BLOCKS = 2
RELEASE_BLOCKS = 2


# The Goertzel recurrence computes one DFT bin at an arbitrary frequency. For eight bins over
# a 160-sample block the same numbers come faster from one small matrix product (numpy runs
# it in C; the recurrence would loop in Python): |sum x[n] e^(-j w n)|^2 for each tone.
_BASIS = np.exp(-2j * np.pi * np.outer(ROWS + COLS, np.arange(BLOCK)) / RATE)


def goertzel_power(block: np.ndarray) -> np.ndarray:
    """Power at the eight DTMF frequencies of one 160-sample 8 kHz block."""
    spectrum = _BASIS @ block
    return spectrum.real**2 + spectrum.imag**2


def classify(block: np.ndarray) -> str | None:
    """The key one 20 ms block of 8 kHz audio holds, or None."""
    x = block.astype(np.float64)
    energy = float(np.dot(x, x))
    if energy <= 0 or np.sqrt(energy / len(x)) < MIN_LEVEL * 0.5:
        return None
    power = goertzel_power(x)
    rows, cols = power[:4], power[4:]
    r, c = int(np.argmax(rows)), int(np.argmax(cols))
    # A pure tone of amplitude A over N samples gives Goertzel power (A*N/2)^2 and energy
    # A^2*N/2, so power * 2 / N is the tone's energy: compare that to the block's.
    share = (rows[r] + cols[c]) * 2 / len(x) / energy
    if share < MIN_SHARE:
        return None
    for group, peak in ((rows, r), (cols, c)):
        others = np.delete(group, peak)
        if group[peak] < np.max(others) * 10 ** (GROUP_MARGIN_DB / 10):
            return None
    twist = 10 * np.log10(cols[c] / rows[r]) if rows[r] > 0 and cols[c] > 0 else 99.0
    if twist > MAX_NORMAL_TWIST_DB or twist < -MAX_REVERSE_TWIST_DB:
        return None
    return KEYS[r][c]


@dataclass
class DtmfDetector:
    """Feed decoded audio frame by frame; get each key once, when it is confirmed."""

    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _candidate: str | None = None
    _count: int = 0
    _current: str | None = None
    _quiet: int = RELEASE_BLOCKS

    def feed(self, pcm48k: np.ndarray) -> list[str]:
        samples = np.asarray(pcm48k, dtype=np.float64)
        usable = len(samples) // DECIMATE * DECIMATE
        low = samples[:usable].reshape(-1, DECIMATE).mean(axis=1)
        self._pending = np.concatenate([self._pending, low])
        keys: list[str] = []
        while len(self._pending) >= BLOCK:
            block, self._pending = self._pending[:BLOCK], self._pending[BLOCK:]
            key = self._block(classify(block))
            if key is not None:
                keys.append(key)
        return keys

    def _block(self, key: str | None) -> str | None:
        if key is None:
            self._quiet += 1
            self._candidate, self._count = None, 0
            if self._quiet >= RELEASE_BLOCKS:
                self._current = None
            return None
        self._quiet = 0
        if key == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = key, 1
        if self._count >= CONFIRM_BLOCKS and key != self._current:
            self._current = key
            return key
        return None


def generate(
    keys: str,
    *,
    on_ms: int = 80,
    off_ms: int = 80,
    level_dbfs: float = -10.0,
    twist_db: float = 0.0,
    rate: int = 48000,
) -> np.ndarray:
    """DTMF for `keys` as int16 PCM: each key `on_ms` of its two tones, then `off_ms` quiet.
    `twist_db` > 0 makes the column tone louder than the row tone by that much."""
    amplitude = 32767 * 10 ** (level_dbfs / 20) / 2
    on, off = rate * on_ms // 1000, rate * off_ms // 1000
    t = np.arange(on) / rate
    parts = []
    for key in keys:
        row = next(i for i, line in enumerate(KEYS) if key in line)
        col = KEYS[row].index(key)
        tone = np.sin(2 * np.pi * ROWS[row] * t) * 10 ** (-twist_db / 40)
        tone += np.sin(2 * np.pi * COLS[col] * t) * 10 ** (twist_db / 40)
        parts += [tone * amplitude, np.zeros(off)]
    return np.round(np.concatenate(parts) if parts else np.zeros(0)).astype(np.int16)


class InbandDtmf:
    """Keys pressed on a phone that sends tones: decode the caller's Opus, then detect.
    Decoding is the cost (~0.15 ms per 20 ms frame); silent DTX frames are not decoded."""

    def __init__(self) -> None:
        from voice.media.opus import OpusDecoderStream  # the opuslib adapter, not pure

        self._decoder = OpusDecoderStream()
        self._detector = DtmfDetector()
        self._silence = np.zeros(960, np.int16)

    def feed_opus(self, payload: bytes) -> list[str]:
        if len(payload) <= 2:  # DTX: nothing was said
            return self._detector.feed(self._silence)
        return self._detector.feed(self._decoder.decode(payload))
