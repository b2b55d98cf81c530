"""Calls in progress, kept in the bus (not in a dict of this process) so any node can find
them. A call's keys share the `{call_id}` hash tag so Redis Cluster keeps them together."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from voice.bus import Bus, Message
from voice.calls.machine import Call, CallState, EndReason


@dataclass(frozen=True)
class LiveCall:
    call: Call
    from_: str  # what the caller is called on this call: a username or a SIP URI
    to: str
    context: dict | None = None  # what a service tells the agent (menu path, digits)
    from_display: str | None = None  # the caller's display name, for the ringing screen
    node: str | None = None  # the node that placed it: its legs and timers live there
    # A service call being offered: whose devices ring (device id -> agents that have one
    # by that name; ids are chosen by clients, so two agents may both have a "phone").
    device_owners: dict[str, list[str]] | None = None


def _to_message(live: LiveCall) -> Message:
    data = asdict(live.call)
    data["ringing"] = sorted(live.call.ringing)
    data["offered_to"] = sorted(live.call.offered_to)
    return {
        "call": data,
        "from": live.from_,
        "to": live.to,
        "context": live.context,
        "from_display": live.from_display,
        "node": live.node,
        "device_owners": live.device_owners,
    }


def _from_message(message: Message) -> LiveCall:
    data = dict(message["call"])
    data["state"] = CallState(data["state"])
    data["reason"] = EndReason(data["reason"]) if data["reason"] else None
    data["ringing"] = frozenset(data["ringing"])
    data["offered_to"] = frozenset(data.get("offered_to") or ())
    return LiveCall(
        Call(**data),
        message["from"],
        message["to"],
        message.get("context"),
        message.get("from_display"),
        message.get("node"),
        message.get("device_owners"),
    )


LIVE = "calls:live"  # every call in progress, for the sweeper of dead nodes' calls


class CallRegistry:
    def __init__(self, bus: Bus):
        self._bus = bus

    async def put(self, live: LiveCall) -> None:
        await self._bus.put(f"call:{{{live.call.call_id}}}", _to_message(live))
        await self._bus.add_member(LIVE, live.call.call_id)
        for user in (live.call.caller, live.call.callee):
            await self._bus.add_member(f"calls-of:{{{user}}}", live.call.call_id)

    async def get(self, call_id: str) -> LiveCall | None:
        message = await self._bus.get(f"call:{{{call_id}}}")
        return _from_message(message) if message else None

    async def remove(self, call: Call) -> None:
        await self._bus.delete(f"call:{{{call.call_id}}}")
        await self._bus.remove_member(LIVE, call.call_id)
        for user in (call.caller, call.callee):
            await self._bus.remove_member(f"calls-of:{{{user}}}", call.call_id)

    async def live_ids(self) -> set[str]:
        return await self._bus.members(LIVE)

    async def forget(self, call_id: str) -> None:
        await self._bus.remove_member(LIVE, call_id)

    async def claim_sweep(self, call_id: str, node: str) -> bool:
        """One surviving node ends a dead node's call, not all of them."""
        return await self._bus.put_if_absent(f"call:{{{call_id}}}:swept", {"by": node}, ttl_s=60)

    async def swept(self, call_id: str) -> bool:
        return await self._bus.get(f"call:{{{call_id}}}:swept") is not None

    async def calls_of(self, user_id: str) -> list[LiveCall]:
        found = []
        for call_id in sorted(await self._bus.members(f"calls-of:{{{user_id}}}")):
            live = await self.get(call_id)
            if live is not None:
                found.append(live)
        return found

    async def in_answered_call(self, user_id: str) -> bool:
        return any(c.call.state is CallState.ANSWERED for c in await self.calls_of(user_id))

    async def claim_answer(self, call_id: str, device: str) -> bool:
        """Settles two devices answering at once (on one node or several): one wins."""
        return await self._bus.put_if_absent(
            f"call:{{{call_id}}}:answer", {"device": device}, ttl_s=3600
        )

    async def release_claim(self, call_id: str) -> None:
        await self._bus.delete(f"call:{{{call_id}}}:answer")
