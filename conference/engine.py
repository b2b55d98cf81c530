"""The room engine: one 20 ms clock per process that mixes every room this process carries.

Per tick and room (see `conference.mixer` for the arithmetic):
1. pop each participant's jitter buffer: a packet, a loss, or nothing (DTX, idle);
2. learn how loud each one is, decoding as little as possible:
   - the RFC 6464 audio level the sender put in the packet (browsers do), free;
   - Opus DTX and silence frames (a few bytes), free;
   - G.711: the table lookup is the decode, a level costs microseconds;
   - otherwise (plain-RTP Opus without levels) a non-speaker is decoded only as a probe:
     every `probe_every` frames, or when its packets grow past the size of its quiet ones
     (VBR Opus codes speech in about twice the bytes of silence); one loud probe makes the
     stream "hot" (decoded every frame) until it is quiet again;
   current speakers are always decoded (they are mixed);
3. `select(levels)` picks the speakers; decode those not decoded yet (with PLC or in-band
   FEC for a lost packet); `mix(frames)`;
4. encode each non-silent distinct mix once per codec its recipients use (Opus: one encoder
   per mix, DTX on; G.711: downsample once, table-encode once) and send the same payload to
   all of them. A mix of a single speaker that needed no limiting *is* that speaker's frame:
   its Opus recipients get the speaker's own packet, no encode (a room where one person
   talks encodes nothing). Silent mixes cost nothing for Opus (nothing is sent, as with
   DTX) and a constant payload for G.711;
5. hand the listeners' mix to the recorder (a thread encodes and writes it), and report a
   changed speaker set.

The clock exists only while some room has participants: `loop.call_at` on absolute
deadlines, no thread, no timer per room or participant. A late tick is run at once; more
than `max_late_s` behind, the clock skips the missed ticks rather than bursting them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from conference.mixer import RoomMixer
from conference.speakers import SpeakerPolicy
from voice.media import g711
from voice.media.jitter import JitterBuffer, JitterPolicy, PlayoutKind
from voice.media.level import SILENT_PACKET_MAX_BYTES, pcm_level_dbov
from voice.media.opus import FRAME_SAMPLES, OpusDecoderStream, OpusEncoderStream, packet_samples
from voice.media.resample import Downsampler, Upsampler

log = logging.getLogger("chorus.rooms")

PERIOD_S = 0.02
OPUS = "opus"
CODECS = (OPUS, g711.PCMU, g711.PCMA)

_PACKET = PlayoutKind.PACKET
_LOSS = PlayoutKind.LOSS
_NOTHING = PlayoutKind.NOTHING


class MixSink(Protocol):
    """Where a participant's mix goes: a WebRTC or plain-RTP leg."""

    def send_frame(self, payload: bytes, tick: int) -> None: ...


class Recorder(Protocol):
    def write(self, pcm: np.ndarray | None) -> None: ...


@dataclass(frozen=True)
class EngineConfig:
    bitrate: int = 32000
    # libopus' default. At 10 its DTX decides on its signal analysis; below 7 it uses SILK's
    # noise-adaptive VAD, which takes a steady tone or music for noise after about a second
    # and stops sending it. Only K + 1 mixes are encoded per room, so quality is affordable.
    complexity: int = 10
    dtx: bool = True  # no packets for silence (silent mixes are not even encoded)
    jitter: JitterPolicy = field(default_factory=JitterPolicy)
    # Frames between probes of a quiet stream that gives no levels and keeps its packet
    # size: 200 ms at first, backing off to 500 ms while it stays quiet. (A VBR stream that
    # starts talking grows its packets and is decoded at once.)
    probe_every: int = 10
    probe_max: int = 25
    hot_quiet_frames: int = 10  # a hot stream quiet this long goes back to probing
    max_late_s: float = 0.1


