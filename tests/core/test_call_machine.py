"""The call state machine, exhaustively, with no event loop."""

from __future__ import annotations

import itertools

import pytest

from voice.calls import machine as m
from voice.calls.machine import CallState, EndReason, Party

NOW = 1_000.0
PHONE, LAPTOP = "phone", "laptop"


def ringing(devices=(PHONE, LAPTOP)) -> m.Call:
    call, _ = m.place(
        "c1", "alice", "bob", devices=frozenset(devices), callee_busy=False, now=NOW, no_answer_s=45
    )
    return call


def answered() -> m.Call:
    call, _ = m.step(ringing(), m.Answer(Party.CALLEE, PHONE), NOW + 3)
    return call


def ended() -> m.Call:
    call, _ = m.step(answered(), m.Hangup(Party.CALLER), NOW + 10)
    return call


def test_place_rings_every_device_plays_ringback_and_arms_the_timer():
    call, commands = m.place(
        "c1",
        "alice",
        "bob",
        devices=frozenset({PHONE, LAPTOP}),
        callee_busy=False,
        now=NOW,
        no_answer_s=45,
    )
    assert call.state is CallState.RINGING and call.ringing == {PHONE, LAPTOP}
    assert m.Ring(LAPTOP) in commands and m.Ring(PHONE) in commands
    assert m.PlayRingback() in commands
    assert m.StartTimer(m.NO_ANSWER_TIMER, NOW + 45) in commands
    assert m.NotifyState(Party.CALLER) in commands


@pytest.mark.parametrize(
    ("devices", "busy", "reason"),
    [((PHONE,), True, EndReason.BUSY), ((), False, EndReason.UNREACHABLE)],
)
def test_place_ends_at_once_when_busy_or_unreachable(devices, busy, reason):
    call, commands = m.place(
        "c1", "alice", "bob", devices=frozenset(devices), callee_busy=busy, now=NOW, no_answer_s=45
    )
    assert (call.state, call.reason, call.ended_at) == (CallState.ENDED, reason, NOW)
    assert m.PlayBusyTone() in commands and m.RecordHistory() in commands
    assert not any(isinstance(c, (m.Ring, m.StartTimer, m.PlayRingback)) for c in commands)


def test_answer_bridges_and_stops_the_other_devices():
    call, commands = m.step(ringing(), m.Answer(Party.CALLEE, PHONE), NOW + 3)
    assert call.state is CallState.ANSWERED and call.answered_at == NOW + 3
    assert call.answered_by == PHONE and call.ringing == frozenset()
    assert m.StopRinging(LAPTOP, EndReason.ANSWERED_ELSEWHERE) in commands
    assert m.StopRinging(PHONE, EndReason.ANSWERED_ELSEWHERE) not in commands
    assert m.BridgeMedia() in commands and m.CancelTimer(m.NO_ANSWER_TIMER) in commands


def test_answer_from_an_unknown_device_stops_every_ringing_device():
    _, commands = m.step(ringing(), m.Answer(Party.CALLEE, None), NOW + 3)
    stopped = {c.device for c in commands if isinstance(c, m.StopRinging)}
    assert stopped == {PHONE, LAPTOP}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (m.Decline(Party.CALLEE), EndReason.DECLINED),
        (m.Hangup(Party.CALLER), EndReason.CANCELLED),
        (m.Hangup(Party.CALLEE), EndReason.DECLINED),
        (m.NoAnswer(), EndReason.NO_ANSWER),
        (m.LegLost(Party.CALLER), EndReason.CANCELLED),
        (m.LegFailed(Party.CALLER), EndReason.FAILED),
    ],
)
def test_ringing_call_ends_with_the_right_reason(event, reason):
    call, commands = m.step(ringing(), event, NOW + 5)
    assert (call.state, call.reason, call.ended_at) == (CallState.ENDED, reason, NOW + 5)
    assert {c.device for c in commands if isinstance(c, m.StopRinging)} == {PHONE, LAPTOP}
    assert all(c.reason is reason for c in commands if isinstance(c, m.StopRinging))
    assert m.CancelTimer(m.NO_ANSWER_TIMER) in commands
    assert m.ReleaseMedia() in commands and m.RecordHistory() in commands
    assert m.NotifyState(Party.CALLER) in commands


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (m.Hangup(Party.CALLER), EndReason.COMPLETED),
        (m.Hangup(Party.CALLEE), EndReason.COMPLETED),
        (m.LegLost(Party.CALLEE), EndReason.COMPLETED),
        (m.LegFailed(Party.CALLER), EndReason.FAILED),
    ],
)
def test_answered_call_ends_for_both(event, reason):
    call, commands = m.step(answered(), event, NOW + 60)
    assert (call.state, call.reason) == (CallState.ENDED, reason)
    assert m.NotifyState(Party.CALLER) in commands and m.NotifyState(Party.CALLEE) in commands
    assert m.ReleaseMedia() in commands


