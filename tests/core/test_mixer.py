"""The room mixer, checked by what each participant hears: spectra, sharing, limiting."""

import numpy as np
import pytest

from conference.limiter import LimiterSettings, SoftLimiter
from conference.mixer import FRAME_SAMPLES, RoomMixer
from conference.speakers import SpeakerPolicy
from tests.audio import band_rms, sine

RATE = 48000
TONES = {"p300": 300, "p500": 500, "p700": 700, "p900": 900, "p1100": 1100, "p1300": 1300}


class Talkers:
    """Participants each sending its own sine, frame by frame with continuous phase."""

    def __init__(self, levels: dict[str, float], seconds: float = 3.0):
        self.signals = {p: sine(TONES[p], seconds, level=lv) for p, lv in levels.items()}

    def frames(self, tick: int) -> dict[str, np.ndarray]:
        start = tick * FRAME_SAMPLES
        return {p: s[start : start + FRAME_SAMPLES] for p, s in self.signals.items()}


def room(*participants: str, **policy) -> RoomMixer:
    mixer = RoomMixer(SpeakerPolicy(**policy))
    for p in participants:
        mixer.join(p)
    return mixer


def listen(mixer: RoomMixer, talkers: Talkers, ticks: int) -> tuple[dict[str, np.ndarray], list]:
    """Run ticks; return what each participant received (concatenated) and the results."""
    heard: dict[str, list[np.ndarray]] = {p: [] for p in mixer.participants}
    results = []
    for tick in range(ticks):
        result = mixer.tick(talkers.frames(tick))
        results.append(result)
        for participant in mixer.participants:
            mix = result.mix_for(participant)
            assert mix is not None, participant
            heard[participant].append(mix.pcm.copy())
    return {p: np.concatenate(chunks) for p, chunks in heard.items()}, results


