"""The opuslib adapter: silence, round trips, PLC, DTX and seamless loops."""

import numpy as np
import pytest

from tests.audio import band_energy, dominant_frequency, sine
from voice.media.opus import (
    SILENCE,
    OpusClip,
    OpusDecoderStream,
    OpusEncoderStream,
    encode_loop,
    packet_samples,
)
from voice.media.tones import RINGBACK, synthesize


def frames(pcm):
    return [pcm[i : i + 960] for i in range(0, len(pcm) - 959, 960)]


def decode_all(packets):
    decoder = OpusDecoderStream()
    return np.concatenate([decoder.decode(p) for p in packets])


def test_silence_packet_decodes_to_zeros():
    decoder = OpusDecoderStream()
    for _ in range(5):
        out = decoder.decode(SILENCE)
        assert len(out) == 960
        assert not out.any()
    assert packet_samples(SILENCE) == 960


def test_round_trip_keeps_a_1khz_sine():
    encoder, decoder = OpusEncoderStream(), OpusDecoderStream()
    packets = [encoder.encode(f) for f in frames(sine(1000, 1.0))]
    assert all(0 < len(p) < 200 for p in packets)
    out = np.concatenate([decoder.decode(p) for p in packets])
    assert len(out) == 48000
    assert abs(dominant_frequency(out[4800:], 48000) - 1000) < 5
    assert band_energy(out[4800:], 48000, 1000) > 0.9


def test_packet_loss_concealment_continues_the_signal():
    encoder, decoder = OpusEncoderStream(), OpusDecoderStream()
    packets = [encoder.encode(f) for f in frames(sine(1000, 0.5))]
    for p in packets[:20]:
        decoder.decode(p)
    concealed = decoder.decode(None)
    assert len(concealed) == 960
    assert np.abs(concealed).max() > 1000  # PLC extrapolates, it does not go silent
    assert abs(dominant_frequency(concealed, 48000) - 1000) < 60


def test_dtx_skips_silent_frames():
    encoder = OpusEncoderStream(dtx=True)
    silent = np.zeros(960, np.int16)
    out = [encoder.encode(silent) for _ in range(40)]
    assert b"" in out[-20:]
    loud = encoder.encode(sine(1000, 0.02))
    assert len(loud) > 2


def test_encoder_rejects_wrong_frames():
    encoder = OpusEncoderStream()
    with pytest.raises(ValueError):
        encoder.encode(np.zeros(480, np.int16))
    with pytest.raises(ValueError):
        encoder.encode(np.zeros(960, np.float32))


def test_encode_loop_validates_length():
    with pytest.raises(ValueError):
        encode_loop(np.zeros(1000, np.int16))
    with pytest.raises(ValueError):
        encode_loop(np.zeros(0, np.int16))
    with pytest.raises(ValueError):
        OpusClip(())


def test_clip_duration_and_shape():
    clip = encode_loop(synthesize(RINGBACK["cn"]))
    assert len(clip.packets) == 250
    assert clip.duration_s == pytest.approx(5.0)
    assert all(packet_samples(p) == 960 for p in clip.packets)


def envelope_dip(pcm, boundary, span=1920, window=120):
    """Lowest RMS of 2.5 ms windows (one 400 Hz cycle) near `boundary`, relative to the
    median elsewhere: a seamless wrap keeps the envelope flat, a naive one dips."""
    x = pcm.astype(np.float64)
    rms = np.sqrt(np.mean(x[: len(x) // window * window].reshape(-1, window) ** 2, axis=1))
    first, last = (boundary - span) // window, (boundary + span) // window
    return rms[first:last].min() / np.median(rms[4:])


def test_loop_wraps_without_a_click():
    # A continuous 400 Hz sine with a whole number of cycles per loop: a seamless encode
    # decodes across the wrap as smoothly as anywhere else.
    loop = sine(400, 0.4, level=0.4)
    clip = encode_loop(loop)
    out = decode_all(clip.packets * 3)
    n = len(loop)
    for boundary in (n, 2 * n):
        assert envelope_dip(out, boundary) > 0.9
        window = out[boundary - 2400 : boundary + 2400]
        assert band_energy(window, 48000, 400) > 0.99
    # Without priming, the encoder starts each turn from its start-up state: a gap.
    encoder = OpusEncoderStream()
    naive = [encoder.encode(f) for f in frames(loop)]
    naive_out = decode_all(naive * 3)
    assert envelope_dip(naive_out, n) < 0.75


def test_packet_samples_reads_the_toc():
    assert packet_samples(bytes([0x08 | 0x00])) == 960  # SILK NB 20 ms, one frame
    assert packet_samples(bytes([(3 << 3) | 0x00])) == 2880  # SILK NB 60 ms
    assert packet_samples(bytes([(3 << 3) | 0x01])) == 5760  # two 60 ms frames
    assert packet_samples(bytes([(31 << 3) | 0x03, 3])) == 2880  # CELT FB 3 x 20 ms
    assert packet_samples(b"") == 960
