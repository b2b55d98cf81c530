"""Trunks between two real Chorus servers: A's trunk "carrier" registers to B with digest
(B plays the carrier: a user with a SIP password), carries A's calls to numbers out to B
(answering B's 407 challenge), and brings B's calls in to A's user."""

from __future__ import annotations

from tests.peers import SinePeer
from tests.service import ADMIN_KEY
from tests.sip_peers import free_udp_port
from tests.waiting import until


async def test_a_trunk_registers_and_carries_calls_both_ways(start_service, tmp_path):
    port_a, port_b = free_udp_port(), free_udp_port()
    async with (
        start_service(sip_port=port_b, sip_guests=False, data_dir=tmp_path / "b") as carrier,
        start_service(sip_port=port_a, data_dir=tmp_path / "a") as node,
    ):
        line = await carrier.client().sign_up("a-trunk")
        await line.ok("PUT", "/v1/me/sip-password", json={"password": "trunk-secret"})
        line_id = (await line.ok("GET", "/v1/me"))["id"]
        bob = await node.client().sign_up("bob")
        bob_app = await bob.events()
        admin = node.client(ADMIN_KEY)
        bad = await admin.request("PUT", "/v1/sip/trunks/carrier", json={"proxy": "not a host!"})
        assert bad.status_code == 422
        created = await admin.ok(
            "PUT",
            "/v1/sip/trunks/carrier",
            json={
                "proxy": f"127.0.0.1:{port_b}",
                "username": "a-trunk",
                "password": "trunk-secret",
                "register": True,
                "expires": 120,
                "prefixes": ["+", ""],
                "inbound_to": "bob",
            },
        )
        assert created["password"] == "********"  # never shown back

        # 1. The trunk registers (digest) and B sees A as a-trunk's phone.
        async def registered():
            trunks = await admin.ok("GET", "/v1/sip/trunks")
            return trunks[0]["status"] == "registered"

        await until(registered, timeout=20, every=0.2)
        assert len(await carrier.runtime.sip.phones(line_id)) == 1

        # 2. A's user dials a number: out through the trunk, B challenges (guests are off on
        # B), A's worker answers with the trunk's credentials, B's hotline 114 answers.
        alice = await node.client().sign_up("alice")
        alice_events = await alice.events()
        peer = SinePeer(700)
        try:
            placed = await alice.ok(
                "POST", "/v1/calls", 201, json={"to": "tel:114", "sdp": await peer.offer()}
            )
            await peer.accept_answer(placed["sdp"])
            call_id = placed["call_id"]
            await alice_events.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "answered"
            )
            await peer.wait_connected()
            await peer.wait_heard(1.5)  # the hotline's greeting reaches alice through B and A
            await alice.ok("POST", f"/v1/calls/{call_id}/hangup")
        finally:
            await peer.close()
        stats = await carrier.client(ADMIN_KEY).ok("GET", "/v1/hotlines/114/stats")
        assert stats["calls"] == 1

        # 3. B's user calls a-trunk: B rings A's registration, A takes it (it comes from its
        # trunk's proxy: no challenge) and rings bob, its inbound_to.
        carol = await carrier.client().sign_up("carol")
        carol_events = await carol.events()
        carol_peer, bob_peer = SinePeer(500), SinePeer(900)
        try:
            placed = await carol.ok(
                "POST", "/v1/calls", 201, json={"to": "a-trunk", "sdp": await carol_peer.offer()}
            )
            await carol_peer.accept_answer(placed["sdp"])
            incoming = await bob_app.next("call.incoming", timeout=20)
            answer = await bob.ok(
                "POST",
                f"/v1/calls/{incoming['call_id']}/answer",
                json={"sdp": await bob_peer.offer(), "device_id": bob_app.device_id},
            )
            await bob_peer.accept_answer(answer["sdp"])
            await carol_events.next(
                "call.state",
                lambda e: e["call_id"] == placed["call_id"] and e["state"] == "answered",
            )
            await bob_peer.wait_for_audio(500, timeout=15)  # carol, through both servers
            await carol_peer.wait_for_audio(900, timeout=15)  # and bob, back
            await bob.ok("POST", f"/v1/calls/{incoming['call_id']}/hangup")
            await carol_events.next(
                "call.state",
                lambda e: e["call_id"] == placed["call_id"] and e["state"] == "ended",
            )
        finally:
            await carol_peer.close()
            await bob_peer.close()

        # Removing the trunk unregisters it on B.
        await admin.ok("DELETE", "/v1/sip/trunks/carrier")
        await until(lambda: _no_phones(carrier, line_id), timeout=10, every=0.2)
        for client in (bob, alice, carol, line):
            await client.close()


async def _no_phones(service, user_id: str) -> bool:
    return not await service.runtime.sip.phones(user_id)
