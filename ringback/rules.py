"""Which ringback tone a caller hears: pure selection, the clock passed in.

Precedence (most specific wins): a rule naming the caller > a rule naming the caller's contact
group > a rule with only a weekday/time window > the default. A rule may combine conditions
("my boss, on weekdays"); it then ranks by its most specific condition and, within the same
rank, a rule with a time window beats one without. Among equals the first listed wins.
Rules whose tone is not usable now (expired, deleted, not in the box) are skipped.

In `shuffle` mode the default is replaced by a fair rotation through every usable tone of the
box: each call takes the next tone, so consecutive calls hear different tones and every tone
is heard equally often. Specific rules still win over the rotation.

Weekdays are 0 = Monday ... 6 = Sunday, in the subscriber's time zone. A window whose end is
before its start crosses midnight and belongs to the day it starts on (22:00-06:00 on Friday
covers Friday night and Saturday morning)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Mode(StrEnum):
    SINGLE = "single"
    SHUFFLE = "shuffle"


class RuleError(ValueError):
    """A setting that cannot be used; `path` names the bad field (e.g. `rules.2.start`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


@dataclass(frozen=True)
class Rule:
    tone_id: str
    callers: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    days: frozenset[int] = frozenset()
    start: time | None = None
    end: time | None = None

    @property
    def rank(self) -> tuple[int, int]:
        level = 3 if self.callers else 2 if self.groups else 1 if self.timed else 0
        return level, int(self.timed)

    @property
    def timed(self) -> bool:
        return bool(self.days) or self.start is not None


@dataclass(frozen=True)
class RingbackSetting:
    default_tone_id: str | None = None
    mode: Mode = Mode.SINGLE
    rules: tuple[Rule, ...] = ()
    timezone: str = "Asia/Shanghai"

    def tone_ids(self) -> set[str]:
        ids = {r.tone_id for r in self.rules}
        return ids | {self.default_tone_id} if self.default_tone_id else ids


@dataclass(frozen=True)
class Selection:
    tone_id: str | None  # None: the regional default ring tone
    why: str  # "caller", "group", "time", "default", "shuffle" or "none"
    rotation: int = field(default=0)  # the shuffle counter to store for the next call


def select(
    setting: RingbackSetting,
    *,
    caller: str | None,
    caller_group: str | None,
    now: datetime,
    usable: Iterable[str],
    rotation: int = 0,
) -> Selection:
    """The tone for this call. `usable` lists the subscriber's usable tone ids in box order;
    `rotation` is the counter the previous shuffle selection returned."""
    usable_order = list(dict.fromkeys(usable))
    usable_set = set(usable_order)
    local = now.astimezone(ZoneInfo(setting.timezone))
    best: Rule | None = None
    for rule in setting.rules:
        if rule.tone_id not in usable_set or not _matches(rule, caller, caller_group, local):
            continue
        if best is None or rule.rank > best.rank:
            best = rule
    if best is not None:
        why = {3: "caller", 2: "group", 1: "time"}[best.rank[0]]
        return Selection(best.tone_id, why, rotation)
    if setting.mode is Mode.SHUFFLE and usable_order:
        return Selection(usable_order[rotation % len(usable_order)], "shuffle", rotation + 1)
    if setting.default_tone_id in usable_set:
        return Selection(setting.default_tone_id, "default", rotation)
    return Selection(None, "none", rotation)


def _matches(rule: Rule, caller: str | None, group: str | None, local: datetime) -> bool:
    if rule.callers and caller not in rule.callers:
        return False
    if rule.groups and group not in rule.groups:
        return False
    return _in_window(rule, local)


def _in_window(rule: Rule, local: datetime) -> bool:
    day, now = local.weekday(), local.time()
    days = rule.days or frozenset(range(7))
    if rule.start is None or rule.end is None:
        return day in days
    if rule.start <= rule.end:
        return day in days and rule.start <= now < rule.end
    # crosses midnight: the evening part is on a listed day, the morning part the day after
    return (now >= rule.start and day in days) or (now < rule.end and (day - 1) % 7 in days)


# ------------------------------------------------------------------------------- parsing


def parse_setting(
    document: dict, *, known_tones: set[str], known_groups: set[str]
) -> RingbackSetting:
    """Validates a setting document (the `PUT /v1/me/ringback` body) into a RingbackSetting.
    Raises RuleError naming the first bad path; nothing is half-applied."""
    timezone = document.get("timezone") or "Asia/Shanghai"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RuleError("timezone", f"unknown time zone {timezone!r}") from exc
    default = document.get("default_tone_id")
    if default is not None and default not in known_tones:
        raise RuleError("default_tone_id", f"{default!r} is not a tone in your box")
    try:
        mode = Mode(document.get("mode") or "single")
    except ValueError as exc:
        raise RuleError("mode", "mode is 'single' or 'shuffle'") from exc
    rules = []
    for i, raw in enumerate(document.get("rules") or []):
        rules.append(_parse_rule(raw, f"rules.{i}", known_tones, known_groups))
    return RingbackSetting(default, mode, tuple(rules), timezone)


def _parse_rule(raw: dict, path: str, known_tones: set[str], known_groups: set[str]) -> Rule:
    tone = raw.get("tone_id")
    if tone not in known_tones:
        raise RuleError(f"{path}.tone_id", f"{tone!r} is not a tone in your box")
    groups = frozenset(raw.get("groups") or ())
    unknown = sorted(groups - known_groups)
    if unknown:
        raise RuleError(f"{path}.groups", f"no contact group called {unknown[0]!r}")
    days = frozenset(raw.get("days") or ())
    if any(not isinstance(d, int) or isinstance(d, bool) or not 0 <= d <= 6 for d in days):
        raise RuleError(f"{path}.days", "days are 0 (Monday) to 6 (Sunday)")
    start, end = raw.get("start"), raw.get("end")
    if (start is None) != (end is None):
        raise RuleError(f"{path}.{'end' if end is None else 'start'}", "give both start and end")
    parsed = [_hhmm(value, f"{path}.{name}") for name, value in (("start", start), ("end", end))]
    if start is not None and parsed[0] == parsed[1]:
        raise RuleError(f"{path}.end", "the window is empty (start equals end)")
    return Rule(
        tone_id=tone,
        callers=frozenset(raw.get("callers") or ()),
        groups=groups,
        days=days,
        start=parsed[0],
        end=parsed[1],
    )


def _hhmm(value: object, path: str) -> time | None:
    if value is None:
        return None
    match = HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise RuleError(path, f"{value!r} is not a time as HH:MM (00:00-23:59)")
    return time(int(match[1]), int(match[2]))


def to_document(setting: RingbackSetting) -> dict:
    return {
        "default_tone_id": setting.default_tone_id,
        "mode": setting.mode.value,
        "timezone": setting.timezone,
        "rules": [
            {
                "tone_id": r.tone_id,
                "callers": sorted(r.callers),
                "groups": sorted(r.groups),
                "days": sorted(r.days),
                "start": r.start.strftime("%H:%M") if r.start else None,
                "end": r.end.strftime("%H:%M") if r.end else None,
            }
            for r in setting.rules
        ],
    }
