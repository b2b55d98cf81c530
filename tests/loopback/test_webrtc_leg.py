"""WebRtcLeg against real aiortc clients over 127.0.0.1: what the caller hears, relays that
never decode, offers from real browsers, and nothing left behind after close."""

from __future__ import annotations

import asyncio
import csv
import itertools
import os
import re
import threading
import time

import aiortc.rtcrtpreceiver
import numpy as np
import pytest
from aiortc.sdp import SessionDescription

from tests.audio import band_energy, on_off_pattern
from tests.corpus import shared_data
from tests.peers import RATE, SinePeer
from voice.errors import BadSdp
from voice.media import tones
from voice.media.opus import encode_loop
from voice.webrtc import WebRtcConfig, WebRtcLeg

SDP_DIR = shared_data("sdp")
CONFIG = WebRtcConfig(media_host="127.0.0.1")


async def until(condition, timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.02)


async def call(peer: SinePeer, label: str) -> WebRtcLeg:
    leg = await WebRtcLeg.accept(await peer.offer(), config=CONFIG, label=label)
    await peer.accept_answer(leg.answer_sdp)
    return leg


@pytest.fixture(scope="module")
def ringback_cn():
    return encode_loop(tones.synthesize(tones.RINGBACK["cn"]))


# -- (a) a clip, as the caller hears it ------------------------------------------------------


