"""The one-to-one call state machine: pure, no I/O, no clock of its own.

Every transition takes the current `Call`, an event and `now`, and returns the next `Call`
with the commands the async controller must carry out (notify, ring, start a timer, bridge
media...). Anything not in the table below is an illegal event and changes nothing.

    state     event            by       next      reason / effect
    --------  ---------------  -------  --------  ----------------------------------------
    ringing   answer           callee   answered  bridge media, other devices: answered_elsewhere
    ringing   decline          callee   ended     declined
    ringing   hangup           caller   ended     cancelled
    ringing   hangup           callee   ended     declined
    ringing   no_answer        timer    ended     no_answer
    ringing   leg_lost         caller   ended     cancelled (the caller's connection went away)
    ringing   leg_failed       any      ended     failed
    ringing   device_joined    callee   ringing   the new device rings too (controller tells it)
    ringing   device_left      callee   ringing   that device stops ringing
    answered  hangup           either   ended     completed
    answered  leg_lost         either   ended     completed (a party closed its connection)
    answered  leg_failed       either   ended     failed
    answered  device_joined    callee   answered  nothing (answered already)
    answered  device_left      callee   answered  nothing (media is what matters)
    ended     device_*         any      ended     nothing

Calls to a SIP address (`sip:bob@pbx.example`, an app user calling out) ring the far end
instead of devices: the SIP side answers (`answer` by the callee) or refuses with a final
response, which ends the call with the reason it means (busy, declined, unreachable...).

    ringing   refused          callee   ended     its reason (busy plays the busy tone)

Service calls (to `hotline:<number>`) are answered by the service at once. The service may
then offer the call to an agent (an operator): the agent's devices ring while the caller
stays with the service; the agent answering bridges the caller to the agent.

    answered  offer            service  answered  the agent's devices ring
    answered  answer           agent    answered  the agent takes the call: bridge, ringing stops
    answered  decline/hangup   agent    answered  the offer ends (the service tries another)
    answered  offer_ended      timer    answered  the offer ends: no answer from the agent
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum


class CallState(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class EndReason(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    DECLINED = "declined"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"
    ANSWERED_ELSEWHERE = "answered_elsewhere"
    FAILED = "failed"


class Party(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    TIMER = "timer"


NO_ANSWER_TIMER = "no_answer"
OFFER_TIMER = "offer"


# ----------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Answer:
    by: Party
    device: str | None = None
    user: str | None = None  # who answers: needed when a service call rings several agents
    kind = "answer"


@dataclass(frozen=True)
class Decline:
    by: Party
    kind = "decline"


@dataclass(frozen=True)
class Hangup:
    by: Party
    kind = "hangup"


@dataclass(frozen=True)
class NoAnswer:
    by: Party = Party.TIMER
    kind = "no_answer"


@dataclass(frozen=True)
class LegLost:
    """A party's media connection closed normally (tab closed, peer said goodbye)."""

    by: Party
    kind = "leg_lost"


@dataclass(frozen=True)
class LegFailed:
    """A party's media connection failed (ICE/DTLS failure, worker crash)."""

    by: Party
    kind = "leg_failed"


@dataclass(frozen=True)
class DeviceJoined:
    device: str
    by: Party = Party.CALLEE
    kind = "device_joined"


@dataclass(frozen=True)
class DeviceLeft:
    device: str
    by: Party = Party.CALLEE
    kind = "device_left"


@dataclass(frozen=True)
class Offer:
    """The service offers its caller to agents (one, or all for ring-all) whose devices are
    these; the first to answer takes the call."""

    agents: frozenset[str]
    devices: frozenset[str]
    until: float
    by: Party = Party.TIMER
    kind = "offer"


@dataclass(frozen=True)
class Refused:
    """The far end of a call to a SIP address gave a final refusal (486, 603, 404...)."""

    reason: EndReason
    by: Party = Party.CALLEE
    kind = "refused"


@dataclass(frozen=True)
class OfferEnded:
    by: Party = Party.TIMER
    kind = "offer_ended"


Event = (
    Answer
    | Decline
    | Hangup
    | NoAnswer
    | LegLost
    | LegFailed
    | DeviceJoined
    | DeviceLeft
    | Offer
    | OfferEnded
    | Refused
)


