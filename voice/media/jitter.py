"""Per-participant jitter buffer for Opus RTP packets, popped once per 20 ms mixer tick.

Pure and deterministic: no clock is read; `push` is given the arrival time and `pop` is called
once per tick. Each pop says what the engine should do for this participant this tick:

- PACKET: decode `payload`;
- LOSS: a frame is missing; run Opus PLC (`decode(None)`), or, when `fec` holds the packet
  right after the lost one, decode that with FEC to recover the lost frame from its LBRR copy;
- NOTHING: the sender is silent (DTX pause, idle, not started): decode nothing, mix nothing.

Loss and silence are told apart by the sequence number: DTX stops sending without skipping
sequence numbers, so a timestamp gap with consecutive sequence numbers is a pause and a skipped
sequence number is a loss. All counters and timestamps are "extended" (unwrapped) integers
internally, so 16-bit sequence and 32-bit timestamp wrap-around need no special cases.

Playout runs a cursor over RTP time, one 20 ms frame per pop (Chorus negotiates ptime 20).
Each talkspurt anchors it `target` frames before its first packet; after a DTX packet, or
`max_concealed_frames` of underrun, the buffer goes idle (pops cost nothing) until the next
packet starts a talkspurt. The target adapts: a packet that arrives after it was concealed
raises it by a frame (up to `max_delay_frames`); `shrink_after_frames` pops without a late
packet lower it by one (down to `min_delay_frames`). The delay follows where it is least
heard: it grows by holding the cursor for one frame (silence in a DTX pause, else one PLC
frame) and shrinks by skipping a frame of a DTX pause or at the next talkspurt. A burst
queued far beyond the target (after a network stall) is trimmed one frame per pop.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from voice.media.level import SILENT_PACKET_MAX_BYTES

FRAME_TICKS = 960  # RTP timestamp units in one 20 ms frame at 48 kHz
RTP_CLOCK = 48000

_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


class PlayoutKind(Enum):
    PACKET = "packet"
    LOSS = "loss"
    NOTHING = "nothing"


class Playout(NamedTuple):
    """What to do for one participant in one tick.

    A named tuple rather than a frozen dataclass: one is made per participant per tick, and
    a tuple is built four times faster."""

    kind: PlayoutKind
    payload: bytes | None = None  # PACKET: the packet to decode
    fec: bytes | None = None  # LOSS: the next packet, already here, to decode with FEC
    level: int | None = None  # PACKET: its RFC 6464 audio level in dBov, if the sender gave one

    @property
    def is_packet(self) -> bool:
        return self.kind is PlayoutKind.PACKET


NOTHING = Playout(PlayoutKind.NOTHING)
LOSS = Playout(PlayoutKind.LOSS)
_PACKET_KIND = PlayoutKind.PACKET


class Arrival(Enum):
    """What `push` did with a packet (for counters and tests)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the same frame is already waiting
    LATE = "late"  # arrived after its frame was concealed: the delay grows
    STALE = "stale"  # older than the playout point and never concealed (a replayed packet)
    RESYNC = "resync"  # the stream restarted: buffer flushed, playout re-anchored
    IGNORED = "ignored"  # a sequence-number jump on probation (RFC 3550 appendix A.1)


_ACCEPTED = Arrival.ACCEPTED


@dataclass(frozen=True)
class JitterPolicy:
    min_delay_frames: int = 2  # 40 ms: below that, ordinary Wi-Fi jitter makes holes
    max_delay_frames: int = 8  # 160 ms: beyond that a conversation feels laggy
    initial_delay_frames: int = 3  # 60 ms until the stream proves better or worse
    capacity_frames: int = 32  # frames held ahead of playout; a jump beyond means a restart
    max_concealed_frames: int = 5  # PLC fades out within ~100 ms; longer holes play silence
    shrink_after_frames: int = 250  # 5 s without a late packet lowers the target by a frame
    excess_frames: int = 3  # queue this much above target (a burst) and frames are dropped
    max_dropout: int = 3000  # RFC 3550 A.1: a forward sequence jump larger than this ...
    max_misorder: int = 100  # ... or a backward one larger than this is a restart or a stray

    def __post_init__(self) -> None:
        if not 1 <= self.min_delay_frames <= self.initial_delay_frames <= self.max_delay_frames:
            raise ValueError("need 1 <= min_delay <= initial_delay <= max_delay")
        if self.capacity_frames <= self.max_delay_frames + self.excess_frames:
            raise ValueError("capacity must exceed max_delay + excess")


