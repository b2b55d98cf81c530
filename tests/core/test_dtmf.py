"""The in-band DTMF detector: generated keys, noise, twist, speech-like audio, Opus coding."""

from __future__ import annotations

import numpy as np
import pytest

from voice.media.dtmf import DtmfDetector, generate
from voice.media.opus import OpusDecoderStream, OpusEncoderStream

ALL = "123A456B789C*0#D"


def detect(pcm: np.ndarray, frame: int = 960) -> str:
    detector = DtmfDetector()
    keys = []
    for start in range(0, len(pcm), frame):
        keys += detector.feed(pcm[start : start + frame])
    return "".join(keys)


def test_every_key_is_detected_once():
    assert detect(generate(ALL)) == ALL


def test_a_long_press_is_one_key_and_repeats_need_a_pause():
    assert detect(generate("5", on_ms=1000)) == "5"
    assert detect(generate("55", on_ms=60, off_ms=60)) == "55"


def test_too_short_a_tone_is_not_a_key():
    assert detect(generate("5", on_ms=25, off_ms=100)) == ""


@pytest.mark.parametrize(
    ("twist", "expected"), [(6.0, "159#"), (-3.0, "159#"), (12.0, ""), (-8.0, "")]
)
def test_twist_limits(twist, expected):
    assert detect(generate("159#", twist_db=twist)) == expected


def test_keys_survive_noise_and_noise_alone_is_no_key():
    rng = np.random.default_rng(7)
    keys = generate("2580", level_dbfs=-10)
    noise = rng.normal(0, 32767 * 10 ** (-35 / 20), len(keys))
    assert detect(np.clip(keys + noise, -32768, 32767).astype(np.int16)) == "2580"
    loud_noise = rng.normal(0, 32767 * 10 ** (-12 / 20), 48000 * 5)
    assert detect(np.clip(loud_noise, -32768, 32767).astype(np.int16)) == ""


def test_speech_like_audio_is_no_key():
    # voiced sound: a 120 Hz pitch with many harmonics, slowly gliding, syllable envelope
    t = np.arange(48000 * 4) / 48000
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 48000
    voice = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    pcm = (voice * envelope / np.max(np.abs(voice)) * 20000).astype(np.int16)
    assert detect(pcm) == ""
    chord = (np.sin(2 * np.pi * 700 * t) + np.sin(2 * np.pi * 1000 * t)) * 8000  # no DTMF pair
    assert detect(chord.astype(np.int16)) == ""


def test_keys_survive_opus_coding():
    encoder, decoder = OpusEncoderStream(bitrate=24000), OpusDecoderStream()
    pcm = np.concatenate(
        [generate("0123456789*#", on_ms=100, off_ms=100), np.zeros(960 * 4, np.int16)]
    )
    pcm = pcm[: len(pcm) // 960 * 960]
    decoded = np.concatenate(
        [decoder.decode(encoder.encode(pcm[i : i + 960])) for i in range(0, len(pcm), 960)]
    )
    assert detect(decoded) == "0123456789*#"


def test_frames_of_any_length():
    assert detect(generate("147"), frame=333) == "147"
