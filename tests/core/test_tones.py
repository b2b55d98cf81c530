"""Tone synthesis: cadence lengths, levels, fades and frequencies, without an event loop."""

import numpy as np
import pytest

from tests.audio import dominant_frequency, on_off_pattern
from voice.media.tones import BUSY, RINGBACK, ToneCadence, synthesize

ALL = [("ringback", k, c) for k, c in RINGBACK.items()] + [("busy", k, c) for k, c in BUSY.items()]


@pytest.mark.parametrize(("kind", "region", "cadence"), ALL)
def test_loop_is_whole_periods_of_whole_frames(kind, region, cadence):
    pcm = synthesize(cadence)
    assert pcm.dtype == np.int16
    assert len(pcm) % 960 == 0
    period = cadence.period_ms * 48
    assert len(pcm) % period == 0
    # One period, unless a period is not whole 20 ms frames (UK busy: 750 ms -> 1500 ms).
    assert len(pcm) == period or (period % 960 and len(pcm) == 2 * period)


@pytest.mark.parametrize(("kind", "region", "cadence"), ALL)
def test_bursts_follow_the_pattern(kind, region, cadence):
    pcm = synthesize(cadence)
    runs = on_off_pattern(pcm, 48000, cadence.freqs_hz[0], window_ms=25)
    expected = list(cadence.pattern_ms) * (len(pcm) // (cadence.period_ms * 48))
    assert [on for on, _ in runs] == [i % 2 == 0 for i in range(len(expected))]
    for (_, got), want in zip(runs, expected, strict=True):
        assert abs(got - want) <= 25


def test_level_and_frequencies():
    pcm = synthesize(RINGBACK["cn"], level_dbfs=-12.0)
    peak = np.abs(pcm.astype(np.int32)).max()
    assert abs(peak - 32767 * 10 ** (-12 / 20)) < 20
    assert abs(dominant_frequency(pcm[:48000], 48000) - 450) < 2
    us = synthesize(RINGBACK["us"])[: 2 * 48000]
    spectrum = np.abs(np.fft.rfft(us.astype(float)))
    freqs = np.fft.rfftfreq(len(us), 1 / 48000)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top_two == pytest.approx([440, 480], abs=1)


def test_edges_fade_so_the_loop_never_clicks():
    pcm = synthesize(BUSY["us"]).astype(np.int32)
    # The loop starts and ends in silence-adjacent samples and no step is abrupt.
    assert abs(pcm[0]) < 50 and abs(pcm[-1]) < 50
    wrapped = np.concatenate([pcm, pcm[:10]])
    max_step = np.abs(np.diff(wrapped)).max()
    # A 620 Hz sine at peak 8200/2 moves at most ~2 pi f A / rate per sample.
    assert max_step < 2 * np.pi * 620 * 8300 / 48000
    # The first 5 ms ramp up: the first millisecond stays well under full level.
    assert np.abs(pcm[:48]).max() < 0.2 * np.abs(pcm).max()


def test_cadence_validation():
    assert RINGBACK["uk"].period_ms == 3000
    with pytest.raises(ValueError):
        ToneCadence((), (100, 100))
    with pytest.raises(ValueError):
        ToneCadence((400.0,), (100,))
    with pytest.raises(ValueError):
        ToneCadence((400.0,), (100, -5))
