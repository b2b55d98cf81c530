"""SIP phones call app users through the SIP front and the pjsua2 worker pool: real clients
(baresip, sipp), audio checked by its spectrum on both sides."""

from __future__ import annotations

import asyncio

from tests.audio import band_energy
from tests.peers import SinePeer
from tests.sip_peers import Baresip, account, free_udp_port


async def test_a_sip_phone_calls_an_app_user_and_both_hear_each_other(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        bob = await svc.client().sign_up("bob")
        device = await bob.events()
        alice = await svc.client().sign_up("alice", display_name="Alice Li")
        await alice.ok("PUT", "/v1/me/sip-password", json={"password": "alice-desk-pw"})
        line = account("alice", "alice-desk-pw", sip_port)
        phone = Baresip(tmp_path / "baresip", freq=500, seconds=12, account=line)
        await phone.dial(f"sip:bob@127.0.0.1:{sip_port}")
        peer = SinePeer(880)
        try:
            incoming = await device.next("call.incoming", timeout=15)
            # Her desk phone answered our challenge with her SIP password: it calls as her.
            assert incoming["from"] == "alice" and incoming["from_display"] == "Alice Li"
            assert incoming["to"] == "bob"
            call_id = incoming["call_id"]
            await asyncio.sleep(1.0)  # the phone hears our ringback as early media meanwhile
            answer = await bob.ok(
                "POST",
                f"/v1/calls/{call_id}/answer",
                json={"sdp": await peer.offer(), "device_id": device.device_id},
            )
            await peer.accept_answer(answer["sdp"])
            await peer.wait_connected()
            await peer.wait_for_audio(500, timeout=10)  # the phone's tone, through PCMU
            await asyncio.sleep(2.0)  # the phone hears our 880 Hz meanwhile
            await bob.ok("POST", f"/v1/calls/{call_id}/hangup")
            await device.state(call_id, "ended")
            assert await phone.wait(20) == 0
            heard, rate = phone.heard()
            assert len(heard) > rate * 2, phone.log()[-2000:]
            # the last two seconds before the hang-up are mostly the app user's 880 Hz
            assert band_energy(heard[-2 * rate :], rate, 880, 60) > 0.5
            # and before the answer the phone heard the ringback (450 Hz, region cn)
            assert band_energy(heard[:rate], rate, 450, 60) > 0.3
            view = await bob.ok("GET", f"/v1/calls/{call_id}")
            assert view["state"] == "ended" and view["reason"] == "completed"
            assert view["from"] == "alice"
        finally:
            await peer.close()
            await phone.stop()
            await bob.close()