async def test_caller_hears_the_ringback_cadence(ringback_cn):
    peer = SinePeer(600)
    leg = await WebRtcLeg.accept(await peer.offer(), config=CONFIG, label="ringback")
    payloads: list[tuple[bytes, int]] = []
    leg.on_audio = lambda payload, timestamp: payloads.append((payload, timestamp))
    try:
        leg.play(ringback_cn)
        await peer.accept_answer(leg.answer_sdp)
        assert await leg.wait_connected(15)
        await peer.wait_for_audio(450, timeout=15)
        # 6.2 s from the first packet: 1 s on, 4 s off, then the next burst.
        await peer.wait_heard(6.2, timeout=20)
        pcm = peer.received_pcm()
        assert band_energy(pcm[: RATE // 2], RATE, 450) > 0.9
        runs = on_off_pattern(pcm, RATE, 450, min_run_ms=200)
        assert runs[0][0] and runs[1][0] is False and runs[2][0], runs
        assert abs(runs[0][1] - 1000) <= 250, runs
        assert abs(runs[1][1] - 4000) <= 250, runs
        assert leg.first_packet_sent_monotonic is not None
        assert leg.packets_sent > 4 * 50  # fewer than 6 s worth if a loaded loop skipped
        assert leg.packets_received == len(payloads) > 0  # the caller's sine, undecoded
        timestamps = [timestamp for _, timestamp in payloads]
        steps = [(b - a) % 2**32 for a, b in itertools.pairwise(timestamps)]
        assert all(step % 960 == 0 and 0 < step < 50 * 960 for step in steps)
    finally:
        await leg.close()
        await peer.close()


# -- (b) a bridged call: relay both ways, no decoding on the server -----------------------


async def test_relay_both_ways_without_decoding(monkeypatch, ringback_cn):
    decoders = []
    stock = aiortc.rtcrtpreceiver.get_decoder

    def counting_get_decoder(codec):
        decoders.append(codec.name)
        return stock(codec)

    monkeypatch.setattr(aiortc.rtcrtpreceiver, "get_decoder", counting_get_decoder)
    a, b = SinePeer(600), SinePeer(1000)
    la = await call(a, "call-a")
    lb = await call(b, "call-b")
    try:
        la.play(ringback_cn)  # the caller hears ringback until the bridge
        await a.wait_for_audio(450, timeout=15)
        await until(lambda: lb.packets_received > 0, 15, "callee media")
        before_bridge = la.packets_received

        def broken_mixer(payload: bytes, timestamp: int) -> None:
            raise RuntimeError("a bug downstream must not cut the call")

        la.on_audio = broken_mixer
        la.relay_to(lb)
        lb.relay_to(la)
        await a.wait_for_audio(1000, timeout=10)
        await b.wait_for_audio(600, timeout=10)
        await a.wait_heard(1.0, since_s=time.monotonic())
        heard_by_a = a.received_pcm()[-RATE:]
        heard_by_b = b.received_pcm()[-RATE:]
        assert band_energy(heard_by_a, RATE, 1000) > 0.9
        assert band_energy(heard_by_a, RATE, 600) < 0.01
        assert band_energy(heard_by_b, RATE, 600) > 0.9
        assert band_energy(heard_by_b, RATE, 1000) < 0.01

        # The switch from ringback to relayed audio kept a's timeline going forward, without
        # the jump to b's random timestamp origin (a loaded loop may skip a few frames).
        steps = np.diff([pts for _, pts, _ in a.chunks])
        assert steps.min() > 0 and steps.max() < RATE, sorted(set(steps.tolist()))

        # Every payload b sends is one a received after the bridge (lb plays no clip).
        relayed = la.packets_received - before_bridge
        assert abs(lb.packets_sent - relayed) <= 12
        assert la.audio_errors == relayed > 0
        # Only the two clients decode: no decoder, no decoder thread for the server legs.
        assert sorted(decoders) == ["opus", "opus"]
        names = [t.name for t in threading.enumerate()]
        assert names.count("audio-decoder") == 2, names
    finally:
        for party in (la, lb, a, b):
            await party.close()


async def test_relay_stops_and_the_clip_resumes(ringback_cn):
    a, b = SinePeer(600), SinePeer(1000)
    la, lb = await call(a, "resume-a"), await call(b, "resume-b")
    try:
        busy = encode_loop(tones.synthesize(tones.BUSY["cn"]))
        la.play(busy)
        lb.relay_to(la)  # b's 1000 Hz takes precedence over the busy tone
        await a.wait_for_audio(1000, timeout=15)
        lb.relay_to(None)
        since = time.monotonic()
        await a.wait_heard(1.5, since_s=since, timeout=10)
        assert band_energy(a.received_pcm(since)[-RATE:], RATE, 450) > 0.8
    finally:
        for party in (la, lb, a, b):
            await party.close()


async def test_on_closed_reports_the_peer_hanging_up():
    peer = SinePeer(600)
    leg = await call(peer, "hangup")
    reasons: list[str] = []
    leg.on_closed = reasons.append
    try:
        await until(lambda: leg.packets_received > 0, 15, "media")
        await peer.close()
        await until(lambda: reasons, 10, "on_closed")
        assert reasons == ["closed"]
    finally:
        await leg.close()
        await peer.close()
    assert reasons == ["closed"]  # once, and not again for our own close()


# -- (c) offers from the field and garbage -----------------------------------------------------


def corpus() -> list[tuple[str, str]]:
    with (SDP_DIR / "index.tsv").open() as index:
        return [(row["file"], row["expectation"]) for row in csv.DictReader(index, delimiter="\t")]


def usable_audio(sdp: str) -> bool:
    """Independent of the code under test: Opus, DTLS-SRTP and a fingerprint somewhere."""
    return bool(
        re.search(r"^a=rtpmap:\d+ opus/48000", sdp, re.M | re.I)
        and re.search(r"^a=fingerprint:", sdp, re.M)
        and re.search(r"^m=audio [1-9]\d* [A-Z/]*SAVPF? ", sdp, re.M)
    )


@pytest.mark.parametrize(("name", "expectation"), corpus())
async def test_offer_corpus(name, expectation):
    sdp = (SDP_DIR / name).read_text()
    must_refuse = expectation in ("parse-then-reject-for-webrtc",) or name.startswith("malformed")
    try:
        leg = await WebRtcLeg.accept(sdp, config=CONFIG, label=name)
    except BadSdp as exc:
        assert must_refuse or expectation != "parse" or not usable_audio(sdp), exc.message
        return
    try:
        assert not must_refuse
        check_answer(sdp, leg.answer_sdp)
    finally:
        await leg.close()


def check_answer(offer: str, answer: str) -> None:
    SessionDescription.parse(answer)  # a parser we do not own reads it
    offered = re.findall(r"^m=(\w+) (\d+)", offer, re.M)
    answered = re.findall(r"^m=(\w+) (\d+) \S+ ([^\r\n]*)", answer, re.M)
    assert [kind for kind, _ in offered] == [kind for kind, _, _ in answered]
    audio = [i for i, (kind, port, _) in enumerate(answered) if kind == "audio" and port != "0"]
    assert len(audio) == 1
    for i, (_, port, fmt) in enumerate(answered):
        assert (port != "0") == (i == audio[0])
        if i == audio[0]:
            # Opus, and telephone-event (RFC 4733 keys) when offered at 48 or 8 kHz
            opus, *events = fmt.split()
            assert re.search(rf"^a=rtpmap:{opus} opus/48000/2\r?$", answer, re.M)
            keys = re.search(r"^a=rtpmap:\d+ telephone-event/(48000|8000)\b", offer, re.M | re.I)
            assert len(events) == (1 if keys else 0)
            for pt in events:
                assert re.search(rf"^a=rtpmap:{pt} telephone-event/{keys[1]}\r?$", answer, re.M)
    assert "a=candidate:" in answer and "127.0.0.1" in answer
    assert "stun.l.google.com" not in answer


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        42,
        b"v=0\r\n",
        "",
        "   ",
        "garbage",
        "v=0\r\n",
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
        "\x00\xff" * 100,
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 \r\na=rtpmap:111 opus/48000/2\r\n",
    ],
)
async def test_garbage_is_bad_sdp(garbage):
    with pytest.raises(BadSdp):
        await WebRtcLeg.accept(garbage, config=CONFIG, label="garbage")


