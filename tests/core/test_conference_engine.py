"""The room engine, ticked by hand with synthetic RTP: what is decoded, what is encoded, who
gets which packet. Real libopus, no sockets, no clock (except the clock test)."""

from __future__ import annotations

import asyncio

import numpy as np
import opuslib.api.ctl
import opuslib.api.encoder

from conference.engine import EngineConfig, RoomEngine
from tests.audio import band_rms
from voice.media import g711
from voice.media.opus import SILENCE, OpusDecoderStream, OpusEncoderStream

RATE = 48000


class Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes]] = []

    def send_frame(self, payload: bytes, tick: int) -> None:
        self.packets.append((tick, payload))


class Talker:
    """An RTP sender: a tone (or silence) as Opus or G.711, with or without RFC 6464 levels."""

    def __init__(self, freq=0.0, level=0.0, *, codec="opus", levels=True, dtx=False, fec=False):
        self.freq, self.level, self.codec = freq, level, codec
        self.levels, self.dtx = levels, dtx
        self.encoder = OpusEncoderStream(bitrate=32000) if codec == "opus" else None
        if fec and self.encoder is not None:  # opuslib's own setters are broken: raw ctls
            state = self.encoder._encoder.encoder_state
            opuslib.api.encoder.encoder_ctl(state, opuslib.api.ctl.set_inband_fec, 1)
            opuslib.api.encoder.encoder_ctl(state, opuslib.api.ctl.set_packet_loss_perc, 20)
        self.seq = 1000
        self.frame = 0

    def packet(self) -> tuple[int, int, bytes, int | None]:
        rate = RATE if self.codec == "opus" else 8000
        n = rate // 50
        t = (self.frame * n + np.arange(n)) / rate
        pcm = np.round(np.sin(2 * np.pi * self.freq * t) * self.level * 32767).astype(np.int16)
        ts = self.frame * n
        self.frame += 1
        self.seq += 1
        level = None
        if self.levels:
            rms = np.sqrt(np.mean(pcm.astype(float) ** 2)) / 32768
            level = max(-127, round(20 * np.log10(rms))) if rms > 0 else -127
        if self.codec != "opus":
            return self.seq, ts, g711.encode(self.codec, pcm), None
        if self.dtx and self.level == 0:
            return self.seq, ts, b"\x08", level  # a 1-byte DTX frame
        return self.seq, ts, self.encoder.encode(pcm), level


def room_of(talkers: dict[str, Talker], k: int | None = 3, **config):
    engine = RoomEngine(EngineConfig(**config), autostart=False)
    room = engine.open_room("r", k)
    sinks, channels = {}, {}
    for pid, talker in talkers.items():
        sinks[pid] = Sink()
        channels[pid] = engine.add("r", pid, talker.codec, sinks[pid])
    return engine, room, sinks, channels


def run(engine, talkers, channels, ticks, *, lose=()):
    for _ in range(ticks):
        tick = engine.tick_no
        for pid, talker in talkers.items():
            seq, ts, payload, level = talker.packet()
            if (pid, tick) not in lose:
                channels[pid].push(seq, ts, payload, level, tick * 0.02)
        engine.tick(tick * 0.02)


def heard(sink: Sink, last: int = 25) -> np.ndarray:
    decoder = OpusDecoderStream()
    return np.concatenate([decoder.decode(p) for _, p in sink.packets[-last:]])


def tone(pcm, freq, rate=RATE) -> float:
    return band_rms(pcm, rate, freq, width_hz=30)


def test_encodes_per_tick_are_k_plus_one_and_listeners_share_one_packet():
    talkers = {f"t{i}": Talker(400 + 200 * i, 0.25 - 0.04 * i) for i in range(5)}
    talkers |= {f"l{i:02d}": Talker(dtx=True) for i in range(40)}
    engine, room, sinks, channels = room_of(talkers, k=3)
    per_tick = []
    for _ in range(60):
        run(engine, talkers, channels, 1)
        per_tick.append(room.last_encodes)
    assert room.speakers == ("t0", "t1", "t2")
    assert max(per_tick) <= 4 and per_tick[-1] == 4  # K speakers + 1 listeners' mix
    last = {pid: sink.packets[-1] for pid, sink in sinks.items()}
    shared = {id(last[pid][1]) for pid in talkers if pid not in room.speakers}
    assert len(shared) == 1  # one encode, the same bytes object sent to all 42 listeners
    assert len({last[pid][0] for pid in talkers}) == 1  # all for the same tick
    for speaker in room.speakers:  # each speaker: its own mix-minus
        pcm = heard(sinks[speaker])
        own = talkers[speaker].freq
        others = [talkers[s].freq for s in room.speakers if s != speaker]
        assert tone(pcm, own) < 100 and min(tone(pcm, f) for f in others) > 2000
    pcm = heard(sinks["l07"])
    assert min(tone(pcm, talkers[s].freq) for s in room.speakers) > 2000
    assert tone(pcm, talkers["t3"].freq) < 100  # the 4th talker is not mixed


