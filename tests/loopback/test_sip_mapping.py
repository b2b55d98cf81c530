"""How calls end, both ways between SIP and the app, with sipp as the phone: an app user's
refusal becomes the SIP status a phone expects, and RFC 4733 keys from a phone drive the
hotline."""

from __future__ import annotations

import asyncio

import pytest

from tests import sipp
from tests.peers import SinePeer
from tests.service import ADMIN_KEY
from tests.sip_peers import free_udp_port

STATUS = {"declined": 603, "unreachable": 480, "no_answer": 408, "busy": 486}


def credentials_after_407() -> tuple[str, ...]:
    """An INVITE, our 407, its ACK, and the INVITE again with credentials (sipp's -au/-ap)."""
    return (
        sipp.request("INVITE", 1, user="erin", body=sipp.SDP),
        '  <recv response="100" optional="true"/>\n  <recv response="407" auth="true"/>\n',
        sipp.request("ACK", 1, user="erin", in_dialog=True, retrans=False),
        sipp.request("INVITE", 2, user="erin", body=sipp.SDP, extra="\n      [authentication]"),
    )


def authenticated_invite(final: int) -> str:
    """INVITE, answer our 407 with credentials (sipp's -au/-ap), expect `final`."""
    return sipp.scenario(
        *credentials_after_407(),
        '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
        '  <recv response="183" optional="true"/>\n',
        f'  <recv response="{final}"/>\n',
        sipp.request("ACK", 2, user="erin", in_dialog=True, retrans=False),
    )


def cancelled_while_ringing() -> str:
    """The authenticated INVITE, then CANCEL once it rings: 200 for the CANCEL, 487 for it."""
    ack = sipp.request("ACK", 2, user="erin", in_dialog=True, retrans=False)
    return sipp.scenario(
        *credentials_after_407(),
        '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
        '  <recv response="183"/>\n  <pause milliseconds="1000"/>\n',
        # CANCEL and the ACK of the 487 belong to the INVITE's transaction: its branch (the
        # INVITE is 5 scenario steps back from the CANCEL, 8 from the ACK).
        sipp.request("CANCEL", 2, user="erin").replace("[branch]", "[branch-5]"),
        '  <recv response="200"/>\n  <recv response="487"/>\n',
        ack.replace("[branch]", "[branch-8]"),
    )


async def test_a_phone_that_hangs_up_while_ringing_cancels_the_call(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        bob = await svc.client().sign_up("bob")
        erin = await svc.client().sign_up("erin")
        await erin.ok("PUT", "/v1/me/sip-password", json={"password": "erin-desk-pw"})
        device = await bob.events()
        credentials = ("-au", "erin", "-ap", "erin-desk-pw")
        code, errors = await sipp.run(
            tmp_path, cancelled_while_ringing(), "bob", sip_port, *credentials
        )
        assert code == 0, errors[-3000:]
        incoming = await device.next("call.incoming", lambda e: e["from"] == "erin")
        ended = await device.state(incoming["call_id"], "ended")
        assert ended["reason"] == "cancelled"
        await bob.close()


@pytest.mark.parametrize("case", list(STATUS))
async def test_an_app_users_refusal_is_the_sip_status_a_phone_expects(
    start_service, tmp_path, case
):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port, no_answer_timeout_s=3) as svc:
        bob = await svc.client().sign_up("bob")
        erin = await svc.client().sign_up("erin")
        await erin.ok("PUT", "/v1/me/sip-password", json={"password": "erin-desk-pw"})
        device = await bob.events() if case != "unreachable" else None
        peers: list[SinePeer] = []
        try:
            if case == "busy":  # bob is in an answered call with alice already
                alice = await svc.client().sign_up("alice")
                peers = [SinePeer(440), SinePeer(660)]
                placed = await alice.ok(
                    "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await peers[0].offer()}
                )
                await peers[0].accept_answer(placed["sdp"])
                answer = await bob.ok(
                    "POST",
                    f"/v1/calls/{placed['call_id']}/answer",
                    json={"sdp": await peers[1].offer(), "device_id": device.device_id},
                )
                await peers[1].accept_answer(answer["sdp"])
            credentials = ("-au", "erin", "-ap", "erin-desk-pw")
            xml = authenticated_invite(STATUS[case])
            run = asyncio.create_task(sipp.run(tmp_path, xml, "bob", sip_port, *credentials))
            if case == "declined":
                incoming = await device.next("call.incoming", lambda e: e["from"] == "erin")
                await bob.ok("POST", f"/v1/calls/{incoming['call_id']}/decline")
            code, errors = await run
            assert code == 0, errors[-3000:]
            history = await bob.ok("GET", "/v1/calls")
            from_erin = [c for c in history if c["from"] == "erin"]
            assert from_erin and from_erin[0]["reason"] == case
        finally:
            for peer in peers:
                await peer.close()
            await bob.close()


