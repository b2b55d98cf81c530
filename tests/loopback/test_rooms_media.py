"""Audio rooms through the real service: aiortc peers and plain-RTP endpoints over loopback,
each sending its own tone; what each one hears is checked by its spectrum."""

from __future__ import annotations

import asyncio
import contextlib
import time

import av
import numpy as np

from tests.audio import band_rms
from tests.peers import SinePeer
from tests.rtp_peer import RtpPeer
from tests.waiting import until

RATE = 48000


@contextlib.asynccontextmanager
async def closing(*things):
    try:
        yield things
    finally:
        for thing in things:
            await thing.close()


async def join(client, room_id: str, peer: SinePeer, **extra) -> str:
    body = {"sdp": await peer.offer(), **extra}
    joined = await client.ok("POST", f"/v1/rooms/{room_id}/participants", 201, json=body)
    await peer.accept_answer(joined["sdp"])
    return joined["participant_id"]


def tone_db(pcm: np.ndarray, freq: float, rate: int = RATE) -> float:
    """In-band level of `freq` in dB (int16 RMS units), floor -40 dB."""
    return 20 * np.log10(max(band_rms(pcm, rate, freq, width_hz=25), 0.01))


async def settle(peers, freqs_heard, timeout=15.0):
    """Wait until every peer hears every tone it should."""
    deadline = time.monotonic() + timeout
    for peer, freqs in zip(peers, freqs_heard, strict=True):
        for freq in freqs:
            await peer.wait_for_audio(freq, timeout=max(1.0, deadline - time.monotonic()))