def test_a_lone_speakers_packets_are_forwarded_not_re_encoded():
    talkers = {"a": Talker(500, 0.2), "b": Talker(dtx=True), "c": Talker(dtx=True)}
    engine, room, sinks, channels = room_of(talkers)
    sent_by_a = []
    for _ in range(40):
        seq, ts, payload, level = talkers["a"].packet()
        sent_by_a.append(payload)
        channels["a"].push(seq, ts, payload, level, engine.tick_no * 0.02)
        for pid in "bc":
            channels[pid].push(*talkers[pid].packet(), engine.tick_no * 0.02)
        engine.tick()
    assert room.speakers == ("a",) and engine.stats.encodes == 0
    got = [p for _, p in sinks["b"].packets]
    assert got and all(p in sent_by_a for p in got) and sinks["a"].packets == []
    # A second talker: the listeners' mix is encoded once; each speaker gets the other's packet.
    talkers["b"].freq, talkers["b"].level = 700, 0.2
    run(engine, talkers, channels, 30)
    assert set(room.speakers) == {"a", "b"} and room.last_encodes == 1
    assert engine.stats.forwarded > 60  # a mix, not a recipient, counts once
    assert tone(heard(sinks["a"]), 700) > 3000 and tone(heard(sinks["c"]), 500) > 3000
    # Too loud to pass unlimited: the limiter works, so the mix is encoded.
    talkers["b"].level = 0.95
    talkers["a"].level = 0.95
    run(engine, talkers, channels, 10)
    assert room.last_encodes == 3


def test_only_what_can_be_heard_is_decoded():
    talkers = {
        "speaker": Talker(500, 0.3),  # with levels: decoded, mixed
        "quiet-levels": Talker(700, 0.0005),  # -70 dBov by its level: never decoded
        "dtx": Talker(dtx=True),  # 1-byte packets: never decoded
        "no-levels-quiet": Talker(levels=False),  # encoded silence, no level: probed
    }
    engine, room, sinks, channels = room_of(talkers)
    run(engine, talkers, channels, 100)
    stats = engine.stats
    # speaker: ~97 decodes (after the jitter buffer fills); the silent stream without levels
    # is decoded until its packet size is learnt, then once per 10 frames.
    assert room.speakers == ("speaker",)
    assert 95 <= stats.decodes <= 97 + 20, stats
    assert stats.probes <= 20 and stats.not_decoded >= 3 * 90
    # Decoding is skipped, not hearing: the listeners hear the speaker.
    assert tone(heard(sinks["dtx"]), 500) > 3000


def test_a_talker_without_levels_is_found_by_probing_and_taken_in():
    quiet = Talker(levels=False)
    talkers = {"a": quiet, "b": Talker(dtx=True)}
    engine, room, sinks, channels = room_of(talkers)
    run(engine, talkers, channels, 50)
    assert room.speakers == () and engine.stats.decodes < 25
    quiet.freq, quiet.level = 600, 0.2  # starts talking
    start = engine.tick_no
    while room.speakers != ("a",):
        run(engine, talkers, channels, 1)
        assert engine.tick_no - start < 15, "not found within 300 ms"
    run(engine, talkers, channels, 30)
    assert tone(heard(sinks["b"]), 600) > 3000


def test_lost_packets_are_concealed_with_fec_when_the_sender_has_it():
    talkers = {"s": Talker(500, 0.3, fec=True), "l": Talker(dtx=True)}
    engine, room, sinks, channels = room_of(talkers)
    lose = {("s", tick) for tick in (30, 31, 50)}
    run(engine, talkers, channels, 80, lose=lose)
    assert engine.stats.concealed == 3
    ticks = [t for t, _ in sinks["l"].packets]
    assert ticks == list(range(ticks[0], ticks[-1] + 1))  # no hole in what the listener gets
    assert tone(heard(sinks["l"], 60), 500) > 3000


