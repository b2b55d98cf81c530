"""A WebRTC leg inside a media worker, as the API process drives it (see `legs.RemoteLeg`).

Most of it is the leg's own methods. The rest joins the leg to legs that live in the API
process (a SIP leg): `relay_to_parent` sends what the peer says up as "packet" events, and
`parent_relayed` sends what such a leg says out to the peer, exactly as a relay between two
legs of this worker would.
"""

from __future__ import annotations

from typing import Any

from voice.webrtc import WebRtcLeg
from voice.workers.host import Host


class _Up:
    """The relay target standing for a leg of the API process."""

    _closing = False

    def __init__(self, host: Host, obj_id: int, label: str) -> None:
        self.label = f"{label} (API process)"
        self.relay_source: object | None = None
        self._host, self._id = host, obj_id

    def accept_relay_source(self, source: object | None) -> None:
        self.relay_source = source

    def receive_relayed(self, source: object, payload: bytes, timestamp: int, ssrc: int) -> None:
        self._host.emit(self._id, "packet", payload, timestamp, ssrc)


class HostedLeg:
    def __init__(self, host: Host, obj_id: int, leg: WebRtcLeg) -> None:
        self.leg = leg
        self._host, self._id = host, obj_id
        self._up = _Up(host, obj_id, leg.label)
        self._from_parent = object()  # the relay source standing for a leg of the API process
        leg.on_closed = lambda reason: host.emit(obj_id, "closed", reason)
        leg.on_dtmf = lambda key: host.emit(obj_id, "dtmf", key)

    def play(self, clip: Any, *, loop: bool = True) -> None:
        self.leg.play(clip, loop=loop)

    def relay_to(self, other: HostedLeg | None) -> None:
        self.leg.relay_to(other.leg if other is not None else None)

    def relay_to_parent(self, on: bool) -> None:
        self.leg.relay_to(self._up if on else None)

    def accept_parent_source(self, on: bool) -> None:
        self.leg.accept_relay_source(self._from_parent if on else None)

    def parent_relayed(self, payload: bytes, timestamp: int, ssrc: int) -> None:
        self.leg.receive_relayed(self._from_parent, payload, timestamp, ssrc)

    def forward_audio(self, on: bool) -> None:
        emit, obj_id = self._host.emit, self._id
        self.leg.on_audio = (lambda payload, ts: emit(obj_id, "audio", payload, ts)) if on else None

    async def wait_connected(self, timeout: float) -> bool:
        return await self.leg.wait_connected(timeout)

    def stats(self) -> dict[str, Any]:
        leg = self.leg
        return {
            "state": leg.state,
            "packets_sent": leg.packets_sent,
            "packets_received": leg.packets_received,
            "keys_received": leg.keys_received,
            "first_packet_sent_monotonic": leg.first_packet_sent_monotonic,
        }

    async def close(self) -> None:
        await self.leg.close()
