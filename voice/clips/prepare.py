"""Pure preparation of decoded audio for looped playout: loudness, edges, frame alignment."""

from __future__ import annotations

import numpy as np

FRAME = 960  # 20 ms at 48 kHz
TARGET_RMS_DBFS = -20.0  # speech/music level comparable to a phone's ring tone
PEAK_DBFS = -1.0
FADE_S = 0.015


def prepare_loop(pcm: np.ndarray, rate: int = 48000) -> np.ndarray:
    """Normalises loudness (RMS to -20 dBFS, peaks kept under -1 dBFS), fades both ends so
    the loop seam never clicks, and pads to whole 20 ms frames."""
    x = pcm.astype(np.float64)
    # Loudness of the 20 ms frames that carry sound, so pauses do not make a tone louder.
    frames = x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)
    power = np.mean(frames**2, axis=1) if len(frames) else np.zeros(0)
    active = power[power > (32767 * 10 ** (-50 / 20)) ** 2]
    rms = float(np.sqrt(np.mean(active))) if len(active) else 0.0
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if rms > 0 and peak > 0:
        gain = min(
            10 ** (TARGET_RMS_DBFS / 20) * 32767 / rms,
            10 ** (PEAK_DBFS / 20) * 32767 / peak,
        )
        x *= gain
    fade = min(round(FADE_S * rate), len(x) // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    padded = np.zeros(-(-len(x) // FRAME) * FRAME)
    padded[: len(x)] = x
    return np.clip(np.round(padded), -32768, 32767).astype(np.int16)
