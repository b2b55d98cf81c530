"""A room's membership and rules: who may join, who may do what, and what changes.

Pure: dataclasses and functions of (room, actor, request, now) that return the new room, or
raise a `voice.errors` error carrying the HTTP status and code. No I/O, no clock, no asyncio;
the service loads a room from the bus, applies one of these under the room's lock, stores
the result and carries out the media side.

Rules:
- The creator is the moderator. The moderator and the admin ("managers") may mute or kick
  anyone, lock and unlock, mute everyone, add plain-RTP participants and end the room.
- Joining, in this order of checks: a user who ran out of PIN attempts is refused for a while
  (`too_many_attempts`, 429); a locked room takes nobody new (`room_locked`); a room with a
  PIN needs it (`bad_pin`, 403, each wrong PIN counted per user); a full room takes nobody
  (`room_full`). Managers skip all four: the moderator always gets into their own room.
- Muting: anyone may mute themselves; the moderator may mute anyone. Someone the moderator
  muted cannot unmute themselves (`muted_by_moderator`); the moderator unmutes them.
- A SIP caller (`sip:room-<id>@`) joins like a user whose identity is its caller URI
  (`Actor(user_id="sip:...")`): the same lock, PIN (typed on the keypad, failures counted per
  caller URI) and size checks; it has no rights over others.
- A kicked user may rejoin while the room is unlocked (the moderator locks it to keep them
  out); the room remembers who was kicked so a rejoin can say so.
- Only managers and users with a participant in the room see it; to anyone else a room does
  not exist (404), so ids cannot be probed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from voice.errors import BadRequest, ChorusError, Conflict, Forbidden, NotFound

WEBRTC, RTP, SIP = "webrtc", "rtp", "sip"
KINDS = (WEBRTC, RTP, SIP)
PIN = re.compile(r"^[0-9]{4,16}$")  # digits: SIP callers type it on a keypad
MAX_NAME = 100
MAX_DISPLAY = 64


class TooManyAttempts(ChorusError):
    status, code = 429, "too_many_attempts"


@dataclass(frozen=True)
class Actor:
    """Who asks: a user (by id), the admin key, or both unknown (never allowed anything)."""

    user_id: str | None = None
    admin: bool = False


@dataclass(frozen=True)
class Limits:
    pin_attempts: int = 5
    pin_lockout_s: float = 600.0


@dataclass(frozen=True)
class Participant:
    participant_id: str
    display: str
    kind: str  # WEBRTC, RTP or SIP
    user_id: str | None  # who joined (WebRTC) or who added the endpoint (RTP); None for SIP
    joined_at: float
    muted: bool = False
    muted_by_moderator: bool = False
    codec: str = "opus"

    def to_message(self) -> dict[str, Any]:
        return {
            "participant_id": self.participant_id,
            "display": self.display,
            "kind": self.kind,
            "user_id": self.user_id,
            "joined_at": self.joined_at,
            "muted": self.muted,
            "muted_by_moderator": self.muted_by_moderator,
            "codec": self.codec,
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Participant:
        return cls(**data)


@dataclass(frozen=True)
class PinFailures:
    count: int = 0
    locked_until: float = 0.0


@dataclass(frozen=True)
class Room:
    room_id: str
    name: str
    moderator_id: str | None  # None: created with the admin key, managed by the admin only
    created_at: float
    max_participants: int
    max_speakers: int | None  # K; None mixes every talker
    record: bool = False
    pin_hash: str | None = None
    locked: bool = False
    node: str = ""  # the process that mixes this room
    participants: tuple[Participant, ...] = ()
    pin_failures: dict[str, PinFailures] = field(default_factory=dict)
    kicked: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ queries

    @property
    def has_pin(self) -> bool:
        return self.pin_hash is not None

    def participant(self, participant_id: str) -> Participant | None:
        for participant in self.participants:
            if participant.participant_id == participant_id:
                return participant
        return None

    def users(self) -> set[str]:
        """Who hears about this room: the moderator and every participant's user."""
        found = {p.user_id for p in self.participants if p.user_id is not None}
        if self.moderator_id is not None:
            found.add(self.moderator_id)
        return found

    def is_manager(self, actor: Actor) -> bool:
        return actor.admin or (actor.user_id is not None and actor.user_id == self.moderator_id)

    def can_see(self, actor: Actor) -> bool:
        if self.is_manager(actor):
            return True
        return actor.user_id is not None and any(
            p.user_id == actor.user_id and p.kind == WEBRTC for p in self.participants
        )

    # ------------------------------------------------------------------ storage

    def to_message(self) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "name": self.name,
            "moderator_id": self.moderator_id,
            "created_at": self.created_at,
            "max_participants": self.max_participants,
            "max_speakers": self.max_speakers,
            "record": self.record,
            "pin_hash": self.pin_hash,
            "locked": self.locked,
            "node": self.node,
            "participants": [p.to_message() for p in self.participants],
            "pin_failures": {
                user: [f.count, f.locked_until] for user, f in self.pin_failures.items()
            },
            "kicked": sorted(self.kicked),
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Room:
        data = dict(data)
        data["participants"] = tuple(Participant.from_message(p) for p in data["participants"])
        data["pin_failures"] = {
            user: PinFailures(count, until) for user, (count, until) in data["pin_failures"].items()
        }
        data["kicked"] = frozenset(data["kicked"])
        return cls(**data)