@dataclass
class JitterStats:
    received: int = 0
    played: int = 0
    concealed: int = 0  # LOSS pops
    late: int = 0
    stale: int = 0
    duplicates: int = 0
    dropped: int = 0  # frames skipped to bring a queue back to target, or overflow
    resyncs: int = 0
    ignored: int = 0


@dataclass(frozen=True, slots=True)
class Reception:
    """The numbers an RTCP receiver report needs (RFC 3550 section 6.4.1)."""

    extended_highest_seq: int
    expected: int
    received: int
    jitter: float  # interarrival jitter in RTP timestamp units

    @property
    def cumulative_lost(self) -> int:
        return self.expected - self.received


def _unwrap(value: int, reference: int, modulus: int) -> int:
    """The extended value nearest `reference` whose low bits are `value`."""
    half = modulus >> 1
    return reference + ((value - reference + half) % modulus) - half


@dataclass
class JitterBuffer:
    """Reorders, de-duplicates and paces one participant's Opus packets."""

    policy: JitterPolicy = field(default_factory=JitterPolicy)
    stats: JitterStats = field(default_factory=JitterStats)

    def __post_init__(self) -> None:
        policy = self.policy
        # The policy, unpacked once: push and pop run for every packet of every participant.
        self._max_dropout, self._max_misorder = policy.max_dropout, policy.max_misorder
        self._span = policy.capacity_frames * FRAME_TICKS
        self._capacity = policy.capacity_frames
        self._shrink_after, self._min_delay = policy.shrink_after_frames, policy.min_delay_frames
        self._excess = policy.excess_frames
        self._target = policy.initial_delay_frames
        self._calm = 0
        self._concealed_seqs: deque[int] = deque(maxlen=64)  # to tell late from replayed
        self._probation: tuple[int, int, bytes, float, int | None] | None = None
        self._forget_stream()

    def _forget_stream(self) -> None:
        # extended ts -> (extended seq, data, audio level)
        self._packets: dict[int, tuple[int, bytes, int | None]] = {}
        self._cursor: int | None = None  # extended ts of the next frame to play; None = idle
        self._last_seq = 0  # extended seq of the last frame played or concealed
        self._highest_seq: int | None = None
        self._highest_ts = 0  # extended ts of the highest-seq packet: the unwrap reference
        self._highest_arrival = 0.0
        self._delay = 0
        self._concealed_run = 0
        self._last_was_silent = False
        self._base_seq = 0
        self._received = 0
        self._jitter = 0.0
        self._last_transit: float | None = None
        self._concealed_seqs.clear()

    # ---------------------------------------------------------------- queries

    @property
    def target_delay_frames(self) -> int:
        return self._target

    @property
    def queued_frames(self) -> int:
        """Packets waiting to be played (a DTX pause between them does not count)."""
        return len(self._packets)

    @property
    def idle(self) -> bool:
        return self._cursor is None

    def reception(self) -> Reception:
        highest = self._highest_seq if self._highest_seq is not None else self._base_seq - 1
        return Reception(highest, highest - self._base_seq + 1, self._received, self._jitter)

    def reset(self) -> None:
        """Forget the stream (new SSRC, re-negotiation); the learned target delay stays."""
        self._forget_stream()
        self._probation = None

    # ---------------------------------------------------------------- push

    def push(
        self,
        seq: int,
        timestamp: int,
        payload: bytes,
        arrival_time: float,
        level: int | None = None,
    ) -> Arrival:
        """Take one RTP packet: 16-bit `seq`, 32-bit `timestamp`, `arrival_time` in seconds,
        and the packet's audio level (dBov) when its sender gave one: `pop` hands it back."""
        seq &= _SEQ_MOD - 1
        timestamp &= _TS_MOD - 1
        highest = self._highest_seq
        if highest is None:
            self._start(seq, timestamp, payload, arrival_time, level)
            return Arrival.ACCEPTED
        # _unwrap, inlined (this runs for every packet): masks equal % for powers of two.
        step = ((seq - highest + 0x8000) & 0xFFFF) - 0x8000
        ext_seq = highest + step
        if step > self._max_dropout or step < -self._max_misorder:
            return self._on_jump(seq, timestamp, payload, arrival_time, level)
        self._probation = None
        highest_ts = self._highest_ts
        media = ((timestamp - highest_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        ext_ts = highest_ts + media
        if step > 0:  # _leapt, inlined
            span = self._span
            wall = (arrival_time - self._highest_arrival) * RTP_CLOCK
            if media - wall > span or media < -span:
                return self._resync(seq, timestamp, payload, arrival_time, level)

        cursor = self._cursor
        if cursor is not None and ext_ts >= cursor and step > 0:
            # The common case, a newer packet while playing: _count_arrival, _note_highest
            # and _store, inlined.
            packets = self._packets
            if ext_ts in packets:
                self.stats.duplicates += 1
                return Arrival.DUPLICATE
            self.stats.received += 1
            self._received += 1
            transit = arrival_time * RTP_CLOCK - ext_ts
            last_transit = self._last_transit
            if last_transit is not None:
                self._jitter += (abs(transit - last_transit) - self._jitter) / 16
            self._last_transit = transit
            self._highest_seq, self._highest_ts = ext_seq, ext_ts
            self._highest_arrival = arrival_time
            packets[ext_ts] = (ext_seq, bytes(payload), level)
            if len(packets) > self._capacity:
                del packets[min(packets)]
                self.stats.dropped += 1
            return _ACCEPTED

        if self._cursor is None:  # idle: this packet starts a talkspurt, unless it is old news
            if ext_seq <= self._last_seq:
                return self._behind(ext_seq)
            self._count_arrival(ext_ts, arrival_time)
            self._note_highest(ext_seq, ext_ts, arrival_time)
            self._anchor(ext_seq, ext_ts)
            self._store(ext_seq, ext_ts, payload, level)
            return Arrival.ACCEPTED

        if ext_ts < self._cursor:
            return self._behind(ext_seq)
        if ext_ts in self._packets:
            self.stats.duplicates += 1
            return Arrival.DUPLICATE
        self._count_arrival(ext_ts, arrival_time)
        self._note_highest(ext_seq, ext_ts, arrival_time)
        self._store(ext_seq, ext_ts, payload, level)
        return Arrival.ACCEPTED

    def _leapt(self, ext_ts: int, arrival_time: float, span: int) -> bool:
        """Whether a newer packet's timestamp left the sender's clock: a restarted stream.

        Media time may run ahead of arrival time by a pause (DTX) only as much as the wall
        clock ran too; and a newer packet never goes back in media time.
        """
        media = ext_ts - self._highest_ts
        wall = (arrival_time - self._highest_arrival) * RTP_CLOCK
        return media - wall > span or media < -span

    def _start(
        self, seq: int, timestamp: int, payload: bytes, arrival_time: float, level: int | None
    ) -> None:
        self._highest_seq, self._highest_ts = seq, timestamp
        self._highest_arrival = arrival_time
        self._base_seq = seq
        self._count_arrival(timestamp, arrival_time)
        self._anchor(seq, timestamp)
        self._store(seq, timestamp, payload, level)

    def _on_jump(
        self, seq: int, timestamp: int, payload: bytes, arrival: float, level: int | None
    ) -> Arrival:
        # One packet far off the sequence is as likely a stray as a restart; the next packet
        # in sequence after it confirms a restart (RFC 3550 appendix A.1 does the same).
        stray = self._probation
        if stray is not None and seq == (stray[0] + 1) % _SEQ_MOD:
            self._resync(*stray)
            self.push(seq, timestamp, payload, arrival, level)
            return Arrival.RESYNC
        self._probation = (seq, timestamp, payload, arrival, level)
        self.stats.ignored += 1
        return Arrival.IGNORED

    def _resync(
        self, seq: int, timestamp: int, payload: bytes, arrival: float, level: int | None
    ) -> Arrival:
        self._forget_stream()
        self._probation = None
        self.stats.resyncs += 1
        self._start(seq, timestamp, payload, arrival, level)
        return Arrival.RESYNC

    def _behind(self, ext_seq: int) -> Arrival:
        if ext_seq in self._concealed_seqs:
            # We played PLC in its place: the delay was too short for this network.
            self.stats.late += 1
            self._target = min(self._target + 1, self.policy.max_delay_frames)
            self._calm = 0
            return Arrival.LATE
        self.stats.stale += 1
        return Arrival.STALE

    def _count_arrival(self, ext_ts: int, arrival_time: float) -> None:
        self.stats.received += 1
        self._received += 1
        transit = arrival_time * RTP_CLOCK - ext_ts
        if self._last_transit is not None:  # RFC 3550 appendix A.8
            self._jitter += (abs(transit - self._last_transit) - self._jitter) / 16
        self._last_transit = transit

    def _note_highest(self, ext_seq: int, ext_ts: int, arrival_time: float) -> None:
        if self._highest_seq is None or ext_seq > self._highest_seq:
            self._highest_seq, self._highest_ts = ext_seq, ext_ts
            self._highest_arrival = arrival_time

    def _anchor(self, ext_seq: int, ext_ts: int) -> None:
        self._cursor = ext_ts - self._target * FRAME_TICKS
        self._last_seq = ext_seq - 1
        self._delay = self._target
        self._concealed_run = 0

    def _store(self, ext_seq: int, ext_ts: int, payload: bytes, level: int | None) -> None:
        self._packets[ext_ts] = (ext_seq, bytes(payload), level)
        if len(self._packets) > self._capacity:  # only a misbehaving sender
            del self._packets[min(self._packets)]
            self.stats.dropped += 1

    # ---------------------------------------------------------------- pop

    def pop(self) -> Playout:
        """The frame for this tick; call exactly once per 20 ms."""
        cursor = self._cursor
        if cursor is None:
            return NOTHING
        calm = self._calm + 1
        if calm >= self._shrink_after:
            calm = 0
            self._target = max(self._target - 1, self._min_delay)
        self._calm = calm
        packets = self._packets
        if len(packets) > self._target + self._excess:
            self._skip_frame()  # a burst after a stall: catch up one frame per tick
            cursor = self._cursor
            assert cursor is not None

        if not packets:
            return self._underrun()
        next_ts = min(packets)  # a handful of entries: cheaper than keeping a heap
        if next_ts >= cursor + FRAME_TICKS:
            return self._gap(cursor, next_ts)
        ext_seq, payload, level = packets.pop(next_ts)
        # Play from the packet's own timestamp: a sender whose frames are not on our grid
        # (an odd first timestamp, a 10 ms hiccup) pulls the cursor onto its grid.
        self._cursor = next_ts + FRAME_TICKS
        if ext_seq > self._last_seq:
            self._last_seq = ext_seq
        self._concealed_run = 0
        self._last_was_silent = len(payload) <= SILENT_PACKET_MAX_BYTES
        self.stats.played += 1
        return Playout(_PACKET_KIND, payload, None, level)

    def _gap(self, cursor: int, next_ts: int) -> Playout:
        """The frame is missing but later ones are here: loss, or a pause of the sender."""
        next_seq, next_payload, _ = self._packets[next_ts]
        missing = next_seq - self._last_seq - 1
        if missing <= 0:
            # Consecutive sequence numbers around a timestamp gap: the sender paused (DTX).
            # Silence is the one place to change the delay without being heard.
            if self._delay < self._target:
                self._delay += 1  # hold the cursor
            elif self._delay > self._target and next_ts - cursor >= 2 * FRAME_TICKS:
                self._delay -= 1
                self._cursor = cursor + 2 * FRAME_TICKS
            else:
                self._cursor = cursor + FRAME_TICKS
            self._concealed_run = 0
            return NOTHING
        if self._delay < self._target:
            self._delay += 1  # hold: the missing packet may be on its way, now in time
            return self._conceal(None)
        self._cursor = cursor + FRAME_TICKS
        self._last_seq += 1
        self._concealed_seqs.append(self._last_seq)
        fec = next_payload if missing == 1 and next_ts < cursor + 2 * FRAME_TICKS else None
        return self._conceal(fec)

    def _underrun(self) -> Playout:
        """Nothing is waiting: the next packet is late or lost, or the sender stopped."""
        if self._last_was_silent or self._concealed_run >= self.policy.max_concealed_frames:
            self._cursor = None  # idle until a packet starts the next talkspurt
            return NOTHING
        assert self._cursor is not None
        if self._delay < self._target:
            self._delay += 1  # hold: the packet we wait for may still come, now in time
        else:
            self._cursor += FRAME_TICKS
            self._last_seq += 1
            self._concealed_seqs.append(self._last_seq)
        return self._conceal(None)

    def _conceal(self, fec: bytes | None) -> Playout:
        self._concealed_run += 1
        if self._concealed_run > self.policy.max_concealed_frames:
            return NOTHING  # a long hole: PLC would only fade to silence, at a decode a frame
        self.stats.concealed += 1
        return LOSS if fec is None else Playout(PlayoutKind.LOSS, fec=fec)

    def _skip_frame(self) -> None:
        assert self._cursor is not None
        next_ts = min(self._packets)
        if next_ts >= self._cursor + FRAME_TICKS:
            # The queue starts beyond a hole (packets lost in a stall, or dropped when the
            # queue overflowed): jump over the hole. Stepping the cursor a frame at a time
            # would only keep pace with the arrivals and never reach the queue.
            next_seq = self._packets[next_ts][0]
            self._last_seq = max(self._last_seq, next_seq - 1)
            self._cursor = next_ts
            self._delay = max(self._delay - 1, 0)
            self.stats.dropped += 1
            return
        self._last_seq = max(self._last_seq, self._packets.pop(next_ts)[0])
        self._cursor = next_ts + FRAME_TICKS
        self._delay = max(self._delay - 1, 0)
        self.stats.dropped += 1
