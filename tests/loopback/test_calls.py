"""App-to-app calls through the real service, with real aiortc peers over loopback; what is
heard is checked by its spectrum."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.audio import band_energy, dominant_frequency, on_off_pattern
from tests.peers import SinePeer

CALLER_HZ, CALLEE_HZ, RINGBACK_HZ = 600.0, 1000.0, 450.0


@contextlib.asynccontextmanager
async def peers(*freqs: float):
    made = [SinePeer(f) for f in freqs]
    try:
        yield made
    finally:
        for peer in made:
            await peer.close()


async def users(service, *names):
    clients = [await service.client().sign_up(n) for n in names]
    return clients


async def place(client, to: str, peer: SinePeer, status: int = 201):
    created = await client.ok(
        "POST", "/v1/calls", status, json={"to": to, "sdp": await peer.offer()}
    )
    if created.get("sdp"):
        await peer.accept_answer(created["sdp"])
    return created


async def answer(client, call_id: str, peer: SinePeer, device: str | None = None):
    body = {"sdp": await peer.offer()}
    if device:
        body["device_id"] = device
    answered = await client.ok("POST", f"/v1/calls/{call_id}/answer", json=body)
    await peer.accept_answer(answered["sdp"])


async def test_caller_hears_the_chinese_ring_tone_with_its_cadence(service):
    alice, bob = await users(service, "alice", "bob")
    bob_phone = await bob.events()
    async with peers(CALLER_HZ) as (caller,):
        created = await place(alice, "bob", caller)
        assert created["state"] == "ringing"
        await bob_phone.next("call.incoming", lambda e: e["call_id"] == created["call_id"])
        await caller.wait_for_audio(RINGBACK_HZ, timeout=20)
        start = time.monotonic()
        await caller.wait_heard(6.5, since_s=start, timeout=30)
        pcm = caller.received_pcm(since_s=start)
        runs = on_off_pattern(pcm, 48000, RINGBACK_HZ, min_run_ms=200)
        inner = runs[1:-1]  # the first and last runs are cut by the window
        ons = [ms for on, ms in inner if on]
        offs = [ms for on, ms in inner if not on]
        assert ons or offs, runs
        assert all(700 <= ms <= 1300 for ms in ons), runs
        assert all(3600 <= ms <= 4400 for ms in offs), runs
        assert abs(dominant_frequency(pcm) - RINGBACK_HZ) < 15
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")


async def test_two_way_audio_every_device_rings_and_one_answers(service):
    alice, bob = await users(service, "alice", "bob")
    alice_app = await alice.events()
    bob_phone, bob_laptop = await bob.events(), await bob.events()
    async with peers(CALLER_HZ, CALLEE_HZ) as (caller, callee):
        call_id = (await place(alice, "bob", caller))["call_id"]
        for device in (bob_phone, bob_laptop):
            incoming = await device.next("call.incoming")
            assert incoming == {
                "type": "call.incoming",
                "call_id": call_id,
                "from": "alice",
                "from_display": "alice",
                "to": "bob",
            }
        await answer(bob, call_id, callee, device=bob_phone.device_id)
        await bob_laptop.next(
            "call.state", lambda e: e["state"] == "ended" and e["reason"] == "answered_elsewhere"
        )
        await alice_app.state(call_id, "answered")
        await bob_phone.state(call_id, "answered")

        await callee.wait_for_audio(CALLER_HZ, timeout=20)
        await caller.wait_for_audio(CALLEE_HZ, timeout=20)
        mark = time.monotonic()
        await caller.wait_heard(1.5, since_s=mark, timeout=20)
        await callee.wait_heard(1.5, since_s=mark, timeout=20)
        heard_by_caller = caller.received_pcm(since_s=mark)
        heard_by_callee = callee.received_pcm(since_s=mark)
        assert abs(dominant_frequency(heard_by_caller) - CALLEE_HZ) < 15
        assert abs(dominant_frequency(heard_by_callee) - CALLER_HZ) < 15
        assert band_energy(heard_by_caller, 48000, CALLER_HZ) < 0.01  # never itself
        assert band_energy(heard_by_callee, 48000, CALLEE_HZ) < 0.01
        assert band_energy(heard_by_caller, 48000, RINGBACK_HZ) < 0.01  # ringback stopped

        await bob.ok("POST", f"/v1/calls/{call_id}/hangup")
        ended = await alice_app.state(call_id, "ended")
        assert ended["reason"] == "completed"
        assert (await bob_phone.state(call_id, "ended"))["reason"] == "completed"

    for client in (alice, bob):
        history = await client.ok("GET", "/v1/calls")
        assert history[0]["call_id"] == call_id and history[0]["reason"] == "completed"
        assert history[0]["from"] == "alice" and history[0]["to"] == "bob"
        assert history[0]["answered_at"] and history[0]["ended_at"]
    assert service.runtime.calls.open_legs == 0


@pytest.mark.parametrize(
    ("who", "action", "reason"),
    [
        ("callee", "decline", "declined"),
        ("caller", "hangup", "cancelled"),
        ("callee", "hangup", "declined"),
    ],
)
async def test_ringing_call_ends_with_its_reason(service, who, action, reason):
    alice, bob = await users(service, "alice", "bob")
    alice_app, bob_phone = await alice.events(), await bob.events()
    async with peers(CALLER_HZ) as (caller,):
        call_id = (await place(alice, "bob", caller))["call_id"]
        await bob_phone.next("call.incoming")
        actor = bob if who == "callee" else alice
        await actor.ok("POST", f"/v1/calls/{call_id}/{action}")
        assert (await alice_app.state(call_id, "ended"))["reason"] == reason
        assert (await bob_phone.state(call_id, "ended"))["reason"] == reason
        call = await alice.ok("GET", f"/v1/calls/{call_id}")
        assert (call["state"], call["reason"], call["answered_at"]) == ("ended", reason, None)
    assert service.runtime.calls.open_legs == 0


async def test_no_answer_after_the_timeout(start_service):
    async with start_service(no_answer_timeout_s=1.5) as service:
        alice, bob = await users(service, "alice", "bob")
        alice_app, bob_phone = await alice.events(), await bob.events()
        async with peers(CALLER_HZ) as (caller,):
            call_id = (await place(alice, "bob", caller))["call_id"]
            assert (await alice_app.state(call_id, "ended"))["reason"] == "no_answer"
            assert (await bob_phone.state(call_id, "ended"))["reason"] == "no_answer"


async def test_unreachable_and_busy_give_the_busy_tone(service):
    alice, bob, carol = await users(service, "alice", "bob", "carol")
    async with peers(CALLER_HZ, CALLER_HZ, CALLEE_HZ, 800.0) as (to_nobody, first, callee, second):
        created = await place(alice, "bob", to_nobody)  # bob has no device connected
        assert (created["state"], created["reason"]) == ("ended", "unreachable")
        await to_nobody.wait_for_audio(RINGBACK_HZ, timeout=20)  # the cn busy tone is 450 Hz too

        bob_phone = await bob.events()
        call_id = (await place(alice, "bob", first))["call_id"]
        await bob_phone.next("call.incoming")
        await answer(bob, call_id, callee, device=bob_phone.device_id)
        busy = await place(carol, "bob", second)
        assert (busy["state"], busy["reason"]) == ("ended", "busy")
        await second.wait_for_audio(RINGBACK_HZ, timeout=20)
        # the busy cadence is 350 ms on / 350 ms off, not the 1 s / 4 s ring tone
        start = time.monotonic()
        await second.wait_heard(1.6, since_s=start, timeout=20)
        runs = on_off_pattern(
            second.received_pcm(since_s=start), 48000, RINGBACK_HZ, min_run_ms=150
        )
        assert any(on and 200 <= ms <= 500 for on, ms in runs[1:-1]), runs
        assert (await carol.ok("GET", f"/v1/calls/{busy['call_id']}"))["reason"] == "busy"
        await alice.ok("POST", f"/v1/calls/{call_id}/hangup")


async def test_a_reconnecting_device_gets_the_calls_in_progress(service):
    alice, bob = await users(service, "alice", "bob")
    first = await bob.events(device_id="phone-1")
    async with peers(CALLER_HZ) as (caller,):
        call_id = (await place(alice, "bob", caller))["call_id"]
        await first.next("call.incoming")
        await first.close()
        again = await bob.events(device_id="phone-1")
        assert (await again.next("call.incoming"))["call_id"] == call_id
        await again.state(call_id, "ringing")
        late = await bob.events()  # a device that connects while the call rings, rings too
        await late.next("call.incoming")
        await bob.ok("POST", f"/v1/calls/{call_id}/decline")
        await again.state(call_id, "ended")
        await late.state(call_id, "ended")


async def test_dtmf_reaches_the_other_party(service):
    alice, bob = await users(service, "alice", "bob")
    bob_phone = await bob.events()
    async with peers(CALLER_HZ, CALLEE_HZ) as (caller, callee):
        call_id = (await place(alice, "bob", caller))["call_id"]
        await bob_phone.next("call.incoming")
        response = await alice.request("POST", f"/v1/calls/{call_id}/dtmf", json={"digits": "12"})
        assert response.status_code == 200  # while ringing, digits go to services (none here)
        await answer(bob, call_id, callee, device=bob_phone.device_id)
        await alice.ok("POST", f"/v1/calls/{call_id}/dtmf", json={"digits": "123#"})
        event = await bob_phone.next("call.dtmf")
        assert event == {"type": "call.dtmf", "call_id": call_id, "digits": "123#", "from": "alice"}
        response = await alice.request("POST", f"/v1/calls/{call_id}/dtmf", json={"digits": "12x"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_digits"
        await alice.ok("POST", f"/v1/calls/{call_id}/hangup")


NO_AUDIO_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:96 VP8/90000\r\n"
)


async def test_bad_requests_change_nothing(service):
    alice, bob, mallory = await users(service, "alice", "bob", "mallory")
    bob_phone = await bob.events()
    async with peers(CALLER_HZ, CALLEE_HZ, 700.0) as (caller, callee, intruder):
        offer = await caller.offer()
        for body, status, code in [
            ({"to": "bob", "sdp": "this is not sdp"}, 400, "bad_sdp"),
            ({"to": "bob", "sdp": NO_AUDIO_SDP}, 400, "bad_sdp"),
            ({"to": "nobody", "sdp": offer}, 404, "user_not_found"),
            ({"to": "alice", "sdp": offer}, 400, "cannot_call_self"),
            ({"to": "bob"}, 422, "invalid_request"),
            ({"to": "bob", "sdp": offer, "extra": 1}, 422, "invalid_request"),
            ({"to": 5, "sdp": offer}, 422, "invalid_request"),
        ]:
            response = await alice.request("POST", "/v1/calls", json=body)
            assert response.status_code == status, (body, response.text)
            assert response.json()["error"]["code"] == code
        assert await alice.ok("GET", "/v1/calls") == []
        assert service.runtime.calls.open_legs == 0

        call_id = (await place(alice, "bob", caller))["call_id"]
        await bob_phone.next("call.incoming")
        path = f"/v1/calls/{call_id}"
        # strangers cannot see, answer, decline or end it
        for method, suffix, body in [
            ("GET", "", None),
            ("POST", "/answer", {"sdp": "x"}),
            ("POST", "/decline", None),
            ("POST", "/hangup", None),
            ("POST", "/dtmf", {"digits": "1"}),
        ]:
            response = await mallory.request(method, path + suffix, json=body)
            assert response.status_code == 404, suffix
            response = await service.client().request(method, path + suffix, json=body)
            assert response.status_code == 401, suffix
        # the caller cannot answer or decline its own call
        response = await alice.request(
            "POST", path + "/answer", json={"sdp": await intruder.offer()}
        )
        assert response.status_code == 403
        assert (await alice.request("POST", path + "/decline")).status_code == 403
        # a bad answer SDP leaves the call ringing
        response = await bob.request("POST", path + "/answer", json={"sdp": "garbage"})
        assert response.status_code == 400 and response.json()["error"]["code"] == "bad_sdp"
        assert (await bob.ok("GET", path))["state"] == "ringing"
        assert service.runtime.calls.open_legs == 1

        await answer(bob, call_id, callee)
        response = await bob.request("POST", path + "/answer", json={"sdp": await intruder.offer()})
        assert (
            response.status_code == 409 and response.json()["error"]["code"] == "call_not_ringing"
        )
        assert service.runtime.calls.open_legs == 2
        await alice.ok("POST", path + "/hangup")
        response = await alice.request("POST", path + "/hangup")
        assert response.status_code == 409 and response.json()["error"]["code"] == "call_ended"
    assert service.runtime.calls.open_legs == 0


async def test_history_survives_a_restart(start_service):
    async with start_service() as service:
        alice, _bob = await users(service, "alice", "bob")
        async with peers(CALLER_HZ) as (caller,):
            call_id = (await place(alice, "bob", caller))["call_id"]
    async with start_service() as service:
        alice = service.client()
        await alice.ok("POST", "/v1/sessions", json={"username": "alice", "password": "secret-pw"})
        session = await alice.ok(
            "POST", "/v1/sessions", json={"username": "alice", "password": "secret-pw"}
        )
        alice.token = session["token"]
        history = await alice.ok("GET", "/v1/calls")
        assert [(c["call_id"], c["reason"]) for c in history] == [(call_id, "unreachable")]


async def test_a_device_id_another_user_also_chose_hears_nothing_of_their_calls(service):
    """Device ids are chosen by clients: bob's "phone" and carol's "phone" are two devices."""
    alice, bob, carol = await users(service, "alice", "bob", "carol")
    bob_phone, carol_phone = await bob.events("phone"), await carol.events("phone")
    async with peers(CALLER_HZ, CALLEE_HZ, CALLER_HZ) as (caller, callee, second):
        call_id = (await place(alice, "bob", caller))["call_id"]
        await bob_phone.next("call.incoming", lambda e: e["call_id"] == call_id)
        await answer(bob, call_id, callee, device="phone")
        await bob.ok("POST", f"/v1/calls/{call_id}/hangup")
        await bob_phone.state(call_id, "ended")
        # Carol's own next call comes after anything about bob's on her socket.
        her_call = (await place(alice, "carol", second))["call_id"]
        await carol_phone.next("call.incoming", lambda e: e["call_id"] == her_call)
        await alice.ok("POST", f"/v1/calls/{her_call}/hangup")
    assert not [e for e in carol_phone.seen if e.get("call_id") == call_id]