# ---------------------------------------------------------------------- creating


def hash_pin(room_id: str, pin: str) -> str:
    return hashlib.sha256(f"{room_id}:{pin}".encode()).hexdigest()


def create(
    room_id: str,
    actor: Actor,
    *,
    name: str | None,
    pin: str | None,
    max_participants: int,
    max_speakers: int | None,
    record: bool,
    now: float,
    node: str = "",
) -> Room:
    if actor.user_id is None and not actor.admin:
        raise Forbidden("log in to create a room", code="not_allowed")
    if pin is not None and not PIN.match(pin):
        raise BadRequest("pin must be 4 to 16 digits", code="bad_pin_format")
    if name is not None and (not name.strip() or len(name) > MAX_NAME or not name.isprintable()):
        raise BadRequest(f"name must be 1-{MAX_NAME} printable characters", code="bad_name")
    if max_participants < 2:
        raise BadRequest("max_participants must be at least 2", code="bad_size")
    if max_speakers is not None and max_speakers < 1:
        raise BadRequest("max_speakers must be at least 1", code="bad_speakers")
    return Room(
        room_id=room_id,
        name=name.strip() if name else f"Room {room_id[:6]}",
        moderator_id=None if actor.admin and actor.user_id is None else actor.user_id,
        created_at=now,
        max_participants=max_participants,
        max_speakers=max_speakers,
        record=record,
        pin_hash=hash_pin(room_id, pin) if pin else None,
        node=node,
    )


# ---------------------------------------------------------------------- joining


@dataclass(frozen=True)
class Admission:
    """The outcome of a join attempt: the room to store (PIN failures are counted even
    when the join is refused) and the error to answer with, if any."""

    room: Room
    error: ChorusError | None = None


def admit(
    room: Room,
    actor: Actor,
    *,
    pin: str | None,
    now: float,
    kind: str = WEBRTC,
    limits: Limits = Limits(),
) -> Admission:
    """May `actor` add a participant? Checks in the order the module docstring gives.

    Plain-RTP endpoints are added by managers only, and count against the room's size.
    """
    if actor.user_id is None and not actor.admin:
        return Admission(room, Forbidden("log in to join a room", code="not_allowed"))
    full = len(room.participants) >= room.max_participants
    limit = room.max_participants
    if kind == RTP:
        if not room.is_manager(actor):
            message = "only the moderator adds plain-RTP participants"
            return Admission(room, Forbidden(message, code="not_moderator"))
        if full:
            return Admission(room, Conflict(f"the room is full ({limit})", code="room_full"))
        return Admission(room)
    if room.is_manager(actor):
        return Admission(room)
    user = actor.user_id
    assert user is not None
    failures = room.pin_failures.get(user, PinFailures())
    if failures.locked_until > now:
        wait = int(failures.locked_until - now) + 1
        message = f"too many wrong PINs for this room; try again in {wait} s"
        return Admission(room, TooManyAttempts(message))
    if room.locked:
        kicked = " (you were removed from it)" if user in room.kicked else ""
        return Admission(room, Conflict(f"the room is locked{kicked}", code="room_locked"))
    if room.pin_hash is not None:
        given = hash_pin(room.room_id, pin) if isinstance(pin, str) else ""
        if not hmac.compare_digest(given, room.pin_hash):
            # After a lock-out has run out, a fresh set of attempts.
            count = 1 if failures.locked_until else failures.count + 1
            if count >= limits.pin_attempts:
                updated = PinFailures(0, now + limits.pin_lockout_s)
                left = "no attempts left"
            else:
                updated = PinFailures(count, 0.0)
                left = f"{limits.pin_attempts - count} attempt(s) left"
            failures_now = {**room.pin_failures, user: updated}
            room = replace(room, pin_failures=failures_now)
            text = "a PIN is needed" if pin is None else "wrong PIN"
            return Admission(room, Forbidden(f"{text}; {left}", code="bad_pin"))
        if user in room.pin_failures:
            room = replace(room, pin_failures=_without(room.pin_failures, user))
    if full:
        return Admission(room, Conflict(f"the room is full ({limit})", code="room_full"))
    return Admission(room)