def test_devices_joining_and_leaving_change_only_the_ringing_set():
    call, commands = m.step(ringing((PHONE,)), m.DeviceJoined(LAPTOP), NOW + 1)
    assert call.ringing == {PHONE, LAPTOP} and commands == []
    call, commands = m.step(call, m.DeviceLeft(PHONE), NOW + 2)
    assert call.ringing == {LAPTOP} and commands == []
    for state_of in (answered, ended):
        before = state_of()
        assert m.step(before, m.DeviceJoined("tablet"), NOW) == (before, [])


def test_only_the_callee_answers_or_declines():
    for event in (m.Answer(Party.CALLER), m.Decline(Party.CALLER)):
        with pytest.raises(m.IllegalEvent) as info:
            m.step(ringing(), event, NOW)
        assert info.value.code == "not_allowed"


ALL_EVENTS = [
    m.Answer(Party.CALLEE, PHONE),
    m.Decline(Party.CALLEE),
    m.Hangup(Party.CALLER),
    m.NoAnswer(),
    m.LegLost(Party.CALLER),
    m.LegFailed(Party.CALLER),
    m.DeviceJoined("tablet"),
    m.DeviceLeft(PHONE),
    m.Offer(frozenset({"carol"}), frozenset({"desk"}), NOW + 20),
    m.OfferEnded(),
    m.Refused(EndReason.BUSY),
]


@pytest.mark.parametrize(
    ("make", "event"), list(itertools.product([ringing, answered, ended], ALL_EVENTS))
)
def test_every_event_in_every_state_is_in_the_table_or_illegal(make, event):
    call = make()
    if (call.state, event.kind) in m.TRANSITIONS:
        try:  # some transitions apply only to service calls; elsewhere they refuse cleanly
            m.step(call, event, NOW + 1)
        except m.IllegalEvent as refused:
            assert refused.code in ("call_not_ringing", "not_offerable", "not_allowed")
        return
    with pytest.raises(m.IllegalEvent) as info:
        m.step(call, event, NOW + 1)
    expected = "call_ended" if call.state is CallState.ENDED else info.value.code
    assert info.value.code == expected
    if event.kind in ("answer", "decline") and call.state is CallState.ANSWERED:
        assert info.value.code == "call_not_ringing"


def test_the_table_names_only_known_states_and_events():
    kinds = {e.kind for e in ALL_EVENTS}
    for state, kind in m.TRANSITIONS:
        assert state in CallState and kind in kinds


def test_a_second_answer_is_refused():
    with pytest.raises(m.IllegalEvent) as info:
        m.step(answered(), m.Answer(Party.CALLEE, LAPTOP), NOW + 4)
    assert info.value.code == "call_not_ringing"


def test_party_of():
    call = ringing()
    assert call.party_of("alice") is Party.CALLER
    assert call.party_of("bob") is Party.CALLEE
    assert call.party_of("mallory") is None


# ------------------------------------------------------------------------ service calls


def hotline_call() -> m.Call:
    call, commands = m.place_service("c2", "alice", "hotline:12580", now=NOW)
    assert call.state is CallState.ANSWERED and call.with_service
    assert commands == [m.NotifyState(Party.CALLER), m.StartService()]
    return call


def offered() -> m.Call:
    call, commands = m.step(
        hotline_call(), m.Offer(frozenset({"carol"}), frozenset({"desk"}), NOW + 15), NOW
    )
    assert call.offered_to == {"carol"} and call.ringing == {"desk"}
    assert m.Ring("desk") in commands and m.StartTimer(m.OFFER_TIMER, NOW + 15) in commands
    assert call.party_of("carol") is Party.CALLEE
    return call


