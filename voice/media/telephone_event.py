"""RFC 4733 telephone-events: keys pressed, sent as RTP packets rather than as tones.

Pure: payload bytes and RTP timestamps in, keys out. A press is not one packet. The sender
stamps every packet of one event with the event's start time (the RTP timestamp) and sends
a first packet (marker bit), updates as the key stays down (growing duration), and an end
packet (E bit) three times, since nothing acknowledges it (RFC 4733 section 2.5.1.4). So a
key is reported on the first packet seen with a new timestamp: not on the marker, which may
be the packet that got lost, and not on the end, which may never come.

Two more cases, so that one press stays one key:
- a late packet of an earlier event (reordered behind the next press) is recognised by its
  timestamp among the last few;
- a press longer than the 16-bit duration field (1.37 s at 48 kHz) is sent as segments,
  each with a new timestamp (section 2.5.1.3); a segment continues the press when the same
  key, not yet ended, had run up to that limit.

Anything else (a payload shorter than 4 bytes, events above 15: flash, RFC 4734 tones) is
ignored, never raised: it comes from the network.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

KEYS = "0123456789*#ABCD"  # events 0-15 (RFC 4733 section 3.2)
PAYLOAD_BYTES = 4
MAX_DURATION = 0xFFFF
# A segment counts as full from here: the last updates before a new segment may be lost.
SEGMENT_FULL = MAX_DURATION - 0x1000  # ~85 ms short of the limit at 48 kHz
RECENT_EVENTS = 8  # timestamps remembered to tell a late packet from a new press


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One 4-byte event block: event code, E(nd) bit, volume (-dBm0), duration in RTP ticks."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def key(self) -> str | None:
        return KEYS[self.event] if self.event < len(KEYS) else None


def parse(payload: bytes) -> TelephoneEvent | None:
    """The event a payload carries, or None if it is too short to carry one.

    Only the first block is read: more than one (RFC 2198 redundancy) needs its own payload
    type, which is not negotiated, and browsers send exactly one.
    """
    if len(payload) < PAYLOAD_BYTES:
        return None
    flags = payload[1]
    return TelephoneEvent(
        payload[0], bool(flags & 0x80), flags & 0x3F, int.from_bytes(payload[2:4], "big")
    )


@dataclass
class KeyReceiver:
    """Feed every telephone-event payload of one stream in arrival order; get each key once."""

    _recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    _timestamp: int | None = None  # of the latest event
    _event: int = -1
    _duration: int = 0
    _ended: bool = False

    def feed(self, payload: bytes, timestamp: int) -> str | None:
        """The key this packet starts, or None (a repeat, an update, an end, garbage)."""
        event = parse(payload)
        if event is None or event.key is None:
            return None
        if timestamp == self._timestamp:
            if event.event == self._event:  # an update or an end of the current press
                self._duration = max(self._duration, event.duration)
                self._ended = self._ended or event.end
            return None
        if timestamp in self._recent:
            return None  # a late packet of an earlier press
        continues = (
            self._timestamp is not None
            and event.event == self._event
            and not self._ended
            and self._duration >= SEGMENT_FULL
        )
        self._recent.append(timestamp)
        self._timestamp, self._event = timestamp, event.event
        self._duration, self._ended = event.duration, event.end
        return None if continues else event.key
