"""One server-side WebRTC peer connection carrying one party's audio."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.sdp import SessionDescription

from voice.errors import BadSdp
from voice.media.opus import OpusClip
from voice.media.telephone_event import KeyReceiver
from voice.webrtc import receive
from voice.webrtc.closing import close_peer_connection
from voice.webrtc.config import WebRtcConfig, configure_host_candidates
from voice.webrtc.offer import ScreenedOffer, screen_offer
from voice.webrtc.track import PacketTrack

log = logging.getLogger(__name__)


class _LegLog(logging.LoggerAdapter):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"[{self.extra['label']}] {msg}", kwargs  # type: ignore[index]


class WebRtcLeg:
    """Answers one offer with one sendrecv Opus stream, and moves Opus packets only.

    Out: `play()` a shared pre-encoded clip, or let another leg `relay_to()` this one.
    In: every received Opus payload goes to `on_audio(payload, rtp_timestamp)` and, when
    relaying, unchanged to the target leg. Nothing is decoded or encoded here. A mixer that
    needs sequence numbers and audio levels sets `on_packet(seq, timestamp, payload, level,
    arrival)` instead, and sends with `send_frame(payload, tick)`. Keys the peer presses as
    RFC 4733 telephone-events (when its offer had them) go to `on_dtmf(key)`, once a press.

    `on_closed(reason)` is called once if the connection ends by itself: "closed" when the
    peer closed it (DTLS close_notify, ICE closed), "failed" when ICE or DTLS failed. It is
    not called for `close()`: whoever closes a leg already knows.
    """

    def __init__(self, pc: RTCPeerConnection, offer: ScreenedOffer, label: str) -> None:
        self._pc = pc
        self._offer = offer
        self.label = label
        self.answer_sdp = ""
        self.on_audio: Callable[[bytes, int], None] | None = None
        # (seq, RTP timestamp, payload, RFC 6464 level in dBov or None, arrival monotonic s)
        self.on_packet: Callable[[int, int, bytes, int | None, float], None] | None = None
        self.on_closed: Callable[[str], None] | None = None
        self.on_dtmf: Callable[[str], None] | None = None
        self.packets_received = 0
        self.keys_received = 0
        self.audio_errors = 0
        self._connected = asyncio.Event()
        self._log = _LegLog(log, {"label": label})
        self._track = PacketTrack()
        self._keys = KeyReceiver()
        self._relay_target: Any = None  # a WebRtcLeg, or a leg of another kind (SIP)
        self._closing = False
        self._ended = False

    # -- setup ---------------------------------------------------------------------------

    @classmethod
    async def accept(cls, offer_sdp: str, *, config: WebRtcConfig, label: str) -> WebRtcLeg:
        """Answer `offer_sdp` (non-trickle: the answer carries our candidates).

        Raises BadSdp when the offer cannot carry an Opus call; no connection is left open.
        """
        offer = screen_offer(offer_sdp)
        configure_host_candidates(config.media_host)
        pc = RTCPeerConnection(config.rtc_configuration())
        leg = cls(pc, offer, label)
        try:
            await leg._negotiate(config.opus_fmtp)
        except BaseException:
            await leg.close()
            raise
        leg._log.info(
            "answered: audio mid=%s, %d m-line(s), telephone-event %s",
            offer.audio.mid,
            len(offer.sections),
            offer.dtmf_payload_type if offer.dtmf_payload_type is not None else "not offered",
        )
        return leg

    async def _negotiate(self, opus_fmtp: str) -> None:
        reduced = self._offer.audio_only()
        try:
            SessionDescription.parse(reduced)  # aiortc's parser: fail here, not half-way in
        except Exception as exc:
            raise BadSdp(f"the offer's audio m-line cannot be parsed ({_describe(exc)})") from exc
        transceiver = self._pc.addTransceiver(self._track, direction="sendrecv")
        opus = [
            codec
            for codec in RTCRtpSender.getCapabilities("audio").codecs
            if codec.mimeType.lower() == "audio/opus"
        ]
        transceiver.setCodecPreferences(opus)
        receive.install(
            transceiver.receiver,
            self._offer.opus_payload_type,
            self._on_packet,
            event_payload_type=self._offer.dtmf_payload_type,
            on_event=self._on_event,
        )
        self._pc.on("connectionstatechange", self._on_state)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(reduced, "offer"))
            await self._pc.setLocalDescription(await self._pc.createAnswer())
        except Exception as exc:
            # aiortc reports a bad offer with ValueError, OperationError, assertions...
            raise BadSdp(f"the offer cannot be answered ({_describe(exc)})") from exc
        self.answer_sdp = self._offer.complete_answer(self._pc.localDescription.sdp, opus_fmtp)

    # -- sending -------------------------------------------------------------------------

    def play(self, clip: OpusClip | None, *, loop: bool = True) -> None:
        """Send `clip` from its start, looping unless `loop` is False; None sends nothing
        (the far end hears silence, as with Opus DTX). A clip is shared and never copied.
        While another leg relays to this one, its packets are sent and the clip waits."""
        self._track.play(clip, loop)

    def send_frame(self, payload: bytes, tick: int) -> None:
        """Send one pre-encoded 20 ms Opus packet belonging to a mixer's 20 ms `tick`.

        Ticks without a packet (silence, DTX) become gaps of the right length in the
        outgoing timestamps. While frames come, a clip waits; `play()` takes over again.
        """
        self._track.push_tick(payload, tick)

    def relay_to(self, other: Any) -> None:
        """Send every Opus payload this leg receives out of `other`, unchanged; None stops.

        A call bridge is `a.relay_to(b); b.relay_to(a)`. `other`'s timestamps stay
        continuous across the switch, and DTX gaps in the source keep their length.
        `other` is another WebRtcLeg or any leg with `accept_relay_source` and
        `receive_relayed` (a SIP leg, which transcodes at the edge).
        """
        if other is not None and not hasattr(other, "receive_relayed"):
            raise TypeError(f"cannot relay to a {type(other).__name__}")
        if other is not None and (self._closing or getattr(other, "_closing", False)):
            return
        previous = self._relay_target
        if previous is other:
            return
        if previous is not None and previous.relay_source is self:
            previous.accept_relay_source(None)
        self._relay_target = other
        if other is not None:
            other.accept_relay_source(self)
        self._log.info("relay to %s", other.label if other is not None else "nobody")

    @property
    def relay_source(self) -> object | None:
        """The leg whose packets this one sends (instead of its clip), if any."""
        return self._track.relay_source

    def accept_relay_source(self, source: object | None) -> None:
        self._track.set_relay_source(source)

    def receive_relayed(self, source: object, payload: bytes, timestamp: int, ssrc: int) -> None:
        """One Opus payload from `source`, sent on if `source` is this leg's relay source."""
        self._track.push_relayed(source, payload, timestamp, ssrc)

    # -- receiving -----------------------------------------------------------------------

    def _on_packet(
        self, payload: bytes, timestamp: int, ssrc: int, seq: int, level: int | None
    ) -> None:
        self.packets_received += 1
        target = self._relay_target
        if target is not None:
            target.receive_relayed(self, payload, timestamp, ssrc)
        if self.on_packet is not None:
            try:
                self.on_packet(seq, timestamp, payload, level, time.monotonic())
            except Exception:
                self.audio_errors += 1
                if self.audio_errors == 1:
                    self._log.exception("on_packet failed (later failures are only counted)")
        if self.on_audio is not None:
            try:
                self.on_audio(payload, timestamp)
            except Exception:
                # Raising into aiortc's DTLS receive loop would end the connection.
                self.audio_errors += 1
                if self.audio_errors == 1:
                    self._log.exception("on_audio failed (later failures are only counted)")

    def _on_event(self, payload: bytes, timestamp: int) -> None:
        key = self._keys.feed(payload, timestamp)
        if key is None:
            return
        self.keys_received += 1
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(key)
            except Exception:
                self._log.exception("on_dtmf failed")

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """aiortc's connection state: new, connecting, connected, failed or closed."""
        return self._pc.connectionState

    async def wait_connected(self, timeout: float) -> bool:
        """True once ICE and DTLS are up; False if not within `timeout` seconds.

        A peer that never shows up does not fail the leg by itself when its offer did not
        signal end-of-candidates (ICE keeps waiting for trickled or peer-reflexive ones),
        so whoever sets up a call bounds the wait with this or a timer of its own.
        """
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def packets_sent(self) -> int:
        return self._track.packets_sent

    @property
    def first_packet_sent_monotonic(self) -> float | None:
        return self._track.first_packet_sent_monotonic

    def _on_state(self) -> None:
        state = self._pc.connectionState
        self._log.debug("connection %s", state)
        if state == "connected":
            self._connected.set()
        if state in ("failed", "closed") and not self._closing and not self._ended:
            self._ended = True
            reason = "failed" if state == "failed" else "closed"
            self._log.info("connection %s", reason)
            self._detach()
            if self.on_closed is not None:
                try:
                    self.on_closed(reason)
                except Exception:
                    self._log.exception("on_closed failed")

    def _detach(self) -> None:
        """Stop relaying in both directions, so no other leg keeps sending into this one."""
        self.relay_to(None)
        source = self._track.relay_source
        if source is not None and getattr(source, "_relay_target", None) is self:
            source._relay_target = None  # type: ignore[attr-defined]
        self._track.set_relay_source(None)

    async def close(self) -> None:
        """Stop sending, close the connection, join aiortc's tasks. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._detach()
        self._track.stop()
        await close_peer_connection(self._pc)
        self._log.info(
            "closed: %d packets sent, %d received", self.packets_sent, self.packets_received
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__