def _metrics(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page."""
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if line and not line.startswith("#") and "{" not in name:
            found[name] = float(value)
    return found


def heard(peer, since: float) -> np.ndarray:
    return peer.received_pcm(since_s=since)


async def test_everyone_hears_the_others_never_themselves_then_mute_and_kick(service):
    # hears() needs one tone to hold half the energy: wait per tone with a lower bar below.
    freqs = [500.0, 700.0, 900.0, 1100.0]
    owner = await service.client().sign_up("owner")
    guests = [await service.client().sign_up(f"guest{i}") for i in range(3)]
    owner_events = await owner.events()
    room = await owner.ok("POST", "/v1/rooms", 201, json={"name": "standup", "max_speakers": 4})
    room_id = room["room_id"]
    async with closing(*[SinePeer(f, level=0.25) for f in freqs]) as peers:
        pids = []
        for client, peer in zip([owner, *guests], peers, strict=True):
            pids.append(await join(client, room_id, peer))
        for pid in pids:
            event = await owner_events.next(
                "room.participant_joined", lambda e, pid=pid: e["participant_id"] == pid
            )
            assert event["room_id"] == room_id and event["display"]
        for peer in peers:
            await peer.wait_connected()

        mark = await _wait_mix(peers, freqs)
        for peer, own in zip(peers, freqs, strict=True):
            pcm = heard(peer, mark)
            others = [tone_db(pcm, f) for f in freqs if f != own]
            assert min(others) > 40, (own, others)  # every other tone is there
            assert tone_db(pcm, own) < min(others) - 20, (own, tone_db(pcm, own), others)
        speaking = await owner_events.next(
            "room.speaking", lambda e: len(e["participant_ids"]) == 4, timeout=5
        )
        assert set(speaking["participant_ids"]) == set(pids)
        view = await owner.ok("GET", f"/v1/rooms/{room_id}")
        assert set(view["speaking"]) == set(pids) and len(view["participants"]) == 4

        # The moderator mutes guest0: nobody hears 700 Hz any more.
        await owner.ok("PATCH", f"/v1/rooms/{room_id}/participants/{pids[1]}", json={"muted": True})
        await owner_events.next("room.participant_muted", lambda e: e["participant_id"] == pids[1])
        await asyncio.sleep(0.3)
        mark = time.monotonic()
        await peers[0].wait_heard(1.0, since_s=mark)
        pcm = heard(peers[0], mark)
        assert tone_db(pcm, 700.0) < tone_db(pcm, 900.0) - 30
        assert tone_db(pcm, 900.0) > 40

        # Kick guest1: it leaves the mix and the room.
        kicked = await owner.ok("DELETE", f"/v1/rooms/{room_id}/participants/{pids[2]}")
        assert kicked["reason"] == "kicked"
        left = await owner_events.next(
            "room.participant_left", lambda e: e["participant_id"] == pids[2]
        )
        assert left["reason"] == "kicked"
        await asyncio.sleep(0.3)
        mark = time.monotonic()
        await peers[0].wait_heard(1.0, since_s=mark)
        pcm = heard(peers[0], mark)
        assert tone_db(pcm, 900.0) < tone_db(pcm, 1100.0) - 30
        view = await owner.ok("GET", f"/v1/rooms/{room_id}")
        assert pids[2] not in {p["participant_id"] for p in view["participants"]}
        rooms = service.runtime.rooms

        async def scrape() -> dict[str, float]:
            return _metrics((await owner.request("GET", "/metrics")).text)

        # Media workers report their figures once a second: wait for the kick to show.
        await until(lambda: _mixing(scrape, rooms=1, participants=3), timeout=10, every=0.2)
        scraped = await scrape()
        assert scraped["chorus_mixer_ticks_total"] > 50
        assert scraped["chorus_mixer_encodes_total"] > 0
        # guest2 hangs up (closes its peer connection): it leaves the room by itself.
        await peers[3].pc.close()
        gone = await owner_events.next(
            "room.participant_left", lambda e: e["participant_id"] == pids[3], timeout=10
        )
        assert gone["reason"] == "disconnected"
        await owner.ok("DELETE", f"/v1/rooms/{room_id}")
        await owner_events.next("room.ended", lambda e: e["room_id"] == room_id)
    assert rooms.open_legs == 0 and not rooms.media.is_open(room_id)
    await until(lambda: _mixing(scrape, rooms=0, participants=0), timeout=10, every=0.2)


async def _mixer_counts(client) -> tuple[float, float]:
    scraped = _metrics((await client.request("GET", "/metrics")).text)
    return scraped["chorus_mixer_ticks_total"], scraped["chorus_mixer_encodes_total"]


async def _counted_since(client, before: tuple[float, float], *, ticks: int) -> bool:
    return (await _mixer_counts(client))[0] >= before[0] + ticks


async def _mixing(scrape, *, rooms: int, participants: int) -> bool:
    scraped = await scrape()
    return (
        scraped.get("chorus_rooms_mixed") == rooms
        and scraped.get("chorus_room_participants") == participants
    )


async def _wait_mix(peers, freqs, seconds: float = 1.0) -> float:
    """Wait until each peer hears all the others' tones; returns the start of a clean window."""
    deadline = time.monotonic() + 20
    while True:
        mark = time.monotonic()
        for peer in peers:
            await peer.wait_heard(seconds, since_s=mark, timeout=10)
        ok = True
        for peer, own in zip(peers, freqs, strict=True):
            pcm = heard(peer, mark)
            if min(tone_db(pcm, f) for f in freqs if f != own) <= 40:
                ok = False
        if ok:
            return mark
        if time.monotonic() > deadline:
            raise AssertionError("the peers never heard each other")


async def test_six_talkers_with_k3_listeners_hear_the_three_loudest(service):
    # Plain-RTP endpoints (a few microseconds a packet in this process, where aiortc peers
    # would cost a good part of a core): six talkers and a listener.
    owner = await service.client().sign_up("owner")
    room_id = (await owner.ok("POST", "/v1/rooms", 201, json={"max_speakers": 3}))["room_id"]
    # The loud ones' sum stays under the limiter's knee, and the soft tones sit away from
    # every 2nd/3rd-order product of the loud ones (what Opus and a limiter could add).
    loud = {520.0: 0.22, 730.0: 0.18, 950.0: 0.15}
    soft = {1320.0: 0.05, 1570.0: 0.04, 1790.0: 0.035}  # at least 9 dB under the loud ones
    talkers = [RtpPeer("opus", f, level) for f, level in {**soft, **loud}.items()]
    listener = RtpPeer("opus", 0.0, 0.0)
    pids = {}
    async with closing(listener, *talkers):
        for peer in (listener, *talkers):  # the soft ones join first: they must give way
            joined = await owner.ok(
                "POST",
                f"/v1/rooms/{room_id}/rtp",
                201,
                json={"host": peer.host, "port": peer.port, "codec": "opus"},
            )
            pids[joined["participant_id"]] = peer.freq
            peer.start(joined["server_host"], joined["server_port"])

        async def speakers() -> set[float]:
            view = await owner.ok("GET", f"/v1/rooms/{room_id}")
            return {pids[p] for p in view["speaking"]}

        deadline = time.monotonic() + 15
        while await speakers() != set(loud):
            assert time.monotonic() < deadline, await speakers()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # what the soft ones said before is played out
        before = await _mixer_counts(owner)
        mark = time.monotonic()
        await listener.wait_packets(len(listener.received) + 50, timeout=30)
        pcm = listener.received_pcm(since_s=mark)
        quietest = min(tone_db(pcm, freq) for freq in loud)
        assert quietest > 45, [tone_db(pcm, freq) for freq in loud]
        for freq in soft:  # not mixed: only the codec's noise floor is there
            assert tone_db(pcm, freq) < quietest - 25, (freq, tone_db(pcm, freq), quietest)
        # K + 1 encodes a tick, whatever the room size (figures come once a second).
        await until(lambda: _counted_since(owner, before, ticks=50), timeout=10, every=0.2)
        after = await _mixer_counts(owner)
        assert (after[1] - before[1]) <= 4 * (after[0] - before[0])
        speaking = (await owner.ok("GET", f"/v1/rooms/{room_id}"))["speaking"]
        assert {pids[p] for p in speaking} == set(loud)


async def test_a_plain_rtp_pcmu_participant_hears_and_is_heard(service):
    owner = await service.client().sign_up("owner")
    room_id = (await owner.ok("POST", "/v1/rooms", 201, json={}))["room_id"]
    gateway = RtpPeer("pcmu", 1000.0, 0.3)
    async with closing(SinePeer(600.0), gateway) as (app, _):
        await join(owner, room_id, app)
        joined = await owner.ok(
            "POST",
            f"/v1/rooms/{room_id}/rtp",
            201,
            json={"host": gateway.host, "port": gateway.port, "codec": "pcmu"},
        )
        assert joined["server_host"] == "127.0.0.1"
        gateway.start(joined["server_host"], joined["server_port"])
        await app.wait_for_audio(1000.0, timeout=15)  # the app hears the gateway
        await gateway.wait_packets(100, timeout=30)  # 2 s
        pcm8 = gateway.received_pcm(last=50)
        assert tone_db(pcm8, 600.0, 8000) > 45  # the gateway hears the app...
        assert tone_db(pcm8, 1000.0, 8000) < tone_db(pcm8, 600.0, 8000) - 25  # ...not itself
        assert {pt for _, pt, *_ in gateway.received} == {0}
        # Garbage at the media port is counted and dropped; the stream goes on.
        sent_before = len(gateway.received)
        for junk in (b"", b"\x00" * 5, b"\x40" + b"\x00" * 30, b"\x80\x08" + b"\x00" * 2000):
            gateway.send_raw(junk)
        await gateway.wait_packets(sent_before + 25, timeout=30)
        view = await owner.ok("GET", f"/v1/rooms/{room_id}")
        kinds = sorted((p["kind"], p["codec"]) for p in view["participants"])
        assert kinds == [("rtp", "pcmu"), ("webrtc", "opus")]


async def test_a_recording_holds_the_participants_tones(service, tmp_path):
    owner = await service.client().sign_up("owner")
    room_id = (await owner.ok("POST", "/v1/rooms", 201, json={"record": True}))["room_id"]
    talkers = [RtpPeer("opus", 500.0, 0.2), RtpPeer("pcma", 900.0, 0.2)]
    async with closing(*talkers):
        for talker in talkers:
            joined = await owner.ok(
                "POST",
                f"/v1/rooms/{room_id}/rtp",
                201,
                json={"host": talker.host, "port": talker.port, "codec": talker.codec},
            )
            talker.start(joined["server_host"], joined["server_port"])
        await talkers[0].wait_packets(100, timeout=30)
        await owner.ok("DELETE", f"/v1/rooms/{room_id}")
    recordings = await owner.ok("GET", f"/v1/rooms/{room_id}/recordings")
    assert len(recordings) == 1 and recordings[0]["duration_s"] > 1.5
    response = await owner.request("GET", recordings[0]["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "audio/ogg"
    path = tmp_path / "room.opus"
    path.write_bytes(response.content)
    with av.open(str(path)) as container:
        pcm = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        ).astype(np.float64)
    pcm = pcm * 32767 if np.abs(pcm).max() <= 1.0 else pcm
    window = pcm[-RATE:]
    assert tone_db(window, 500.0) > 45 and tone_db(window, 900.0) > 45
    latest = await owner.request("GET", f"/v1/rooms/{room_id}/recording")
    assert latest.content == response.content