# --------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Ring:
    """Send `call.incoming` to one device of the callee."""

    device: str


@dataclass(frozen=True)
class StopRinging:
    """Tell one callee device the call is over for it (`call.state` ended, with reason)."""

    device: str
    reason: EndReason


@dataclass(frozen=True)
class NotifyState:
    """Send `call.state` to a party (its answering device, or all its devices)."""

    party: Party


@dataclass(frozen=True)
class StartTimer:
    name: str
    at: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class PlayRingback:
    """The caller hears the callee's ringback until answer or end."""


@dataclass(frozen=True)
class PlayBusyTone:
    """The caller hears the busy tone briefly before its media is released."""


@dataclass(frozen=True)
class BridgeMedia:
    pass


@dataclass(frozen=True)
class ReleaseMedia:
    pass


@dataclass(frozen=True)
class RecordHistory:
    pass


@dataclass(frozen=True)
class StartService:
    """Hand the caller's media to the service the call was placed to."""


@dataclass(frozen=True)
class OfferFailed:
    """Tell the service its offer to `agents` ended unanswered (`reason`: declined,
    no_answer)."""

    agents: frozenset[str]
    reason: str


@dataclass(frozen=True)
class AgentConnected:
    agent: str


Command = (
    Ring
    | StopRinging
    | NotifyState
    | StartTimer
    | CancelTimer
    | PlayRingback
    | PlayBusyTone
    | BridgeMedia
    | ReleaseMedia
    | RecordHistory
    | StartService
    | OfferFailed
    | AgentConnected
)


# ------------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class Call:
    call_id: str
    caller: str
    callee: str
    state: CallState
    started_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    reason: EndReason | None = None
    ringing: frozenset[str] = field(default_factory=frozenset)
    answered_by: str | None = None
    service: str | None = None  # e.g. "hotline:12580" for calls a service answers
    offered_to: frozenset[str] = field(default_factory=frozenset)  # agents ringing for it

    def party_of(self, user_id: str) -> Party | None:
        if user_id == self.caller:
            return Party.CALLER
        if user_id == self.callee or user_id in self.offered_to:
            return Party.CALLEE
        return None

    @property
    def with_service(self) -> bool:
        """The caller is (still) talking to the service, not to a person."""
        return self.service is not None and self.callee == self.service


class IllegalEvent(Exception):
    """The event does not apply to the call in its state, or not from that party.

    `code` is a stable snake_case name the API answers with; nothing has changed."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


Outcome = tuple[Call, list[Command]]


# -------------------------------------------------------------------------------- placement


def place(
    call_id: str,
    caller: str,
    callee: str,
    *,
    devices: frozenset[str],
    callee_busy: bool,
    now: float,
    no_answer_s: float,
) -> Outcome:
    """A new call: it rings every connected device of the callee, or ends at once."""
    call = Call(call_id, caller, callee, CallState.RINGING, started_at=now)
    if callee_busy:
        return _end(call, EndReason.BUSY, now, busy_tone=True)
    if not devices:
        return _end(call, EndReason.UNREACHABLE, now, busy_tone=True)
    call = replace(call, ringing=devices)
    commands: list[Command] = [Ring(d) for d in sorted(devices)]
    commands += [
        NotifyState(Party.CALLER),
        PlayRingback(),
        StartTimer(NO_ANSWER_TIMER, now + no_answer_s),
    ]
    return call, commands


def place_external(
    call_id: str, caller: str, callee: str, *, now: float, no_answer_s: float
) -> Outcome:
    """A call to a SIP address: it rings at the far end until it answers or refuses."""
    call = Call(call_id, caller, callee, CallState.RINGING, started_at=now)
    return call, [
        NotifyState(Party.CALLER),
        PlayRingback(),
        StartTimer(NO_ANSWER_TIMER, now + no_answer_s),
    ]


def place_service(call_id: str, caller: str, service: str, *, now: float) -> Outcome:
    """A call to a service (the hotline): it answers at once and takes the caller's media."""
    call = Call(
        call_id,
        caller,
        service,
        CallState.ANSWERED,
        started_at=now,
        answered_at=now,
        service=service,
    )
    return call, [NotifyState(Party.CALLER), StartService()]


# -------------------------------------------------------------------------------- transitions


