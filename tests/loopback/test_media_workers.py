"""Media worker processes with real aiortc peers: where legs and rooms are placed, relaying
between workers, and what a worker's crash does to its calls and rooms."""

from __future__ import annotations

import asyncio
import time

import pytest

from conference.media import WorkerMedia
from conference.recording import RecordingStore
from tests.audio import band_energy, dominant_frequency
from tests.loopback.test_calls import CALLEE_HZ, CALLER_HZ, answer, peers, place, users
from tests.loopback.test_rooms_media import closing, join
from tests.peers import SinePeer
from tests.rtp_peer import RtpPeer
from tests.waiting import until
from voice.errors import BadSdp
from voice.workers import MediaWorkers, RemoteLeg

WORKER_CONFIG = {
    "media_host": "127.0.0.1",
    "ice_servers": [],
    "rtp_port_min": 40000,
    "rtp_port_max": 49999,
    "engine": {"bitrate": 32000, "complexity": 10, "dtx": True},
    "log_level": "info",
}


async def hear_each_other(a: SinePeer, a_hz: float, b: SinePeer, b_hz: float) -> None:
    await a.wait_for_audio(b_hz, timeout=20)
    await b.wait_for_audio(a_hz, timeout=20)
    mark = time.monotonic()
    await a.wait_heard(1.0, since_s=mark, timeout=20)
    await b.wait_heard(1.0, since_s=mark, timeout=20)
    by_a, by_b = a.received_pcm(since_s=mark), b.received_pcm(since_s=mark)
    assert abs(dominant_frequency(by_a) - b_hz) < 15
    assert abs(dominant_frequency(by_b) - a_hz) < 15
    assert band_energy(by_a, 48000, a_hz) < 0.01  # never itself
    assert band_energy(by_b, 48000, b_hz) < 0.01


async def connected_call(caller_client, callee_client, callee_app, caller, callee) -> str:
    to = callee_client.username
    call_id = (await place(caller_client, to, caller))["call_id"]
    await callee_app.next("call.incoming", lambda e: e["call_id"] == call_id)
    await answer(callee_client, call_id, callee, device=callee_app.device_id)
    return call_id


async def test_a_calls_legs_share_a_worker_and_calls_spread_over_the_workers(start_service):
    async with start_service(media_workers=2) as service:
        workers = service.runtime.workers
        assert workers is not None and [link.load for link in workers.links] == [0, 0]
        alice, bob, carol, dave = await users(service, "alice", "bob", "carol", "dave")
        bob_phone, dave_phone = await bob.events(), await dave.events()
        async with peers(CALLER_HZ, CALLEE_HZ, CALLER_HZ, CALLEE_HZ) as (c1, b1, c2, b2):
            first = await connected_call(alice, bob, bob_phone, c1, b1)
            assert sorted(link.load for link in workers.links) == [0, 2]  # both legs together
            second = await connected_call(carol, dave, dave_phone, c2, b2)
            assert [link.load for link in workers.links] == [2, 2]  # the next on the idle one
            await hear_each_other(c1, CALLER_HZ, b1, CALLEE_HZ)
            await hear_each_other(c2, CALLER_HZ, b2, CALLEE_HZ)
            await alice.ok("POST", f"/v1/calls/{first}/hangup")
            await carol.ok("POST", f"/v1/calls/{second}/hangup")
        await until(lambda: _loads(workers, [0, 0]), timeout=10)


async def _loads(workers, expected: list[int]) -> bool:
    return [link.load for link in workers.links] == expected


async def test_legs_in_two_workers_are_bridged_over_loopback_rtp():
    """When a call's legs cannot share a worker, what each peer says still reaches the
    other, worker to worker."""
    workers = MediaWorkers(2, entry="api.media_worker", config=WORKER_CONFIG)
    await workers.start()
    try:
        async with peers(CALLER_HZ, CALLEE_HZ) as (a, b):
            one, two = workers.links
            leg_a = await RemoteLeg.open(one, "call_leg", await a.offer(), "call=x caller")
            leg_b = await RemoteLeg.open(two, "call_leg", await b.offer(), "call=x callee")
            await a.accept_answer(leg_a.answer_sdp)
            await b.accept_answer(leg_b.answer_sdp)
            assert await leg_a.wait_connected(20) and await leg_b.wait_connected(20)
            leg_a.relay_to(leg_b)
            leg_b.relay_to(leg_a)
            await hear_each_other(a, CALLER_HZ, b, CALLEE_HZ)
            for leg in (leg_a, leg_b):  # what each sent came over the other's bridge port
                stats = await leg.stats()
                assert stats["packets_sent"] > 40 and stats["bridged_in"] > 40, stats
            await leg_a.close()
            await leg_b.close()
            assert one.load == 0 and two.load == 0
    finally:
        await workers.close()


