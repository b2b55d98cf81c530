"""Top-K speaker selection with hysteresis: who is mixed, and how calmly the set changes."""

import math

import pytest

from conference.speakers import SpeakerPolicy, SpeakerSelector

TICKS_PER_S = 50


def run(selector, ticks, levels_at):
    """Drive `ticks` updates; `levels_at(t)` gives that tick's levels. Returns sets, changes."""
    sets, changes = [], 0
    for t in range(ticks):
        changes += selector.update(levels_at(t))
        sets.append(selector.speakers)
    return sets, changes


def speech(level, t, period=13):
    """A talker: mostly at `level`, with a short dip every `period` ticks like a syllable gap."""
    return None if t % period == 0 else level


def test_a_silent_room_has_no_speakers_and_no_changes():
    selector = SpeakerSelector()
    sets, changes = run(selector, 100, lambda t: {"a": None, "b": -127})
    assert sets[-1] == () and changes == 0


def test_a_talker_joins_a_free_slot_after_the_onset():
    selector = SpeakerSelector()
    assert not selector.update({"a": -25})
    assert selector.update({"a": -25})  # two active frames: 40 ms
    assert selector.speakers == ("a",)
    assert not selector.update({"a": -25})


def test_a_lone_click_does_not_take_a_free_slot():
    selector = SpeakerSelector()
    sets, changes = run(selector, 50, lambda t: {"a": -5 if t == 10 else None})
    assert changes == 0


def test_quiet_talkers_below_the_threshold_never_enter():
    selector = SpeakerSelector()
    sets, changes = run(selector, 200, lambda t: {"a": -45, "b": -55})
    assert changes == 0 and sets[-1] == ()


def test_the_k_loudest_are_chosen_and_ties_break_on_the_id():
    selector = SpeakerSelector(SpeakerPolicy(max_speakers=3))
    levels = {"e": -20, "d": -22, "c": -24, "b": -26, "a": -28}
    sets, _ = run(selector, 100, lambda t: levels)
    assert sets[-1] == ("c", "d", "e")

    tied = SpeakerSelector(SpeakerPolicy(max_speakers=2))
    sets, _ = run(tied, 100, lambda t: {"z": -25, "y": -25, "x": -25})
    assert sets[-1] == ("x", "y")


def test_k_none_mixes_every_active_talker():
    selector = SpeakerSelector(SpeakerPolicy(max_speakers=None))
    levels = {f"p{i:02d}": -20 - i for i in range(12)}
    sets, _ = run(selector, 20, lambda t: levels)
    assert sets[-1] == tuple(sorted(levels))


def test_a_speaker_stays_for_the_hang_time_after_going_quiet():
    policy = SpeakerPolicy()
    selector = SpeakerSelector(policy)
    run(selector, 50, lambda t: {"a": -25})
    hang = policy.ticks(policy.hang_ms)
    sets, changes = run(selector, hang + 5, lambda t: {})
    assert all(s == ("a",) for s in sets[: hang - 1])
    assert sets[-1] == () and changes == 1


def test_pauses_between_phrases_keep_the_speaker():
    selector = SpeakerSelector()
    # Half a second of speech, 400 ms of pause, repeated for 10 s.
    sets, changes = run(selector, 500, lambda t: {"a": -25 if t % 45 < 25 else None})
    assert changes == 1 and sets[-1] == ("a",)


def test_a_brief_loud_burst_does_not_replace_a_speaker():
    policy = SpeakerPolicy(max_speakers=2)
    selector = SpeakerSelector(policy)
    run(selector, 100, lambda t: {"a": speech(-28, t), "b": speech(-30, t)})
    burst = policy.ticks(policy.switch_hold_ms) - 1  # 280 ms of shouting

    def levels(t):
        shout = -6 if 10 <= t < 10 + burst else None
        return {"a": speech(-28, t), "b": speech(-30, t), "c": shout}

    sets, changes = run(selector, 200, levels)
    assert changes == 0 and sets[-1] == ("a", "b")


