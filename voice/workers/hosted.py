"""A WebRTC leg inside a media worker, as the API process drives it (see `legs.RemoteLeg`).

Most of it is the leg's own methods. The rest joins the leg to legs elsewhere:
- a leg of the API process (a SIP leg): `relay_to_parent` sends what the peer says up as
  "packet" events, and `parent_relayed` sends what such a leg says out to the peer;
- a leg of another worker, over loopback RTP: `listen_bridge` opens a port whose packets this
  leg sends to its peer, `relay_to_port` sends what this leg's peer says to such a port.
Either way it is exactly what a relay between two legs of this worker would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from voice.media.dtmf import InbandDtmf
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


_RTP = struct.Struct("!BBHII")  # V=2, PT, sequence, timestamp, SSRC: all a bridge needs
BRIDGE_PT = 111
LOOPBACK = "127.0.0.1"


class _BridgeOut:
    """The relay target standing for a leg of another worker: RTP to its bridge port."""

    _closing = False

    def __init__(self, port: int, label: str) -> None:
        self.label = f"{label} (bridge to :{port})"
        self.relay_source: object | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.connect((LOOPBACK, port))
        self._seq = 0

    def accept_relay_source(self, source: object | None) -> None:
        self.relay_source = source
        if source is None:  # the leg relays elsewhere now: this bridge is done
            self._sock.close()

    def receive_relayed(self, source: object, payload: bytes, timestamp: int, ssrc: int) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        # OSError: the other worker is gone; its leg's end ends the call.
        with contextlib.suppress(OSError):
            self._sock.send(_RTP.pack(0x80, BRIDGE_PT, self._seq, timestamp, ssrc) + payload)


class _BridgeIn:
    """A loopback port whose RTP this worker's leg sends to its peer (the relay source
    standing for a leg of another worker). Only the first loopback sender is listened to."""

    def __init__(self, leg: WebRtcLeg) -> None:
        self._leg = leg
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._sender: tuple[str, int] | None = None
        self.packets = 0
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(64):
            try:
                data, sender = self._sock.recvfrom(2048)
            except OSError:  # nothing more to read (BlockingIOError) or closed
                return
            if self._sender is None and sender[0] == LOOPBACK:
                self._sender = sender
            if sender != self._sender or len(data) <= _RTP.size or data[0] >> 6 != 2:
                continue
            _, _, _, timestamp, ssrc = _RTP.unpack_from(data)
            self.packets += 1
            self._leg.receive_relayed(self, data[_RTP.size :], timestamp, ssrc)

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class HostedLeg:
    def __init__(self, host: Host, obj_id: int, leg: WebRtcLeg) -> None:
        self.leg = leg
        self._host, self._id = host, obj_id
        self._up = _Up(host, obj_id, leg.label)
        self._from_parent = object()  # the relay source standing for a leg of the API process
        self._bridge: _BridgeIn | None = None
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

    def listen_bridge(self) -> int:
        """A loopback port for a leg of another worker to relay into this one."""
        if self._bridge is None:
            self._bridge = _BridgeIn(self.leg)
        self.leg.accept_relay_source(self._bridge)
        return self._bridge.port

    def stop_bridge(self) -> None:
        if self._bridge is not None:
            if self.leg.relay_source is self._bridge:
                self.leg.accept_relay_source(None)
            self._bridge.close()
            self._bridge = None

    def relay_to_port(self, port: int) -> None:
        self.leg.relay_to(_BridgeOut(port, self.leg.label))

    def detect_tone_keys(self, on: bool) -> None:
        """Keys the caller sends as tones in its audio, found here ("tone_key" events): the
        audio is decoded where it arrives, not sent to the API process packet by packet."""
        if not on:
            self.leg.on_audio = None
            return
        keys, emit, obj_id = InbandDtmf(), self._host.emit, self._id

        def heard(payload: bytes, _timestamp: int) -> None:
            for key in keys.feed_opus(payload):
                emit(obj_id, "tone_key", key)

        self.leg.on_audio = heard

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
            "bridged_in": self._bridge.packets if self._bridge is not None else 0,
        }

    async def close(self) -> None:
        self.stop_bridge()
        await self.leg.close()
