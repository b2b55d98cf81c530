"""Spectrum helpers for tests that check what is heard, not how it was produced."""

from __future__ import annotations

import numpy as np


def sine(freq: float, seconds: float, rate: int = 48000, level: float = 0.5) -> np.ndarray:
    """A sine as int16 PCM, `level` being the peak as a fraction of full scale."""
    t = np.arange(round(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def _spectrum(pcm: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(pcm, dtype=np.float64)
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    return np.fft.rfftfreq(len(x), 1 / rate), power


def dominant_frequency(pcm: np.ndarray, rate: int = 48000) -> float:
    """The frequency with the most energy (DC excluded); 0.0 for an empty or silent input."""
    if len(pcm) < 2:
        return 0.0
    freqs, power = _spectrum(pcm, rate)
    power[0] = 0.0
    if not power.any():
        return 0.0
    return float(freqs[int(np.argmax(power))])


def band_energy(pcm: np.ndarray, rate: int, freq: float, width_hz: float = 30.0) -> float:
    """Share (0..1) of the signal's energy within `freq` ± `width_hz`; 0.0 for silence."""
    if len(pcm) < 2:
        return 0.0
    freqs, power = _spectrum(pcm, rate)
    power[0] = 0.0
    total = power.sum()
    if total <= 0:
        return 0.0
    band = (freqs >= freq - width_hz) & (freqs <= freq + width_hz)
    return float(power[band].sum() / total)


def band_rms(pcm: np.ndarray, rate: int, freq: float, width_hz: float = 30.0) -> float:
    """RMS (int16 units) of the part of the signal within `freq` ± `width_hz`."""
    x = np.asarray(pcm, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    rms = float(np.sqrt(np.mean(x**2)))
    return rms * float(np.sqrt(band_energy(x, rate, freq, width_hz)))


def on_off_pattern(
    pcm: np.ndarray,
    rate: int,
    freq: float,
    window_ms: int = 50,
    floor_rms: float = 200.0,
    min_run_ms: int = 0,
) -> list[tuple[bool, int]]:
    """Runs of "tone at `freq` present" / "absent", as (on, duration_ms), window by window.

    A window is "on" when its in-band RMS exceeds both `floor_rms` and a tenth of the
    loudest window's, so a quiet decoder tail does not count as tone. Runs shorter than
    `min_run_ms` (a packet or two lost on a loaded machine) join the run before them.
    """
    step = rate * window_ms // 1000
    levels = [
        band_rms(pcm[start : start + step], rate, freq, width_hz=60.0)
        for start in range(0, len(pcm) - step + 1, step)
    ]
    if not levels:
        return []
    threshold = max(floor_rms, max(levels) / 10)
    runs: list[tuple[bool, int]] = []
    for level in levels:
        on = level > threshold
        if runs and runs[-1][0] == on:
            runs[-1] = (on, runs[-1][1] + window_ms)
        else:
            runs.append((on, window_ms))
    if min_run_ms:
        merged: list[tuple[bool, int]] = []
        for on, duration in runs:
            if merged and (duration < min_run_ms or merged[-1][0] == on):
                merged[-1] = (merged[-1][0], merged[-1][1] + duration)
            else:
                merged.append((on, duration))
        runs = merged
    return runs