def test_g711_participants_are_mixed_and_served_in_their_codec():
    talkers = {
        "phone": Talker(1000, 0.3, codec="pcmu"),
        "app": Talker(600, 0.3),
        "trunk": Talker(0, 0, codec="pcma"),
    }
    engine, room, sinks, channels = room_of(talkers)
    run(engine, talkers, channels, 60)
    assert set(room.speakers) == {"phone", "app"}
    assert tone(heard(sinks["app"]), 1000) > 3000  # the app hears the phone
    phone = np.concatenate([g711.decode("pcmu", p) for _, p in sinks["phone"].packets[-25:]])
    assert tone(phone, 600, 8000) > 3000 and tone(phone, 1000, 8000) < 300
    trunk = sinks["trunk"].packets
    assert len(trunk) >= 55 and {len(p) for _, p in trunk} == {160}  # 20 ms a tick, always
    trunk_pcm = np.concatenate([g711.decode("pcma", p) for _, p in trunk[-25:]])
    assert tone(trunk_pcm, 600, 8000) > 2000 and tone(trunk_pcm, 1000, 8000) > 2000


def test_muted_participants_are_not_heard_and_an_idle_room_sends_nothing():
    talkers = {"a": Talker(500, 0.3), "b": Talker(700, 0.3), "c": Talker(dtx=True)}
    engine, room, sinks, channels = room_of(talkers)
    run(engine, talkers, channels, 30)
    engine.set_muted("r", "a", True)
    run(engine, talkers, channels, 30)
    pcm = heard(sinks["c"], 20)
    assert tone(pcm, 500) < 100 and tone(pcm, 700) > 3000
    for talker in talkers.values():
        talker.level = 0.0
        talker.dtx = True
    run(engine, talkers, channels, 60)  # speakers hang on for 800 ms, then silence
    sent = sum(len(s.packets) for s in sinks.values())
    encodes = engine.stats.encodes
    run(engine, talkers, channels, 100)
    assert sum(len(s.packets) for s in sinks.values()) == sent  # Opus DTX: nothing sent
    assert engine.stats.encodes == encodes and room.speakers == ()


def test_garbage_payloads_do_not_stop_the_clock():
    talkers = {"a": Talker(500, 0.3, levels=False), "b": Talker(dtx=True)}
    engine, room, sinks, channels = room_of(talkers)
    run(engine, talkers, channels, 10)
    for tick in range(10):
        channels["a"].push(5000 + tick, 960 * (100 + tick), b"\xff" * 40, None, 0.0)
        engine.tick()
    run(engine, talkers, channels, 30)
    assert engine.stats.ticks == 50
    assert tone(heard(sinks["b"], 10), 500) > 1000


async def test_one_clock_runs_only_while_a_room_has_participants():
    engine = RoomEngine(EngineConfig())
    engine.open_room("empty", 3)
    engine.open_room("busy", 3)
    await asyncio.sleep(0.1)
    assert not engine.running and engine.stats.ticks == 0  # empty rooms cost nothing
    sink = Sink()
    channel = engine.add("busy", "p", "opus", sink)
    channel.push(1, 0, SILENCE, None, 0.0)
    await asyncio.sleep(0.25)
    assert engine.running and 8 <= engine.stats.ticks <= 14
    engine.remove("busy", "p")
    assert not engine.running
    ticks = engine.stats.ticks
    await asyncio.sleep(0.1)
    assert engine.stats.ticks == ticks
    engine.stop()


def test_a_stalled_clock_recovers_instead_of_falling_silent():
    # The process was starved for 1.2 s: 60 packets per talker queued up, no tick ran.
    # The jitter buffers overflow, trim, and play again at once (they once chased the
    # queue a frame per tick, forever).
    talkers = {"a": Talker(500, 0.3), "b": Talker(700, 0.3), "l": Talker(dtx=True)}
    engine, room, sinks, channels = room_of(talkers)
    run(engine, talkers, channels, 30)
    for _ in range(60):
        for pid, talker in talkers.items():
            channels[pid].push(*talker.packet(), engine.tick_no * 0.02)
    engine.tick_no += 60
    before = len(sinks["l"].packets)
    run(engine, talkers, channels, 20)
    assert len(sinks["l"].packets) - before >= 18
    assert tone(heard(sinks["l"], 10), 500) > 2000
