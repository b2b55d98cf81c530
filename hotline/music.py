"""Hold music: a short, calm synthesised melody (no licensing, no files), pure numpy."""

from __future__ import annotations

import numpy as np

RATE = 48000
# A pentatonic phrase (C major pentatonic, soft sine voices): (frequency Hz, beats)
PHRASE = (
    (523.25, 1),
    (587.33, 1),
    (659.25, 2),
    (783.99, 1),
    (659.25, 1),
    (587.33, 2),
    (523.25, 1),
    (440.00, 1),
    (523.25, 2),
    (392.00, 2),
    (0.0, 2),
)
BEAT_S = 0.4


def melody(level: float = 0.18) -> np.ndarray:
    """One turn of the phrase as int16 PCM at 48 kHz, a whole number of 20 ms frames."""
    notes = []
    for freq, beats in PHRASE:
        n = round(beats * BEAT_S * RATE)
        t = np.arange(n) / RATE
        if freq == 0:
            notes.append(np.zeros(n))
            continue
        tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t)
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-2.5 * t)  # soft attack, bell-like decay
        notes.append(tone * envelope)
    pcm = np.concatenate(notes)
    pcm = np.concatenate([pcm, np.zeros(-len(pcm) % 960)])
    return np.round(pcm / np.max(np.abs(pcm)) * level * 32767).astype(np.int16)
