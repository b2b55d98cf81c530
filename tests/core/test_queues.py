"""Operator queue decisions, pure."""

from __future__ import annotations

import pytest

from hotline.queues import AgentState, AgentView, QueueSettings, Strategy, parse_settings, pick
from voice.errors import BadRequest

A = AgentState.AVAILABLE
AGENTS = [
    AgentView("u-carol", "carol", A, idle_since=100.0),
    AgentView("u-alice", "alice", A, idle_since=300.0),
    AgentView("u-dave", "dave", AgentState.ON_CALL, idle_since=50.0),
    AgentView("u-bob", "bob", A, idle_since=200.0),
    AgentView("u-erin", "erin", AgentState.AWAY, idle_since=10.0),
]


def test_longest_idle_picks_the_agent_free_for_longest():
    assert pick(QueueSettings(), AGENTS, last_offered=None) == ["u-carol"]
    assert pick(QueueSettings(), AGENTS, last_offered=None, skip=frozenset({"u-carol"})) == [
        "u-bob"
    ]


def test_ring_all_rings_every_available_agent():
    settings = QueueSettings(strategy=Strategy.RING_ALL)
    assert pick(settings, AGENTS, last_offered=None) == ["u-alice", "u-bob", "u-carol"]


def test_round_robin_goes_round_by_name():
    settings = QueueSettings(strategy=Strategy.ROUND_ROBIN)
    order, last = [], None
    for _ in range(4):
        last = pick(settings, AGENTS, last_offered=last)[0]
        order.append(last)
    assert order == ["u-alice", "u-bob", "u-carol", "u-alice"]


def test_nobody_free():
    busy = [AgentView("u", "u", AgentState.WRAP_UP, 0.0)]
    for strategy in Strategy:
        assert pick(QueueSettings(strategy=strategy), busy, last_offered=None) == []


def test_settings_parse_and_refuse_nonsense():
    settings = parse_settings({"strategy": "ring_all", "max_wait_s": 60, "language": "zh"})
    assert settings.strategy is Strategy.RING_ALL and settings.max_wait_s == 60.0
    assert parse_settings(settings.document()) == settings
    for bad in (
        {"strategy": "random"},
        {"max_wait_s": -1},
        {"wrap_up_s": "soon"},
        {"colour": 1},
        {"language": "fr"},
        {"agent_ring_s": True},
        [],
    ):
        with pytest.raises(BadRequest):
            parse_settings(bad)
