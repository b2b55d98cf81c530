"""Uploaded audio: every common format decodes; bad files get a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from tests.audio import dominant_frequency
from tests.audiofiles import FORMATS, encoded, flac_claiming, wav_bytes
from voice.clips import BadAudio, decode_audio, prepare_loop
from voice.media.opus import OpusDecoderStream, encode_loop


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_common_format_decodes_to_48k_mono(tmp_path, ext):
    path = tmp_path / f"tone.{ext}"
    path.write_bytes(encoded(ext, (900.0,), 1.5))
    pcm = decode_audio(path, keep_s=60, longest_s=600)
    assert pcm.dtype == np.int16
    assert 1.3 * 48000 <= len(pcm) <= 1.7 * 48000
    assert abs(dominant_frequency(pcm[4800:-4800]) - 900) < 10


def test_long_files_are_trimmed_and_absurd_ones_refused(tmp_path):
    path = tmp_path / "long.wav"
    path.write_bytes(wav_bytes((500.0,), 5.0, rate=8000))
    assert len(decode_audio(path, keep_s=2, longest_s=600)) == 2 * 48000
    path = tmp_path / "three-hours.flac"
    path.write_bytes(flac_claiming(3 * 3600))
    with pytest.raises(BadAudio, match="min long"):
        decode_audio(path, keep_s=60, longest_s=600)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 10, np.random.default_rng(1).bytes(50_000), b"RIFF\x00\x00\x00\x00WAVEfmt "],
    ids=["empty", "zeros", "random", "truncated-header"],
)
def test_garbage_is_bad_audio(tmp_path, content):
    path = tmp_path / "upload"
    path.write_bytes(content)
    with pytest.raises(BadAudio):
        decode_audio(path, keep_s=60, longest_s=600)


def test_a_truncated_mp3_keeps_what_decodes(tmp_path):
    data = encoded("mp3", (700.0,), 3.0)
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2])
    pcm = decode_audio(path, keep_s=60, longest_s=600)
    assert 1.0 * 48000 < len(pcm) < 2.2 * 48000


def test_prepare_loop_normalises_fades_and_aligns():
    quiet = (np.sin(2 * np.pi * 800 * np.arange(48000 * 2 + 123) / 48000) * 300).astype(np.int16)
    out = prepare_loop(quiet)
    assert len(out) % 960 == 0 and len(out) >= len(quiet)
    rms = np.sqrt(np.mean(out[4800:-4800].astype(float) ** 2))
    assert 20 * np.log10(rms / 32767) == pytest.approx(-20, abs=1)
    assert abs(int(out[0])) < 50 and abs(int(out[len(quiet) - 1])) < 50  # faded edges
    loud = (np.sign(np.sin(np.arange(48000) / 10)) * 32000).astype(np.int16)  # square: peaky
    assert np.max(np.abs(prepare_loop(loud).astype(int))) <= 32767 * 10 ** (-1 / 20) + 1


def test_a_prepared_loop_plays_round_without_a_gap():
    pcm = prepare_loop((np.sin(2 * np.pi * 600 * np.arange(48000) / 48000) * 8000).astype(np.int16))
    clip = encode_loop(pcm)
    decoder = OpusDecoderStream()
    played = np.concatenate([decoder.decode(p) for p in clip.packets * 3]).astype(float)
    # around each seam the level dips only through the short fades, never to a silent gap
    frame_rms = np.sqrt(np.mean(played.reshape(-1, 960) ** 2, axis=1))
    seams = [len(clip.packets) * k for k in (1, 2)]
    for seam in seams:
        assert min(frame_rms[seam - 1], frame_rms[seam]) > 0.3 * np.median(frame_rms)
