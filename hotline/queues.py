"""Operator queues: settings and the pure decision of whom to offer a waiting caller to.

Agents are app users. Their state is one of `available`, `on_call`, `wrap_up` (a pause after
a call, `wrap_up_s` long) and `away` (including after not answering an offer). Strategies:
`longest_idle` (default: the agent free for longest), `ring_all` (every available agent at
once, first to answer wins) and `round_robin` (agents in turn, by name)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from voice.errors import BadRequest


class Strategy(StrEnum):
    LONGEST_IDLE = "longest_idle"
    RING_ALL = "ring_all"
    ROUND_ROBIN = "round_robin"


class AgentState(StrEnum):
    AVAILABLE = "available"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    AWAY = "away"


@dataclass(frozen=True)
class QueueSettings:
    strategy: Strategy = Strategy.LONGEST_IDLE
    agent_ring_s: float = 15.0
    wrap_up_s: float = 10.0
    announce_every_s: float = 30.0
    max_wait_s: float = 300.0
    music_tone_id: str | None = None  # a catalog tone; default: a synthesised melody
    language: str = "en"

    def document(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy.value,
            "agent_ring_s": self.agent_ring_s,
            "wrap_up_s": self.wrap_up_s,
            "announce_every_s": self.announce_every_s,
            "max_wait_s": self.max_wait_s,
            "music_tone_id": self.music_tone_id,
            "language": self.language,
        }


def parse_settings(raw: Any) -> QueueSettings:
    if not isinstance(raw, dict):
        raise _bad("$", "queue settings are an object")
    known = set(QueueSettings().document())
    for key in raw:
        if key not in known:
            raise _bad(key, "unknown field")
    try:
        strategy = Strategy(raw.get("strategy", "longest_idle"))
    except ValueError as exc:
        raise _bad("strategy", "longest_idle, ring_all or round_robin") from exc
    numbers = {}
    for key, low, high in (
        ("agent_ring_s", 3, 120),
        ("wrap_up_s", 0, 600),
        ("announce_every_s", 5, 600),
        ("max_wait_s", 5, 7200),
    ):
        value = raw.get(key, getattr(QueueSettings(), key))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise _bad(key, f"a number of seconds from {low} to {high}")
        numbers[key] = float(value)
    language = raw.get("language", "en")
    if language not in ("en", "zh"):
        raise _bad("language", "en or zh")
    tone = raw.get("music_tone_id")
    if tone is not None and not isinstance(tone, str):
        raise _bad("music_tone_id", "a tone id")
    return QueueSettings(strategy, music_tone_id=tone, language=language, **numbers)


@dataclass(frozen=True)
class AgentView:
    user_id: str
    username: str
    state: AgentState
    idle_since: float  # when the agent last became free (seconds, any epoch)


def pick(
    settings: QueueSettings,
    agents: list[AgentView],
    *,
    last_offered: str | None,
    skip: frozenset[str] = frozenset(),
) -> list[str]:
    """The agents to offer the next caller to (empty: nobody is free)."""
    free = [a for a in agents if a.state is AgentState.AVAILABLE and a.user_id not in skip]
    if not free:
        return []
    if settings.strategy is Strategy.RING_ALL:
        return sorted(a.user_id for a in free)
    if settings.strategy is Strategy.ROUND_ROBIN:
        ordered = sorted(free, key=lambda a: a.username)
        after = [
            a
            for a in ordered
            if last_offered is not None and a.username > _name(agents, last_offered)
        ]
        return [(after or ordered)[0].user_id]
    return [min(free, key=lambda a: (a.idle_since, a.username)).user_id]


def _name(agents: list[AgentView], user_id: str) -> str:
    return next((a.username for a in agents if a.user_id == user_id), "")


def _bad(path: str, message: str) -> BadRequest:
    return BadRequest(f"{path}: {message}", code="invalid_queue", status=422)
