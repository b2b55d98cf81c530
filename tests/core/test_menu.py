"""The IVR menu stepper, pure, with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hotline import menu as m

OPEN = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
NIGHT = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 23:00 in Shanghai

DOC = {
    "start": "main",
    "operator": {"key": "0", "queue": "operators"},
    "hours": {
        "timezone": "Asia/Shanghai",
        "open": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00"}],
        "closed": {"say": "We are closed.", "then": {"hangup": True}},
    },
    "menus": {
        "main": {
            "prompt": {"say": "Press 1 for weather, 12 for news, 9 to leave."},
            "options": {"1": {"goto": "weather"}, "12": {"goto": "news"}, "9": {"hangup": True}},
            "timeout_s": 5,
            "retries": 1,
            "invalid_prompt": {"say": "Sorry, that is not an option."},
            "timeout_prompt": {"say": "Please press a key."},
        },
        "weather": {
            "prompt": {"say": "Enter the city code, then hash."},
            "max_digits": 6,
            "finish_key": "#",
            "collect": {
                "lookup": {
                    "provider": "weather",
                    "key": "{digits}",
                    "say": "{city}: {summary}",
                    "then": {"goto": "main"},
                }
            },
        },
        "news": {"prompt": {"say": "No news is good news."}, "then": {"goto": "main"}},
    },
}


@pytest.fixture
def menu() -> m.Menu:
    return m.parse(DOC)


def plays(commands) -> list[str]:
    return [c.prompt.say or c.prompt.tone_id for c in commands if isinstance(c, m.Play)]


def begin(menu):
    session, commands = m.start(menu, 0.0, OPEN)
    assert plays(commands) == ["Press 1 for weather, 12 for news, 9 to leave."]
    return session, commands


def test_start_plays_the_greeting_and_waits_for_a_key_after_it(menu):
    session, commands = begin(menu)
    assert m.Visit("main") in commands and session.phase == "prompt"
    session, commands = m.prompt_done(menu, session, session.seq, 4.0)
    assert commands == [m.SetTimer(session.seq, 9.0)] and session.phase == "wait"


def test_a_key_moves_to_the_chosen_node(menu):
    session, _ = begin(menu)
    session, _ = m.prompt_done(menu, session, session.seq, 4.0)
    session, commands = m.digit(menu, session, "1", 5.0)  # a prefix of "12": wait a moment
    session, commands = m.timer(menu, session, session.seq, 8.0)
    assert session.node == "weather" and plays(commands) == ["Enter the city code, then hash."]
    assert m.Visit("main", "1") in commands and session.path == ("main", "weather")


def test_barge_in_stops_the_prompt(menu):
    session, _ = begin(menu)
    session, commands = m.digit(menu, session, "9", 1.0)
    assert commands[0] == m.StopPlayback() and m.Hangup("menu") in commands


def test_a_prefix_waits_for_the_next_digit_or_the_inter_digit_timeout(menu):
    session, _ = begin(menu)
    session, commands = m.digit(menu, session, "1", 1.0)  # "1" is an option but so is "12"
    assert commands[-1] == m.SetTimer(session.seq, 4.0) and session.digits == "1"
    later, commands = m.digit(menu, session, "2", 2.0)
    assert later.node == "news"
    timed_out, commands = m.timer(menu, session, session.seq, 4.0)
    assert timed_out.node == "weather"


def test_invalid_and_timeout_prompts_then_failure(menu):
    session, _ = begin(menu)
    session, _ = m.prompt_done(menu, session, session.seq, 4.0)
    session, commands = m.digit(menu, session, "5", 5.0)
    assert plays(commands) == ["Sorry, that is not an option.", plays(begin(menu)[1])[0]]
    assert session.failures == 1
    session, _ = m.prompt_done(menu, session, session.seq, 8.0)
    session, commands = m.timer(menu, session, session.seq, 13.0)  # no key: retries exhausted
    assert commands == [m.Hangup("failure")] and session.phase == "done"


def test_the_timeout_prompt_is_played_on_silence(menu):
    session, _ = begin(menu)
    session, _ = m.prompt_done(menu, session, session.seq, 4.0)
    session, commands = m.timer(menu, session, session.seq, 9.0)
    assert plays(commands)[0] == "Please press a key."


def test_stale_events_are_ignored(menu):
    session, _ = begin(menu)
    old = session.seq
    session, _ = m.digit(menu, session, "1", 1.0)
    assert m.prompt_done(menu, session, old, 2.0) == (session, [])
    assert m.timer(menu, session, old, 2.0) == (session, [])
    assert m.digit(menu, session, "x", 2.0) == (session, [])


def test_operator_key_anywhere_but_while_collecting(menu):
    session, _ = begin(menu)
    session, commands = m.digit(menu, session, "0", 1.0)
    assert commands == [m.StopPlayback(), m.Enqueue("operators")]
    session, _ = begin(menu)
    session, _ = m.digit(menu, session, "1", 1.0)
    session, _ = m.timer(menu, session, session.seq, 4.0)  # into "weather", which collects
    session, commands = m.digit(menu, session, "0", 5.0)
    assert session.digits == "0" and not any(isinstance(c, m.Enqueue) for c in commands)


def test_collect_then_lookup_then_speak_the_result(menu):
    session, _ = begin(menu)
    session, _ = m.digit(menu, session, "1", 1.0)
    session, _ = m.timer(menu, session, session.seq, 4.0)
    for key in "010":
        session, _ = m.digit(menu, session, key, 5.0)
    session, commands = m.digit(menu, session, "#", 6.0)
    lookup = commands[-1]
    assert lookup == m.Lookup("weather", "010", session.seq)
    session, commands = m.lookup_result(
        menu, session, lookup.seq, {"city": "Beijing", "summary": "sunny"}, 6.5
    )
    assert plays(commands) == ["Beijing: sunny"]
    session, commands = m.prompt_done(menu, session, session.seq, 8.0)
    assert session.node == "main" and m.Visit("main") in commands
    assert dict(session.gathered)["weather"] == "010"


def test_a_failed_lookup_apologises_and_goes_on(menu):
    session, _ = begin(menu)
    session, _ = m.digit(menu, session, "1", 1.0)
    session, _ = m.timer(menu, session, session.seq, 4.0)
    session, commands = m.digit(menu, session, "#", 5.0)  # no digits: counts as silence
    assert plays(commands)  # the prompt again
    for key in "999#":
        session, commands = m.digit(menu, session, key, 6.0)
    session, commands = m.lookup_result(menu, session, commands[-1].seq, None, 7.0)
    assert "not available" in plays(commands)[0]
    session, _ = m.prompt_done(menu, session, session.seq, 9.0)
    assert session.node == "main"


def test_a_plain_announcement_node_continues_by_itself(menu):
    session, _ = begin(menu)
    session, _ = m.digit(menu, session, "1", 1.0)
    session, commands = m.digit(menu, session, "2", 1.5)
    assert plays(commands) == ["No news is good news."]
    session, _ = m.digit(menu, session, "5", 2.0)  # ignored: nothing to gather here
    assert session.node == "news"
    session, commands = m.prompt_done(menu, session, session.seq, 3.0)
    assert session.node == "main"


def test_closed_hours_take_the_closed_branch(menu):
    session, commands = m.start(menu, 0.0, NIGHT)
    assert plays(commands) == ["We are closed."]
    session, commands = m.prompt_done(menu, session, session.seq, 2.0)
    assert commands == [m.Hangup("menu")]


def test_the_shape_from_api_md_parses():
    doc = {
        "start": "main",
        "menus": {
            "main": {
                "prompt": {"say": "Welcome. Press 1 for weather, 0 for an operator."},
                "options": {
                    "1": {"goto": "weather"},
                    "0": {"queue": "operators"},
                    "9": {"hangup": True},
                },
                "timeout_s": 5,
                "retries": 2,
            },
            "weather": {"prompt": {"tone_id": "t1"}, "options": {"*": {"goto": "main"}}},
        },
    }
    parsed = m.parse(doc)
    assert parsed.nodes["weather"].prompt.tone_id == "t1"
    assert [p.say or p.tone_id for p in parsed.prompts()][1] == "t1"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.update(start="nowhere"), "start"),
        (
            lambda d: d["menus"]["main"]["options"].update({"3": {"goto": "ghost"}}),
            "menus.main.options.3.goto",
        ),
        (
            lambda d: d["menus"]["main"]["options"].update({"x": {"hangup": True}}),
            "menus.main.options.x",
        ),
        (lambda d: d["menus"]["main"].update(timeout_s=-1), "menus.main.timeout_s"),
        (lambda d: d["menus"]["main"].update(retries=1.5), "menus.main.retries"),
        (lambda d: d["menus"]["main"].update(colour="blue"), "menus.main.colour"),
        (lambda d: d["menus"]["main"].update(prompt={"say": ""}), "menus.main.prompt.say"),
        (lambda d: d["menus"]["main"].update(prompt={"sing": "la"}), "menus.main.prompt"),
        (lambda d: d["menus"]["news"].pop("then"), "menus.news.then"),
        (
            lambda d: d["menus"]["news"].pop("prompt") and d["menus"]["news"].pop("then"),
            "menus.news.prompt",
        ),
        (lambda d: d["hours"]["open"][0].update(start="8am"), "hours.open.0.start"),
        (lambda d: d["hours"].update(timezone="Moon/Base"), "hours.timezone"),
        (lambda d: d["hours"].pop("closed"), "hours.closed"),
        (lambda d: d.update(operator={"key": "00", "queue": "q"}), "operator.key"),
        (
            lambda d: d["menus"]["main"]["options"].update({"4": {"goto": "main", "hangup": True}}),
            "menus.main.options.4",
        ),
        (
            lambda d: d["menus"].update(
                a={"say": "A", "then": {"goto": "b"}}, b={"say": "B", "then": {"goto": "a"}}
            ),
            "menus.a.then",
        ),
    ],
)
def test_invalid_documents_name_the_bad_path(change, path):
    import copy

    doc = copy.deepcopy(DOC)
    change(doc)
    with pytest.raises(m.MenuError) as info:
        m.parse(doc)
    assert info.value.path == path
