"""Ringback rule selection, pure, with a fake clock."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime, time

import pytest

from ringback import rules
from ringback.rules import Mode, RingbackSetting, Rule, RuleError, parse_setting, select

# 2026-11-23 is a Monday. 02:00 UTC is 10:00 in Shanghai.
MONDAY_10_SHANGHAI = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
BOX = ["t-default", "t-boss", "t-family", "t-evening", "t-weekend"]


def pick(setting, *, caller=None, group=None, now=MONDAY_10_SHANGHAI, usable=BOX, rotation=0):
    return select(
        setting, caller=caller, caller_group=group, now=now, usable=usable, rotation=rotation
    )


SETTING = RingbackSetting(
    default_tone_id="t-default",
    rules=(
        Rule("t-evening", start=time(18), end=time(23)),
        Rule("t-family", groups=frozenset({"family"})),
        Rule("t-boss", callers=frozenset({"boss"})),
        Rule("t-weekend", days=frozenset({5, 6})),
    ),
)


def test_most_specific_rule_wins():
    assert pick(SETTING, caller="boss", group="family").tone_id == "t-boss"
    assert pick(SETTING, caller="mum", group="family").tone_id == "t-family"
    assert pick(SETTING, caller="stranger").tone_id == "t-default"
    evening = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 19:00 Shanghai
    assert pick(SETTING, caller="stranger", now=evening).tone_id == "t-evening"
    assert pick(SETTING, caller="mum", group="family", now=evening).tone_id == "t-family"
    saturday = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)
    assert pick(SETTING, caller="stranger", now=saturday).why == "time"
    assert pick(SETTING, caller="boss", now=saturday).tone_id == "t-boss"


def test_a_combined_rule_ranks_above_its_plain_twin():
    setting = RingbackSetting(
        rules=(
            Rule("t-boss", callers=frozenset({"boss"})),
            Rule("t-evening", callers=frozenset({"boss"}), days=frozenset({0})),
        )
    )
    assert pick(setting, caller="boss").tone_id == "t-evening"  # Monday
    tuesday = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert pick(setting, caller="boss", now=tuesday).tone_id == "t-boss"


def test_first_listed_wins_among_equals():
    setting = RingbackSetting(
        rules=(
            Rule("t-family", groups=frozenset({"family"})),
            Rule("t-boss", groups=frozenset({"family"})),
        )
    )
    assert pick(setting, group="family").tone_id == "t-family"


def test_time_zone_decides_the_day_and_the_hour():
    late = Rule("t-evening", days=frozenset({0}), start=time(9), end=time(11))
    setting = RingbackSetting(rules=(late,), timezone="Asia/Shanghai")
    assert pick(setting).tone_id == "t-evening"  # 10:00 Monday in Shanghai
    in_new_york = RingbackSetting(rules=(late,), timezone="America/New_York")
    assert pick(in_new_york).tone_id is None  # 21:00 Sunday in New York


def test_midnight_crossing_window_belongs_to_the_day_it_starts():
    night = Rule("t-evening", days=frozenset({4}), start=time(22), end=time(6))  # Friday night
    setting = RingbackSetting(rules=(night,), timezone="UTC")
    at = lambda d, h: datetime(2026, 11, d, h, 30, tzinfo=UTC)  # noqa: E731 (27th: Friday)
    assert pick(setting, now=at(27, 23)).tone_id == "t-evening"
    assert pick(setting, now=at(28, 5)).tone_id == "t-evening"  # Saturday morning
    assert pick(setting, now=at(28, 6)).tone_id is None  # the window ends at 06:00
    assert pick(setting, now=at(27, 5)).tone_id is None  # Friday morning is Thursday's night
    assert pick(setting, now=at(28, 23)).tone_id is None


def test_unusable_tones_are_skipped():
    usable = ["t-default", "t-family"]  # t-boss expired or deleted
    assert pick(SETTING, caller="boss", group="family", usable=usable).tone_id == "t-family"
    assert pick(SETTING, caller="boss", usable=usable).tone_id == "t-default"
    assert pick(SETTING, caller="boss", usable=[]) == rules.Selection(None, "none", 0)


def test_shuffle_rotates_fairly_and_never_repeats_back_to_back():
    setting = RingbackSetting(
        mode=Mode.SHUFFLE, rules=(Rule("t-boss", callers=frozenset({"boss"})),)
    )
    heard, rotation = [], 0
    for _ in range(50):
        selection = pick(setting, caller="stranger", usable=BOX, rotation=rotation)
        heard.append(selection.tone_id)
        rotation = selection.rotation
    assert all(a != b for a, b in itertools.pairwise(heard))
    assert set(Counter(heard).values()) == {10}
    assert pick(setting, caller="boss", rotation=7).tone_id == "t-boss"  # rules still win
    assert pick(setting, caller="boss", rotation=7).rotation == 7  # and do not turn the wheel


def test_parse_names_the_bad_path_and_accepts_good_documents():
    known, groups = set(BOX), {"family"}
    good = {
        "default_tone_id": "t-default",
        "mode": "shuffle",
        "timezone": "Europe/Paris",
        "rules": [
            {
                "tone_id": "t-boss",
                "callers": ["boss"],
                "days": [0, 4],
                "start": "22:00",
                "end": "06:30",
            }
        ],
    }
    setting = parse_setting(good, known_tones=known, known_groups=groups)
    assert setting.rules[0].start == time(22) and setting.rules[0].end == time(6, 30)
    assert (
        parse_setting(rules.to_document(setting), known_tones=known, known_groups=groups) == setting
    )
    bad = [
        ({"default_tone_id": "nope"}, "default_tone_id"),
        ({"mode": "random"}, "mode"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"rules": [{"tone_id": "nope"}]}, "rules.0.tone_id"),
        ({"rules": [{"tone_id": "t-boss", "groups": ["exes"]}]}, "rules.0.groups"),
        ({"rules": [{"tone_id": "t-boss", "days": [7]}]}, "rules.0.days"),
        ({"rules": [{"tone_id": "t-boss", "start": "25:00", "end": "26:00"}]}, "rules.0.start"),
        ({"rules": [{"tone_id": "t-boss", "start": "08:00"}]}, "rules.0.end"),
        ({"rules": [{"tone_id": "t-boss", "start": "08:00", "end": "08:00"}]}, "rules.0.end"),
        ({"rules": [{"tone_id": "t-boss"}, {"tone_id": "t-boss", "end": "9"}]}, "rules.1.start"),
    ]
    for document, path in bad:
        with pytest.raises(RuleError) as info:
            parse_setting(document, known_tones=known, known_groups=groups)
        assert info.value.path == path, document
