"""Regional call-progress tones (ringback and busy), synthesised as loopable PCM.

Pure: numpy only. The adapter encodes a synthesised loop once (`voice.media.opus.encode_loop`)
and every caller who hears that tone gets the same packets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_SAMPLES_48K = 960  # the 20 ms Opus frame the loop must tile into
FADE_MS = 5.0


@dataclass(frozen=True)
class ToneCadence:
    """A tone: summed sine frequencies, switched on and off by `pattern_ms`.

    `pattern_ms` alternates on and off durations and starts with "on"; it has an even
    length so that every period ends in silence and loops back into an "on" burst.
    """

    freqs_hz: tuple[float, ...]
    pattern_ms: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.freqs_hz or any(f <= 0 for f in self.freqs_hz):
            raise ValueError("a tone needs at least one positive frequency")
        if not self.pattern_ms or len(self.pattern_ms) % 2:
            raise ValueError("pattern_ms needs on/off pairs")
        if any(int(d) != d or d <= 0 for d in self.pattern_ms):
            raise ValueError("pattern durations must be positive whole milliseconds")

    @property
    def period_ms(self) -> int:
        return sum(self.pattern_ms)


RINGBACK: dict[str, ToneCadence] = {
    "cn": ToneCadence((450.0,), (1000, 4000)),
    "us": ToneCadence((440.0, 480.0), (2000, 4000)),
    "eu": ToneCadence((425.0,), (1000, 4000)),
    "uk": ToneCadence((400.0, 450.0), (400, 200, 400, 2000)),
    "jp": ToneCadence((400.0,), (1000, 2000)),
}

BUSY: dict[str, ToneCadence] = {
    "cn": ToneCadence((450.0,), (350, 350)),
    "us": ToneCadence((480.0, 620.0), (500, 500)),
    "eu": ToneCadence((425.0,), (500, 500)),
    "uk": ToneCadence((400.0,), (375, 375)),
    "jp": ToneCadence((400.0,), (500, 500)),
}


def _burst(freqs: tuple[float, ...], samples: int, rate: int, amplitude: float) -> np.ndarray:
    t = np.arange(samples) / rate
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) * (amplitude / len(freqs))
    # Raised-cosine edges: a burst that starts or stops at a non-zero sample is a click.
    fade = min(int(rate * FADE_MS / 1000), samples // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        wave[:fade] *= ramp
        wave[samples - fade :] *= ramp[::-1]
    return wave


def synthesize(
    cadence: ToneCadence, sample_rate: int = 48000, level_dbfs: float = -12.0
) -> np.ndarray:
    """One loop of the tone as int16 PCM; `level_dbfs` is the peak of the summed sines.

    The loop is one period, except when a period is not a whole number of 20 ms frames
    (the UK busy tone: 750 ms): then it spans the fewest periods that are, so the loop
    tiles into Opus frames (1500 ms for UK busy).
    """
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    period_samples = [round(ms * sample_rate / 1000) for ms in cadence.pattern_ms]
    one_period = []
    for index, samples in enumerate(period_samples):
        if index % 2 == 0:
            one_period.append(_burst(cadence.freqs_hz, samples, sample_rate, amplitude))
        else:
            one_period.append(np.zeros(samples))
    period = np.concatenate(one_period)
    frame = FRAME_SAMPLES_48K * sample_rate // 48000
    repeats = frame // math.gcd(len(period), frame)
    loop = np.tile(period, repeats)
    return np.clip(np.round(loop), -32768, 32767).astype(np.int16)
