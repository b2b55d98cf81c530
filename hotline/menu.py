"""IVR menus: the document model, its validation, and the pure stepper.

A menu document (JSON or YAML) names a `start` node and `menus`. A node either gathers keys
(it has `options` and/or `collect`) or just speaks (`prompt`, then `then`):

    {"start": "main", "language": "en",
     "operator": {"key": "0", "queue": "operators"},
     "hours": {"timezone": "Asia/Shanghai",
               "open": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "20:00"}],
               "closed": {"say": "We are closed.", "then": {"hangup": true}}},
     "menus": {
       "main": {"prompt": {"say": "Press 1 for weather."}, "options": {"1": {"goto": "weather"}},
                "timeout_s": 5, "retries": 2},
       "weather": {"prompt": {"say": "Enter the city code, then hash."},
                   "max_digits": 6, "finish_key": "#",
                   "collect": {"lookup": {"provider": "weather", "key": "{digits}",
                               "say": "{city}: {summary}", "then": {"goto": "main"}}}}}}

Actions: `goto`, `say`/`play` (then `then`), `lookup`, `transfer` (a username), `queue`,
`hangup`. The operator key works in every node except while a node collects free digits.

The stepper takes events (start, prompt finished, digit, timer, lookup result) with `now` and
returns commands (play, stop playback, timers, lookup, transfer, enqueue, hang up). Prompts and
timers carry a sequence number so a late event from an earlier prompt is ignored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KEYS = set("0123456789*#")
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
ACTIONS = ("goto", "say", "play", "lookup", "transfer", "queue", "hangup")
LANGUAGES = ("en", "zh")


class MenuError(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


# ---------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Prompt:
    say: str | None = None
    tone_id: str | None = None
    language: str = "en"


Action = dict[str, Any]  # one of ACTIONS, validated


@dataclass(frozen=True)
class Node:
    name: str
    prompt: Prompt | None
    options: dict[str, Action] = field(default_factory=dict)
    collect: Action | None = None
    then: Action | None = None
    timeout_s: float = 5.0
    inter_digit_timeout_s: float = 3.0
    retries: int = 2
    max_digits: int = 1
    finish_key: str | None = None
    invalid_prompt: Prompt | None = None
    timeout_prompt: Prompt | None = None
    on_failure: Action = field(default_factory=lambda: {"hangup": True})
    barge_in: bool = True

    @property
    def gathers(self) -> bool:
        return bool(self.options) or self.collect is not None


@dataclass(frozen=True)
class Window:
    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class Hours:
    timezone: str
    open: tuple[Window, ...]
    closed: Action

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone))
        day, t = local.weekday(), local.time()
        for w in self.open:
            if w.start <= w.end and day in w.days and w.start <= t < w.end:
                return True
            if w.start > w.end and (
                (t >= w.start and day in w.days) or (t < w.end and (day - 1) % 7 in w.days)
            ):
                return True
        return False


@dataclass(frozen=True)
class Menu:
    start: str
    nodes: dict[str, Node]
    language: str = "en"
    operator_key: str | None = None
    operator_queue: str | None = None
    hours: Hours | None = None
    http_providers: dict[str, tuple[str, float]] = field(default_factory=dict)

    def prompts(self) -> list[Prompt]:
        """Every spoken or played prompt, so they can be prepared before the first call."""
        found: list[Prompt] = []
        for node in self.nodes.values():
            found += [p for p in (node.prompt, node.invalid_prompt, node.timeout_prompt) if p]
        return found


# --------------------------------------------------------------------------------- parsing


def parse(document: Any, builtin_providers: tuple[str, ...] = ("weather", "directory")) -> Menu:
    """Validates a menu document. Raises MenuError naming the first bad path.

    `providers` may declare a business's own backends: `{"orders": {"url":
    "https://backend.example/orders/{key}", "timeout_s": 2}}`; lookups may use those and the
    built-in providers."""
    if not isinstance(document, dict):
        raise MenuError("$", "a menu is an object with 'start' and 'menus'")
    for k in document:
        if k not in ("start", "menus", "language", "operator", "hours", "providers", "name"):
            raise MenuError(k, "unknown field")
    http = _http_providers(document.get("providers", {}))
    language = _choice(document.get("language", "en"), LANGUAGES, "language")
    menus = document.get("menus")
    if not isinstance(menus, dict) or not menus:
        raise MenuError("menus", "give at least one menu node")
    names = set(menus)
    start = document.get("start")
    if start not in names:
        raise MenuError("start", f"{start!r} is not a node in menus")
    operator = document.get("operator")
    key = queue = None
    if operator is not None:
        if not isinstance(operator, dict):
            raise MenuError("operator", "give {'key': '0', 'queue': name}")
        key, queue = operator.get("key", "0"), operator.get("queue")
        if key not in KEYS:
            raise MenuError("operator.key", "one key of 0-9 * #")
        if not isinstance(queue, str) or not queue:
            raise MenuError("operator.queue", "name the operator queue")
    nodes = {name: _node(name, raw, names, language) for name, raw in menus.items()}
    hours = _hours(document["hours"], names, language) if "hours" in document else None
    menu = Menu(start, nodes, language, key, queue, hours, http)
    _check_cycles(menu)
    _check_providers(document, set(builtin_providers) | set(http))
    return menu


def _http_providers(raw: Any) -> dict[str, tuple[str, float]]:
    if not isinstance(raw, dict):
        raise MenuError("providers", "map names to {'url', 'timeout_s'}")
    found = {}
    for name, spec in raw.items():
        path = f"providers.{name}"
        url = spec.get("url") if isinstance(spec, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise MenuError(f"{path}.url", "an http:// or https:// URL with {key}")
        timeout = _number(spec.get("timeout_s", 2), f"{path}.timeout_s", 0.1, 10)
        found[name] = (url, timeout)
    return found


def _check_providers(document: dict, known: set[str]) -> None:
    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            lookup = value.get("lookup")
            if isinstance(lookup, dict) and lookup.get("provider") not in known:
                raise MenuError(
                    f"{path}.lookup.provider", f"no provider {lookup.get('provider')!r}"
                )
            for k, v in value.items():
                walk(v, f"{path}.{k}")

    walk(document.get("menus"), "menus")
    walk(document.get("hours"), "hours")


def _node(name: str, raw: Any, names: set[str], language: str) -> Node:
    path = f"menus.{name}"
    if not isinstance(raw, dict):
        raise MenuError(path, "a node is an object")
    known = {
        "prompt",
        "options",
        "collect",
        "then",
        "timeout_s",
        "inter_digit_timeout_s",
        "retries",
        "max_digits",
        "finish_key",
        "invalid_prompt",
        "timeout_prompt",
        "on_failure",
        "barge_in",
        "say",
        "play",
    }
    for k in raw:
        if k not in known:
            raise MenuError(f"{path}.{k}", "unknown field")
    prompt = _prompt(raw.get("prompt"), f"{path}.prompt", language)
    if prompt is None and ("say" in raw or "play" in raw):  # shorthand: {"say": ..., "then": ...}
        prompt = _prompt({k: raw[k] for k in ("say", "play") if k in raw}, path, language)
    options_raw = raw.get("options") or {}
    if not isinstance(options_raw, dict):
        raise MenuError(f"{path}.options", "options map keys to actions")
    options = {}
    for digits, action in options_raw.items():
        if not isinstance(digits, str) or not digits or set(digits) - KEYS:
            raise MenuError(f"{path}.options.{digits}", "keys are made of 0-9 * #")
        options[digits] = _action(action, f"{path}.options.{digits}", names, language)
    collect = (
        _action(raw["collect"], f"{path}.collect", names, language) if "collect" in raw else None
    )
    then = _action(raw["then"], f"{path}.then", names, language) if "then" in raw else None
    gathers = bool(options) or collect is not None
    if prompt is None and not gathers:
        raise MenuError(f"{path}.prompt", "a node needs a prompt, options or collect")
    if not gathers and then is None:
        raise MenuError(f"{path}.then", "a node without options says what happens next")
    longest = max((len(d) for d in options), default=1)
    max_digits = _number(raw.get("max_digits", longest), f"{path}.max_digits", 1, 32, int)
    if max_digits < longest:
        raise MenuError(f"{path}.max_digits", f"option keys are up to {longest} long")
    finish = raw.get("finish_key")
    if finish is not None and finish not in ("#", "*"):
        raise MenuError(f"{path}.finish_key", "'#' or '*'")
    return Node(
        name=name,
        prompt=prompt,
        options=options,
        collect=collect,
        then=then,
        timeout_s=_number(raw.get("timeout_s", 5), f"{path}.timeout_s", 0.5, 120),
        inter_digit_timeout_s=_number(
            raw.get("inter_digit_timeout_s", 3), f"{path}.inter_digit_timeout_s", 0.5, 60
        ),
        retries=_number(raw.get("retries", 2), f"{path}.retries", 0, 10, int),
        max_digits=max_digits,
        finish_key=finish,
        invalid_prompt=_prompt(raw.get("invalid_prompt"), f"{path}.invalid_prompt", language),
        timeout_prompt=_prompt(raw.get("timeout_prompt"), f"{path}.timeout_prompt", language),
        on_failure=_action(
            raw.get("on_failure", {"hangup": True}), f"{path}.on_failure", names, language
        ),
        barge_in=bool(raw.get("barge_in", True)),
    )


def _prompt(raw: Any, path: str, language: str) -> Prompt | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise MenuError(path, "a prompt is {'say': text} or {'tone_id': id}")
    lang = _choice(raw.get("language", language), LANGUAGES, f"{path}.language")
    say = raw.get("say")
    tone = raw.get("tone_id", raw.get("play"))
    if (say is None) == (tone is None):
        raise MenuError(path, "give exactly one of 'say' or 'tone_id'")
    if say is not None and (not isinstance(say, str) or not say.strip() or len(say) > 2000):
        raise MenuError(f"{path}.say", "1-2000 characters of text")
    if tone is not None and (not isinstance(tone, str) or not tone):
        raise MenuError(f"{path}.tone_id", "a tone id")
    return Prompt(say=say, tone_id=tone, language=lang)


def _action(raw: Any, path: str, names: set[str], language: str) -> Action:
    if not isinstance(raw, dict):
        raise MenuError(path, f"an action is one of {', '.join(ACTIONS)}")
    kinds = [k for k in ACTIONS if k in raw]
    if len(kinds) != 1:
        raise MenuError(path, f"give exactly one of {', '.join(ACTIONS)}")
    kind = kinds[0]
    value = raw[kind]
    then = raw.get("then")
    if kind == "goto" and value not in names:
        raise MenuError(f"{path}.goto", f"{value!r} is not a node in menus")
    if kind in ("say", "play"):
        _prompt({"say" if kind == "say" else "tone_id": value}, f"{path}.{kind}", language)
        if then is not None:
            _action(then, f"{path}.then", names, language)
    if kind in ("transfer", "queue") and (not isinstance(value, str) or not value):
        raise MenuError(f"{path}.{kind}", "a name")
    if kind == "hangup" and value is not True:
        raise MenuError(f"{path}.hangup", "true")
    if kind == "lookup":
        if not isinstance(value, dict) or not isinstance(value.get("provider"), str):
            raise MenuError(f"{path}.lookup", "give {'provider', 'key', 'say', 'then'}")
        for text in ("key", "say"):
            if not isinstance(value.get(text, ""), str):
                raise MenuError(f"{path}.lookup.{text}", "a text template")
        for branch in ("then", "not_found"):
            if branch in value:
                _action(value[branch], f"{path}.lookup.{branch}", names, language)
    return raw


def _hours(raw: Any, names: set[str], language: str) -> Hours:
    if not isinstance(raw, dict):
        raise MenuError("hours", "give timezone, open and closed")
    tz = raw.get("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise MenuError("hours.timezone", f"unknown time zone {tz!r}") from exc
    windows = []
    for i, w in enumerate(raw.get("open") or []):
        path = f"hours.open.{i}"
        days = w.get("days", list(range(7))) if isinstance(w, dict) else None
        if not isinstance(days, list) or any(d not in range(7) for d in days):
            raise MenuError(f"{path}.days", "days are 0 (Monday) to 6 (Sunday)")
        start, end = (_hhmm(w.get(k), f"{path}.{k}") for k in ("start", "end"))
        if start == end:
            raise MenuError(f"{path}.end", "the window is empty")
        windows.append(Window(frozenset(days), start, end))
    if not windows:
        raise MenuError("hours.open", "give at least one opening window")
    if "closed" not in raw:
        raise MenuError("hours.closed", "say what closed callers hear")
    return Hours(tz, tuple(windows), _action(raw["closed"], "hours.closed", names, language))


def _hhmm(value: Any, path: str) -> time:
    match = HHMM.match(value) if isinstance(value, str) else None
    if not match:
        raise MenuError(path, "a time as HH:MM")
    return time(int(match[1]), int(match[2]))


def _number(value: Any, path: str, low: float, high: float, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise MenuError(path, f"a number from {low:g} to {high:g}")
    if kind is int and value != int(value):
        raise MenuError(path, "a whole number")
    return kind(value)


def _choice(value: Any, allowed: tuple[str, ...], path: str) -> str:
    if value not in allowed:
        raise MenuError(path, f"one of {', '.join(allowed)}")
    return value


def _check_cycles(menu: Menu) -> None:
    """Nodes that never wait for a key must not lead back to themselves: a caller would loop
    forever without a chance to press anything."""

    def next_silent(action: Action | None) -> list[str]:
        while action is not None:
            if "goto" in action:
                return [action["goto"]]
            action = action.get("then") if ("say" in action or "play" in action) else None
        return []

    edges = {n.name: next_silent(n.then) for n in menu.nodes.values() if not n.gathers}
    for origin in edges:
        seen, stack = set(), list(edges[origin])
        while stack:
            name = stack.pop()
            if name == origin:
                raise MenuError(f"menus.{origin}.then", "loops back without waiting for a key")
            if name in edges and name not in seen:
                seen.add(name)
                stack.extend(edges[name])


# -------------------------------------------------------------------------------- stepping


@dataclass(frozen=True)
class Play:
    """Play a prompt. Plays with the same `seq` form one prompt, played back to back; the
    player reports `prompt_done(seq)` once, after the last of them."""

    prompt: Prompt
    seq: int
    interruptible: bool


@dataclass(frozen=True)
class StopPlayback:
    pass


@dataclass(frozen=True)
class SetTimer:
    seq: int
    at: float


@dataclass(frozen=True)
class Lookup:
    provider: str
    key: str
    seq: int


@dataclass(frozen=True)
class Transfer:
    username: str


@dataclass(frozen=True)
class Enqueue:
    queue: str


@dataclass(frozen=True)
class Hangup:
    reason: str  # "menu", "failure", "closed"


@dataclass(frozen=True)
class Visit:
    """For statistics: a node entered, or an option chosen there."""

    node: str
    option: str | None = None


Command = Play | StopPlayback | SetTimer | Lookup | Transfer | Enqueue | Hangup | Visit


@dataclass(frozen=True)
class Session:
    node: str = ""
    phase: str = "idle"  # prompt | wait | lookup | action | done
    digits: str = ""
    failures: int = 0
    seq: int = 0
    path: tuple[str, ...] = ()
    gathered: tuple[tuple[str, str], ...] = ()
    pending: tuple[Action, ...] = ()  # actions to run after the current prompt ends
    lookup: dict[str, Any] | None = None


Outcome = tuple[Session, list[Command]]


def start(menu: Menu, now: float, wall: datetime) -> Outcome:
    """A caller arrives: `now` is the timer clock (seconds), `wall` the date and time that
    decides the opening hours."""
    session = Session()
    if menu.hours is not None and not menu.hours.is_open(wall):
        return _run(menu, session, menu.hours.closed, now, closed=True)
    return _enter(menu, session, menu.start, now)


def prompt_done(menu: Menu, session: Session, seq: int, now: float) -> Outcome:
    if seq != session.seq or session.phase not in ("prompt", "action"):
        return session, []
    if session.phase == "action":
        pending = session.pending
        session = replace(session, pending=())
        if not pending:
            return replace(session, phase="done"), [Hangup("menu")]
        return _run(menu, session, pending[0], now)
    node = menu.nodes[session.node]
    if not node.gathers:
        return _run(menu, session, node.then, now)  # type: ignore[arg-type]
    return _wait(session, node, now)


def digit(menu: Menu, session: Session, key: str, now: float) -> Outcome:
    if key not in KEYS or session.phase in ("done", "lookup", "idle"):
        return session, []
    node = menu.nodes.get(session.node)
    if node is None:
        return session, []
    commands: list[Command] = []
    operator = menu.operator_key is not None and key == menu.operator_key
    collecting = node.collect is not None and not node.options
    if operator and not session.digits and key not in node.options and not collecting:
        if session.phase in ("prompt", "action"):
            commands.append(StopPlayback())
        session, more = _run(
            menu, replace(session, pending=()), {"queue": menu.operator_queue}, now
        )
        return session, commands + more
    if session.phase == "action" or not node.gathers:
        return session, []  # keys during a plain announcement are ignored
    if session.phase == "prompt":
        if not node.barge_in:
            return session, []
        commands.append(StopPlayback())
    if node.finish_key == key:
        session, more = _evaluate(menu, session, node, now)
        return session, commands + more
    session = replace(session, digits=session.digits + key, phase="wait", seq=session.seq + 1)
    if _complete(node, session.digits):
        session, more = _evaluate(menu, session, node, now)
        return session, commands + more
    return session, [*commands, SetTimer(session.seq, now + node.inter_digit_timeout_s)]


def timer(menu: Menu, session: Session, seq: int, now: float) -> Outcome:
    if seq != session.seq or session.phase != "wait":
        return session, []
    node = menu.nodes[session.node]
    if session.digits:
        return _evaluate(menu, session, node, now)
    return _retry(menu, session, node, node.timeout_prompt, now)


def lookup_result(
    menu: Menu, session: Session, seq: int, values: dict[str, Any] | None, now: float
) -> Outcome:
    if seq != session.seq or session.phase != "lookup" or session.lookup is None:
        return session, []
    spec, session = session.lookup, replace(session, lookup=None)
    if values is None:
        fallback = spec.get("not_found") or {"say": _sorry(menu), "then": spec.get("then")}
        if fallback.get("then") is None:
            fallback = {k: v for k, v in fallback.items() if k != "then"}
        return _run(menu, session, fallback, now)
    text = _fill(spec.get("say", ""), {**dict(session.gathered), **values})
    action: Action = {"say": text, **({"then": spec["then"]} if "then" in spec else {})}
    return _run(menu, session, action, now)


def resume(menu: Menu, session: Session, action: Action, now: float) -> Outcome:
    """Carry out an action outside the menu's own flow (the service's own announcements:
    an overflow or a failed transfer), e.g. `{"say": "...", "then": {"hangup": True}}`."""
    return _run(menu, replace(session, pending=(), lookup=None), action, now)


# ---------------------------------------------------------------------------- internals


def _enter(menu: Menu, session: Session, name: str, now: float) -> Outcome:
    node = menu.nodes[name]
    seq = session.seq + 1
    session = replace(
        session, node=name, digits="", failures=0, seq=seq, path=(*session.path, name), pending=()
    )
    commands: list[Command] = [Visit(name)]
    if node.prompt is None:
        return replace(session, phase="wait"), [*commands, SetTimer(seq, now + node.timeout_s)]
    session = replace(session, phase="prompt")
    return session, [*commands, Play(node.prompt, seq, node.barge_in and node.gathers)]


def _wait(session: Session, node: Node, now: float) -> Outcome:
    seq = session.seq + 1
    return replace(session, phase="wait", seq=seq), [SetTimer(seq, now + node.timeout_s)]


def _complete(node: Node, digits: str) -> bool:
    if len(digits) >= node.max_digits:
        return True
    if node.collect is not None:
        return False  # free digits: wait for the finish key, max_digits or the timeout
    longer = any(k != digits and k.startswith(digits) for k in node.options)
    return not longer  # an option, or nothing can still match: decide now


def _evaluate(menu: Menu, session: Session, node: Node, now: float) -> Outcome:
    digits = session.digits
    gathered = (*session.gathered, (node.name, digits))
    session = replace(session, gathered=gathered)
    if digits in node.options:
        session, commands = _run(menu, session, node.options[digits], now)
        return session, [Visit(node.name, digits), *commands]
    if node.collect is not None and digits:
        session, commands = _run(menu, replace(session, digits=digits), node.collect, now)
        return session, [Visit(node.name, "collect"), *commands]
    if not digits:
        return _retry(menu, session, node, node.timeout_prompt, now)
    return _retry(menu, session, node, node.invalid_prompt, now)


def _retry(menu: Menu, session: Session, node: Node, notice: Prompt | None, now: float) -> Outcome:
    failures = session.failures + 1
    if failures > node.retries:
        return _run(menu, replace(session, failures=failures), node.on_failure, now, failure=True)
    seq = session.seq + 1
    session = replace(session, failures=failures, digits="", seq=seq)
    if notice is None:
        if node.prompt is None:
            return replace(session, phase="wait"), [SetTimer(seq, now + node.timeout_s)]
        return replace(session, phase="prompt"), [Play(node.prompt, seq, node.barge_in)]
    # the notice, then the node's prompt again (both interruptible by a key)
    session = replace(session, phase="prompt")
    commands: list[Command] = [Play(notice, seq, node.barge_in)]
    return session, commands if node.prompt is None else [
        *commands,
        Play(node.prompt, seq, node.barge_in),
    ]


def _run(
    menu: Menu,
    session: Session,
    action: Action,
    now: float,
    *,
    closed: bool = False,
    failure: bool = False,
) -> Outcome:
    if "goto" in action:
        return _enter(menu, session, action["goto"], now)
    if "say" in action or "play" in action:
        prompt = (
            Prompt(say=action["say"], language=menu.language)
            if "say" in action
            else Prompt(tone_id=action["play"], language=menu.language)
        )
        seq = session.seq + 1
        pending = (action["then"],) if action.get("then") else ()
        session = replace(session, phase="action", seq=seq, pending=pending)
        return session, [Play(prompt, seq, interruptible=False)]
    if "lookup" in action:
        spec = action["lookup"]
        seq = session.seq + 1
        key = _fill(
            spec.get("key", "{digits}"), {**dict(session.gathered), "digits": session.digits}
        )
        session = replace(session, phase="lookup", seq=seq, lookup=spec)
        return session, [Lookup(spec["provider"], key, seq)]
    done = replace(session, phase="done")
    if "transfer" in action:
        return done, [Transfer(action["transfer"])]
    if "queue" in action:
        return done, [Enqueue(action["queue"])]
    return done, [Hangup("closed" if closed else "failure" if failure else "menu")]


def _fill(template: str, values: dict[str, Any]) -> str:
    """`{name}` placeholders from the values; unknown names stay as they are (a template
    mistake must not end a caller's call)."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m[1], m[0])), template)


def _sorry(menu: Menu) -> str:
    if menu.language == "zh":
        return "抱歉，暂时查不到相关信息。"
    return "Sorry, that information is not available right now."