def tone_rms(pcm: np.ndarray, participant: str) -> float:
    return band_rms(pcm[-RATE // 2 :], RATE, TONES[participant], width_hz=40)


def test_everyone_hears_the_others_and_never_themselves():
    talkers = Talkers({"p300": 0.2, "p500": 0.15, "p700": 0.1, "p900": 0.08})
    mixer = room("p300", "p500", "p700", "p900", "l1", "l2", max_speakers=4)
    heard, results = listen(mixer, talkers, 50)
    assert results[-1].speakers == ("p300", "p500", "p700", "p900")
    for participant, pcm in heard.items():
        for talker in talkers.signals:
            level = tone_rms(pcm, talker)
            if talker == participant:
                assert level < 1.0, (participant, level)  # exactly nothing of itself
            else:
                assert level > 500, (participant, talker, level)


def test_mix_minus_is_exact_below_the_knee():
    talkers = Talkers({"p300": 0.2, "p500": 0.15, "p700": 0.1})
    mixer = room("p300", "p500", "p700", "l1", max_speakers=3)
    for tick in range(10):
        frames = talkers.frames(tick)
        result = mixer.tick(frames)
    total = sum(f.astype(np.int32) for f in frames.values())
    for speaker in result.speakers:
        expected = (total - frames[speaker]).astype(np.int16)
        assert np.array_equal(result.mix_for(speaker).pcm, expected)
    assert np.array_equal(result.mix_for("l1").pcm, total.astype(np.int16))


def test_listeners_share_one_mix_and_encodes_are_speakers_plus_one():
    talkers = Talkers({"p300": 0.2, "p500": 0.15, "p700": 0.1, "p900": 0.05})
    listeners = [f"l{i:02d}" for i in range(40)]
    mixer = room(*talkers.signals, *listeners, max_speakers=3)
    _, results = listen(mixer, talkers, 20)
    result = results[-1]
    assert result.speakers == ("p300", "p500", "p700")
    assert len(result.mixes) == 4 and result.encode_count == 4
    shared = result.mix_for("l00")
    assert all(result.mix_for(p) is shared for p in [*listeners, "p900"])
    assert shared.speaker is None
    assert shared.recipients == frozenset(listeners) | {"p900"}
    for speaker in result.speakers:
        own = result.mix_for(speaker)
        assert own.recipients == frozenset({speaker}) and own.speaker == speaker
    # Every participant receives exactly one mix.
    counted = sorted(p for mix in result.mixes for p in mix.recipients)
    assert counted == sorted(mixer.participants)


def test_with_six_talkers_and_k3_listeners_hear_exactly_the_three_loudest():
    levels = {"p300": 0.05, "p500": 0.3, "p700": 0.08, "p900": 0.25, "p1100": 0.03, "p1300": 0.2}
    talkers = Talkers(levels)
    mixer = room(*levels, "l1", max_speakers=3)
    heard, results = listen(mixer, talkers, 50)
    loudest = {"p500", "p900", "p1300"}
    assert set(results[-1].speakers) == loudest
    for talker in levels:
        rms = tone_rms(heard["l1"], talker)
        assert (rms > 1000) if talker in loudest else (rms < 1.0), (talker, rms)
    # A quieter talker outside the set hears the speakers too.
    assert all(tone_rms(heard["p300"], t) > 1000 for t in loudest)


def test_no_speakers_one_silent_mix_for_everyone():
    mixer = room("a", "b", "c")
    result = mixer.tick({"a": None, "b": np.zeros(FRAME_SAMPLES, np.int16)})
    assert result.speakers == () and len(result.mixes) == 1
    (mix,) = result.mixes
    assert mix.silent and mix.recipients == {"a", "b", "c"} and not mix.pcm.any()
    assert result.encode_count == 0


def test_an_idle_room_returns_the_same_cached_result():
    mixer = room("a", "b")
    first = mixer.mix({})
    assert mixer.select({}) is False
    assert mixer.mix({}) is first


def test_an_empty_room_has_no_mixes():
    mixer = RoomMixer()
    result = mixer.tick({"ghost": sine(300, 0.02)})
    assert result.mixes == () and result.speakers == ()


def test_one_speaker_listeners_hear_it_and_it_hears_silence():
    talkers = Talkers({"p300": 0.2})
    mixer = room("p300", "a", "b")
    heard, results = listen(mixer, talkers, 20)
    result = results[-1]
    assert result.speakers == ("p300",)
    assert len(result.mixes) == 2 and result.encode_count == 1
    own = result.mix_for("p300")
    assert own.silent and not own.pcm.any()
    assert np.array_equal(result.mix_for("a").pcm, talkers.frames(19)["p300"])
    assert tone_rms(heard["a"], "p300") > 3000


def test_muted_participants_are_not_mixed_but_still_hear():
    talkers = Talkers({"p300": 0.3, "p500": 0.1, "p700": 0.1})
    mixer = room("p300", "p500", "p700", "l1")
    listen(mixer, talkers, 10)
    assert "p300" in mixer.speakers
    mixer.set_muted("p300")
    heard, results = listen(mixer, talkers, 30)
    assert results[0].speakers_changed and "p300" not in results[0].speakers
    assert all(tone_rms(pcm, "p300") < 1.0 for pcm in heard.values())
    assert tone_rms(heard["p300"], "p500") > 1000  # the muted one still hears the others
    mixer.set_muted("p300", False)
    _, results = listen(mixer, talkers, 10)
    assert "p300" in results[-1].speakers


def test_leaving_removes_a_participant_from_every_mix():
    talkers = Talkers({"p300": 0.3, "p500": 0.1})
    mixer = room("p300", "p500", "l1", "l2")
    listen(mixer, talkers, 10)
    mixer.leave("p300")
    mixer.leave("l2")
    result = mixer.tick(talkers.frames(10))
    assert result.speakers == ("p500",) and result.speakers_changed
    assert all("p300" not in m.recipients and "l2" not in m.recipients for m in result.mixes)
    assert result.mix_for("l1").recipients == {"l1"}


def test_only_speakers_need_decoding():
    # select() with levels only, then mix() with the speakers' frames: what the engine does.
    talkers = Talkers({"p300": 0.3, "p500": 0.2, "p700": 0.1})
    mixer = room("p300", "p500", "p700", "l1", max_speakers=2)
    for tick in range(10):
        mixer.select({"p300": -13.5, "p500": -17.0, "p700": -23.0})
        frames = talkers.frames(tick)
        result = mixer.mix({p: frames[p] for p in mixer.speakers})
    assert result.speakers == ("p300", "p500")
    total = frames["p300"].astype(np.int32) + frames["p500"]
    assert np.array_equal(result.mix_for("l1").pcm, total.astype(np.int16))


def test_a_speaker_without_a_frame_this_tick_is_silent_in_the_mix():
    talkers = Talkers({"p300": 0.2, "p500": 0.2})
    mixer = room("p300", "p500", "l1")
    listen(mixer, talkers, 5)
    frames = talkers.frames(5)
    result = mixer.mix({"p300": frames["p300"]})  # p500's packet was lost, no PLC frame
    assert result.mix_for("p300").silent
    assert np.array_equal(result.mix_for("p500").pcm, frames["p300"])
    assert np.array_equal(result.mix_for("l1").pcm, frames["p300"])


def test_the_room_mix_is_there_for_recording_even_when_everyone_speaks():
    talkers = Talkers({"p300": 0.2, "p500": 0.2})
    mixer = RoomMixer()
    mixer.join("p300")
    mixer.join("p500")
    for tick in range(5):
        result = mixer.tick(talkers.frames(tick))
    assert len(result.mixes) == 2  # nobody listens: no shared mix to encode
    total = sum(f.astype(np.int32) for f in talkers.frames(4).values())
    assert np.array_equal(result.room_mix, total.astype(np.int16))


def test_bad_frames_are_refused():
    mixer = room("a", "b")
    for _ in range(3):
        mixer.select({"a": -20})
    with pytest.raises(ValueError):
        mixer.mix({"a": np.zeros(480, np.int16)})
    with pytest.raises(ValueError):
        mixer.mix({"a": np.zeros(FRAME_SAMPLES, np.float32)})
    with pytest.raises(KeyError):
        mixer.set_muted("nobody")


# ------------------------------------------------------------------ the limiter


def thd(pcm: np.ndarray, fundamental: float) -> float:
    """Total harmonic distortion: harmonic RMS over fundamental RMS."""
    harmonics = [band_rms(pcm, RATE, fundamental * k, width_hz=20) for k in range(2, 20)]
    return float(np.sqrt(sum(h * h for h in harmonics)) / band_rms(pcm, RATE, fundamental, 20))


def limit(signal: np.ndarray) -> np.ndarray:
    limiter = SoftLimiter()
    out = np.empty(len(signal), np.int16)
    for start in range(0, len(signal), FRAME_SAMPLES):
        limiter.process(signal[start : start + FRAME_SAMPLES], out[start : start + FRAME_SAMPLES])
    return out


def test_three_full_scale_talkers_never_wrap_and_distort_far_less_than_clipping():
    one = sine(440, 1.0, level=1.0).astype(np.int32)
    total = one * 3
    out = limit(total)
    assert np.abs(out.astype(np.int32)).max() <= 32767
    loud = np.abs(total) > 1000
    assert np.all(np.sign(out[loud]) == np.sign(total[loud]))  # nothing wrapped around
    clipped = np.clip(total, -32768, 32767).astype(np.int16)
    settled = slice(5 * FRAME_SAMPLES, None)  # after the first attack
    ours, theirs = thd(out[settled], 440), thd(clipped[settled], 440)
    assert theirs > 0.2
    assert ours < theirs / 50, (ours, theirs)


def test_three_different_loud_tones_stay_clean():
    tones = (310, 530, 770)  # not harmonics of one period: the frame peaks keep changing
    total = sum(sine(f, 1.0, level=1.0).astype(np.int32) for f in tones)
    out = limit(total)
    clipped = np.clip(total, -32768, 32767)
    settled = slice(5 * FRAME_SAMPLES, None)

    def spurious(pcm):  # energy share outside the three tones
        x = pcm[settled].astype(np.float64)
        inside = sum(band_rms(x, RATE, f, 20) ** 2 for f in tones)
        return 1 - inside / np.mean(x * x)

    assert spurious(clipped) > 0.05
    assert spurious(out) < spurious(clipped) / 100
    assert np.abs(out.astype(np.int32)).max() <= 32767


def test_quiet_signals_pass_bit_exactly():
    quiet = (sine(300, 0.5, level=0.3).astype(np.int32) + sine(500, 0.5, level=0.3)) // 1
    assert np.abs(quiet).max() < LimiterSettings().knee
    assert np.array_equal(limit(quiet), quiet.astype(np.int16))


def test_gain_recovers_after_a_loud_burst():
    loud = sine(440, 0.2, level=1.0).astype(np.int32) * 3
    quiet = sine(440, 2.0, level=0.2).astype(np.int32)
    out = limit(np.concatenate([loud, quiet]))
    tail = slice(-RATE // 2, None)
    assert np.array_equal(out[len(loud) :][tail], quiet[tail].astype(np.int16))
    # Right after the burst the quiet talker is ducked, not cut, and comes back smoothly.
    after = out[len(loud) : len(loud) + 4800].astype(np.int32)
    assert 0 < np.abs(after).max() < np.abs(quiet[:4800]).max()


def test_loud_speakers_through_the_mixer_stay_in_range():
    talkers = Talkers({"p300": 1.0, "p500": 1.0, "p700": 1.0, "p900": 1.0})
    mixer = room(*talkers.signals, "l1", max_speakers=4)
    heard, _ = listen(mixer, talkers, 50)
    for participant, pcm in heard.items():
        assert np.abs(pcm.astype(np.int32)).max() <= 32767
        others = [t for t in talkers.signals if t != participant]
        assert all(tone_rms(pcm, t) > 3000 for t in others)
        if participant in talkers.signals:
            assert tone_rms(pcm, participant) < 1.0


def test_k_all_grows_to_every_talker_and_stays_exact():
    levels = {p: 0.05 for p in TONES}
    talkers = Talkers(levels)
    mixer = room(*levels, "l1", max_speakers=None)
    heard, results = listen(mixer, talkers, 30)
    assert results[-1].speakers == tuple(sorted(TONES))
    assert len(results[-1].mixes) == len(TONES) + 1
    frames = talkers.frames(29)
    total = sum(f.astype(np.int32) for f in frames.values())
    for speaker in TONES:
        expected = (total - frames[speaker]).astype(np.int16)
        assert np.array_equal(results[-1].mix_for(speaker).pcm, expected)
        assert tone_rms(heard[speaker], speaker) < 1.0


def test_distinct_mixes_track_the_speaker_set_tick_by_tick():
    # Talkers come and go; at every tick there is one mix per speaker plus the shared one.
    mixer = room(*TONES, "l1", "l2", max_speakers=3)
    signals = {p: sine(f, 4.0, level=0.9) for p, f in TONES.items()}  # loud: the limiter works
    for tick in range(200):
        start = tick * FRAME_SAMPLES
        frames = {
            p: s[start : start + FRAME_SAMPLES]
            for i, (p, s) in enumerate(signals.items())
            if (tick // 25 + i) % 3  # each talker pauses one period in three
        }
        result = mixer.tick(frames)
        assert len(result.mixes) == len(result.speakers) + 1
        assert result.encode_count <= len(result.speakers) + 1
        assert sorted(p for m in result.mixes for p in m.recipients) == sorted(mixer.participants)
        for mix in result.mixes:
            assert mix.speaker is None or mix.recipients == {mix.speaker}
            assert np.abs(mix.pcm.astype(np.int32)).max() <= 32767
