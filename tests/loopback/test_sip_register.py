"""Desk phones register with the app user's credentials (digest) and ring with the app:
raw REGISTERs over UDP for the registrar's answers, baresip as a real registered phone."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from tests.audio import band_energy
from tests.peers import SinePeer
from tests.sip_peers import Baresip, Linphone, account, free_udp_port
from voice.sip import digest


def register(
    sock: socket.socket,
    server: tuple[str, int],
    *,
    user: str = "bob",
    password: str | None = None,
    challenge: str | None = None,
    expires: int = 120,
    call_id: str,
    cseq: int,
) -> tuple[int, dict[str, str]]:
    """Send one REGISTER (with digest credentials when given a challenge) and read the
    final answer: (status, headers)."""
    port = sock.getsockname()[1]
    uri = f"sip:127.0.0.1:{server[1]}"
    lines = [
        f"REGISTER {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{uuid.uuid4().hex[:12]};rport",
        f"From: <sip:{user}@127.0.0.1>;tag=t{cseq}",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:{port}>;expires={expires}",
        "Max-Forwards: 70",
    ]
    if challenge is not None and password is not None:
        nonce = challenge.split('nonce="')[1].split('"')[0]
        base = digest.Credentials(user, digest.REALM, nonce, uri, "", "auth", "00000001", "ab")
        response = digest.expected_response(base, "REGISTER", digest.ha1(user, password))
        lines.append(
            f'Authorization: Digest username="{user}", realm="{digest.REALM}", '
            f'nonce="{nonce}", uri="{uri}", response="{response}", algorithm=MD5, '
            'qop=auth, nc=00000001, cnonce="ab"'
        )
    sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), server)
    while True:
        text = sock.recv(65535).decode()
        status = int(text.split(" ", 2)[1])
        if status >= 200:
            headers = {}
            for line in text.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            return status, headers


async def registered(svc, user_id: str, phone, timeout: float) -> None:
    """Wait until `phone` has registered as one of the user's desk phones."""
    deadline = time.monotonic() + timeout
    while not await svc.runtime.sip.phones(user_id):
        assert time.monotonic() < deadline, phone.log()[-2000:]
        await asyncio.sleep(0.1)


