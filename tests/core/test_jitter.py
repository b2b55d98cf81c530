"""The Opus jitter buffer, driven tick by tick: reordering, loss, DTX, wrap-around, restarts."""

import pytest

from voice.media.jitter import (
    FRAME_TICKS,
    LOSS,
    NOTHING,
    Arrival,
    JitterBuffer,
    JitterPolicy,
    PlayoutKind,
)

DTX = b"\x08"  # a 1-byte TOC-only packet: what libopus emits during DTX


def payload(seq: int) -> bytes:
    return b"pkt" + seq.to_bytes(4, "big") + bytes(20)


def seq_of(data: bytes | None) -> int | None:
    return None if data is None else int.from_bytes(data[3:7], "big")


class Stream:
    """A sender: packet n has sequence seq0 + n and timestamp ts0 + n * 960 (both wrapping)."""

    def __init__(self, seq0: int = 1000, ts0: int = 123456):
        self.seq0, self.ts0 = seq0, ts0

    def seq(self, n: int) -> int:
        return (self.seq0 + n) & 0xFFFF

    def ts(self, n: int) -> int:
        return (self.ts0 + n * FRAME_TICKS) & 0xFFFFFFFF

    def push(self, jb: JitterBuffer, n: int, tick: int, data: bytes | None = None) -> Arrival:
        return jb.push(self.seq(n), self.ts(n), data or payload(n), tick * 0.02)


def describe(playout):
    if playout.kind is PlayoutKind.PACKET:
        return seq_of(playout.payload)
    return playout.kind.value


def run(jb: JitterBuffer, stream: Stream, arrivals: dict[int, list[int]], ticks: int) -> list:
    """Push packets `arrivals[tick]` (packet numbers) before each tick's pop; return the pops."""
    out = []
    for tick in range(ticks):
        for n in arrivals.get(tick, []):
            stream.push(jb, n, tick)
        out.append(describe(jb.pop()))
    return out


def steady(count: int, skip: set[int] = frozenset(), start: int = 0) -> dict[int, list[int]]:
    return {start + n: [n] for n in range(count) if n not in skip}


def played(pops: list) -> list[int]:
    return [p for p in pops if isinstance(p, int)]


def test_in_order_stream_plays_after_the_target_delay():
    jb, stream = JitterBuffer(), Stream()
    pops = run(jb, stream, steady(20), 23)
    delay = JitterPolicy().initial_delay_frames
    assert pops[:delay] == ["nothing"] * delay
    assert pops[delay : delay + 20] == [n for n in range(20)]
    assert jb.stats.played == 20 and jb.stats.concealed == 0


def test_reordered_packets_play_in_order():
    jb, stream = JitterBuffer(), Stream()
    arrivals = {0: [0], 1: [2], 2: [1], 3: [4, 3], 4: [6], 5: [5], 6: [7]}
    pops = run(jb, stream, arrivals, 11)
    assert played(pops) == list(range(8))
    assert "loss" not in pops


def test_loss_gives_a_loss_marker_with_the_next_packet_for_fec():
    jb, stream = JitterBuffer(), Stream()
    for n in range(5):
        if n != 2:
            stream.push(jb, n, 0)
    for _ in range(3):
        assert jb.pop() is NOTHING
    assert seq_of(jb.pop().payload) == 0
    assert seq_of(jb.pop().payload) == 1
    lost = jb.pop()
    assert lost.kind is PlayoutKind.LOSS
    assert seq_of(lost.fec) == 3  # decode it with FEC to recover packet 2
    assert seq_of(jb.pop().payload) == 3
    assert jb.stats.concealed == 1


def test_loss_of_two_gives_fec_only_for_the_second():
    jb, stream = JitterBuffer(), Stream()
    pops = run(jb, stream, steady(10, skip={4, 5}), 15)
    assert pops[3:13] == [n for n in range(4)] + ["loss", "loss"] + [n for n in range(6, 10)]
    jb2 = JitterBuffer()
    for n in (0, 1, 4):
        stream.push(jb2, n, 0)
    kinds = [jb2.pop() for _ in range(7)]
    assert kinds[5] is LOSS  # packet 2 lost, packet 3 too: nothing to recover it from
    assert seq_of(kinds[6].fec) == 4


def test_loss_while_the_buffer_is_empty_is_concealed():
    jb, stream = JitterBuffer(), Stream()
    pops = run(jb, stream, steady(10, skip={5}, start=0), 14)
    assert pops[3:13] == [n for n in range(5)] + ["loss"] + [n for n in range(6, 10)]