async def test_a_crashed_worker_ends_its_calls_failed_and_is_replaced(start_service):
    async with start_service(media_workers=2) as service:
        workers = service.runtime.workers
        alice, bob = await users(service, "alice", "bob")
        alice_app, bob_phone = await alice.events(), await bob.events()
        async with peers(CALLER_HZ, CALLEE_HZ) as (caller, callee):
            call_id = await connected_call(alice, bob, bob_phone, caller, callee)
            await hear_each_other(caller, CALLER_HZ, callee, CALLEE_HZ)
            (carrier,) = [link for link in workers.links if link.load]
            carrier.kill()
            killed = time.monotonic()
            for device in (alice_app, bob_phone):
                ended = await device.state(call_id, "ended", timeout=5)
                assert ended["reason"] == "failed"
            assert time.monotonic() - killed < 5
        view = await alice.ok("GET", f"/v1/calls/{call_id}")
        assert view["state"] == "ended" and view["reason"] == "failed"

        async def replaced() -> bool:
            return workers.restarts == 1 and all(link.alive for link in workers.links)

        await until(replaced, timeout=60, every=0.1)
        async with peers(CALLER_HZ, CALLEE_HZ) as (caller, callee):  # service goes on
            again = await connected_call(alice, bob, bob_phone, caller, callee)
            await hear_each_other(caller, CALLER_HZ, callee, CALLEE_HZ)
            await alice.ok("POST", f"/v1/calls/{again}/hangup")


async def test_a_crashed_worker_ends_its_rooms_with_an_event(start_service):
    async with start_service(media_workers=2) as service:
        workers = service.runtime.workers
        owner = await service.client().sign_up("owner")
        guest = await service.client().sign_up("guest")
        owner_events = await owner.events()
        room_id = (await owner.ok("POST", "/v1/rooms", 201, json={}))["room_id"]
        async with peers(600.0, 900.0) as (p1, p2):
            await join(owner, room_id, p1)
            await join(guest, room_id, p2)
            await hear_each_other(p1, 600.0, p2, 900.0)
            (mixer,) = [link for link in workers.links if link.load]
            assert mixer.load == 3  # the room and both legs, in one worker
            mixer.kill()
            ended = await owner_events.next(
                "room.ended", lambda e: e["room_id"] == room_id, timeout=5
            )
            assert ended["reason"] == "failed"
        response = await owner.request("GET", f"/v1/rooms/{room_id}")
        assert response.status_code == 404
        assert service.runtime.rooms.open_legs == 0


async def test_a_worker_runs_the_offer_it_is_given_or_says_why_not():
    """A bad offer fails in the worker as it would in-process: a 400 `bad_sdp`, no leg left."""
    workers = MediaWorkers(1, entry="api.media_worker", config=WORKER_CONFIG)
    await workers.start()
    try:
        (link,) = workers.links
        with pytest.raises(BadSdp) as refused:
            await RemoteLeg.open(link, "call_leg", "v=0\r\nnot an offer\r\n", "call=bad")
        assert refused.value.status == 400 and refused.value.code == "bad_sdp"
        assert link.load == 0 and link.alive
    finally:
        await workers.close()


async def test_participants_joining_a_new_room_at_once_share_its_one_rooms_host(tmp_path):
    """Five plain-RTP legs asked for at once for a room of a fresh worker: one rooms host
    is made there (not one per join), the room opens on it and every participant is mixed."""
    workers = MediaWorkers(1, entry="api.media_worker", config=WORKER_CONFIG)
    await workers.start()
    media = WorkerMedia(
        workers, recordings=RecordingStore(tmp_path / "recordings"), rtp_host="127.0.0.1"
    )
    peers_ = [RtpPeer("opus", 500.0 + 150 * i, 0.1) for i in range(5)]
    try:
        async with closing(*peers_):
            legs = await asyncio.gather(
                *(
                    media.rtp_leg(
                        "r1", remote_host=p.host, remote_port=p.port, codec="opus", label="r1"
                    )
                    for p in peers_
                )
            )
            assert workers.links[0].load == 6  # one rooms host, with five RTP legs
            await media.open_room("r1", 3, None)
            for i, (peer, leg) in enumerate(zip(peers_, legs, strict=True)):
                await media.attach("r1", f"p{i}", "opus", leg, False)
                peer.start("127.0.0.1", leg.local_port)
            for peer in peers_:
                await peer.wait_packets(50, timeout=20)
            for i, leg in enumerate(legs):
                await media.detach("r1", f"p{i}", leg)
            assert workers.links[0].load == 1
            await media.close_room("r1")
    finally:
        await workers.close()