def _answer(call: Call, event: Event, now: float) -> Outcome:
    assert isinstance(event, Answer)
    _only(event, Party.CALLEE, "only the callee can answer")
    others = sorted(call.ringing - {event.device} if event.device else call.ringing)
    call = replace(
        call,
        state=CallState.ANSWERED,
        answered_at=now,
        ringing=frozenset(),
        answered_by=event.device,
    )
    commands: list[Command] = [CancelTimer(NO_ANSWER_TIMER), BridgeMedia()]
    commands += [StopRinging(d, EndReason.ANSWERED_ELSEWHERE) for d in others]
    commands += [NotifyState(Party.CALLER), NotifyState(Party.CALLEE)]
    return call, commands


def _decline(call: Call, event: Event, now: float) -> Outcome:
    _only(event, Party.CALLEE, "only the callee can decline")
    return _end(call, EndReason.DECLINED, now)


def _hangup_ringing(call: Call, event: Event, now: float) -> Outcome:
    reason = EndReason.CANCELLED if event.by is Party.CALLER else EndReason.DECLINED
    return _end(call, reason, now)


def _no_answer(call: Call, event: Event, now: float) -> Outcome:
    return _end(call, EndReason.NO_ANSWER, now)


def _refused(call: Call, event: Event, now: float) -> Outcome:
    assert isinstance(event, Refused)
    _only(event, Party.CALLEE, "only the far end refuses")
    return _end(call, event.reason, now, busy_tone=event.reason is EndReason.BUSY)


def _caller_gone(call: Call, event: Event, now: float) -> Outcome:
    reason = EndReason.CANCELLED if event.by is Party.CALLER else EndReason.FAILED
    return _end(call, reason, now)


def _completed(call: Call, event: Event, now: float) -> Outcome:
    return _end(call, EndReason.COMPLETED, now)


def _failed(call: Call, event: Event, now: float) -> Outcome:
    return _end(call, EndReason.FAILED, now)


def _device_joined(call: Call, event: Event, now: float) -> Outcome:
    assert isinstance(event, DeviceJoined)
    # No Ring command: the controller sends every (re)connecting device the calls in progress,
    # `call.incoming` included, so a device that comes back rings exactly once.
    return replace(call, ringing=call.ringing | {event.device}), []


def _device_left(call: Call, event: Event, now: float) -> Outcome:
    assert isinstance(event, DeviceLeft)
    return replace(call, ringing=call.ringing - {event.device}), []


def _ignore(call: Call, event: Event, now: float) -> Outcome:
    return call, []


def _offer(call: Call, event: Event, now: float) -> Outcome:
    assert isinstance(event, Offer)
    if not call.with_service or call.offered_to or not event.agents:
        raise IllegalEvent("not_offerable", "the call is not waiting for an agent")
    call = replace(call, offered_to=event.agents, ringing=event.devices)
    commands: list[Command] = [Ring(d) for d in sorted(event.devices)]
    return call, [*commands, StartTimer(OFFER_TIMER, event.until)]


def _answered_call_answer(call: Call, event: Event, now: float) -> Outcome:
    assert isinstance(event, Answer)
    if not call.offered_to or event.by is not Party.CALLEE or event.user not in call.offered_to:
        raise IllegalEvent("call_not_ringing", "the call is not ringing")
    agent = event.user
    others = sorted(call.ringing - {event.device} if event.device else call.ringing)
    call = replace(
        call, callee=agent, offered_to=frozenset(), ringing=frozenset(), answered_by=event.device
    )
    commands: list[Command] = [CancelTimer(OFFER_TIMER), BridgeMedia(), AgentConnected(agent)]
    commands += [StopRinging(d, EndReason.ANSWERED_ELSEWHERE) for d in others]
    return call, [*commands, NotifyState(Party.CALLER), NotifyState(Party.CALLEE)]


def _end_offer(reason: EndReason, failure: str) -> Transition:
    def transition(call: Call, event: Event, now: float) -> Outcome:
        if not call.offered_to:
            raise IllegalEvent("call_not_ringing", "the call is not ringing")
        agents, ringing = call.offered_to, sorted(call.ringing)
        call = replace(call, offered_to=frozenset(), ringing=frozenset())
        commands: list[Command] = [CancelTimer(OFFER_TIMER)]
        commands += [StopRinging(d, reason) for d in ringing]
        return call, [*commands, OfferFailed(agents, failure)]

    return transition


