"""The outgoing timeline of a leg: clip pacing, relay continuity, DTX gaps, reordering."""

from voice.webrtc.timeline import FRAME, RATE, Timeline

SRC = object()


def test_clip_is_paced_by_the_clock():
    tl = Timeline()
    assert tl.clip_due(100.0) == 100.0
    assert tl.clip_pts(100.0) == 0
    assert tl.clip_due(100.0) == 100.0 + FRAME / RATE
    assert tl.clip_pts(100.02) == FRAME
    assert tl.clip_pts(100.04) == 2 * FRAME


def test_a_late_clip_skips_ahead_instead_of_bursting():
    tl = Timeline()
    tl.clip_pts(0.0)
    assert tl.clip_pts(0.5) == RATE // 2  # 480 ms late: jump to the clock
    assert tl.clip_pts(0.52) == RATE // 2 + FRAME


def test_switching_from_clip_to_relay_is_continuous():
    tl = Timeline()
    for i in range(5):
        tl.clip_pts(i * 0.02)
    # The relay source's timestamps are unrelated to ours; the first one anchors.
    first = tl.relay_pts(SRC, 7, 4_000_000_000, FRAME, 0.1)
    assert first == 5 * FRAME
    assert tl.relay_pts(SRC, 7, 4_000_000_000 + FRAME, FRAME, 0.12) == 6 * FRAME


def test_relay_keeps_dtx_gaps_and_wraps_32_bits():
    tl = Timeline()
    ts = 0xFFFFFFFF - FRAME + 1  # the next packet wraps around zero
    assert tl.relay_pts(SRC, 1, ts, FRAME, 0.0) == 0
    assert tl.relay_pts(SRC, 1, (ts + FRAME) & 0xFFFFFFFF, FRAME, 0.02) == FRAME
    # 400 ms of DTX silence in the source: the same gap on our side.
    gap_ts = (ts + FRAME + 20 * FRAME) & 0xFFFFFFFF
    assert tl.relay_pts(SRC, 1, gap_ts, FRAME, 0.42) == 21 * FRAME


def test_relay_drops_duplicates_and_late_packets():
    tl = Timeline()
    assert tl.relay_pts(SRC, 1, 1000, FRAME, 0.0) == 0
    assert tl.relay_pts(SRC, 1, 1000 + FRAME, FRAME, 0.02) == FRAME
    assert tl.relay_pts(SRC, 1, 1000 + FRAME, FRAME, 0.03) is None  # duplicate
    assert tl.relay_pts(SRC, 1, 1000, FRAME, 0.03) is None  # reordered, too late
    assert tl.relay_pts(SRC, 1, 1000 + 2 * FRAME, FRAME, 0.04) == 2 * FRAME


def test_relay_reanchors_on_a_new_source_or_ssrc_or_a_jump():
    tl = Timeline()
    tl.relay_pts(SRC, 1, 0, FRAME, 0.0)
    # New SSRC (the far end restarted its stream): continue after what we sent.
    assert tl.relay_pts(SRC, 2, 123456, FRAME, 0.02) == FRAME
    # The source jumps 10 s ahead: re-anchor at our clock rather than skip 10 s.
    assert tl.relay_pts(SRC, 2, 123456 + 10 * RATE, FRAME, 0.04) == 2 * FRAME
    # Another leg takes over.
    other = object()
    assert tl.relay_pts(other, 2, 5, FRAME, 0.06) == 3 * FRAME


def test_longer_packets_advance_by_their_duration():
    tl = Timeline()
    assert tl.relay_pts(SRC, 1, 0, 2880, 0.0) == 0
    assert tl.relay_pts(SRC, 1, 2880, 2880, 0.06) == 2880
    tl.end_relay()
    # Back to a clip: it continues after the last relayed packet.
    assert tl.clip_pts(0.12) == 5760


def test_a_clip_resuming_after_silence_starts_on_the_clock_without_counting_lag():
    tl = Timeline()
    tl.clip_pts(0.0)
    tl.clip_resume(3.0)  # nothing was sent for 3 s: not lag
    assert tl.next_pts == 3 * RATE
    assert tl.clip_due(3.0) == 3.0
    assert tl.clip_pts(3.0) == 3 * RATE