def add(room: Room, participant: Participant) -> Room:
    if participant.kind not in KINDS:
        raise ValueError(f"unknown participant kind {participant.kind!r}")
    if room.participant(participant.participant_id) is not None:
        raise ValueError("participant already in the room")
    return replace(room, participants=(*room.participants, participant))


def clean_display(display: str | None, fallback: str) -> str:
    if display is None:
        return fallback[:MAX_DISPLAY]
    text = " ".join(display.split())
    if not text or len(text) > MAX_DISPLAY or not text.isprintable():
        message = f"display must be 1-{MAX_DISPLAY} printable characters"
        raise BadRequest(message, code="bad_display")
    return text


# ---------------------------------------------------------------------- changes


def _find(room: Room, actor: Actor, participant_id: str) -> Participant:
    participant = room.participant(participant_id)
    if participant is None:
        raise NotFound("no such participant in this room", code="participant_not_found")
    return participant


def _is_own(participant: Participant, actor: Actor) -> bool:
    return (
        participant.kind == WEBRTC
        and actor.user_id is not None
        and participant.user_id == actor.user_id
    )


def _with(room: Room, updated: Participant) -> Room:
    pid = updated.participant_id
    return replace(
        room,
        participants=tuple(updated if p.participant_id == pid else p for p in room.participants),
    )


def set_muted(room: Room, actor: Actor, participant_id: str, muted: bool) -> tuple[Room, bool]:
    """Returns the room and whether anything changed."""
    participant = _find(room, actor, participant_id)
    manager = room.is_manager(actor)
    if not manager and not _is_own(participant, actor):
        raise Forbidden("only the moderator mutes other participants", code="not_moderator")
    if not muted and participant.muted_by_moderator and not manager:
        raise Forbidden("the moderator muted you; ask them to unmute", code="muted_by_moderator")
    by_moderator = muted and manager and not _is_own(participant, actor)
    if muted and participant.muted_by_moderator:
        by_moderator = True  # muting yourself again does not lift the moderator's mute
    updated = replace(participant, muted=muted, muted_by_moderator=by_moderator if muted else False)
    if updated == participant:
        return room, False
    return _with(room, updated), True


def mute_all(room: Room, actor: Actor) -> tuple[Room, list[Participant]]:
    """The moderator mutes everyone but their own participants; returns who changed."""
    _require_manager(room, actor)
    changed = []
    for participant in room.participants:
        if _is_own(participant, actor) or participant.muted_by_moderator:
            continue
        updated = replace(participant, muted=True, muted_by_moderator=True)
        room = _with(room, updated)
        changed.append(updated)
    return room, changed


def unmute_all(room: Room, actor: Actor) -> tuple[Room, list[Participant]]:
    """Lifts the moderator's mutes (participants who muted themselves stay muted)."""
    _require_manager(room, actor)
    changed = []
    for participant in room.participants:
        if participant.muted_by_moderator:
            updated = replace(participant, muted=False, muted_by_moderator=False)
            room = _with(room, updated)
            changed.append(updated)
    return room, changed


def remove(room: Room, actor: Actor, participant_id: str) -> tuple[Room, Participant, str]:
    """Leave (your own participant) or kick (the moderator): (room, who, "left"|"kicked")."""
    participant = _find(room, actor, participant_id)
    if _is_own(participant, actor):
        reason = "left"
    elif room.is_manager(actor):
        reason = "kicked"
    else:
        raise Forbidden("only the moderator removes other participants", code="not_moderator")
    kicked = room.kicked
    if reason == "kicked" and participant.user_id is not None and participant.kind == WEBRTC:
        kicked = kicked | {participant.user_id}
    return drop(replace(room, kicked=kicked), participant_id), participant, reason


def drop(room: Room, participant_id: str) -> Room:
    """The participant is gone (left, kicked, disconnected): no rights involved."""
    return replace(
        room,
        participants=tuple(p for p in room.participants if p.participant_id != participant_id),
    )


def taken_over(room: Room, node: str) -> Room:
    """The node that mixed the room is gone, and every participant's media with it: the room
    itself (name, PIN, moderator, lock) stays, empty, mixed from now on by `node`."""
    return replace(room, node=node, participants=())


def set_locked(room: Room, actor: Actor, locked: bool) -> Room:
    _require_manager(room, actor)
    return replace(room, locked=locked)


def check_end(room: Room, actor: Actor) -> None:
    _require_manager(room, actor)


def check_manager(room: Room, actor: Actor) -> None:
    _require_manager(room, actor)


def _require_manager(room: Room, actor: Actor) -> None:
    if not room.is_manager(actor):
        raise Forbidden("only the room's moderator may do this", code="not_moderator")


def _without(mapping: dict[str, PinFailures], key: str) -> dict[str, PinFailures]:
    return {k: v for k, v in mapping.items() if k != key}


def visible(rooms: Iterable[Room], actor: Actor) -> list[Room]:
    return [room for room in rooms if room.can_see(actor)]
