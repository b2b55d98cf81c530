"""RFC 4733 telephone-event payloads: each press one key, whatever the network did to it."""

from __future__ import annotations

import random

import pytest

from voice.media.telephone_event import KEYS, KeyReceiver, TelephoneEvent, parse

FRAME = 960  # a browser sends an update every 20 ms at 48 kHz


def payload(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return bytes((event, (0x80 if end else 0) | volume)) + duration.to_bytes(2, "big")


def press(key: str, timestamp: int, duration: int = 5 * FRAME) -> list[tuple[bytes, int]]:
    """What a browser sends for one press: start, updates, then the end packet three times."""
    event = KEYS.index(key)
    packets = [(payload(event, d), timestamp) for d in range(FRAME, duration, FRAME)]
    return packets + [(payload(event, duration, end=True), timestamp)] * 3


def feed(receiver: KeyReceiver, packets: list[tuple[bytes, int]]) -> str:
    return "".join(key for p, ts in packets if (key := receiver.feed(p, ts)) is not None)


def presses(keys: str, start: int = 1000) -> list[tuple[bytes, int]]:
    packets = []
    for n, key in enumerate(keys):
        packets += press(key, start + n * 20 * FRAME)
    return packets


def test_the_payload_fields():
    assert parse(payload(11, 4321, end=True, volume=7)) == TelephoneEvent(11, True, 7, 4321)
    assert parse(payload(5, 0) + b"\xff\xff") == TelephoneEvent(5, False, 10, 0)
    assert parse(payload(11, 0)).key == "#"
    assert parse(payload(16, 0)).key is None  # flash


def test_every_key_once_from_start_updates_and_three_end_packets():
    assert feed(KeyReceiver(), presses(KEYS)) == KEYS


def test_a_key_pressed_twice_is_two_keys():
    assert feed(KeyReceiver(), presses("5511")) == "5511"


def test_a_lost_first_packet_still_gives_the_key():
    packets = press("7", 5000)
    assert feed(KeyReceiver(), packets[1:]) == "7"


def test_only_the_end_packets_arriving_still_gives_the_key_once():
    assert feed(KeyReceiver(), press("9", 5000)[-3:]) == "9"


def test_a_short_press_of_only_end_packets():
    short = [(payload(3, FRAME, end=True), 777)] * 3
    assert feed(KeyReceiver(), short) == "3"


def test_a_late_packet_of_the_previous_press_is_not_a_new_key():
    first, second = press("1", 1000), press("2", 50000)
    late_end = first[-1]
    packets = first[:2] + second[:2] + [late_end] + second[2:]
    assert feed(KeyReceiver(), packets) == "12"


def test_packets_reordered_within_a_press():
    packets = press("4", 9000)
    packets[0], packets[1] = packets[1], packets[0]
    assert feed(KeyReceiver(), packets) == "4"


def test_a_long_press_sent_as_segments_is_one_key():
    # 3 s at 48 kHz: more than twice the 16-bit duration, so three segments, each starting
    # where the previous ended (RFC 4733 section 2.5.1.3, as libwebrtc sends it).
    total, start, packets = 3 * 48000, 100_000, []
    segment_start, sent = start, 0
    for elapsed in range(FRAME, total + 1, FRAME):
        if elapsed - (segment_start - start) > 0xFFFF:
            packets.append((payload(8, 0xFFFF), segment_start))
            segment_start += 0xFFFF
        packets.append((payload(8, elapsed - (segment_start - start)), segment_start))
        sent = elapsed
    packets += [(payload(8, sent - (segment_start - start), end=True), segment_start)] * 3
    assert len({ts for _, ts in packets}) == 3
    receiver = KeyReceiver()
    assert feed(receiver, packets) == "8"
    assert feed(receiver, press("8", segment_start + 2 * 48000)) == "8"  # a new press


def test_the_same_key_after_a_full_length_press_that_ended_is_a_new_key():
    receiver = KeyReceiver()
    ended = [(payload(6, 0xFFFF, end=True), 1000)] * 3
    assert feed(receiver, ended + press("6", 1000 + 0xFFFF + 4800)) == "66"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x01", b"\x01\x02\x03", payload(16, 800), payload(255, 800, end=True)],
)
def test_garbage_is_ignored_and_changes_nothing(garbage):
    receiver = KeyReceiver()
    packets = press("1", 1000)
    mixed = [*packets[:2], (garbage, 1000), (garbage, 2000), *packets[2:], *press("2", 2000)]
    assert feed(receiver, mixed) == "12"


def test_random_bytes_never_raise():
    rng = random.Random(4733)
    receiver = KeyReceiver()
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 9))
        key = receiver.feed(data, rng.randrange(0, 2**32))
        assert key is None or key in KEYS
