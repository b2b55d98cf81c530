"""Three Chorus nodes on loopback sharing one Redis and one PostgreSQL: the parties of a call
or a room each on a node of their own, every request landing wherever a load balancer puts it."""

from __future__ import annotations

import asyncio
import time

from tests.contract.test_nodes import CALLEE_HZ, CALLER_HZ, nodes
from tests.loopback.test_rooms_media import _wait_mix, heard, join, tone_db
from tests.peers import SinePeer
from tests.waiting import until

LOSER_HZ = 1400.0


async def _two_way(caller: SinePeer, callee: SinePeer) -> None:
    """Each hears the other's tone, loud, and not its own (nor the losing device's)."""
    await caller.wait_for_audio(CALLEE_HZ, timeout=30)
    await callee.wait_for_audio(CALLER_HZ, timeout=30)
    mark = time.monotonic()
    for peer in (caller, callee):
        await peer.wait_heard(1.0, since_s=mark, timeout=20)
    for peer, own, other in [(caller, CALLER_HZ, CALLEE_HZ), (callee, CALLEE_HZ, CALLER_HZ)]:
        pcm = heard(peer, mark)
        assert tone_db(pcm, other) > 40, (own, tone_db(pcm, other))
        assert tone_db(pcm, own) < tone_db(pcm, other) - 20, (own, tone_db(pcm, own))
        assert tone_db(pcm, LOSER_HZ) < tone_db(pcm, other) - 20, (own, tone_db(pcm, LOSER_HZ))


async def test_two_devices_on_two_nodes_answer_at_once_and_exactly_one_gets_the_call(
    tmp_path, redis_server, postgres_server
):
    """Alice's app is on node A and she calls through A (A carries the call). Bob's phone is
    on node B and his tablet on node C; both ring, and both answer at the same moment, each
    through its own node with its own offer. A runs both requests: one wins (200), the other
    is refused (409 `call_not_ringing`) and its device is told `answered_elsewhere`. Alice
    and the winner talk; bob hangs up through the third node (the loser's); the record is
    final through every node."""
    async with nodes(3, tmp_path, redis_server, postgres_server) as (node_a, node_b, node_c):
        alice = await node_a.client().sign_up("alice")
        bob_b = await node_b.client().sign_up("bob")
        bob_c = node_c.client(bob_b.token)
        alice_app = await alice.events("app")
        phone, tablet = await bob_b.events("phone"), await bob_c.events("tablet")
        bob_id = (await bob_b.ok("GET", "/v1/me"))["id"]

        async def a_sees_both_devices() -> bool:
            return await node_a.runtime.calls.presence.devices(bob_id) >= {"phone", "tablet"}

        await until(a_sees_both_devices, timeout=15)
        caller = SinePeer(CALLER_HZ)
        on_phone, on_tablet = SinePeer(CALLEE_HZ), SinePeer(CALLEE_HZ)
        try:
            created = await alice.ok(
                "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await caller.offer()}
            )
            await caller.accept_answer(created["sdp"])
            call_id = created["call_id"]
            path = f"/v1/calls/{call_id}"
            for device in (phone, tablet):
                incoming = await device.next("call.incoming", lambda e: e["call_id"] == call_id)
                assert (incoming["from"], incoming["to"]) == ("alice", "bob")

            async def both_ring() -> bool:
                live = await node_a.runtime.calls.registry.get(call_id)
                return live.call.ringing == {"phone", "tablet"}

            await until(both_ring, timeout=10)
            live = await node_c.runtime.calls.registry.get(call_id)
            assert live.node == node_a.runtime.nodes.node_id

            # Both offers are ready first, so that the two requests leave together.
            bodies = [
                {"sdp": await on_phone.offer(), "device_id": "phone"},
                {"sdp": await on_tablet.offer(), "device_id": "tablet"},
            ]
            responses = await asyncio.gather(
                bob_b.request("POST", path + "/answer", json=bodies[0]),
                bob_c.request("POST", path + "/answer", json=bodies[1]),
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200, 409], [(r.status_code, r.text) for r in responses]
            won = 0 if responses[0].status_code == 200 else 1
            lost = 1 - won
            refusal = responses[lost].json()["error"]
            assert refusal["code"] == "call_not_ringing", refusal
            winner, loser = [on_phone, on_tablet][won], [on_phone, on_tablet][lost]
            winner_device, loser_device = [phone, tablet][won], [phone, tablet][lost]
            third = [node_b, node_c][lost]  # neither alice's node nor the one that answered
            await winner.accept_answer(responses[won].json()["sdp"])

            ended = await loser_device.state(call_id, "ended")
            assert ended["reason"] == "answered_elsewhere"
            await winner_device.state(call_id, "answered")
            await alice_app.state(call_id, "answered")
            # Only the winner's leg was opened, by A, beside alice's; B and C carry nothing.
            legs = [n.runtime.calls.open_legs for n in (node_a, node_b, node_c)]
            assert legs == [2, 0, 0], legs
            assert loser.pc.connectionState != "connected"
            await _two_way(caller, winner)

            await third.client(bob_b.token).ok("POST", path + "/hangup")
            assert (await alice_app.state(call_id, "ended"))["reason"] == "completed"
            assert (await winner_device.state(call_id, "ended"))["reason"] == "completed"

            async def legs_closed() -> bool:
                return node_a.runtime.calls.open_legs == 0

            await until(legs_closed, timeout=10)
            # The losing device was told once that the call went elsewhere, and nothing else.
            states = [
                (e["state"], e.get("reason"))
                for e in loser_device.seen
                if e["type"] == "call.state" and e["call_id"] == call_id
            ]
            assert states == [("ended", "answered_elsewhere")], states
            assert not [
                e
                for e in winner_device.seen
                if e["type"] == "call.state" and e.get("reason") == "answered_elsewhere"
            ]
        finally:
            for peer in (caller, on_phone, on_tablet):
                await peer.close()
            await alice.close()
            await bob_b.close()
            await bob_c.close()

        # The record is final, read through every node by either party.
        for node in (node_a, node_b, node_c):
            for token in (alice.token, bob_b.token):
                client = node.client(token)
                history = await client.ok("GET", "/v1/calls")
                assert [(c["call_id"], c["from"], c["to"]) for c in history] == [
                    (call_id, "alice", "bob")
                ]
                assert (history[0]["state"], history[0]["reason"]) == ("ended", "completed")
                assert history[0]["answered_at"] and history[0]["ended_at"]
                view = await client.ok("GET", path)
                assert (view["state"], view["reason"]) == ("ended", "completed")