@dataclass
class EngineStats:
    ticks: int = 0
    late_ticks: int = 0  # run more than 5 ms after their deadline
    skipped_ticks: int = 0
    encodes: int = 0
    forwarded: int = 0  # mixes of a single speaker, sent as that speaker's own packet
    decodes: int = 0
    probes: int = 0  # decodes of non-speakers only to learn their level
    concealed: int = 0  # PLC and FEC frames
    not_decoded: int = 0  # packets never decoded: silent, quiet or not mixed
    tick_seconds: float = 0.0  # wall time spent in ticks
    tick_max_s: float = 0.0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Channel:
    """One participant in the engine: its jitter buffer, decoder and sink."""

    __slots__ = (
        "codec",
        "countdown",
        "decode_table",
        "decoder",
        "hot",
        "jitter",
        "last_level",
        "last_pcm8",
        "muted",
        "pid",
        "probe_gap",
        "quiet_run",
        "quiet_size",
        "sink",
        "upsampler",
    )

    def __init__(self, pid: str, codec: str, sink: MixSink, policy: JitterPolicy) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}")
        self.pid = pid
        self.codec = codec
        self.sink = sink
        self.jitter = JitterBuffer(policy)
        self.muted = False
        self.decoder = OpusDecoderStream() if codec == OPUS else None
        self.decode_table = g711.decode_table(codec) if codec != OPUS else None
        self.upsampler = Upsampler() if codec != OPUS else None
        self.last_pcm8: np.ndarray | None = None  # G.711 PLC: the last frame, faded
        self.last_level: float | None = None
        # The probe state of a stream that gives no levels.
        self.hot = False
        self.countdown = 0
        self.probe_gap = 10
        self.quiet_run = 0
        self.quiet_size = 0.0

    def push(self, seq: int, timestamp: int, payload: bytes, level: int | None, now: float) -> None:
        """The leg's `on_packet`: an RTP packet arrived."""
        if self.decode_table is not None:
            timestamp *= 6  # 8 kHz RTP clock onto the buffer's 48 kHz one (exact mod 2^32)
        self.jitter.push(seq, timestamp, payload, now, level)


