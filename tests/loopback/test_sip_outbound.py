"""App users call SIP addresses: a worker dials through the front, and the far end (sipp as a
user agent server) answers, refuses or echoes the audio back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.peers import SinePeer
from tests.sip_peers import free_udp_port

REFUSE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="refuse with {status}">
  <recv request="INVITE" crlf="true"/>
  <send><![CDATA[
      SIP/2.0 {status} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]></send>
  <recv request="ACK"/>
</scenario>
"""


async def sipp_uas(workdir: Path, port: int, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", *args, "-i", "127.0.0.1", "-p", str(port), "-mi", "127.0.0.1",
        "-mp", str(free_udp_port() & ~1), "-m", "1", "-nostdin", "-timeout", "60",
        "-trace_err", "-error_file", str(workdir / "uas.err"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=workdir,
    )  # fmt: skip


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_an_app_user_calls_a_sip_address_and_hears_the_far_end(start_service, tmp_path):
    sip_port, uas_port = free_udp_port(), free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        alice = await svc.client().sign_up("alice", display_name="Alice Li")
        events = await alice.events()
        uas = await sipp_uas(tmp_path, uas_port, "-sn", "uas", "-rtp_echo")
        peer = SinePeer(600)
        try:
            placed = await alice.ok(
                "POST",
                "/v1/calls",
                201,
                json={"to": f"sip:bob@127.0.0.1:{uas_port}", "sdp": await peer.offer()},
            )
            call_id = placed["call_id"]
            await peer.accept_answer(placed["sdp"])
            await events.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "answered"
            )
            await peer.wait_connected()
            # sipp echoes the RTP it gets: alice hears her own 600 Hz back, through PCMU
            # both ways (Opus -> worker -> PCMU -> sipp -> PCMU -> worker -> Opus).
            await peer.wait_for_audio(600, timeout=15)
            await alice.ok("POST", f"/v1/calls/{call_id}/hangup")
            assert await asyncio.wait_for(uas.wait(), 20) == 0  # it got our BYE
            view = await alice.ok("GET", f"/v1/calls/{call_id}")
            assert view["state"] == "ended" and view["reason"] == "completed"
            assert view["to"] == f"sip:bob@127.0.0.1:{uas_port}"
            assert svc.runtime.sip.front.stats["dialled"] == 1
        finally:
            await peer.close()
            await stop(uas)
            await alice.close()


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [(486, "Busy Here", "busy"), (603, "Decline", "declined"), (404, "Not Found", "unreachable")],
)
async def test_a_refusal_from_the_far_end_ends_the_call_with_its_reason(
    start_service, tmp_path, status, reason, expected
):
    sip_port, uas_port = free_udp_port(), free_udp_port()
    scenario = tmp_path / "refuse.xml"
    scenario.write_text(REFUSE.format(status=status, reason=reason))
    async with start_service(sip_port=sip_port) as svc:
        alice = await svc.client().sign_up("alice")
        events = await alice.events()
        uas = await sipp_uas(tmp_path, uas_port, "-sf", str(scenario))
        peer = SinePeer(600)
        try:
            placed = await alice.ok(
                "POST",
                "/v1/calls",
                201,
                json={"to": f"sip:carol@127.0.0.1:{uas_port}", "sdp": await peer.offer()},
            )
            call_id = placed["call_id"]
            ended = await events.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "ended"
            )
            assert ended["reason"] == expected
            assert await asyncio.wait_for(uas.wait(), 20) == 0
            await asyncio.sleep(0)  # the worker slot is given back
            assert not svc.runtime.sip.legs or all(leg.ended for leg in svc.runtime.sip.legs)
        finally:
            await peer.close()
            await stop(uas)
            await alice.close()


async def test_a_bad_sip_address_is_a_clear_error_and_changes_nothing(start_service):
    async with start_service(sip_port=free_udp_port()) as svc:
        alice = await svc.client().sign_up("alice")
        peer = SinePeer(600)
        try:
            for bad in ("sip:", "sip:bob@", "sip:bob@exa mple.com"):
                response = await alice.request(
                    "POST", "/v1/calls", json={"to": bad, "sdp": await peer.offer()}
                )
                assert response.status_code == 400, (bad, response.text)
                assert response.json()["error"]["code"] == "bad_address"
            assert await alice.ok("GET", "/v1/calls") == []
            assert svc.runtime.calls.open_legs == 0
        finally:
            await peer.close()
            await alice.close()