def _answered_hangup(call: Call, event: Event, now: float) -> Outcome:
    if call.offered_to and event.by is Party.CALLEE:
        return _end_offer(EndReason.DECLINED, "declined")(call, event, now)
    if call.offered_to:  # the caller leaves while agents' devices ring
        ringing = sorted(call.ringing)
        call = replace(call, offered_to=frozenset(), ringing=frozenset())
        outcome_call, commands = _end(call, EndReason.COMPLETED, now)
        stops: list[Command] = [CancelTimer(OFFER_TIMER)]
        stops += [StopRinging(d, EndReason.CANCELLED) for d in ringing]
        return outcome_call, stops + commands
    return _end(call, EndReason.COMPLETED, now)


def _answered_decline(call: Call, event: Event, now: float) -> Outcome:
    if event.by is not Party.CALLEE:
        raise IllegalEvent("not_allowed", "only the callee can decline")
    return _end_offer(EndReason.DECLINED, "declined")(call, event, now)


Transition = Callable[[Call, Event, float], Outcome]

TRANSITIONS: dict[tuple[CallState, str], Transition] = {
    (CallState.RINGING, "answer"): _answer,
    (CallState.RINGING, "decline"): _decline,
    (CallState.RINGING, "hangup"): _hangup_ringing,
    (CallState.RINGING, "no_answer"): _no_answer,
    (CallState.RINGING, "leg_lost"): _caller_gone,
    (CallState.RINGING, "leg_failed"): _failed,
    (CallState.RINGING, "refused"): _refused,
    (CallState.RINGING, "device_joined"): _device_joined,
    (CallState.RINGING, "device_left"): _device_left,
    (CallState.ANSWERED, "hangup"): _answered_hangup,
    (CallState.ANSWERED, "answer"): _answered_call_answer,
    (CallState.ANSWERED, "decline"): _answered_decline,
    (CallState.ANSWERED, "offer"): _offer,
    (CallState.ANSWERED, "offer_ended"): _end_offer(EndReason.NO_ANSWER, "no_answer"),
    (CallState.ANSWERED, "leg_lost"): _completed,
    (CallState.ANSWERED, "leg_failed"): _failed,
    (CallState.ANSWERED, "device_joined"): _ignore,
    (CallState.ANSWERED, "device_left"): _ignore,
    (CallState.ENDED, "device_joined"): _ignore,
    (CallState.ENDED, "device_left"): _ignore,
}

_NOT_RINGING = {
    "answer": ("call_not_ringing", "the call is not ringing"),
    "decline": ("call_not_ringing", "the call is not ringing"),
}


def step(call: Call, event: Event, now: float) -> Outcome:
    """Apply one event. Raises `IllegalEvent` (and changes nothing) when it does not apply."""
    transition = TRANSITIONS.get((call.state, event.kind))
    if transition is None:
        if call.state is CallState.ENDED:
            raise IllegalEvent("call_ended", "the call has ended")
        code, message = _NOT_RINGING.get(
            event.kind, ("illegal_event", f"{event.kind} does not apply to a {call.state} call")
        )
        raise IllegalEvent(code, message)
    return transition(call, event, now)


# ---------------------------------------------------------------------------------- helpers


def _only(event: Event, party: Party, message: str) -> None:
    if event.by is not party:
        raise IllegalEvent("not_allowed", message)


def _end(call: Call, reason: EndReason, now: float, *, busy_tone: bool = False) -> Outcome:
    was_ringing = call.state is CallState.RINGING
    ringing = sorted(call.ringing)
    call = replace(call, state=CallState.ENDED, reason=reason, ended_at=now, ringing=frozenset())
    commands: list[Command] = []
    if was_ringing:
        commands.append(CancelTimer(NO_ANSWER_TIMER))
        commands += [StopRinging(d, reason) for d in ringing]
    else:
        commands.append(NotifyState(Party.CALLEE))
    commands.append(NotifyState(Party.CALLER))
    commands.append(PlayBusyTone() if busy_tone else ReleaseMedia())
    commands.append(RecordHistory())
    return call, commands