def test_ring_all_the_first_agent_to_answer_takes_it():
    call, _ = m.step(
        hotline_call(), m.Offer(frozenset({"carol", "dave"}), frozenset({"d1", "d2"}), NOW + 9), NOW
    )
    with pytest.raises(m.IllegalEvent):
        m.step(call, m.Answer(Party.CALLEE, "x", "mallory"), NOW + 1)
    call, commands = m.step(call, m.Answer(Party.CALLEE, "d2", "dave"), NOW + 2)
    assert call.callee == "dave" and m.StopRinging("d1", EndReason.ANSWERED_ELSEWHERE) in commands


def test_the_agent_answering_takes_the_call():
    call, commands = m.step(offered(), m.Answer(Party.CALLEE, "desk", "carol"), NOW + 5)
    assert (call.callee, call.offered_to, call.with_service) == ("carol", frozenset(), False)
    assert m.BridgeMedia() in commands and m.AgentConnected("carol") in commands
    call, commands = m.step(call, m.Hangup(Party.CALLEE), NOW + 60)
    assert call.reason is EndReason.COMPLETED


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (m.Decline(Party.CALLEE), "declined"),
        (m.Hangup(Party.CALLEE), "declined"),
        (m.OfferEnded(), "no_answer"),
    ],
)
def test_an_unanswered_offer_goes_back_to_the_service(event, reason):
    call, commands = m.step(offered(), event, NOW + 5)
    assert call.state is CallState.ANSWERED and not call.offered_to and call.with_service
    assert m.OfferFailed(frozenset({"carol"}), reason) in commands
    assert any(isinstance(c, m.StopRinging) and c.device == "desk" for c in commands)
    again, _ = m.step(call, m.Offer(frozenset({"dave"}), frozenset({"pc"}), NOW + 30), NOW + 6)
    assert again.offered_to == {"dave"}


def test_the_caller_leaving_during_an_offer_stops_the_agents_ringing():
    call, commands = m.step(offered(), m.Hangup(Party.CALLER), NOW + 5)
    assert call.state is CallState.ENDED and call.reason is EndReason.COMPLETED
    assert m.StopRinging("desk", EndReason.CANCELLED) in commands


def test_offers_only_for_service_calls_waiting_for_an_agent():
    for call in (answered(), offered()):
        with pytest.raises(m.IllegalEvent):
            m.step(call, m.Offer(frozenset({"dave"}), frozenset({"pc"}), NOW + 30), NOW)


# ------------------------------------------------------------------ calls to SIP addresses


def external_call() -> m.Call:
    call, commands = m.place_external("c3", "alice", "ext-c3", now=NOW, no_answer_s=30)
    assert call.state is CallState.RINGING and not call.ringing
    assert commands == [
        m.NotifyState(Party.CALLER),
        m.PlayRingback(),
        m.StartTimer(m.NO_ANSWER_TIMER, NOW + 30),
    ]
    return call


def test_a_sip_address_answers_and_the_media_is_bridged():
    call, commands = m.step(external_call(), m.Answer(Party.CALLEE), NOW + 3)
    assert call.state is CallState.ANSWERED and call.answered_at == NOW + 3
    assert m.BridgeMedia() in commands and m.CancelTimer(m.NO_ANSWER_TIMER) in commands


@pytest.mark.parametrize("reason", [EndReason.DECLINED, EndReason.UNREACHABLE, EndReason.BUSY])
def test_a_refusal_ends_the_call_with_its_reason_and_busy_plays_the_busy_tone(reason):
    call, commands = m.step(external_call(), m.Refused(reason), NOW + 2)
    assert call.state is CallState.ENDED and call.reason is reason
    assert (m.PlayBusyTone() in commands) is (reason is EndReason.BUSY)
    assert (m.ReleaseMedia() in commands) is (reason is not EndReason.BUSY)


def test_only_the_far_end_refuses_and_not_once_answered():
    with pytest.raises(m.IllegalEvent):
        m.step(external_call(), m.Refused(EndReason.BUSY, by=Party.CALLER), NOW + 1)
    answered_call, _ = m.step(external_call(), m.Answer(Party.CALLEE), NOW + 1)
    with pytest.raises(m.IllegalEvent):
        m.step(answered_call, m.Refused(EndReason.BUSY), NOW + 2)
