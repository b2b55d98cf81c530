"""Cheap loudness estimates: RFC 6464 levels, PCM levels, silent Opus packets, TOC parsing."""

import numpy as np
import opuslib
import opuslib.api.ctl
import opuslib.api.encoder
import pytest

from tests.audio import sine
from voice.media.level import (
    SILENCE_DBOV,
    OpusMode,
    header_extension_element,
    opus_packet_is_silent,
    parse_audio_level_extension,
    parse_opus_toc,
    pcm_level_dbov,
)


@pytest.mark.parametrize(
    ("byte", "expected"),
    [(0x80 | 30, (True, -30)), (30, (False, -30)), (0x00, (False, 0)), (0xFF, (True, -127))],
)
def test_audio_level_element(byte, expected):
    assert parse_audio_level_extension(bytes([byte])) == expected


def test_audio_level_ignores_padding_and_rejects_empty():
    assert parse_audio_level_extension(b"\x9e\x00\x00") == (True, -30)
    with pytest.raises(ValueError):
        parse_audio_level_extension(b"")


def test_one_byte_header_extension_block():
    # id 3 (2 bytes of data), padding, id 1 (1 byte: V=1, level 25), padding to 32 bits.
    block = bytes([0x31, 0xAA, 0xBB, 0x00, 0x10, 0x80 | 25, 0x00, 0x00])
    assert header_extension_element(0xBEDE, block, 1) == bytes([0x80 | 25])
    assert header_extension_element(0xBEDE, block, 3) == b"\xaa\xbb"
    assert header_extension_element(0xBEDE, block, 5) is None
    level = header_extension_element(0xBEDE, block, 1)
    assert level is not None
    assert parse_audio_level_extension(level) == (True, -25)


def test_two_byte_header_extension_block():
    block = bytes([0x07, 0x01, 0x95, 0x00, 0x0C, 0x00, 0x00, 0x00])  # id 7 len 1; id 12 empty
    assert header_extension_element(0x1000, block, 7) == b"\x95"
    assert header_extension_element(0x1003, block, 12) == b""


@pytest.mark.parametrize(
    ("profile", "block"),
    [
        (0xBEDE, bytes([0x13, 0xAA])),  # claims 4 bytes, has 1
        (0xBEDE, bytes([0xF0, 0x10, 0x80])),  # id 15 stops parsing before id 1
        (0x1000, bytes([0x01])),  # two-byte header cut short
        (0x1234, bytes([0x10, 0x80])),  # not an RFC 8285 profile
    ],
)
def test_malformed_extension_blocks_give_none(profile, block):
    assert header_extension_element(profile, block, 1) is None


def test_pcm_levels_in_dbov():
    square = np.where(np.arange(960) % 100 < 50, 32767, -32767).astype(np.int16)
    assert pcm_level_dbov(square) == pytest.approx(0.0, abs=0.01)
    assert pcm_level_dbov(sine(1000, 0.02, level=1.0)) == pytest.approx(-3.01, abs=0.05)
    assert pcm_level_dbov(sine(1000, 0.02, level=0.1)) == pytest.approx(-23.01, abs=0.05)
    assert pcm_level_dbov(np.zeros(960, np.int16)) == SILENCE_DBOV
    assert pcm_level_dbov(np.zeros(0, np.int16)) == SILENCE_DBOV
    one_lsb = np.ones(960, np.int16)
    assert pcm_level_dbov(one_lsb) == pytest.approx(-90.3, abs=0.1)


def test_silent_packet_heuristic_by_size():
    assert opus_packet_is_silent(b"")
    assert opus_packet_is_silent(b"\xf8")
    assert opus_packet_is_silent(b"\xf8\xff\xfe")
    assert not opus_packet_is_silent(b"\xf8\xff\xfe\x00")


def _encoder(dtx: bool) -> opuslib.Encoder:
    encoder = opuslib.Encoder(48000, 1, opuslib.APPLICATION_VOIP)
    encoder.bitrate = 32000
    if dtx:  # opuslib's dtx setter is broken; see voice/media/opus.py
        opuslib.api.encoder.encoder_ctl(encoder.encoder_state, opuslib.api.ctl.set_dtx, 1)
    return encoder


def test_libopus_dtx_frames_count_as_silent_and_speech_does_not():
    encoder = _encoder(dtx=True)
    silent = np.zeros(960, np.int16).tobytes()
    packets = [encoder.encode(silent, 960) for _ in range(100)]
    # After 200 ms of silence libopus sends 1-byte DTX frames, with one comfort-noise
    # refresh every 400 ms: only those few would be decoded.
    decoded = [p for p in packets[10:] if not opus_packet_is_silent(p)]
    assert len(decoded) <= 90 // 20 + 1
    tone = sine(440, 1.0, level=0.05)
    talk = [encoder.encode(tone[i : i + 960].tobytes(), 960) for i in range(0, 48000, 960)]
    assert not any(opus_packet_is_silent(p) for p in talk[2:])


def test_toc_of_real_packets():
    encoder = _encoder(dtx=False)
    tone = sine(440, 0.2, level=0.3)
    packets = [encoder.encode(tone[i : i + 960].tobytes(), 960) for i in range(0, 9600, 960)]
    toc = parse_opus_toc(packets[-1])
    assert toc is not None
    assert (toc.frame_samples, toc.frame_count, toc.stereo) == (960, 1, False)
    assert toc.duration_samples == 960
    assert toc.can_carry_fec == (toc.mode is not OpusMode.CELT)


def test_toc_table():
    celt_fb_20 = parse_opus_toc(bytes([31 << 3]))
    assert celt_fb_20 is not None
    assert celt_fb_20.mode is OpusMode.CELT and celt_fb_20.frame_samples == 960
    assert not celt_fb_20.can_carry_fec
    silk_wb_60_two = parse_opus_toc(bytes([(11 << 3) | 0x01]))
    assert silk_wb_60_two is not None
    assert silk_wb_60_two.mode is OpusMode.SILK
    assert silk_wb_60_two.duration_samples == 2 * 2880
    hybrid_stereo = parse_opus_toc(bytes([(13 << 3) | 0x04]))
    assert hybrid_stereo is not None
    assert hybrid_stereo.mode is OpusMode.HYBRID and hybrid_stereo.stereo
    code3 = parse_opus_toc(bytes([(16 << 3) | 0x03, 0x05]))
    assert code3 is not None and code3.frame_count == 5 and code3.duration_samples == 600
    assert parse_opus_toc(b"") is None
    assert parse_opus_toc(bytes([0x03])) is None  # code 3 without its count byte
    assert parse_opus_toc(bytes([0x03, 0x00])) is None  # zero frames
