"""The async shell around the call state machine.

It loads a call from the live registry, steps the pure machine under the call's lock, stores
the result and carries out the commands: events to devices, timers, media legs, history.
Media legs, timers and locks are resources of this process; the call state itself lives in
the bus so other nodes can see it. A request about a call another node carries is run there
(`voice.calls.forward`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from voice.bus import Bus
from voice.calls import forward
from voice.calls import machine as m
from voice.calls.progress import ProgressTones
from voice.calls.registry import CallRegistry, LiveCall
from voice.errors import BadRequest, ChorusError, Conflict, Forbidden, NotFound
from voice.media.opus import OpusClip
from voice.metrics import Metrics
from voice.ports import Dialer, DtmfListener, RingbackSource, ServiceDesk
from voice.presence import Presence, device_channel
from voice.rpc import NodeRpc
from voice.store import CallInfo, Store, UserInfo

log = logging.getLogger("chorus.calls")

DTMF = re.compile(r"^[0-9*#A-Da-d]{1,32}$")
BUSY_TONE_S = 3.0


class Leg(Protocol):
    answer_sdp: str
    on_closed: Callable[[str], None] | None
    on_dtmf: Callable[[str], None] | None  # a key the party pressed on its media (RFC 4733)

    def play(self, clip: OpusClip | None, *, loop: bool = True) -> None: ...

    def relay_to(self, other: Leg | None) -> None: ...

    async def close(self) -> None: ...


class LegFactory(Protocol):
    async def __call__(self, offer_sdp: str, label: str, *, near: Leg | None = None) -> Leg:
        """A leg answering `offer_sdp`; `near`: the call's other leg, to be placed with it
        (the same media worker relays between them without crossing processes)."""
        ...


class CallLog(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"call={self.extra['call_id']} {msg}", kwargs  # type: ignore[index]


@dataclass(frozen=True)
class CallView:
    """A call as its parties see it (live, or from the history)."""

    call_id: str
    from_: str
    to: str
    state: str
    reason: str | None
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None


class CallController:
    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        legs: LegFactory,
        tones: ProgressTones,
        metrics: Metrics,
        no_answer_s: float,
        ringback: RingbackSource | None = None,
        dtmf: DtmfListener | None = None,
        desk: ServiceDesk | None = None,
        clock: Callable[[], float] = time.time,
        node: str = "local",
    ):
        self.node = node
        self.dialer: Dialer | None = None  # calls to SIP addresses (set when SIP is on)
        self.rpc: NodeRpc | None = None  # requests to the other nodes (set by `serve_nodes`)
        self.store = store
        self.bus = bus
        self.registry = CallRegistry(bus)
        self.presence = Presence(bus)
        self.tones = tones
        self.metrics = metrics
        self.no_answer_s = no_answer_s
        self.ringback: RingbackSource = ringback or tones
        self.dtmf = dtmf
        self.desk = desk
        self.clock = clock
        self._new_leg = legs
        self._legs: dict[str, dict[m.Party, Leg]] = {}
        # The calls this node carries, as last written to the bus: written back if the bus
        # loses them (see `resync`).
        self._carried: dict[str, LiveCall] = {}
        # Registered desk phones of a call's callee (device -> binding) and those ringing.
        self._phones: dict[str, dict[str, Any]] = {}
        self._ringing_phones: dict[str, dict[str, Any]] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # ------------------------------------------------------------------------- requests

    async def place(self, caller: UserInfo, to: str, offer_sdp: str) -> tuple[LiveCall, str]:
        """An app user calls `to` (a username or a service destination) with a WebRTC offer."""
        started = time.perf_counter()
        if self.dialer is not None and self.dialer.dials(to):
            return await self._place_external(caller, to, offer_sdp, started)
        callee = await self._destination(to, caller)
        call_id = uuid.uuid4().hex
        leg = await self._open_leg(offer_sdp, call_id)  # bad SDP fails here, before any state
        self._listen_for_keys(call_id, caller, leg)
        live = await self._begin(
            call_id, leg, caller.id, caller.username, caller.display_name, to, callee, started
        )
        return live, leg.answer_sdp

    async def place_inbound(
        self, from_: str, to: str, leg: Leg, *, caller_user: UserInfo | None = None
    ) -> LiveCall:
        """A call from outside the app (a SIP phone; `from_` is its URI) to the user or service
        `to`, whose media `leg` already carries. Same semantics as an app call. A user's own
        desk phone calls as that user; any other caller has no account: its id is derived
        from the call's."""
        started = time.perf_counter()
        callee = await self._destination(to, caller_user)
        call_id = uuid.uuid4().hex
        self.metrics.peer_connections.inc()
        if caller_user is not None:
            return await self._begin(
                call_id, leg, caller_user.id, caller_user.username, caller_user.display_name,
                to, callee, started,
            )  # fmt: skip
        return await self._begin(
            call_id, leg, f"ext-{call_id[:28]}", from_, None, to, callee, started
        )

    async def _place_external(
        self, caller: UserInfo, to: str, offer_sdp: str, started: float
    ) -> tuple[LiveCall, str]:
        """An app user calls a SIP address: the far end rings, answers or refuses."""
        assert self.dialer is not None
        call_id = uuid.uuid4().hex
        leg = await self._open_leg(offer_sdp, call_id)
        self._legs[call_id] = {m.Party.CALLER: leg}
        try:
            far = await self.dialer.dial(
                to, caller=caller.username, display=caller.display_name, label=f"call={call_id}"
            )
            self._legs[call_id][m.Party.CALLEE] = far
            far.on_progress = lambda status: self._spawn(self._far_progress(call_id, status))
            far.on_answered = lambda: self._spawn(self._far_event(call_id, "answered"))
            far.on_closed = lambda reason: self._spawn(self._far_event(call_id, reason))
            far.on_dtmf = lambda key: self._spawn(self.inbound_dtmf(call_id, key))
            self._listen_for_keys(call_id, caller, leg)
            self._watch(call_id, m.Party.CALLER, leg)
            callee_id = f"ext-{call_id[:28]}"
            call, commands = m.place_external(
                call_id, caller.id, callee_id, now=self.clock(), no_answer_s=self.no_answer_s
            )
            live = LiveCall(
                call, caller.username, to, from_display=caller.display_name, node=self.node
            )
            async with self._lock(call_id):
                await self._commit(live, commands, previous=None)
        except BaseException:
            await self._close_legs(call_id)
            raise
        self.metrics.call_setup.observe(time.perf_counter() - started)
        CallLog(log, {"call_id": call_id}).info("placed %s -> %s", caller.username, to)
        return live, leg.answer_sdp

    async def _far_progress(self, call_id: str, status: int) -> None:
        """183 Session Progress: the caller hears the far end's early media (its ringback,
        an announcement) instead of ours, once that media flows."""
        legs = self._legs.get(call_id, {})
        far, near = legs.get(m.Party.CALLEE), legs.get(m.Party.CALLER)
        if status != 183 or far is None or near is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(far.media.wait(), 5)
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            if live is not None and live.call.state is m.CallState.RINGING and far.media.is_set():
                far.relay_to(near)

    async def _far_event(self, call_id: str, what: str) -> None:
        """The SIP side of a call we dialled answered, refused, hung up or failed."""
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            far = self._legs.get(call_id, {}).get(m.Party.CALLEE)
            if live is None or live.call.state is m.CallState.ENDED or far is None:
                return
            ringing = live.call.state is m.CallState.RINGING
            event: m.Event
            if what == "answered":
                if not ringing:
                    return
                event = m.Answer(m.Party.CALLEE)
            elif what == "failed":
                event = m.LegFailed(m.Party.CALLEE)
            elif ringing:
                event = m.Refused(m.EndReason(far.refusal_reason))
            else:
                event = m.LegLost(m.Party.CALLEE)
            CallLog(log, {"call_id": call_id}).info("far end: %s", what)
            await self._step(live, event)

    async def _ring_phone(self, live: LiveCall, device: str) -> None:
        """One of the callee's desk phones rings: a SIP call to it, forked with the app."""
        assert self.dialer is not None
        call_id = live.call.call_id
        phone = self._phones.get(call_id, {}).get(device)
        if phone is None:
            return
        try:
            leg = await self.dialer.dial_phone(
                phone, caller=live.from_, display=live.from_display, label=f"call={call_id}"
            )
        except ChorusError as exc:
            CallLog(log, {"call_id": call_id}).warning("phone %s not rung: %s", device, exc)
            return
        # Before taking the lock: a phone that answers at once must not be missed (the
        # handlers queue on the lock behind this task).
        leg.on_answered = lambda: self._spawn(self._phone_answered(call_id, device))
        leg.on_closed = lambda reason: self._spawn(self._phone_gone(call_id, device))
        async with self._lock(call_id):
            current = await self.registry.get(call_id)
            if current is None or current.call.state is not m.CallState.RINGING:
                self._spawn(leg.close())
                return
            self._ringing_phones.setdefault(call_id, {})[device] = leg

    async def _phone_answered(self, call_id: str, device: str) -> None:
        async with self._lock(call_id):
            leg = self._ringing_phones.get(call_id, {}).pop(device, None)
            live = await self.registry.get(call_id)
            if leg is None:
                return
            if (
                live is None
                or live.call.state is not m.CallState.RINGING
                or not (await self.registry.claim_answer(call_id, device))
            ):
                self._spawn(leg.close())  # another device was first: BYE
                return
            self._legs.setdefault(call_id, {})[m.Party.CALLEE] = leg
            self._watch(call_id, m.Party.CALLEE, leg)
            await self._step(live, m.Answer(m.Party.CALLEE, device, live.call.callee))

    async def _phone_gone(self, call_id: str, device: str) -> None:
        """A ringing phone refused (603 declines the call, like the app's Decline) or
        dropped out (busy, offline): the other devices ring on."""
        async with self._lock(call_id):
            leg = self._ringing_phones.get(call_id, {}).pop(device, None)
            live = await self.registry.get(call_id)
            if leg is None or live is None or live.call.state is not m.CallState.RINGING:
                return
            declined = leg.refusal_reason == m.EndReason.DECLINED.value
            event = m.Decline(m.Party.CALLEE) if declined else m.DeviceLeft(device)
            await self._step(live, event)

    async def _destination(self, to: str, caller: UserInfo | None) -> UserInfo | None:
        """The user called, or None for a service destination (checked to exist)."""
        if self.desk is not None and self.desk.handles(to):
            await self.desk.check(to)
            return None
        return await self._resolve(caller, to)

    async def _begin(
        self,
        call_id: str,
        leg: Leg,
        caller_id: str,
        from_: str,
        from_display: str | None,
        to: str,
        callee: UserInfo | None,
        started: float,
    ) -> LiveCall:
        self._legs[call_id] = {m.Party.CALLER: leg}
        try:
            phones = {}
            if callee is not None and self.dialer is not None:
                phones = await self.dialer.phones(callee.id)  # registered desk phones
                self._phones[call_id] = phones
            if callee is None:
                call, commands = m.place_service(call_id, caller_id, to, now=self.clock())
            else:
                call, commands = m.place(
                    call_id,
                    caller_id,
                    callee.id,
                    devices=await self.presence.devices(callee.id) | set(phones),
                    callee_busy=await self.registry.in_answered_call(callee.id),
                    now=self.clock(),
                    no_answer_s=self.no_answer_s,
                )
                to = callee.username
            live = LiveCall(call, from_, to, from_display=from_display, node=self.node)
            self._watch(call_id, m.Party.CALLER, leg)
            async with self._lock(call_id):
                await self._commit(live, commands, previous=None)
        except BaseException:
            await self._close_legs(call_id)
            raise
        self.metrics.call_setup.observe(time.perf_counter() - started)
        CallLog(log, {"call_id": call_id}).info(
            "placed %s -> %s: %s", from_, to, call.reason or call.state
        )
        return live

    async def inbound_dtmf(self, call_id: str, digits: str) -> None:
        """Keys pressed by a caller from outside the app (RFC 4733 or SIP INFO)."""
        live = await self.registry.get(call_id)
        if live is None or not DTMF.match(digits):
            return
        call = live.call
        if call.with_service and self.desk is not None:
            await self.desk.dtmf(call_id, digits)
        elif call.state is m.CallState.ANSWERED:
            event = {"type": "call.dtmf", "call_id": call_id, "digits": digits, "from": live.from_}
            await self.bus.publish(self._channel(live, m.Party.CALLEE), event)

    async def offer(
        self, call_id: str, agents: list[str], *, ring_s: float, context: dict[str, Any]
    ) -> list[str]:
        """A service offers its caller to agents: their devices ring with `context`, the
        first to answer takes the call. Returns the agents actually rung (those with a
        connected device and not in a call); empty when none could be."""
        reachable, owners = [], {}
        for agent in agents:
            found = await self.presence.devices(agent)
            if found and not await self.registry.in_answered_call(agent):
                reachable.append(agent)
                for device in found:
                    owners.setdefault(device, []).append(agent)
        if not reachable:
            return []
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            if live is None or not live.call.with_service or live.call.offered_to:
                return []
            live = replace(live, context=context, device_owners=owners)
            await self._step(
                live, m.Offer(frozenset(reachable), frozenset(owners), self.clock() + ring_s)
            )
        return reachable

    async def end_service_call(self, call_id: str) -> None:
        """The service hangs up (the menu said so, or it failed)."""
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            if live is not None and live.call.state is not m.CallState.ENDED:
                await self._step(live, m.Hangup(m.Party.CALLEE))

    async def answer(self, user: UserInfo, call_id: str, offer_sdp: str, device: str | None) -> str:
        if node := await self._carried_elsewhere(user, call_id):
            return await self._forward(
                node, "answer", user, call_id, offer_sdp=offer_sdp, device=device
            )
        async with self._lock(call_id):
            live = await self._live_for(user, call_id)
            event = m.Answer(live.call.party_of(user.id), device, user.id)  # type: ignore[arg-type]
            self._check(live.call, event)  # fail fast, before a peer connection exists
            if not await self.registry.claim_answer(call_id, device or "-"):
                raise Conflict("the call was answered already", code="call_not_ringing")
            try:
                caller_leg = self._legs.get(call_id, {}).get(m.Party.CALLER)
                leg = await self._open_leg(offer_sdp, call_id, near=caller_leg)
            except BaseException:
                await self.registry.release_claim(call_id)
                raise
            self._legs.setdefault(call_id, {})[m.Party.CALLEE] = leg
            self._watch(call_id, m.Party.CALLEE, leg)
            self._listen_for_keys(call_id, user, leg)
            await self._step(live, event)
            return leg.answer_sdp

    async def decline(self, user: UserInfo, call_id: str) -> None:
        if node := await self._carried_elsewhere(user, call_id):
            await self._forward(node, "decline", user, call_id)
            return
        await self._request(user, call_id, lambda party: m.Decline(party))

    async def hangup(self, user: UserInfo, call_id: str) -> None:
        if node := await self._carried_elsewhere(user, call_id):
            await self._forward(node, "hangup", user, call_id)
            return
        await self._request(user, call_id, lambda party: m.Hangup(party))

    async def send_dtmf(self, user: UserInfo, call_id: str, digits: str) -> None:
        if not DTMF.match(digits):
            raise BadRequest("digits are 1-32 of 0-9 * # A-D", code="bad_digits")
        if node := await self._carried_elsewhere(user, call_id):
            # There the keys reach the call's service or ringback, which live with its legs.
            await self._forward(node, "send_dtmf", user, call_id, digits=digits)
            return
        live = await self._live_for(user, call_id)
        call = live.call
        party = call.party_of(user.id)
        if call.with_service and party is m.Party.CALLER:
            if self.desk is not None:
                await self.desk.dtmf(call_id, digits)
            return
        if call.state is m.CallState.RINGING and party is m.Party.CALLER:
            if self.dtmf is not None:
                await self.dtmf.on_ringing_dtmf(call_id, call.caller, call.callee, digits)
            return
        if call.state is not m.CallState.ANSWERED:
            raise Conflict("digits can be sent once the call is answered", code="call_not_answered")
        other = m.Party.CALLEE if party is m.Party.CALLER else m.Party.CALLER
        far = self._legs.get(call_id, {}).get(other)
        if hasattr(far, "send_dtmf"):  # a phone: the keys go to it as RFC 4733 events
            far.send_dtmf(digits)
        event = {"type": "call.dtmf", "call_id": call_id, "digits": digits, "from": user.username}
        await self.bus.publish(self._channel(live, other), event)

    async def view(self, user: UserInfo, call_id: str) -> CallView:
        live = await self.registry.get(call_id)
        if live is not None and live.call.party_of(user.id) is not None:
            return _live_view(live)
        info = await self.store.call(call_id)
        if info is None or user.id not in (info.caller_id, info.callee_id):
            raise NotFound("no such call", code="call_not_found")
        return _stored_view(info)

    async def history(self, user: UserInfo, limit: int) -> list[CallView]:
        return [_stored_view(info) for info in await self.store.history(user.id, limit)]

    # -------------------------------------------------------------------------- devices

    async def device_connected(self, user: UserInfo, device: str) -> list[dict[str, Any]]:
        """Registers the device; returns what it must be told about calls in progress."""
        await self.presence.connect(user.id, device)
        snapshot: list[dict[str, Any]] = []
        for live in await self.registry.calls_of(user.id):
            call = live.call
            if call.state is m.CallState.RINGING and call.callee == user.id:
                await self.device_moved(call.call_id, device, joined=True)
                snapshot.append(_incoming(live))
            snapshot.append(_state(call))
        return snapshot

    async def device_disconnected(self, user: UserInfo, device: str) -> None:
        await self.presence.disconnect(user.id, device)
        for live in await self.registry.calls_of(user.id):
            if live.call.callee == user.id and device in live.call.ringing:
                await self.device_moved(live.call.call_id, device, joined=False)

    async def device_moved(self, call_id: str, device: str, *, joined: bool) -> None:
        """A device of the callee came or went: the call's ringing devices change on the node
        that carries the call, under its lock (a step here could undo a step made there)."""
        live = await self.registry.get(call_id)
        if live is None:
            return
        if self.rpc is not None and live.node not in (None, self.node):
            try:
                await forward.device_moved(self.rpc, live.node, call_id, device, joined)
            except ChorusError as exc:  # that node is gone: the sweeper ends its call
                CallLog(log, {"call_id": call_id}).warning("device %s not noted: %s", device, exc)
            return
        async with self._lock(call_id):
            current = await self.registry.get(call_id)
            if current is not None:
                event = m.DeviceJoined(device) if joined else m.DeviceLeft(device)
                await self._step(current, event)

    # ------------------------------------------------------------------------ lifecycle

    async def recover(self) -> int:
        """After a crash of the only node, no call can still be live: end the stale records."""
        return await self.store.end_unfinished_calls(m.EndReason.FAILED.value, _utc(self.clock()))

    async def sweep(self, alive: Callable[[str], Awaitable[bool]]) -> int:
        """Ends the calls whose node is gone (reason `failed`): their legs and timers died with
        it, so the other party would otherwise wait forever and stay busy."""
        ended = 0
        for call_id in sorted(await self.registry.live_ids()):
            live = await self.registry.get(call_id)
            if live is None:
                await self.registry.forget(call_id)  # ended between the two reads
                continue
            if live.node is None or live.node == self.node or await alive(live.node):
                continue
            if not await self.registry.claim_sweep(call_id, self.node):
                continue
            async with self._lock(call_id):
                live = await self.registry.get(call_id)
                if live is None or live.call.state is m.CallState.ENDED:
                    continue
                CallLog(log, {"call_id": call_id}).warning(
                    "ending the call: its node %s is gone", live.node
                )
                try:
                    await self._step(live, m.LegFailed(m.Party.CALLER))
                except ChorusError:
                    await self.registry.remove(live.call)
                await self._close_legs(call_id)  # the other party's leg, if it is here
            ended += 1
        return ended

    async def resync(self) -> int:
        """The bus lost its data (a Redis restart): write back the calls this node carries,
        so their parties can still answer, press keys and hang up. A call another node swept
        meanwhile (this one was frozen and taken for dead) stays ended: its legs close."""
        restored = 0
        for call_id in list(self._carried):
            async with self._lock(call_id):
                live = self._carried.get(call_id)
                if live is None or await self.registry.get(call_id) is not None:
                    continue
                if await self.registry.swept(call_id):
                    self._carried.pop(call_id, None)
                    await self._close_legs(call_id)
                    continue
                await self.registry.put(live)
                restored += 1
        return restored

    async def shutdown(self) -> None:
        """Ends every call this node carries (reason `failed`), closes every leg."""
        self._closing = True
        for call_id in list(self._legs):
            live = await self.registry.get(call_id)
            if live is not None and live.call.state is not m.CallState.ENDED:
                try:
                    async with self._lock(call_id):
                        await self._step(live, m.LegFailed(m.Party.CALLER))
                except (m.IllegalEvent, ChorusError) as exc:
                    CallLog(log, {"call_id": call_id}).warning("not ended cleanly: %s", exc)
            await self._close_legs(call_id)
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.presence.close()

    @property
    def open_legs(self) -> int:
        return sum(len(legs) for legs in self._legs.values())

    # -------------------------------------------------------------------------- helpers

    def serve_nodes(self, rpc: NodeRpc) -> None:
        """Forwards requests about other nodes' calls through `rpc`, and serves theirs."""
        self.rpc = rpc
        forward.serve(rpc, self)

    async def _carried_elsewhere(self, user: UserInfo, call_id: str) -> str | None:
        """The node carrying this call of `user`'s, when it is not this one. A call the user
        is no party to is not forwarded: it is refused here as it would be there."""
        if self.rpc is None:
            return None
        live = await self.registry.get(call_id)
        if live is None or live.node in (None, self.node) or live.call.party_of(user.id) is None:
            return None
        return live.node

    async def _forward(
        self, node: str, what: str, user: UserInfo, call_id: str, **args: Any
    ) -> Any:
        assert self.rpc is not None
        CallLog(log, {"call_id": call_id}).debug("%s by %s: forwarded to %s", what, user.id, node)
        return await forward.request(self.rpc, node, what, user, call_id, **args)

    async def _resolve(self, caller: UserInfo | None, to: str) -> UserInfo:
        if to.startswith("hotline:"):
            raise NotFound(f"no hotline answers {to[8:]!r}", code="hotline_not_found")
        if to.startswith(("sip:", "sips:", "tel:")):
            raise NotFound("SIP calling is not enabled on this server", code="sip_unavailable")
        callee = await self.store.user_by_username(to)
        if callee is None:
            raise NotFound(f"no user called {to!r}", code="user_not_found")
        if caller is not None and callee.id == caller.id:
            raise BadRequest("you cannot call yourself", code="cannot_call_self")
        return callee

    async def _open_leg(self, offer_sdp: str, call_id: str, *, near: Leg | None = None) -> Leg:
        leg = await self._new_leg(offer_sdp, call_id, near=near)
        self.metrics.peer_connections.inc()
        return leg

    def _watch(self, call_id: str, party: m.Party, leg: Leg) -> None:
        def closed(reason: str) -> None:
            if self._legs.get(call_id, {}).get(party) is leg and not self._closing:
                event = m.LegLost(party) if reason == "closed" else m.LegFailed(party)
                self._spawn(self._leg_event(call_id, event, reason))

        leg.on_closed = closed

    def _listen_for_keys(self, call_id: str, user: UserInfo, leg: Leg) -> None:
        """Keys an app user presses on its own media (RFC 4733) count as sent through the
        API by that user: the same menu, ringback or call.dtmf event, and where the API
        would refuse them (the call has ended), they are dropped."""
        in_order = asyncio.Lock()  # FIFO: a menu gets "010#" in the order it was pressed
        call_log = CallLog(log, {"call_id": call_id})

        async def pressed(key: str) -> None:
            async with in_order:
                try:
                    await self.send_dtmf(user, call_id, key)
                except ChorusError as exc:
                    call_log.info("a key from %s's media was not taken: %s", user.id, exc.code)

        leg.on_dtmf = lambda key: self._spawn(pressed(key))

    async def _leg_event(self, call_id: str, event: m.Event, reason: str) -> None:
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            if live is None or live.call.state is m.CallState.ENDED:
                return
            CallLog(log, {"call_id": call_id}).info("%s media %s", event.by, reason)
            await self._step(live, event)

    async def _request(
        self, user: UserInfo, call_id: str, make: Callable[[m.Party], m.Event]
    ) -> None:
        async with self._lock(call_id):
            live = await self._live_for(user, call_id)
            await self._step(live, make(live.call.party_of(user.id)))  # type: ignore[arg-type]

    async def _live_for(self, user: UserInfo, call_id: str) -> LiveCall:
        live = await self.registry.get(call_id)
        if live is not None and live.call.party_of(user.id) is not None:
            return live
        info = await self.store.call(call_id)
        if info is not None and user.id in (info.caller_id, info.callee_id):
            raise Conflict("the call has ended", code="call_ended")
        raise NotFound("no such call", code="call_not_found")

    def _check(self, call: m.Call, event: m.Event) -> None:
        try:
            m.step(call, event, self.clock())
        except m.IllegalEvent as exc:
            raise _refusal(exc) from exc

    async def _step(self, live: LiveCall, event: m.Event) -> None:
        try:
            call, commands = m.step(live.call, event, self.clock())
        except m.IllegalEvent as exc:
            raise _refusal(exc) from exc
        await self._commit(replace(live, call=call), commands, previous=live.call)

    async def _commit(
        self, live: LiveCall, commands: list[m.Command], previous: m.Call | None
    ) -> None:
        call = live.call
        if call.state is m.CallState.ENDED:
            self._carried.pop(call.call_id, None)
            await self.registry.remove(call)
        else:
            if live.node == self.node:
                self._carried[call.call_id] = live
            await self.registry.put(live)
        if previous is None or previous.state is not call.state:
            await self.store.save_call(_record(live))
            self._count(previous, call)
        if call.state is m.CallState.ENDED and call.service is not None and self.desk:
            # The service closes its books (the hotline's call record) before anyone is
            # told the call ended, so what they read next is already final.
            await self.desk.closed(call.call_id, call.reason.value if call.reason else "")
        for command in commands:
            await self._carry_out(live, command)
        if call.state is m.CallState.ENDED:
            self._locks.pop(call.call_id, None)
            self._phones.pop(call.call_id, None)
            for phone_leg in self._ringing_phones.pop(call.call_id, {}).values():
                self._spawn(phone_leg.close())
            await self.registry.release_claim(call.call_id)

    async def _carry_out(self, live: LiveCall, command: m.Command) -> None:
        call = live.call
        legs = self._legs.get(call.call_id, {})
        match command:
            case m.Ring(device) if device in self._phones.get(call.call_id, {}):
                self._spawn(self._ring_phone(live, device))
            case m.Ring(device):
                for owner in _owners(live, device):
                    await self.bus.publish(device_channel(owner, device), _incoming(live))
            case m.StopRinging(device, reason) if device in self._phones.get(call.call_id, {}):
                phone_leg = self._ringing_phones.get(call.call_id, {}).pop(device, None)
                if phone_leg is not None:
                    self._spawn(phone_leg.close())  # CANCEL
            case m.StopRinging(device, reason):
                ended = {"type": "call.state", "call_id": call.call_id, "state": "ended"}
                stopped = {**ended, "reason": reason.value}
                for owner in _owners(live, device):
                    await self.bus.publish(device_channel(owner, device), stopped)
            case m.NotifyState(party):
                if party is m.Party.CALLER or not call.with_service:
                    await self.bus.publish(self._channel(live, party), _state(call))
            case m.StartTimer(name, at):
                self._start_timer(call.call_id, name, at)
            case m.CancelTimer(name):
                handle = self._timers.pop((call.call_id, name), None)
                if handle is not None:
                    handle.cancel()
            case m.PlayRingback():
                clip = await self.ringback.ringback_for(call.call_id, call.caller, call.callee)
                if m.Party.CALLER in legs:
                    legs[m.Party.CALLER].play(clip)
            case m.PlayBusyTone():
                caller_leg = self._legs.pop(call.call_id, {}).pop(m.Party.CALLER, None)
                if caller_leg is not None:
                    caller_leg.play(self.tones.busy)
                    self._spawn(self._release_later(caller_leg, BUSY_TONE_S))
            case m.BridgeMedia():
                a, b = legs.get(m.Party.CALLER), legs.get(m.Party.CALLEE)
                if a is not None and b is not None:
                    a.relay_to(b)
                    b.relay_to(a)
            case m.ReleaseMedia():
                await self._close_legs(call.call_id)
            case m.RecordHistory():
                pass  # the record was written above when the state changed
            case m.StartService():
                if self.desk is not None and m.Party.CALLER in legs:
                    await self.desk.open(
                        call.call_id, call.caller, call.service, legs[m.Party.CALLER]
                    )
            case m.OfferFailed(agents, reason):
                if self.desk is not None:
                    self._spawn(self.desk.offer_failed(call.call_id, sorted(agents), reason))
            case m.AgentConnected(agent):
                if self.desk is not None:
                    await self.desk.connected(call.call_id, agent)

    def _channel(self, live: LiveCall, party: m.Party) -> str:
        call = live.call
        if party is m.Party.CALLER:
            return f"user:{call.caller}"
        if call.answered_by:
            return device_channel(call.callee, call.answered_by)
        return f"user:{call.callee}"

    def _start_timer(self, call_id: str, name: str, at: float) -> None:
        def fire() -> None:
            self._timers.pop((call_id, name), None)
            if name == m.OFFER_TIMER:
                self._spawn(self._offer_timer(call_id))
            else:
                self._spawn(self._leg_event_timer(call_id))

        delay = max(0.0, at - self.clock())
        self._timers[(call_id, name)] = asyncio.get_running_loop().call_later(delay, fire)

    async def _leg_event_timer(self, call_id: str) -> None:
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            if live is not None and live.call.state is m.CallState.RINGING:
                await self._step(live, m.NoAnswer())

    async def _offer_timer(self, call_id: str) -> None:
        async with self._lock(call_id):
            live = await self.registry.get(call_id)
            if live is not None and live.call.offered_to:
                await self._step(live, m.OfferEnded())

    async def _release_later(self, leg: Leg, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            await leg.close()
            self.metrics.peer_connections.dec()

    async def _close_legs(self, call_id: str) -> None:
        for leg in self._legs.pop(call_id, {}).values():
            leg.relay_to(None)
            await leg.close()
            self.metrics.peer_connections.dec()

    def _lock(self, call_id: str) -> asyncio.Lock:
        return self._locks.setdefault(call_id, asyncio.Lock())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    def _count(self, previous: m.Call | None, call: m.Call) -> None:
        if previous is not None and previous.state is not m.CallState.ENDED:
            self.metrics.calls.labels(previous.state.value).dec()
        if call.state is m.CallState.ENDED:
            self.metrics.calls_ended.labels(call.reason.value if call.reason else "").inc()
        else:
            self.metrics.calls.labels(call.state.value).inc()


def _refusal(exc: m.IllegalEvent) -> ChorusError:
    if exc.code == "not_allowed":
        return Forbidden(exc.message, code=exc.code)
    return Conflict(exc.message, code=exc.code)


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _record(live: LiveCall) -> CallInfo:
    call = live.call
    return CallInfo(
        call.call_id,
        call.caller,
        call.callee,
        live.from_,
        live.to,
        call.state.value,
        call.reason.value if call.reason else None,
        _utc(call.started_at),  # type: ignore[arg-type]
        _utc(call.answered_at),
        _utc(call.ended_at),
    )


def _live_view(live: LiveCall) -> CallView:
    return _stored_view(_record(live))


def _stored_view(info: CallInfo) -> CallView:
    return CallView(
        info.call_id,
        info.from_,
        info.to,
        info.state,
        info.reason,
        info.started_at,
        info.answered_at,
        info.ended_at,
    )


def _owners(live: LiveCall, device: str) -> list[str]:
    """Whose device `device` is: the callee's, or, while a service offers its caller,
    the agents' who have a device by that name."""
    return (live.device_owners or {}).get(device) or [live.call.callee]


def _incoming(live: LiveCall) -> dict[str, Any]:
    event = {"type": "call.incoming", "call_id": live.call.call_id, "from": live.from_}
    event["to"] = live.to
    if live.from_display:
        event["from_display"] = live.from_display
    if live.context:
        event["context"] = live.context
    return event


def _state(call: m.Call) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "call.state",
        "call_id": call.call_id,
        "state": call.state.value,
    }
    if call.reason is not None:
        event["reason"] = call.reason.value
    return event