async def test_register_challenges_then_binds_and_refuses_wrong_passwords(start_service):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        bob = await svc.client().sign_up("bob")
        await bob.ok("PUT", "/v1/me/sip-password", json={"password": "secret-pw"})
        server = ("127.0.0.1", sip_port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(10)

            def send(**kwargs):
                return register(sock, server, call_id="reg-1", **kwargs)

            status, headers = await asyncio.to_thread(send, cseq=1)
            assert status == 401 and 'realm="chorus"' in headers["www-authenticate"]
            challenge = headers["www-authenticate"]
            status, _ = await asyncio.to_thread(
                send, cseq=2, password="wrong-pw", challenge=challenge
            )
            assert status == 403
            status, _ = await asyncio.to_thread(
                send, cseq=3, user="nobody", password="secret-pw", challenge=challenge
            )
            assert status == 403  # an unknown user looks like a wrong password
            status, _ = await asyncio.to_thread(
                send, cseq=4, password="secret-pw", challenge=challenge, expires=10
            )
            assert status == 423  # Interval Too Brief
            status, headers = await asyncio.to_thread(
                send, cseq=5, password="secret-pw", challenge=challenge
            )
            assert status == 200 and "expires=120" in headers["contact"]
            bob_id = (await bob.ok("GET", "/v1/me"))["id"]
            phones = await svc.runtime.sip.phones(bob_id)
            assert len(phones) == 1
            assert next(iter(phones.values())).address == sock.getsockname()
            status, _ = await asyncio.to_thread(
                send, cseq=6, password="secret-pw", challenge=challenge, expires=0
            )
            assert status == 200 and await svc.runtime.sip.phones(bob_id) == {}
            # A weak SIP password is refused; none at all turns phone registration off.
            weak = await bob.request("PUT", "/v1/me/sip-password", json={"password": "123"})
            assert weak.status_code == 400 and weak.json()["error"]["code"] == "weak_password"
            await bob.ok("PUT", "/v1/me/sip-password", json={"password": None})
            status, _ = await asyncio.to_thread(
                send, cseq=7, password="secret-pw", challenge=challenge
            )
            assert status == 403
        await bob.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_registered_desk_phone_rings_with_the_app_and_answers(
    start_service, tmp_path, transport
):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        bob = await svc.client().sign_up("bob")
        await bob.ok("PUT", "/v1/me/sip-password", json={"password": "bob-desk-pw"})
        bob_app = await bob.events()
        alice = await svc.client().sign_up("alice")
        alice_events = await alice.events()
        bob_id = (await bob.ok("GET", "/v1/me"))["id"]
        line = account("bob", "bob-desk-pw", sip_port, register=True, transport=transport)
        line += ";answermode=auto"
        phone = Baresip(tmp_path / "phone", freq=500, seconds=30, account=line)
        await phone.run(40)
        peer = SinePeer(880)
        try:
            await registered(svc, bob_id, phone, timeout=10)
            placed = await alice.ok(
                "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await peer.offer()}
            )
            call_id = placed["call_id"]
            await peer.accept_answer(placed["sdp"])
            await bob_app.next("call.incoming", lambda e: e["call_id"] == call_id)
            # The phone answers by itself: the app stops ringing, answered elsewhere.
            stopped = await bob_app.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "ended"
            )
            assert stopped["reason"] == "answered_elsewhere"
            await alice_events.next(
                "call.state", lambda e: e["call_id"] == call_id and e["state"] == "answered"
            )
            await peer.wait_connected()
            await peer.wait_for_audio(500, timeout=15)  # the phone's tone reaches alice
            await alice.ok("POST", f"/v1/calls/{call_id}/dtmf", json={"digits": "5#"})
            await asyncio.sleep(2.0)  # the phone hears alice's 880 Hz meanwhile
            await alice.ok("POST", f"/v1/calls/{call_id}/hangup")
            view = await alice.ok("GET", f"/v1/calls/{call_id}")
            assert view["state"] == "ended" and view["reason"] == "completed"
            await phone.stop()
            # alice's keys reached the phone as RFC 4733 telephone-events
            assert "received event: '5' (end=1)" in phone.log()
            assert "received event: '#' (end=1)" in phone.log()
            heard, rate = phone.heard()
            assert len(heard) > rate, phone.log()[-2000:]
            assert band_energy(heard[-2 * rate :], rate, 880, 60) > 0.3
        finally:
            await peer.close()
            await phone.stop()
            await bob.close()
            await alice.close()


async def test_linphone_registers_with_digest_and_is_reached_through_it(start_service, tmp_path):
    sip_port = free_udp_port()
    async with start_service(sip_port=sip_port) as svc:
        bob = await svc.client().sign_up("bob")
        await bob.ok("PUT", "/v1/me/sip-password", json={"password": "bob-linphone-pw"})
        bob_id = (await bob.ok("GET", "/v1/me"))["id"]
        alice = await svc.client().sign_up("alice")
        alice_events = await alice.events()
        phone = Linphone(tmp_path / "linphone", freq=500, seconds=30)
        server = f"sip:127.0.0.1:{sip_port}"
        await phone.start(
            "autoanswer enable", f"register sip:bob@127.0.0.1:{sip_port} {server} bob-linphone-pw"
        )
        peer = SinePeer(880)
        try:
            await registered(svc, bob_id, phone, timeout=15)
            placed = await alice.ok(
                "POST", "/v1/calls", 201, json={"to": "bob", "sdp": await peer.offer()}
            )
            call_id = placed["call_id"]
            await peer.accept_answer(placed["sdp"])
            await alice_events.next(
                "call.state",
                lambda e: e["call_id"] == call_id and e["state"] == "answered",
                timeout=20,
            )
            await peer.wait_connected()
            await peer.wait_for_audio(500, timeout=15)  # linphone's tone reaches alice
            await asyncio.sleep(2.0)  # linphone records alice meanwhile
            await alice.ok("POST", f"/v1/calls/{call_id}/hangup")
            view = await alice.ok("GET", f"/v1/calls/{call_id}")
            assert view["state"] == "ended" and view["reason"] == "completed"
            await phone.stop()
            heard, rate = phone.heard()
            assert len(heard) > rate, phone.log()[-2000:]
            assert band_energy(heard, rate, 880, 60) > 0.3
        finally:
            await peer.close()
            await phone.stop()
            await bob.close()
            await alice.close()