async def test_rfc_4733_keys_from_a_phone_drive_the_hotline(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port, hotline_inband_dtmf=False) as svc:
        xml = sipp.scenario(
            sipp.request("INVITE", 1, body=sipp.SDP),
            '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
            '  <recv response="183" optional="true"/>\n  <recv response="200" rtd="true"/>\n',
            sipp.request("ACK", 1, in_dialog=True, retrans=False),
            '  <pause milliseconds="2000"/>\n'  # the greeting starts; a key barges in
            '  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"/>'
            "</action></nop>\n"
            '  <pause milliseconds="3000"/>\n',
            sipp.request("BYE", 2, in_dialog=True),
            '  <recv response="200" crlf="true"/>\n',
        )
        code, errors = await sipp.run(tmp_path, xml, "114", sip_port)
        assert code == 0, errors[-3000:]
        admin = svc.client(ADMIN_KEY)
        for _ in range(100):  # the hotline closes its record of the call just after the BYE
            stats = await admin.ok("GET", "/v1/hotlines/114/stats")
            if "in_progress" not in stats["outcomes"]:
                break
            await asyncio.sleep(0.1)
        # Key 1 at the main menu, heard once (in-band detection is off: only RFC 4733).
        assert stats["options_chosen"].get("main:1") == 1, stats


def _reinvite(cseq: int, direction: str, expect: str) -> str:
    """A re-INVITE putting the call on hold (sendonly) or back (sendrecv); the 200 must
    answer with `expect` (recvonly / sendrecv)."""
    body = sipp.SDP.replace(
        "      a=fmtp:101 0-15\n", f"      a=fmtp:101 0-15\n      a={direction}\n"
    )
    return (
        sipp.request("INVITE", cseq, body=body, in_dialog=True)
        + '  <recv response="100" optional="true"/>\n'
        + '  <recv response="200"><action>'
        + f'<ereg regexp="a={expect}" search_in="body" check_it="true" assign_to="dummy"/>'
        + "</action></recv>\n"
        + sipp.request("ACK", cseq, in_dialog=True, retrans=False)
    )


async def test_hold_unhold_and_session_timers_are_answered(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        timers = "\n      Supported: timer\n      Session-Expires: 120;refresher=uac"
        xml = sipp.scenario(
            sipp.request("INVITE", 1, body=sipp.SDP, extra=timers),
            '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
            '  <recv response="183" optional="true"/>\n'
            '  <recv response="200"><action>'
            '<ereg regexp="[0-9]+" search_in="hdr" header="Session-Expires:" check_it="true" '
            'assign_to="expires"/></action></recv>\n',
            sipp.request("ACK", 1, in_dialog=True, retrans=False),
            '  <pause milliseconds="1000"/>\n',
            _reinvite(2, "sendonly", "recvonly"),  # hold
            '  <pause milliseconds="1000"/>\n',
            _reinvite(3, "sendrecv", "sendrecv"),  # and back
            '  <pause milliseconds="500"/>\n',
            # (sipp wants every variable used: echo what the checks matched)
            sipp.request("BYE", 4, in_dialog=True, extra="\n      X-Seen: [$expires] [$dummy]"),
            '  <recv response="200" crlf="true"/>\n',
        )
        code, errors = await sipp.run(tmp_path, xml, "114", sip_port)
        assert code == 0, errors[-3000:]
        assert svc.runtime.sip.pool.crashed == 0


async def test_twenty_concurrent_sip_calls_with_media(start_service, tmp_path):
    """CI-sized load (the benchmark goes to 100+): 20 sipp calls streaming PCMU to the
    hotline at once, all answered with media both ways, all ended cleanly."""
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port, sip_rate_per_source=1000) as svc:
        wav = tmp_path / "tone.wav"
        sipp.write_pcmu_wav(wav, 440, 12)
        xml = sipp.UAC_PCMU.read_text().replace("__WAV__", str(wav))
        options = ("-r", "10", "-d", "8000")
        run = asyncio.create_task(
            sipp.run(tmp_path, xml, "114", sip_port, *options, calls=20, timeout=90)
        )
        most = 0
        while not run.done():
            with_media = sum(1 for leg in svc.runtime.sip.legs if leg.media.is_set())
            most = max(most, with_media)
            await asyncio.sleep(0.2)
        code, errors = await run
        assert code == 0, errors[-3000:]
        assert most == 20
        stats = await svc.client(ADMIN_KEY).ok("GET", "/v1/hotlines/114/stats")
        assert stats["calls"] == 20
