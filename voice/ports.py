"""What `voice` needs from the services above it, as small protocols.

`api/runtime.py` plugs the implementations in (the ringback service, the hotline...); `voice`
ships plain defaults so a call works with no service installed."""

from __future__ import annotations

from typing import Any, Protocol

from voice.media.opus import OpusClip


class RingbackSource(Protocol):
    async def ringback_for(self, call_id: str, caller_id: str, callee_id: str) -> OpusClip:
        """The clip the caller hears while the callee's devices ring (looped). It must
        answer quickly (the caller hears it within 300 ms of dialling) and never fail: on
        trouble, fall back to the regional ring tone."""
        ...


class DtmfListener(Protocol):
    async def on_ringing_dtmf(
        self, call_id: str, caller_id: str, callee_id: str, digits: str
    ) -> None:
        """Digits the caller pressed while the call was still ringing (e.g. `*` to copy a tone)."""
        ...


class ServiceDesk(Protocol):
    """A service that answers calls placed to its destinations (the hotline)."""

    def handles(self, destination: str) -> bool:
        """True for destinations this service answers (e.g. `hotline:12580`)."""
        ...

    async def check(self, destination: str) -> None:
        """Raise a ChorusError (e.g. NotFound) when nothing answers this destination."""
        ...

    async def open(self, call_id: str, caller_id: str, destination: str, leg: Any) -> None:
        """The call is answered: the service now drives what the caller hears on `leg`."""
        ...

    async def dtmf(self, call_id: str, digits: str) -> None: ...

    async def offer_failed(self, call_id: str, agent_ids: list[str], reason: str) -> None:
        """The agents offered the call did not take it (`declined` or `no_answer`)."""
        ...

    async def connected(self, call_id: str, agent_id: str) -> None:
        """An agent took the call: the caller is now bridged to them."""
        ...

    async def closed(self, call_id: str, reason: str) -> None:
        """The call ended (whoever ended it)."""
        ...


class ToneClips(Protocol):
    """Stored tones by id (the ringback catalog), for services that play them (menus)."""

    async def clip_for_tone(self, tone_id: str) -> OpusClip | None: ...


class RoomDoor(Protocol):
    """Rooms as a SIP caller reaches them (`sip:room-<id>@`): the rooms service plus the
    spoken prompts of the door (PIN, wrong PIN, refused)."""

    async def pin_needed(self, room_id: str) -> bool | None:
        """Does the room ask for a PIN? None: there is no such room."""
        ...

    async def mixed_at(self, room_id: str) -> str | None:
        """The SIP address (host:port) of the other node mixing the room, where a caller
        must go to join it; None when this node mixes it (or nobody does yet)."""
        ...

    async def join_sip(
        self, room_id: str, leg: Any, *, caller: str, pin: str | None, display: str
    ) -> Any:
        """Add the answered leg to the room; a ChorusError (bad_pin, room_full...) says why not."""
        ...

    async def prompt(self, name: str) -> OpusClip:
        """`pin`, `bad_pin` or `refused`, spoken."""
        ...


class Dialer(Protocol):
    """Calls out to addresses outside the app (SIP), for app users calling `sip:...`."""

    def dials(self, destination: str) -> bool:
        """True for destinations it calls (`sip:` URIs)."""
        ...

    async def dial(self, destination: str, *, caller: str, display: str | None, label: str) -> Any:
        """Start the call; returns its leg at once (ringing), or raises a ChorusError
        (bad address, no free line). The leg reports `on_progress(status)`, `on_answered()`,
        `on_closed(reason)` with `refusal_reason` telling why it never answered."""
        ...

    async def phones(self, user_id: str) -> dict[str, Any]:
        """The user's registered desk phones (device id -> binding), rung with the app."""
        ...

    async def dial_phone(self, phone: Any, *, caller: str, display: str | None, label: str) -> Any:
        """Ring one registered phone; a leg like `dial`'s."""
        ...
