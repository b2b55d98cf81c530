"""The pure room rules: admission (lock-out, lock, PIN, size), rights, mutes, kicks, storage."""

from __future__ import annotations

import pytest

from conference import room as rules
from conference.room import RTP, WEBRTC, Actor, Limits, Participant
from voice.errors import BadRequest, Forbidden, NotFound

MOD = Actor(user_id="u-mod")
ADMIN = Actor(admin=True)
ALICE = Actor(user_id="u-alice")
BOB = Actor(user_id="u-bob")
NOBODY = Actor()


def make(**kw) -> rules.Room:
    options = {
        "name": "r",
        "pin": None,
        "max_participants": 3,
        "max_speakers": 3,
        "record": False,
        "now": 0.0,
    }
    options.update(kw)
    return rules.create("room1", MOD, **options)


def person(pid: str, actor: Actor, kind: str = WEBRTC) -> Participant:
    return Participant(pid, pid, kind, actor.user_id, 0.0)


def join(room, actor, pid, pin=None, now=0.0, limits=Limits()):
    admission = rules.admit(room, actor, pin=pin, now=now, limits=limits)
    assert admission.error is None, admission.error
    return rules.add(admission.room, person(pid, actor))


def refusal(room, actor, pin=None, now=0.0, kind=WEBRTC, limits=Limits()):
    admission = rules.admit(room, actor, pin=pin, now=now, kind=kind, limits=limits)
    assert admission.error is not None
    return admission.room, admission.error


def test_create_checks_its_settings():
    room = make(pin="1234", name="  Standup ")
    assert room.name == "Standup" and room.moderator_id == "u-mod" and room.has_pin
    assert "1234" not in str(room.to_message())  # only a hash is kept
    assert (
        rules.create(
            "r2",
            ADMIN,
            name=None,
            pin=None,
            max_participants=2,
            max_speakers=None,
            record=True,
            now=0,
        ).moderator_id
        is None
    )
    for bad in (
        {"pin": "123"},
        {"pin": "12345678901234567"},
        {"pin": "12a4"},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "tab\there"},
        {"max_participants": 1},
        {"max_speakers": 0},
    ):
        with pytest.raises(BadRequest):
            make(**bad)
    with pytest.raises(Forbidden):
        rules.create(
            "r3",
            NOBODY,
            name=None,
            pin=None,
            max_participants=2,
            max_speakers=3,
            record=False,
            now=0,
        )


def test_wrong_pins_are_counted_per_user_then_locked_out_for_a_while():
    room = make(pin="2468")
    limits = Limits(pin_attempts=3, pin_lockout_s=60)
    room, error = refusal(room, ALICE, None, limits=limits)
    assert (error.status, error.code) == (403, "bad_pin") and "2 attempt(s) left" in error.message
    room, error = refusal(room, ALICE, "1111", limits=limits)
    assert "1 attempt(s) left" in error.message
    room, error = refusal(room, ALICE, "2222", now=5, limits=limits)
    assert "no attempts left" in error.message
    # Locked out: even the right PIN is refused until the lock-out ends.
    room, error = refusal(room, ALICE, "2468", now=30, limits=limits)
    assert (error.status, error.code) == (429, "too_many_attempts") and "36 s" in error.message
    # Others are not affected.
    join(room, BOB, "p-bob", "2468", limits=limits)
    # After the lock-out, a fresh set of attempts; a success clears the count.
    room, error = refusal(room, ALICE, "9999", now=66, limits=limits)
    assert "2 attempt(s) left" in error.message
    room = join(room, ALICE, "p-alice", "2468", now=67, limits=limits)
    assert "u-alice" not in room.pin_failures


def test_managers_skip_pin_lock_and_size_but_rtp_endpoints_count():
    room = make(pin="2468", max_participants=2)
    room = rules.set_locked(room, MOD, True)
    room = join(room, MOD, "p1")
    room = join(room, ADMIN, "p2")
    room = join(room, MOD, "p3")  # the moderator always gets into their own room
    _, error = refusal(room, MOD, kind=RTP)
    assert error.code == "room_full"
    _, error = refusal(make(), ALICE, kind=RTP)
    assert (error.status, error.code) == (403, "not_moderator")
    assert rules.admit(make(), ADMIN, pin=None, now=0, kind=RTP).error is None