def test_duplicates_are_played_once():
    jb, stream = JitterBuffer(), Stream()
    assert stream.push(jb, 0, 0) is Arrival.ACCEPTED
    assert stream.push(jb, 0, 0) is Arrival.DUPLICATE
    stream.push(jb, 1, 0)
    pops = [describe(jb.pop()) for _ in range(6)]
    assert played(pops) == [0, 1]
    # A copy of a packet already played is stale, not late: the delay does not grow.
    assert stream.push(jb, 0, 6) is Arrival.STALE
    assert jb.target_delay_frames == JitterPolicy().initial_delay_frames
    assert jb.stats.duplicates == 1 and jb.stats.stale == 1


@pytest.mark.parametrize(
    ("seq0", "ts0"), [(65530, 123), (100, 0xFFFFFFFF - 3 * 960), (65533, 0xFFFFF000)]
)
def test_wrap_around_of_sequence_and_timestamp(seq0, ts0):
    jb, stream = JitterBuffer(), Stream(seq0, ts0)
    arrivals = steady(20)
    arrivals[7], arrivals[8] = [8], [7]  # a reorder right across the wrap
    pops = run(jb, stream, arrivals, 23)
    assert played(pops) == list(range(20))
    assert jb.stats.concealed == 0 and jb.stats.resyncs == 0
    report = jb.reception()
    assert report.expected == 20 and report.cumulative_lost == 0
    assert report.extended_highest_seq == seq0 + 19  # counts the wrap, RTCP-style


def test_dtx_pause_gives_nothing_not_loss():
    jb, stream = JitterBuffer(), Stream()
    # Talk for 10 frames, a DTX frame, then silence for 50 frames (sequence numbers do not
    # advance while the sender sends nothing), then talk again.
    pops = []
    for tick in range(100):
        if tick < 10:
            jb.push(stream.seq(tick), stream.ts(tick), payload(tick), tick * 0.02)
        elif tick == 10:
            jb.push(stream.seq(10), stream.ts(10), DTX, tick * 0.02)
        elif 60 <= tick < 80:
            n = tick - 60
            jb.push(stream.seq(11 + n), stream.ts(60 + n), payload(11 + n), tick * 0.02)
        pops.append(jb.pop())
        if tick == 40:
            assert jb.idle  # a pop costs nothing until the next talkspurt
    kinds = [p.kind for p in pops[:83]]  # until the stream's last packet has played
    assert PlayoutKind.LOSS not in kinds
    assert [seq_of(p.payload) for p in pops if p.is_packet and p.payload != DTX] == [
        n for n in list(range(10)) + list(range(11, 31))
    ]
    # The engine is told there is nothing to decode for the whole pause.
    assert kinds[14:60].count(PlayoutKind.NOTHING) == 46


def test_dtx_pause_without_a_dtx_packet_is_silence_once_the_next_packet_shows():
    jb, stream = JitterBuffer(), Stream()
    # Packets 0..4, then the sender pauses 5 frames (timestamps jump, sequence does not)
    # and the next packet arrives early enough to be waiting.
    for n in range(5):
        jb.push(stream.seq(n), stream.ts(n), payload(n), 0.0)
    jb.push(stream.seq(5), stream.ts(10), payload(5), 0.0)
    pops = [describe(jb.pop()) for _ in range(14)]
    assert pops == ["nothing"] * 3 + [n for n in range(5)] + ["nothing"] * 5 + [5]


def test_late_packet_is_dropped_and_the_delay_grows():
    jb, stream = JitterBuffer(), Stream()
    arrivals = steady(30)
    del arrivals[10]
    arrivals[18] = [18, 10]  # packet 10 shows up 8 frames late
    out = []
    for tick in range(35):
        for n in arrivals.get(tick, []):
            result = stream.push(jb, n, tick)
            if n == 10:
                assert result is Arrival.LATE
        out.append(describe(jb.pop()))
    assert out[13] == "loss"
    assert 10 not in played(out)
    assert jb.stats.late == 1
    assert jb.target_delay_frames == JitterPolicy().initial_delay_frames + 1


def test_delay_grows_by_holding_during_an_underrun():
    jb, stream = JitterBuffer(), Stream()
    # Every 10th packet arrives 4 frames late, one more than the initial delay of 3.
    arrivals: dict[int, list[int]] = {}
    for n in range(200):
        arrivals.setdefault(n + (4 if n % 10 == 0 and n else 0), []).append(n)
    pops = run(jb, stream, arrivals, 205)
    # The first one is concealed and arrives late: the target grows to 4 frames, and the
    # cursor holds one frame (a PLC frame) at the next underrun to get there.
    assert jb.stats.late == 1 and jb.target_delay_frames == 4
    assert pops[:204].count("loss") == 2  # packet 10 concealed, one hold waiting for 20
    assert played(pops) == [n for n in range(200) if n != 10]