def test_repeated_bursts_with_long_gaps_do_not_add_up():
    selector = SpeakerSelector(SpeakerPolicy(max_speakers=1))
    run(selector, 100, lambda t: {"a": speech(-30, t)})

    def levels(t):  # 200 ms laughs every 600 ms
        return {"a": speech(-30, t), "c": -10 if t % 30 < 10 else None}

    sets, changes = run(selector, 500, levels)
    assert changes == 0 and sets[-1] == ("a",)


def test_a_sustained_louder_talker_replaces_the_weakest_speaker():
    policy = SpeakerPolicy(max_speakers=2)
    selector = SpeakerSelector(policy)
    run(selector, 100, lambda t: {"a": speech(-24, t), "b": speech(-32, t)})
    sets, changes = run(
        selector, 100, lambda t: {"a": speech(-24, t), "b": speech(-32, t), "c": speech(-18, t)}
    )
    assert sets[-1] == ("a", "c") and changes == 1
    switched_at = next(i for i, s in enumerate(sets) if "c" in s)
    # It needs the hold time of winning, and a few frames to rise 6 dB over "b".
    assert policy.ticks(policy.switch_hold_ms) <= switched_at < TICKS_PER_S


def test_two_similar_talkers_do_not_flap():
    selector = SpeakerSelector(SpeakerPolicy(max_speakers=1))

    def levels(t):  # both talk; every 250 ms the louder one swaps, by 3 dB
        swap = (t // 12) % 2
        return {"a": speech(-25 - 3 * swap, t), "b": speech(-28 + 3 * swap, t, period=11)}

    sets, changes = run(selector, 10 * TICKS_PER_S, levels)
    assert changes == 1  # the first one in stays


def test_turn_taking_follows_the_conversation():
    selector = SpeakerSelector(SpeakerPolicy(max_speakers=1))

    def levels(t):  # a and b take 2 s turns
        turn = (t // (2 * TICKS_PER_S)) % 2
        return {"a": speech(-25, t) if turn == 0 else None, "b": None if turn == 0 else -27}

    sets, changes = run(selector, 8 * TICKS_PER_S, levels)
    assert changes == 4  # a, b, a, b: one change per turn, no more
    for turn in range(4):
        end = (turn + 1) * 2 * TICKS_PER_S - 1
        assert sets[end] == (("a",) if turn % 2 == 0 else ("b",))
        # The newcomer is heard within 500 ms of the other going quiet.
        start = turn * 2 * TICKS_PER_S
        assert sets[start + 25] == sets[end]


def test_removal_is_reported_by_the_next_update():
    selector = SpeakerSelector()
    run(selector, 10, lambda t: {"a": -25, "b": -30})
    assert selector.remove("a") is True
    assert selector.remove("nobody") is False
    assert selector.speakers == ("b",)
    assert selector.update({"b": -30}) is True
    assert selector.update({"b": -30}) is False


def test_smoothed_level_follows_the_power_average():
    selector = SpeakerSelector()
    run(selector, 200, lambda t: {"a": -20})
    assert selector.level_dbov("a") == pytest.approx(-20, abs=0.01)
    assert selector.level_dbov("nobody") == -127
    run(selector, 50, lambda t: {})  # one second of silence: 300 ms time constant
    expected = -20 + 10 * math.log10(math.exp(-50 * 20 / 300))
    assert selector.level_dbov("a") == pytest.approx(expected, abs=0.01)


def test_same_levels_give_the_same_sets():
    def script(t):
        return {f"p{i}": (-20 - ((t * 7 + i * 13) % 30)) for i in range(8)}

    first, _ = run(SpeakerSelector(), 500, script)
    second, _ = run(SpeakerSelector(), 500, script)
    assert first == second


def test_policy_validation():
    with pytest.raises(ValueError):
        SpeakerPolicy(max_speakers=0)
    with pytest.raises(ValueError):
        SpeakerPolicy(frame_ms=0)