def test_order_of_checks_locked_before_pin_before_full():
    room = join(join(make(pin="2468", max_participants=2), BOB, "p-bob", "2468"), MOD, "p-mod")
    _, error = refusal(room, ALICE, "0000")
    assert error.code == "bad_pin"  # a wrong PIN learns nothing about the size
    _, error = refusal(room, ALICE, "2468")
    assert (error.status, error.code) == (409, "room_full")
    _, error = refusal(rules.set_locked(room, MOD, True), ALICE, "2468")
    assert (error.status, error.code) == (409, "room_locked")
    _, error = refusal(room, NOBODY)
    assert error.code == "not_allowed"


def test_visibility_and_audience():
    room = join(make(), ALICE, "p-alice")
    assert room.can_see(MOD) and room.can_see(ADMIN) and room.can_see(ALICE)
    assert not room.can_see(BOB) and not room.can_see(NOBODY)
    assert room.users() == {"u-mod", "u-alice"}
    # An RTP endpoint added by the moderator does not make them a participant's user.
    room = rules.add(room, person("p-rtp", MOD, RTP))
    assert rules.remove(room, MOD, "p-rtp")[2] == "kicked"


def test_mutes_self_moderator_and_all():
    room = join(join(join(make(), MOD, "p-mod"), ALICE, "p-alice"), BOB, "p-bob")
    room, changed = rules.set_muted(room, ALICE, "p-alice", True)
    assert changed and room.participant("p-alice").muted
    room, changed = rules.set_muted(room, ALICE, "p-alice", True)
    assert not changed
    room, _ = rules.set_muted(room, ALICE, "p-alice", False)
    with pytest.raises(Forbidden) as info:
        rules.set_muted(room, ALICE, "p-bob", True)
    assert info.value.code == "not_moderator"
    room, _ = rules.set_muted(room, MOD, "p-alice", True)
    assert room.participant("p-alice").muted_by_moderator
    with pytest.raises(Forbidden) as info:
        rules.set_muted(room, ALICE, "p-alice", False)
    assert info.value.code == "muted_by_moderator"
    room, _ = rules.set_muted(room, ALICE, "p-alice", True)  # does not lift the moderator's
    assert room.participant("p-alice").muted_by_moderator
    room, _ = rules.set_muted(room, MOD, "p-alice", False)
    assert not room.participant("p-alice").muted

    room, changed = rules.mute_all(room, MOD)
    assert {p.participant_id for p in changed} == {"p-alice", "p-bob"}
    assert not room.participant("p-mod").muted
    room, _ = rules.set_muted(room, MOD, "p-mod", True)  # the moderator's own: self mute
    assert not room.participant("p-mod").muted_by_moderator
    room, changed = rules.unmute_all(room, MOD)
    assert {p.participant_id for p in changed} == {"p-alice", "p-bob"}
    assert room.participant("p-mod").muted  # their own mute stays
    with pytest.raises(Forbidden):
        rules.mute_all(room, ALICE)
    with pytest.raises(NotFound):
        rules.set_muted(room, MOD, "p-nobody", True)


def test_leave_kick_and_the_kicked_list():
    room = join(join(make(), ALICE, "p-alice"), BOB, "p-bob")
    with pytest.raises(Forbidden):
        rules.remove(room, ALICE, "p-bob")
    room, who, reason = rules.remove(room, ALICE, "p-alice")
    assert (who.participant_id, reason) == ("p-alice", "left") and "u-alice" not in room.kicked
    room, who, reason = rules.remove(room, MOD, "p-bob")
    assert reason == "kicked" and room.kicked == {"u-bob"} and room.participants == ()
    room = rules.set_locked(room, MOD, True)
    _, error = refusal(room, BOB)
    assert error.code == "room_locked" and "removed" in error.message
    with pytest.raises(Forbidden):
        rules.check_end(room, ALICE)
    rules.check_end(room, ADMIN)


def test_display_names_are_cleaned():
    assert rules.clean_display("  Alice \n Smith ", "x") == "Alice Smith"
    assert rules.clean_display(None, "Fallback") == "Fallback"
    for bad in ("", "   ", "x" * 65, "bell\x07"):
        with pytest.raises(BadRequest):
            rules.clean_display(bad, "x")


def test_a_room_survives_the_bus_round_trip():
    room = join(make(pin="2468"), ALICE, "p-alice", "2468")
    room, _ = refusal(room, BOB, "0000")
    room, _ = rules.set_muted(room, MOD, "p-alice", True)
    room = rules.set_locked(room, MOD, True)
    room = rules.remove(rules.add(room, person("p-bob", BOB)), MOD, "p-bob")[0]
    import json

    again = rules.Room.from_message(json.loads(json.dumps(room.to_message())))
    assert again == room
