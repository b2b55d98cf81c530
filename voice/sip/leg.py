"""A SIP party's media as a call leg: what the call controller sees of a pjsua2 call.

It speaks Opus like a WebRtcLeg: the worker encodes what the SIP party says into Opus and
decodes what it must hear (PCMU/PCMA/G722 on the wire, Opus at this edge). So it relays to
and from a WebRtcLeg unchanged, and plays the same pre-encoded clips (ringback, busy tone).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from voice.media.opus import OpusClip
from voice.sip.pool import WorkerHandle

log = logging.getLogger("chorus.sip")

# seq, RTP timestamp, Opus payload, audio level (dBov) or None, arrival (monotonic s)
PacketSink = Callable[[int, int, bytes, "int | None", float], None]

CLIP_CHUNK = 100  # packets per message when a clip is sent to a worker
CLIPS_PER_WORKER = 16  # the worker keeps as many decoded clips (oldest dropped first)

# How a call's end reason is told to a SIP caller that was never answered.
END_STATUS = {
    "busy": (486, "Busy Here"),
    "declined": (603, "Decline"),
    "unreachable": (480, "Temporarily Unavailable"),
    "no_answer": (408, "Request Timeout"),
    "cancelled": (487, "Request Terminated"),
    "failed": (500, "Server Internal Error"),
    "answered_elsewhere": (486, "Busy Here"),
}


# How a SIP final refusal of a call we dialled reads in the call's history.
REFUSAL_REASON = {
    486: "busy",
    600: "busy",
    603: "declined",
    408: "no_answer",
    480: "unreachable",
    404: "unreachable",
    410: "unreachable",
    484: "unreachable",
    604: "unreachable",
    487: "cancelled",
}


class SipLeg:
    def __init__(
        self,
        worker: WorkerHandle,
        key: int,
        sip_call_id: str,
        label: str,
        *,
        end_reason: Callable[[], Awaitable[str | None]] | None = None,
        on_released: Callable[[SipLeg], None] | None = None,
        outbound: bool = False,
    ) -> None:
        self.outbound = outbound  # we dialled the SIP party (it answers, not us)
        self.on_progress: Callable[[int], None] | None = None  # 180, 183 (outbound)
        self.on_answered: Callable[[], None] | None = None  # the SIP party answered (outbound)
        self.final_status = 0  # how the SIP side ended (e.g. 486), once it has
        self.worker = worker
        self.key = key
        self.sip_call_id = sip_call_id
        self.label = label
        self.answer_sdp = ""
        self.on_closed: Callable[[str], None] | None = None
        self._on_audio: Callable[[bytes, int], None] | None = None
        self._on_packet: PacketSink | None = None
        self._seq = 0
        self._listening = False
        self.on_dtmf: Callable[[str], None] | None = None
        self.packets_received = 0
        self.packets_sent = 0
        self.answered = False
        self.ended = False
        self.media = asyncio.Event()
        self.end_reason = end_reason
        self._on_released = on_released
        self._relay_target: Any = None
        self._relay_source: object | None = None
        self._ssrc = random.getrandbits(32)
        self._closing = False

    @property
    def on_audio(self) -> Callable[[bytes, int], None] | None:
        """Called with every Opus payload of what the SIP party says (and its timestamp)."""
        return self._on_audio

    @on_audio.setter
    def on_audio(self, callback: Callable[[bytes, int], None] | None) -> None:
        self._on_audio = callback
        self._update_listening()

    @property
    def on_packet(self) -> PacketSink | None:
        """A room's channel: takes what the party says, as a room's legs deliver it. While it
        is set the worker plays what `send_frame` sends (the room's mix)."""
        return self._on_packet

    @on_packet.setter
    def on_packet(self, sink: PacketSink | None) -> None:
        self._on_packet = sink
        self._update_listening()
        if not self.ended:
            self.worker.send_json({"t": "source", "k": self.key, "relay": sink is not None})

    def send_frame(self, payload: bytes, tick: int) -> None:
        if not self.ended:
            self.packets_sent += 1
            self.worker.send_audio(self.key, payload)

    def _update_listening(self) -> None:
        """The worker encodes the party's audio only while someone here uses it."""
        wanted = any(x is not None for x in (self._relay_target, self._on_audio, self._on_packet))
        if wanted != self._listening and not self.ended:
            self._listening = wanted
            self.worker.send_json({"t": "listen", "k": self.key, "on": wanted})

    # -- signalling -------------------------------------------------------------------------

    def ring(self, *, early_media: bool = True) -> None:
        """180 Ringing, or 183 Session Progress with SDP so the caller hears our ringback."""
        self.worker.send_json({"t": "ring", "k": self.key, "early": early_media})

    def answer(self) -> None:
        if self.outbound:
            return  # the far end answers an outbound call; bridging changes nothing there
        if not self.answered and not self.ended:
            self.answered = True
            self.worker.send_json({"t": "answer", "k": self.key})

    def reject(self, status: int, reason: str = "") -> None:
        if not self.ended:
            self.ended = True
            self.worker.send_json(
                {"t": "reject", "k": self.key, "status": status, "reason": reason}
            )
            self._released()

    def send_dtmf(self, digits: str) -> None:
        self.worker.send_json({"t": "dtmf", "k": self.key, "digits": digits})

    # -- the Leg protocol --------------------------------------------------------------------

    def play(self, clip: OpusClip | None, *, loop: bool = True) -> None:
        name = None if clip is None else self._send_clip(clip)
        self.worker.send_json({"t": "play", "k": self.key, "clip": name, "loop": loop})

    def relay_to(self, other: Any) -> None:
        """Our party's audio goes out of `other`; bridging means the call was answered."""
        if other is not None and not hasattr(other, "receive_relayed"):
            raise TypeError(f"cannot relay to a {type(other).__name__}")
        if other is not None and (self._closing or getattr(other, "_closing", False)):
            return
        previous = self._relay_target
        if previous is other:
            return
        if previous is not None and getattr(previous, "relay_source", None) is self:
            previous.accept_relay_source(None)
        self._relay_target = other
        if other is not None:
            self.answer()
            other.accept_relay_source(self)
        self._update_listening()

    @property
    def relay_source(self) -> object | None:
        return self._relay_source

    def accept_relay_source(self, source: object | None) -> None:
        if source is not self._relay_source:
            self._relay_source = source
            self.worker.send_json({"t": "source", "k": self.key, "relay": source is not None})

    def receive_relayed(self, source: object, payload: bytes, timestamp: int, ssrc: int) -> None:
        if source is self._relay_source and not self.ended:
            self.packets_sent += 1
            self.worker.send_audio(self.key, payload)

    async def close(self) -> None:
        """End the SIP side: BYE when answered, else the final response the call's end
        reason calls for (486 busy, 603 declined, 480 unreachable...). Idempotent."""
        if self._closing:
            return
        self._closing = True
        self.relay_to(None)
        if self.ended:
            return
        if self.answered or self.outbound:  # BYE, or CANCEL while it rings
            self.ended = True
            self.worker.send_json({"t": "hangup", "k": self.key})
            self._released()
            return
        reason = await self.end_reason() if self.end_reason is not None else None
        status, text = END_STATUS.get(reason or "", (480, "Temporarily Unavailable"))
        self.reject(status, text)

    # -- from the worker ---------------------------------------------------------------------

    def audio_from_worker(self, payload: bytes, timestamp: int) -> None:
        self.packets_received += 1
        target = self._relay_target
        if target is not None:
            target.receive_relayed(self, payload, timestamp, self._ssrc)
        if self._on_audio is not None:
            try:
                self._on_audio(payload, timestamp)
            except Exception:
                log.exception("[%s] on_audio failed", self.label)
        if self._on_packet is not None:
            self._seq = (self._seq + 1) & 0xFFFF  # the worker's stream has no gaps
            self._on_packet(self._seq, timestamp, payload, None, time.monotonic())

    def media_ready(self) -> None:
        self.media.set()

    @property
    def refusal_reason(self) -> str:
        """Why the SIP party never answered, from its final status."""
        return REFUSAL_REASON.get(self.final_status, "failed")

    def progress_from_worker(self, status: int) -> None:
        if self.on_progress is not None:
            self.on_progress(status)

    def answered_by_worker(self) -> None:
        self.answered = True
        if self.on_answered is not None:
            self.on_answered()

    def dtmf_from_worker(self, digit: str) -> None:
        if self.on_dtmf is not None:
            self.on_dtmf(digit)

    def ended_by_worker(self, status: int, reason: str) -> None:
        """The SIP side ended (BYE or CANCEL from the party, or our own final answer)."""
        was_ended, self.ended = self.ended, True
        self.final_status = status
        self._released()
        if not was_ended and not self._closing:
            log.info("[%s] SIP side ended: %d %s", self.label, status, reason)
            self._notify("closed")

    def worker_lost(self) -> None:
        was_ended, self.ended = self.ended, True
        self._released()
        if not was_ended and not self._closing:
            self._notify("failed")

    def _notify(self, reason: str) -> None:
        self._detach()
        if self.on_closed is not None:
            try:
                self.on_closed(reason)
            except Exception:
                log.exception("[%s] on_closed failed", self.label)

    def _detach(self) -> None:
        self.relay_to(None)
        source = self._relay_source
        if source is not None and getattr(source, "_relay_target", None) is self:
            source._relay_target = None  # type: ignore[attr-defined]
        self._relay_source = None

    def _released(self) -> None:
        if self._on_released is not None:
            callback, self._on_released = self._on_released, None
            callback(self)

    # -- clips --------------------------------------------------------------------------------

    def _send_clip(self, clip: OpusClip) -> str:
        """Send a clip to our worker once; it decodes it once and loops the PCM."""
        known: dict[int, tuple[OpusClip, str]] = self.worker.__dict__.setdefault("clips", {})
        entry = known.get(id(clip))
        if entry is not None and entry[0] is clip:
            return entry[1]
        name = f"c{id(clip):x}-{len(clip.packets)}"
        packets = clip.packets
        for start in range(0, len(packets), CLIP_CHUNK):
            chunk = [p.hex() for p in packets[start : start + CLIP_CHUNK]]
            last = start + CLIP_CHUNK >= len(packets)
            self.worker.send_json({"t": "clip", "clip": name, "packets": chunk, "last": last})
        if len(known) >= CLIPS_PER_WORKER:
            known.pop(next(iter(known)))
        known[id(clip)] = (clip, name)
        return name