def test_delay_shrinks_slowly_when_the_network_is_calm():
    policy = JitterPolicy(initial_delay_frames=6, shrink_after_frames=50)
    jb, stream = JitterBuffer(policy), Stream()
    run(jb, stream, steady(400), 400)
    assert jb.target_delay_frames == policy.min_delay_frames
    assert jb.stats.concealed == 0


def test_long_silence_after_loss_goes_idle_and_the_next_packet_restarts_playout():
    jb, stream = JitterBuffer(), Stream()
    pops = run(jb, stream, {**steady(5), 40: [35], 41: [36]}, 45)
    limit = JitterPolicy().max_concealed_frames
    assert pops[8 : 8 + limit] == ["loss"] * limit
    assert pops[8 + limit] == "nothing" and jb.stats.concealed == limit
    # Packet 35 re-anchors playout with the target delay, then 36 follows.
    assert pops[40:45] == ["nothing"] * 3 + [35, 36]


def test_resync_on_a_sequence_jump_after_probation():
    jb, stream = JitterBuffer(), Stream()
    run(jb, stream, steady(10), 12)
    restart = Stream(seq0=40000, ts0=999)
    assert restart.push(jb, 0, 12) is Arrival.IGNORED  # one stray packet proves nothing
    assert restart.push(jb, 1, 13) is Arrival.RESYNC
    pops = [describe(jb.pop())]
    for n in range(2, 10):
        restart.push(jb, n, 12 + n)
        pops.append(describe(jb.pop()))
    assert played(pops) == list(range(6))
    assert jb.stats.resyncs == 1


def test_a_stray_packet_does_not_disturb_the_stream():
    jb, stream = JitterBuffer(), Stream()
    arrivals = steady(20)
    out = []
    for tick in range(24):
        for n in arrivals.get(tick, []):
            stream.push(jb, n, tick)
        if tick == 8:
            assert jb.push(12345, 777, payload(99), tick * 0.02) is Arrival.IGNORED
        out.append(describe(jb.pop()))
    assert played(out) == [n for n in range(20)]
    assert jb.stats.resyncs == 0


def test_resync_on_a_timestamp_leap():
    jb, stream = JitterBuffer(), Stream()
    run(jb, stream, steady(10), 10)
    # Sequence numbers continue but the media clock leaps 10 s: a restarted sender.
    assert jb.push(stream.seq(10), stream.ts(10 + 500), payload(10), 0.2) is Arrival.RESYNC
    pops = [describe(jb.pop()) for _ in range(4)]
    assert pops == ["nothing"] * 3 + [10]


def test_memory_is_bounded_even_when_nobody_pops():
    jb, stream = JitterBuffer(), Stream()
    for n in range(2000):
        stream.push(jb, n, n)
    assert len(jb._packets) <= JitterPolicy().capacity_frames


def test_a_burst_after_a_stall_is_trimmed_back_to_the_target():
    jb, stream = JitterBuffer(), Stream()
    arrivals = {n: [n] for n in range(10)}
    arrivals[20] = list(range(10, 30))  # a stall, then 20 packets at once
    arrivals.update({n: [n] for n in range(31, 60)})
    run(jb, stream, arrivals, 60)
    assert jb.stats.dropped > 0
    assert jb.queued_frames <= jb.target_delay_frames + JitterPolicy().excess_frames


def test_reset_forgets_the_stream():
    jb, stream = JitterBuffer(), Stream()
    run(jb, stream, steady(5), 5)
    jb.reset()
    assert jb.idle and jb.pop() is NOTHING
    other = Stream(seq0=7, ts0=5)
    assert other.push(jb, 0, 6) is Arrival.ACCEPTED


def test_reception_report_counts_loss_and_jitter():
    jb, stream = JitterBuffer(), Stream()
    for n in range(100):
        if n % 10 != 5:
            wobble = 0.004 if n % 2 else 0.0
            jb.push(stream.seq(n), stream.ts(n), payload(n), n * 0.02 + wobble)
    report = jb.reception()
    assert report.expected == 100 and report.received == 90 and report.cumulative_lost == 10
    assert 100 < report.jitter < 200  # 4 ms of alternating delay: 192 units peak-to-peak
