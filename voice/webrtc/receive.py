"""Taking Opus payloads off a server-side receiver before aiortc would decode them.

aiortc has no API for encoded audio on the receive side: each `RTCRtpReceiver` feeds a
jitter buffer and a decoder thread that turns every packet into PCM. A relay needs the
payloads untouched, and the mixer decodes only what it mixes, so for the receivers of our
own legs (never globally: test clients in the same process rely on the stock path):

- the instance's `_handle_rtp_packet` (called by the DTLS transport for each RTP packet
  routed to this receiver) is replaced by one that hands the payload on, and the payloads
  of the negotiated telephone-event type (RFC 4733 keys) to a second handler;
- the instance's `receive` is wrapped so that the decoder thread it starts is stopped at
  once through `_handle_disconnect`, aiortc's own way to end it. Nothing would feed it,
  and an idle thread per leg is a thread per leg. It also adds telephone-event to the
  parameters, because aiortc's transport routes to a receiver only the payload types
  registered with it, and aiortc never negotiates that one itself.

Both are private aiortc API (checked against 1.16.0); `install` fails loudly if they move.
What is lost: aiortc's receiver statistics and RTCP receiver reports for this stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpCodecParameters, RTCRtpReceiver
from aiortc.rtp import RtpPacket

# payload, RTP timestamp, SSRC, sequence number, RFC 6464 audio level (dBov) or None
PacketHandler = Callable[[bytes, int, int, int, "int | None"], None]
EventHandler = Callable[[bytes, int], None]  # telephone-event payload, RTP timestamp


def install(
    receiver: RTCRtpReceiver,
    payload_type: int,
    handler: PacketHandler,
    *,
    event_payload_type: int | None = None,
    on_event: EventHandler | None = None,
) -> None:
    for name in ("_handle_rtp_packet", "_handle_disconnect", "receive"):
        if not callable(getattr(receiver, name, None)):
            raise RuntimeError(f"aiortc's RTCRtpReceiver has no {name}; see voice/webrtc/receive")

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int = 0) -> None:
        # Only the negotiated Opus payload type; empty payloads are padding (keep-alives).
        if packet.payload_type == payload_type and packet.payload:
            # aiortc parses the audio-level extension when the answer negotiated it (ours
            # does): (voice flag, 0..127 meaning -dBov).
            level = packet.extensions.audio_level
            dbov = -level[1] if level is not None else None
            handler(packet.payload, packet.timestamp, packet.ssrc, packet.sequence_number, dbov)
        elif packet.payload_type == event_payload_type and on_event is not None:
            on_event(packet.payload, packet.timestamp)

    start = receiver.receive

    async def receive(parameters: Any) -> None:
        if event_payload_type is not None:
            # Routing reads only the payload type; the clock rate here is a placeholder.
            events = RTCRtpCodecParameters(
                mimeType="audio/telephone-event", clockRate=8000, payloadType=event_payload_type
            )
            codecs = [*parameters.codecs, events]
            parameters = dataclasses.replace(parameters, codecs=codecs)
        await start(parameters)
        receiver._handle_disconnect()  # joins the just-started decoder thread

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
    receiver.receive = receive  # type: ignore[method-assign]