async def test_aiortc_offer_with_video_gets_audio_only():
    peer = SinePeer(600)
    peer.pc.addTransceiver("video")
    try:
        offer = await peer.offer()
        leg = await WebRtcLeg.accept(offer, config=CONFIG, label="av")
        try:
            check_answer(offer, leg.answer_sdp)
        finally:
            await leg.close()
    finally:
        await peer.close()


async def test_an_audio_less_offer_is_refused():
    text = (SDP_DIR / "webrtc-chromium120-offer-audio-video-bundle.sdp").read_text()
    video_only = text[: text.index("m=audio")] + text[text.index("m=video") :]
    with pytest.raises(BadSdp, match="no audio"):
        await WebRtcLeg.accept(video_only, config=CONFIG, label="video-only")


# -- (d) nothing left behind ----------------------------------------------------------------


def resources() -> tuple[int, int, int]:
    # The default executor's workers (aiortc's stock encoder in the client) persist by
    # design and are bounded; everything else must come back to its baseline.
    threads = [t for t in threading.enumerate() if not t.name.startswith("asyncio_")]
    return len(threads), len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd"))


async def one_cycle(index: int, clip) -> None:
    peer = SinePeer(500)
    leg = await call(peer, f"cycle-{index}")
    leg.play(clip)
    await until(lambda: leg.packets_received > 0 and peer.chunks, 15, "two-way media")
    await leg.close()
    await leg.close()  # idempotent
    await peer.close()


async def test_twenty_calls_leave_nothing_behind(ringback_cn):
    await one_cycle(-1, ringback_cn)  # warm-up: lazily created pools and caches
    baseline = resources()
    for index in range(20):
        await one_cycle(index, ringback_cn)

    def settled() -> bool:
        threads, tasks, fds = resources()
        return threads <= baseline[0] and tasks <= baseline[1] and fds <= baseline[2] + 2

    try:
        await until(settled, 10, "resources back to baseline")
    except TimeoutError:
        pytest.fail(f"baseline {baseline}, now {resources()}")
    assert [t.name for t in threading.enumerate() if t.name == "audio-decoder"] == []
