"""SIP callers join audio rooms at `sip:room-<id>@`: baresip (two-way audio, checked by its
spectrum on both sides) and sipp (the PIN typed as SIP INFO digits, a wrong one first)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.audio import band_energy
from tests.loopback.test_rooms_media import join
from tests.peers import SinePeer
from tests.sip_peers import Baresip, free_udp_port
from tests.sipp import write_pcmu_wav

HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "Desk 12" <sip:desk12@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>{to_tag}
      Call-ID: [call_id]
      CSeq: {cseq}
      Contact: <sip:desk12@[local_ip]:[local_port]>
      Max-Forwards: 70"""


def _request(method: str, cseq: int, body: str = "", content_type: str = "") -> str:
    headers = HEADERS.format(
        to_tag="" if method == "INVITE" else "[peer_tag_param]", cseq=f"{cseq} {method}"
    )
    typed = f"\n      Content-Type: {content_type}" if content_type else ""
    return (
        f'  <send retrans="500"><![CDATA[\n'
        f"      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n"
        f"      {headers}{typed}\n"
        f"      Content-Length: [len]\n\n{body}    ]]></send>\n"
    )


def pin_scenario(wav: Path, pins: list[str], talk_ms: int) -> str:
    """INVITE, then each PIN typed as SIP INFO (application/dtmf-relay) digits ending in `#`,
    then the WAV streamed for `talk_ms`, then BYE."""
    sdp = (
        "      v=0\n      o=user1 1 1 IN IP[local_ip_type] [local_ip]\n      s=-\n"
        "      c=IN IP[media_ip_type] [media_ip]\n      t=0 0\n"
        "      m=audio [media_port] RTP/AVP 0\n      a=rtpmap:0 PCMU/8000\n"
    )
    parts = [_request("INVITE", 1, sdp, "application/sdp")]
    parts.append(
        '  <recv response="100" optional="true"/>\n  <recv response="180" optional="true"/>\n'
        '  <recv response="183" optional="true"/>\n  <recv response="200"/>\n'
    )
    parts.append(_request("ACK", 1).replace(' retrans="500"', ""))
    parts.append(f'  <nop><action><exec rtp_stream="{wav},-1,0"/></action></nop>\n')
    cseq = 2
    for pin in pins:
        parts.append('  <pause milliseconds="2500"/>\n')  # the prompt starts meanwhile
        for key in pin + "#":
            body = f"      Signal={key}\n      Duration=160\n"
            parts.append(_request("INFO", cseq, body, "application/dtmf-relay"))
            parts.append('  <recv response="200"/>\n  <pause milliseconds="150"/>\n')
            cseq += 1
    parts.append(f'  <pause milliseconds="{talk_ms}"/>\n')
    parts.append(_request("BYE", cseq))
    parts.append('  <recv response="200" crlf="true"/>\n')
    return (
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="pin">\n'
        + "".join(parts)
        + "</scenario>\n"
    )


async def test_a_sip_phone_joins_a_room_hears_and_is_heard_then_is_kicked(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        owner = await svc.client().sign_up("owner")
        events = await owner.events()
        room = await owner.ok("POST", "/v1/rooms", 201, json={"name": "weekly"})
        room_id = room["room_id"]
        peer = SinePeer(880)
        phone = Baresip(tmp_path / "baresip", freq=500, seconds=30)
        try:
            await join(owner, room_id, peer)
            await peer.wait_connected()
            await phone.dial(f"sip:room-{room_id}@127.0.0.1:{sip_port}")
            joined = await events.next(
                "room.participant_joined", lambda e: e.get("kind") == "sip", timeout=20
            )
            pid = joined["participant_id"]
            await peer.wait_for_audio(500, timeout=15)  # the phone's tone, mixed for the owner
            view = await owner.ok("GET", f"/v1/rooms/{room_id}")
            sip_view = next(p for p in view["participants"] if p["participant_id"] == pid)
            assert sip_view["kind"] == "sip" and sip_view["display"].startswith("tester@")
            await asyncio.sleep(2.0)  # the phone hears the owner's 880 Hz meanwhile
            kicked = await owner.ok("DELETE", f"/v1/rooms/{room_id}/participants/{pid}")
            assert kicked["reason"] == "kicked"
            assert await phone.wait(20) == 0  # the kick hung up on the phone (BYE)
            heard, rate = phone.heard()
            assert len(heard) > rate * 2, phone.log()[-2000:]
            assert band_energy(heard[-2 * rate :], rate, 880, 60) > 0.5
            assert band_energy(heard[-2 * rate :], rate, 500, 60) < 0.05  # never itself
            view = await owner.ok("GET", f"/v1/rooms/{room_id}")
            assert [p["participant_id"] for p in view["participants"]] != [pid]
            assert len(view["participants"]) == 1
        finally:
            await peer.close()
            await phone.stop()
            await owner.close()


async def test_a_sip_caller_types_the_pin_as_sip_info_a_wrong_one_first(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        owner = await svc.client().sign_up("owner")
        events = await owner.events()
        room = await owner.ok("POST", "/v1/rooms", 201, json={"name": "board", "pin": "2468"})
        room_id = room["room_id"]
        wav = tmp_path / "tone.wav"
        write_pcmu_wav(wav, 440, 30)
        scenario = tmp_path / "pin.xml"
        scenario.write_text(pin_scenario(wav, ["1357", "2468"], talk_ms=6000))
        peer = SinePeer(880)
        sipp = None
        try:
            await join(owner, room_id, peer)
            await peer.wait_connected()
            sipp = await asyncio.create_subprocess_exec(
                "sipp", "-sf", str(scenario), "-s", f"room-{room_id}",
                f"127.0.0.1:{sip_port}", "-i", "127.0.0.1", "-p", str(free_udp_port()),
                "-mi", "127.0.0.1", "-mp", str(free_udp_port() & ~1), "-m", "1", "-l", "1",
                "-nostdin", "-timeout", "90", "-trace_err",
                "-error_file", str(tmp_path / "sipp.err"),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                cwd=tmp_path,
            )  # fmt: skip
            joined = await events.next(
                "room.participant_joined", lambda e: e.get("kind") == "sip", timeout=40
            )
            assert joined["display"] == "Desk 12"
            await peer.wait_for_audio(440, timeout=15)  # the caller is in the mix
            view = await owner.ok("GET", f"/v1/rooms/{room_id}")
            assert {p["kind"] for p in view["participants"]} == {"webrtc", "sip"}
            left = await events.next(
                "room.participant_left", lambda e: e["participant_id"] == joined["participant_id"],
                timeout=30,
            )  # fmt: skip
            assert left["reason"] == "disconnected"  # the caller's BYE
            assert await asyncio.wait_for(sipp.wait(), 30) == 0, (
                (tmp_path / "sipp.err").read_text(errors="replace")
                if (tmp_path / "sipp.err").exists()
                else ""
            )
        finally:
            if sipp is not None and sipp.returncode is None:
                sipp.kill()
                await sipp.wait()
            await peer.close()
            await owner.close()