class EngineRoom:
    """One room's mixer, channels and encoders."""

    def __init__(
        self,
        room_id: str,
        policy: SpeakerPolicy,
        config: EngineConfig,
        stats: EngineStats,
        recorder: Recorder | None = None,
        on_speaking: Callable[[str, tuple[str, ...]], None] | None = None,
    ) -> None:
        self.room_id = room_id
        self.mixer = RoomMixer(policy)
        self.config = config
        self.stats = stats
        self.recorder = recorder
        self.on_speaking = on_speaking
        self.channels: dict[str, Channel] = {}
        self._order: list[Channel] = []
        self._encoders: dict[str | None, OpusEncoderStream] = {}
        self._spare: list[OpusEncoderStream] = []
        self._downsamplers: dict[str | None, Downsampler] = {}
        self._routes: dict[frozenset[str], tuple[list[Any], list[Any], list[Any]]] = {}
        self._floor = policy.threshold_dbov - 10.0  # the selector ignores anything quieter
        self.last_encodes = 0
        self.last_decodes = 0

    # ---------------------------------------------------------------- roster

    def add(self, pid: str, codec: str, sink: MixSink, muted: bool = False) -> Channel:
        channel = Channel(pid, codec, sink, self.config.jitter)
        channel.probe_gap = self.config.probe_every
        self.channels[pid] = channel
        self._order = list(self.channels.values())
        self.mixer.join(pid)
        self._routes.clear()
        if muted:
            self.set_muted(pid, True)
        return channel

    def remove(self, pid: str) -> None:
        if self.channels.pop(pid, None) is not None:
            self._order = list(self.channels.values())
            self.mixer.leave(pid)
            self._routes.clear()

    def set_muted(self, pid: str, muted: bool) -> None:
        channel = self.channels.get(pid)
        if channel is not None:
            channel.muted = muted
            self.mixer.set_muted(pid, muted)

    @property
    def speakers(self) -> tuple[str, ...]:
        return self.mixer.speakers

    # ---------------------------------------------------------------- the tick

    def tick(self, tick: int) -> None:
        stats = self.stats
        current = self.mixer.speakers  # a tuple of at most K: `in` is cheap
        floor = self._floor
        levels: dict[str, float] = {}
        frames: dict[str, np.ndarray] = {}
        pending: dict[str, Any] = {}  # speakers-to-be whose frame is not decoded yet
        packets: dict[str, bytes] = {}  # the Opus packet each decoded frame came from
        decodes = skipped = 0
        for channel in self._order:
            playout = channel.jitter.pop()
            kind = playout.kind
            if kind is _NOTHING or channel.muted:
                continue
            pid = channel.pid
            speaker = pid in current
            if kind is _LOSS:
                if speaker:
                    pending[pid] = playout
                    if channel.last_level is not None:
                        levels[pid] = channel.last_level  # hold the level through a hole
                continue
            payload = playout.payload
            decoder = channel.decoder
            if decoder is None:  # G.711: decoding is a lookup
                pcm8 = channel.decode_table.take(np.frombuffer(payload, dtype=np.uint8))
                level = pcm_level_dbov(pcm8)
                channel.last_level = levels[pid] = level
                if speaker or level >= floor:
                    pending[pid] = pcm8
                else:
                    channel.last_pcm8 = None
                continue
            size = len(payload)
            if size <= SILENT_PACKET_MAX_BYTES:  # DTX or a silence frame
                skipped += 1
                continue
            level = playout.level
            if level is not None:
                channel.last_level = levels[pid] = level
                if speaker or level >= floor:
                    pending[pid] = playout
                else:
                    skipped += 1
                continue
            if not speaker and not channel.hot:
                channel.countdown -= 1
                if channel.countdown > 0 and size <= channel.quiet_size * 1.25 + 4:
                    # Quiet by its size, and probed lately: assume it still is.
                    channel.quiet_size += (size - channel.quiet_size) * 0.05
                    skipped += 1
                    continue
                stats.probes += 1
            frame = decoder.decode(payload)
            decodes += 1
            level = pcm_level_dbov(frame)
            channel.last_level = levels[pid] = level
            frames[pid] = frame
            packets[pid] = payload
            if level >= floor:
                channel.hot = True
                channel.quiet_run = 0
                channel.probe_gap = self.config.probe_every
            else:
                channel.quiet_run += 1
                if channel.quiet_run >= self.config.hot_quiet_frames or not channel.hot:
                    self._quiet_probe(channel, size)
        stats.not_decoded += skipped

        mixer = self.mixer
        mixer.select(levels)
        speakers = mixer.speakers
        for pid in speakers:
            if pid in frames:
                continue
            item = pending.get(pid)
            if item is None:
                continue
            channel = self.channels[pid]
            if channel.decoder is None:
                frame = self._g711_frame(channel, item)
            elif item.kind is _PACKET:
                frame = channel.decoder.decode(item.payload)
                packets[pid] = item.payload
                decodes += 1
            else:  # a lost packet: conceal it, from the next packet's FEC when it is here
                frame = channel.decoder.decode(item.fec, fec=True)
                stats.concealed += 1
                decodes += 1
            if frame is not None:
                frames[pid] = frame
        # Frames decoded only as probes of non-speakers are in `frames` too: mix() reads
        # the speakers' only.
        result = mixer.mix(frames)
        stats.decodes += decodes
        self.last_decodes = decodes

        encodes = forwarded = 0
        tick_encoders = self._encoders
        # Speakers whose frame is in this tick's mixes. With nothing limited, a mix of one
        # of them is its frame exactly: its listeners get the speaker's own packet, no encode
        # (one person talking costs no encode at all; two cost one).
        heard = [pid for pid in speakers if pid in frames] if mixer.exact else None
        for mix in result.mixes:
            routes = self._routes.get(mix.recipients)
            if routes is None:
                routes = self._route(mix.recipients)
            opus_sinks, pcmu_sinks, pcma_sinks = routes
            if mix.silent:
                if pcmu_sinks:
                    _send_all(pcmu_sinks, _G711_SILENCE[g711.PCMU], tick)
                if pcma_sinks:
                    _send_all(pcma_sinks, _G711_SILENCE[g711.PCMA], tick)
                continue
            if opus_sinks:
                packet = None
                if heard is not None:
                    sources = (
                        heard if mix.speaker is None else [p for p in heard if p != mix.speaker]
                    )
                    if len(sources) == 1:
                        packet = packets.get(sources[0])
                        if packet is not None and packet_samples(packet) != FRAME_SAMPLES:
                            packet = None  # not a 20 ms packet: re-encode
                if packet is not None:
                    forwarded += 1
                else:
                    encoder = tick_encoders.get(mix.speaker)
                    if encoder is None:
                        encoder = self._encoder(mix.speaker)
                    packet = encoder.encode(mix.pcm)
                    encodes += 1
                if packet:
                    _send_all(opus_sinks, packet, tick)
            if pcmu_sinks or pcma_sinks:
                down = self._downsamplers.get(mix.speaker)
                if down is None:
                    down = self._downsamplers[mix.speaker] = Downsampler()
                pcm8 = down.process(mix.pcm)
                if pcmu_sinks:
                    _send_all(pcmu_sinks, g711.encode(g711.PCMU, pcm8), tick)
                if pcma_sinks:
                    _send_all(pcma_sinks, g711.encode(g711.PCMA, pcm8), tick)
        stats.encodes += encodes
        stats.forwarded += forwarded
        self.last_encodes = encodes

        if self.recorder is not None:
            audible = any(pid in frames for pid in speakers)
            self.recorder.write(result.room_mix if audible else None)
        if result.speakers_changed:
            self._speakers_changed(result.speakers)

    def _quiet_probe(self, channel: Channel, size: int) -> None:
        """A stream without levels decoded as quiet: back to probing, less often each time
        it stays quiet (up to `probe_max`), learning the size of its quiet packets."""
        config = self.config
        channel.hot = False
        channel.countdown = channel.probe_gap
        channel.probe_gap = min(channel.probe_gap + config.probe_every // 2, config.probe_max)
        if channel.quiet_size:
            channel.quiet_size += (size - channel.quiet_size) * 0.25
        else:
            channel.quiet_size = float(size)

    def _g711_frame(self, channel: Channel, item: Any) -> np.ndarray | None:
        upsampler = channel.upsampler
        assert upsampler is not None
        if isinstance(item, np.ndarray):
            pcm8 = item
            if len(pcm8) != g711.FRAME_SAMPLES:  # not 20 ms: pad or cut to keep the clock
                pcm8 = np.resize(pcm8, g711.FRAME_SAMPLES) if len(pcm8) else None
            channel.last_pcm8 = pcm8
        else:  # a loss: the last frame once more, at half level, then silence
            last = channel.last_pcm8
            channel.last_pcm8 = None
            self.stats.concealed += 1
            pcm8 = None if last is None else (last // 2).astype(np.int16)
        if pcm8 is None:
            return None
        frame = upsampler.process(pcm8)
        return frame if len(frame) == FRAME_SAMPLES else None

    def _route(self, recipients: frozenset[str]) -> tuple[list[Any], list[Any], list[Any]]:
        if len(self._routes) > 64:
            self._routes.clear()
        opus, pcmu, pcma = [], [], []
        for pid in recipients:
            channel = self.channels.get(pid)
            if channel is None:
                continue
            target = opus if channel.codec == OPUS else pcmu if channel.codec == g711.PCMU else pcma
            target.append(channel.sink.send_frame)
        routes = (opus, pcmu, pcma)
        self._routes[recipients] = routes
        return routes

    def _encoder(self, key: str | None) -> OpusEncoderStream:
        if self._spare:
            encoder = self._spare.pop()
        else:
            config = self.config
            encoder = OpusEncoderStream(
                bitrate=config.bitrate, dtx=config.dtx, complexity=config.complexity
            )
        self._encoders[key] = encoder
        return encoder

    def _speakers_changed(self, speakers: tuple[str, ...]) -> None:
        # Encoders and downsamplers of former speakers' mix-minus go back to the pool.
        keep = {None, *speakers}
        for key in [k for k in self._encoders if k not in keep]:
            self._spare.append(self._encoders.pop(key))
        for key in [k for k in self._downsamplers if k not in keep]:
            del self._downsamplers[key]
        if self.on_speaking is not None:
            self.on_speaking(self.room_id, speakers)


_G711_SILENCE = {codec: g711.silence(codec) for codec in (g711.PCMU, g711.PCMA)}


def _send_all(sinks: list[Any], payload: bytes, tick: int) -> None:
    for send in sinks:
        send(payload, tick)


class RoomEngine:
    """Every room this process mixes, and the one clock that ticks them.

    `autostart=False` leaves the clock off: tests then call `tick()` themselves.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        on_speaking: Callable[[str, tuple[str, ...]], None] | None = None,
        before_tick: list[Callable[[float], None]] | None = None,
        autostart: bool = True,
        loop: Any = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self.on_speaking = on_speaking
        self.before_tick = list(before_tick or ())
        self.autostart = autostart
        self.tick_no = 0
        self._rooms: dict[str, EngineRoom] = {}
        self._loop = loop
        self._handle: Any = None
        self._deadline = 0.0
        self._stopped = False

    # ---------------------------------------------------------------- rooms

    def open_room(
        self, room_id: str, max_speakers: int | None, recorder: Recorder | None = None
    ) -> EngineRoom:
        room = self._rooms.get(room_id)
        if room is None:
            policy = SpeakerPolicy(max_speakers=max_speakers)
            room = EngineRoom(room_id, policy, self.config, self.stats, recorder, self._speaking)
            self._rooms[room_id] = room
        return room

    def room(self, room_id: str) -> EngineRoom | None:
        return self._rooms.get(room_id)

    def close_room(self, room_id: str) -> EngineRoom | None:
        room = self._rooms.pop(room_id, None)
        self._maybe_stop()
        return room

    def add(
        self, room_id: str, pid: str, codec: str, sink: MixSink, *, muted: bool = False
    ) -> Channel:
        room = self._rooms.get(room_id)
        if room is None:
            raise KeyError(room_id)
        channel = room.add(pid, codec, sink, muted)
        if self.autostart:
            self._start_clock()
        return channel

    def remove(self, room_id: str, pid: str) -> None:
        room = self._rooms.get(room_id)
        if room is not None:
            room.remove(pid)
        self._maybe_stop()

    def set_muted(self, room_id: str, pid: str, muted: bool) -> None:
        room = self._rooms.get(room_id)
        if room is not None:
            room.set_muted(pid, muted)

    @property
    def rooms(self) -> int:
        return len(self._rooms)

    @property
    def room_ids(self) -> list[str]:
        return list(self._rooms)

    @property
    def participants(self) -> int:
        return sum(len(room.channels) for room in self._rooms.values())

    @property
    def running(self) -> bool:
        return self._handle is not None

    def readings(self) -> list[tuple[str, str, str, float]]:
        """The engine's figures for /metrics (see voice.metrics.Reading)."""
        s = self.stats
        return [
            ("chorus_rooms_mixed", "Rooms mixed by this node", "gauge", self.rooms),
            ("chorus_room_participants", "Participants in rooms on this node", "gauge",
             self.participants),
            ("chorus_mixer_ticks", "Mixer clock ticks", "counter", s.ticks),
            ("chorus_mixer_late_ticks", "Ticks run more than 5 ms late", "counter", s.late_ticks),
            ("chorus_mixer_skipped_ticks", "Ticks skipped: the clock fell over 100 ms behind",
             "counter", s.skipped_ticks),
            ("chorus_mixer_tick_seconds", "Time spent mixing", "counter", s.tick_seconds),
            ("chorus_mixer_tick_max_seconds", "Longest tick so far", "gauge", s.tick_max_s),
            ("chorus_mixer_encodes", "Opus encodes of mixes", "counter", s.encodes),
            ("chorus_mixer_forwarded", "Mixes of one speaker sent as that speaker's packet",
             "counter", s.forwarded),
            ("chorus_mixer_decodes", "Frames decoded to be mixed", "counter", s.decodes),
            ("chorus_mixer_probes", "Frames decoded only to learn a level", "counter", s.probes),
            ("chorus_mixer_not_decoded", "Frames never decoded (silent or not mixed)", "counter",
             s.not_decoded),
            ("chorus_mixer_concealed", "Frames concealed (PLC or FEC)", "counter", s.concealed),
            ("chorus_mixer_errors", "Room ticks that failed", "counter", s.errors),
        ]  # fmt: skip

    # ---------------------------------------------------------------- the clock

    def tick(self, now: float | None = None) -> None:
        """One tick of every room with participants."""
        started = time.perf_counter()
        if now is None:
            now = time.monotonic()
        for hook in self.before_tick:
            try:
                hook(now)
            except Exception:
                self.stats.errors += 1
                if self.stats.errors <= 10:
                    log.exception("a before-tick hook failed")
        tick = self.tick_no
        for room in list(self._rooms.values()):
            if not room.channels:
                continue
            try:
                room.tick(tick)
            except Exception:
                # One room's bug must not stop every room's clock.
                self.stats.errors += 1
                if self.stats.errors <= 10:
                    log.exception("room=%s tick failed", room.room_id)
        self.tick_no = tick + 1
        stats = self.stats
        stats.ticks += 1
        spent = time.perf_counter() - started
        stats.tick_seconds += spent
        if spent > stats.tick_max_s:
            stats.tick_max_s = spent

    def _start_clock(self) -> None:
        if self._handle is not None or self._stopped:
            return
        loop = self._loop or _running_loop()
        self._loop = loop
        self._deadline = loop.time() + PERIOD_S
        self._handle = loop.call_at(self._deadline, self._on_clock)
        log.info("mixer clock started")

    def _on_clock(self) -> None:
        self._handle = None
        loop = self._loop
        now = loop.time()
        late = now - self._deadline
        if late > self.config.max_late_s:
            skipped = int(late / PERIOD_S)
            self.tick_no += skipped
            self.stats.skipped_ticks += skipped
            self._deadline = now
        elif late > 0.005:
            self.stats.late_ticks += 1
        self.tick(now)
        if self._active() and not self._stopped:
            self._deadline += PERIOD_S
            self._handle = loop.call_at(self._deadline, self._on_clock)
        else:
            log.info("mixer clock stopped: no room has participants")

    def _active(self) -> bool:
        return any(room.channels for room in self._rooms.values())

    def _maybe_stop(self) -> None:
        if self._handle is not None and not self._active():
            self._handle.cancel()
            self._handle = None
            log.info("mixer clock stopped: no room has participants")

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _speaking(self, room_id: str, speakers: tuple[str, ...]) -> None:
        if self.on_speaking is not None:
            try:
                self.on_speaking(room_id, speakers)
            except Exception:
                log.exception("room=%s speaking callback failed", room_id)


def _running_loop() -> Any:
    return asyncio.get_running_loop()