async def test_a_room_made_on_one_node_joined_through_two_others(
    tmp_path, redis_server, postgres_server
):
    """Alice creates a room through node A (A mixes it); bob joins through B and carol
    through C: both legs are A's, each hears the other and not itself; alice ends the room
    through C and both are told."""
    bob_hz, carol_hz = 600.0, 1000.0
    async with nodes(3, tmp_path, redis_server, postgres_server) as (node_a, node_b, node_c):
        alice = await node_a.client().sign_up("alice")
        bob = await node_b.client().sign_up("bob")
        carol = await node_c.client().sign_up("carol")
        bob_app, carol_app = await bob.events(), await carol.events()
        room_id = (await alice.ok("POST", "/v1/rooms", 201, json={"name": "ops"}))["room_id"]
        bob_peer, carol_peer = SinePeer(bob_hz, level=0.25), SinePeer(carol_hz, level=0.25)
        try:
            pids = {await join(bob, room_id, bob_peer), await join(carol, room_id, carol_peer)}
            legs = [n.runtime.rooms.open_legs for n in (node_a, node_b, node_c)]
            assert legs == [2, 0, 0], legs
            for peer in (bob_peer, carol_peer):
                await peer.wait_connected(timeout=30)
            mark = await _wait_mix([bob_peer, carol_peer], [bob_hz, carol_hz])
            for peer, own, other in [(bob_peer, bob_hz, carol_hz), (carol_peer, carol_hz, bob_hz)]:
                pcm = heard(peer, mark)
                assert tone_db(pcm, other) > 40, (own, tone_db(pcm, other))
                assert tone_db(pcm, own) < tone_db(pcm, other) - 20, (own, tone_db(pcm, own))
            for node in (node_a, node_b, node_c):
                view = await node.client(alice.token).ok("GET", f"/v1/rooms/{room_id}")
                assert {p["participant_id"] for p in view["participants"]} == pids

            await node_c.client(alice.token).ok("DELETE", f"/v1/rooms/{room_id}")
            for app in (bob_app, carol_app):
                ended = await app.next("room.ended", lambda e: e["room_id"] == room_id)
                assert ended["reason"] == "ended"
            legs = [n.runtime.rooms.open_legs for n in (node_a, node_b, node_c)]
            assert legs == [0, 0, 0], legs
            for node in (node_a, node_b, node_c):
                response = await node.client(alice.token).request("GET", f"/v1/rooms/{room_id}")
                assert response.status_code == 404, response.text
        finally:
            for peer in (bob_peer, carol_peer):
                await peer.close()
            for client in (alice, bob, carol):
                await client.close()
