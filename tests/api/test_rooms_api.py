"""Rooms through the API: who sees what, the join rules (PIN, size, lock), moderation, events,
and bad input answered with clear 4xx errors that change nothing."""

from __future__ import annotations

import contextlib
import socket

from tests.peers import SinePeer
from tests.service import ADMIN_KEY
from tests.waiting import until


@contextlib.asynccontextmanager
async def offers():
    """Makes offers from real aiortc peers (a join needs a valid one); closes them after."""
    made: list[SinePeer] = []

    async def make() -> str:
        peer = SinePeer(440.0)
        made.append(peer)
        return await peer.offer()

    try:
        yield make
    finally:
        for peer in made:
            await peer.close()


async def create(client, status: int = 201, **body):
    return await client.ok("POST", "/v1/rooms", status, json=body)


async def test_create_get_list_and_strangers_see_nothing(service):
    owner = await service.client().sign_up("owner", display_name="The Owner")
    stranger = await service.client().sign_up("stranger")
    room = await create(owner, name="Weekly sync", max_participants=10, pin="1234")
    assert room["name"] == "Weekly sync" and room["moderator"] is True
    assert room["pin_required"] is True and "pin" not in room and room["max_speakers"] == 3
    assert (room["participants"], room["speaking"], room["locked"]) == ([], [], False)
    room_id = room["room_id"]
    assert (await owner.ok("GET", f"/v1/rooms/{room_id}"))["room_id"] == room_id
    assert [r["room_id"] for r in await owner.ok("GET", "/v1/rooms")] == [room_id]
    assert await stranger.ok("GET", "/v1/rooms") == []
    for method, path in [
        ("GET", f"/v1/rooms/{room_id}"),
        ("DELETE", f"/v1/rooms/{room_id}"),
        ("POST", f"/v1/rooms/{room_id}/lock"),
        ("POST", f"/v1/rooms/{room_id}/mute_all"),
        ("GET", f"/v1/rooms/{room_id}/recordings"),
        ("GET", "/v1/rooms/nosuchroom"),
    ]:
        response = await stranger.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "room_not_found"
    assert (await service.client().request("GET", f"/v1/rooms/{room_id}")).status_code == 401
    admin = service.client(ADMIN_KEY)
    assert (await admin.ok("GET", f"/v1/rooms/{room_id}"))["moderator"] is True
    assert [r["room_id"] for r in await admin.ok("GET", "/v1/rooms")] == [room_id]
    everyone = await create(owner, max_speakers="all")
    assert everyone["max_speakers"] is None and everyone["max_participants"] == 100


BAD_SETTINGS = [
    ({"pin": "12"}, "bad_pin_format"),
    ({"pin": "abcd"}, "bad_pin_format"),
    ({"name": "   "}, "bad_name"),
    ({"max_participants": 1}, "invalid_request"),
    ({"max_participants": 100000}, "bad_size"),
    ({"max_speakers": 0}, "invalid_request"),
    ({"max_speakers": "some"}, "invalid_request"),
    ({"record": "yes please"}, "invalid_request"),
    ({"colour": "blue"}, "invalid_request"),
]


async def test_bad_room_settings_are_refused(service):
    owner = await service.client().sign_up("owner")
    for body, code in BAD_SETTINGS:
        response = await owner.request("POST", "/v1/rooms", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    assert await owner.ok("GET", "/v1/rooms") == []


async def test_pin_attempts_size_and_lock(start_service):
    async with start_service(room_pin_attempts=3) as service, offers() as offer:
        owner = await service.client().sign_up("owner")
        alice = await service.client().sign_up("alice")
        bob = await service.client().sign_up("bob")
        carol = await service.client().sign_up("carol")
        room_id = (await create(owner, pin="2468", max_participants=2))["room_id"]
        path = f"/v1/rooms/{room_id}/participants"

        for pin, left in ((None, 2), ("1111", 1)):
            body = {"sdp": await offer(), **({"pin": pin} if pin else {})}
            response = await alice.request("POST", path, json=body)
            assert response.status_code == 403
            error = response.json()["error"]
            assert error["code"] == "bad_pin" and f"{left} attempt" in error["message"]
        response = await alice.request("POST", path, json={"sdp": await offer(), "pin": "0000"})
        assert response.status_code == 403 and "no attempts left" in response.text
        response = await alice.request("POST", path, json={"sdp": await offer(), "pin": "2468"})
        assert response.status_code == 429  # locked out, even with the right PIN
        assert response.json()["error"]["code"] == "too_many_attempts"
        assert (await owner.ok("GET", f"/v1/rooms/{room_id}"))["participants"] == []

        # The moderator needs no PIN; bob has the right one; the room holds two.
        await owner.ok("POST", path, 201, json={"sdp": await offer()})
        bob_joined = await bob.ok("POST", path, 201, json={"sdp": await offer(), "pin": "2468"})
        response = await carol.request("POST", path, json={"sdp": await offer(), "pin": "2468"})
        assert response.status_code == 409 and response.json()["error"]["code"] == "room_full"
        # Bob sees the room now that he is in it, but cannot moderate.
        view = await bob.ok("GET", f"/v1/rooms/{room_id}")
        assert view["moderator"] is False and len(view["participants"]) == 2
        assert [p["mine"] for p in view["participants"]] == [False, True]
        assert (await bob.request("POST", f"/v1/rooms/{room_id}/lock")).status_code == 403

        # Kicked, then locked out: a clear error on rejoining.
        bob_id = bob_joined["participant_id"]
        await owner.ok("DELETE", f"/v1/rooms/{room_id}/participants/{bob_id}")
        assert (await bob.request("GET", f"/v1/rooms/{room_id}")).status_code == 404
        locked = await owner.ok("POST", f"/v1/rooms/{room_id}/lock")
        assert locked["locked"] is True
        response = await bob.request("POST", path, json={"sdp": await offer(), "pin": "2468"})
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "room_locked" and "removed" in error["message"]
        await owner.ok("POST", f"/v1/rooms/{room_id}/unlock")
        await bob.ok("POST", path, 201, json={"sdp": await offer(), "pin": "2468"})


async def test_muting_leaving_ending_and_their_events(service):
    async with offers() as offer:
        owner = await service.client().sign_up("owner")
        alice = await service.client().sign_up("alice", display_name="Alice A.")
        owner_events, alice_events = await owner.events(), await alice.events()
        room_id = (await create(owner))["room_id"]
        path = f"/v1/rooms/{room_id}/participants"
        mine = (await owner.ok("POST", path, 201, json={"sdp": await offer()}))["participant_id"]
        hers = (await alice.ok("POST", path, 201, json={"sdp": await offer()}))["participant_id"]
        joined = await owner_events.next(
            "room.participant_joined", lambda e: e["participant_id"] == hers
        )
        assert joined["display"] == "Alice A." and joined["kind"] == "webrtc"
        await alice_events.next("room.participant_joined", lambda e: e["participant_id"] == hers)

        # Alice mutes and unmutes herself; she may not mute the owner.
        muted = await alice.ok("PATCH", f"{path}/{hers}", json={"muted": True})
        assert muted["muted"] is True and muted["muted_by_moderator"] is False
        await alice.ok("PATCH", f"{path}/{hers}", json={"muted": False})
        response = await alice.request("PATCH", f"{path}/{mine}", json={"muted": True})
        assert response.status_code == 403 and response.json()["error"]["code"] == "not_moderator"
        response = await alice.request("DELETE", f"{path}/{mine}")
        assert response.status_code == 403
        # The moderator's mute sticks until the moderator lifts it.
        await owner.ok("PATCH", f"{path}/{hers}", json={"muted": True})
        event = await alice_events.next("room.participant_muted", lambda e: e["muted_by_moderator"])
        assert event["participant_id"] == hers and event["muted"] is True
        response = await alice.request("PATCH", f"{path}/{hers}", json={"muted": False})
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "muted_by_moderator"
        await owner.ok("POST", f"/v1/rooms/{room_id}/unmute_all")
        view = await owner.ok("POST", f"/v1/rooms/{room_id}/mute_all")
        by_id = {p["participant_id"]: p for p in view["participants"]}
        assert by_id[hers]["muted"] is True and by_id[mine]["muted"] is False
        bad = [
            ("PATCH", f"{path}/{hers}", {"muted": "maybe"}, 422),
            ("PATCH", f"{path}/{hers}", {}, 422),
            ("PATCH", f"{path}/nobody", {"muted": True}, 404),
            ("DELETE", f"{path}/nobody", None, 404),
        ]
        for method, url, body, status in bad:
            response = await owner.request(method, url, json=body)
            assert response.status_code == status, (method, url, response.text)

        # Alice leaves; then the owner ends the room for everyone.
        left = await alice.ok("DELETE", f"{path}/{hers}")
        assert left == {"participant_id": hers, "reason": "left"}
        event = await owner_events.next(
            "room.participant_left", lambda e: e["participant_id"] == hers
        )
        assert event["reason"] == "left"
        await owner.ok("DELETE", f"/v1/rooms/{room_id}")
        ended = await owner_events.next("room.ended")
        assert ended == {"type": "room.ended", "room_id": room_id, "reason": "ended"}
        assert (await owner.request("GET", f"/v1/rooms/{room_id}")).status_code == 404
        assert (await alice.request("POST", path, json={"sdp": await offer()})).status_code == 404
    assert service.runtime.rooms.open_legs == 0


async def test_bad_joins_leave_nothing_behind(service):
    async with offers() as offer:
        owner = await service.client().sign_up("owner")
        alice = await service.client().sign_up("alice")
        room_id = (await create(owner))["room_id"]
        path = f"/v1/rooms/{room_id}/participants"
        for body, status, code in [
            ({"sdp": "v=0\r\nnot really"}, 400, "bad_sdp"),
            ({"sdp": ""}, 422, "invalid_request"),
            ({"sdp": await offer(), "display": "x" * 100}, 400, "bad_display"),
            ({"sdp": await offer(), "display": "\x07bell"}, 400, "bad_display"),
            ({"sdp": await offer(), "extra": 1}, 422, "invalid_request"),
        ]:
            response = await alice.request("POST", path, json=body)
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code
        admin = service.client(ADMIN_KEY)
        response = await admin.request("POST", path, json={"sdp": await offer()})
        assert response.status_code == 403  # a WebRTC participant is a user
        assert (await owner.ok("GET", f"/v1/rooms/{room_id}"))["participants"] == []
        assert (await alice.request("GET", f"/v1/rooms/{room_id}")).status_code == 404
    assert service.runtime.rooms.open_legs == 0


async def test_plain_rtp_participants_are_for_moderators_and_checked(service):
    owner = await service.client().sign_up("owner")
    alice = await service.client().sign_up("alice")
    room_id = (await create(owner, max_participants=3))["room_id"]
    path = f"/v1/rooms/{room_id}/rtp"
    good = {"host": "127.0.0.1", "port": 40000, "codec": "pcmu"}
    response = await alice.request("POST", path, json=good)
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_moderator"
    for change, status, code in [
        ({"host": "example.org"}, 400, "bad_host"),
        ({"host": "0.0.0.0"}, 400, "bad_host"),
        ({"host": "224.0.0.1"}, 400, "bad_host"),
        ({"host": "::1"}, 400, "bad_host"),  # the media address is IPv4
        ({"port": 0}, 422, "invalid_request"),
        ({"port": 70000}, 422, "invalid_request"),
        ({"codec": "g729"}, 422, "invalid_request"),
        ({"payload_type": 72}, 400, "bad_payload_type"),
        ({"audio_level_id": 15}, 422, "invalid_request"),
    ]:
        response = await owner.request("POST", path, json={**good, **change})
        assert response.status_code == status, (change, response.text)
        assert response.json()["error"]["code"] == code
    assert (await owner.ok("GET", f"/v1/rooms/{room_id}"))["participants"] == []

    admin = service.client(ADMIN_KEY)
    first = await admin.ok("POST", path, 201, json=good)
    low, high = service.settings.rtp_port_min, service.settings.rtp_port_max
    assert first["server_host"] == "127.0.0.1" and low <= first["server_port"] <= high
    assert first["server_port"] % 2 == 0  # RTP even, RTCP on the next port
    second = await owner.ok("POST", path, 201, json={**good, "codec": "opus", "port": 40002})
    assert second["server_port"] != first["server_port"]
    await owner.ok("POST", path, 201, json={**good, "codec": "pcma", "port": 40004})
    response = await owner.request("POST", path, json={**good, "port": 40006})
    assert response.status_code == 409 and response.json()["error"]["code"] == "room_full"
    view = await owner.ok("GET", f"/v1/rooms/{room_id}")
    assert sorted(p["codec"] for p in view["participants"]) == ["opus", "pcma", "pcmu"]
    await owner.ok("DELETE", f"/v1/rooms/{room_id}/participants/{first['participant_id']}")
    assert service.runtime.rooms.open_legs == 2
    await until(lambda: _free(first["server_port"]), timeout=10)  # its sockets are closed
    await owner.ok("DELETE", f"/v1/rooms/{room_id}")
    assert service.runtime.rooms.open_legs == 0
    await until(lambda: _free(second["server_port"]), timeout=10)


async def _free(port: int) -> bool:
    """Can the RTP/RTCP pair be bound again (its leg, wherever it lived, let it go)?"""
    with contextlib.ExitStack() as stack:
        for p in (port, port + 1):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


async def test_recordings_belong_to_the_moderator(service):
    async with offers() as offer:
        owner = await service.client().sign_up("owner")
        alice = await service.client().sign_up("alice")
        room_id = (await create(owner, record=True))["room_id"]
        assert await owner.ok("GET", f"/v1/rooms/{room_id}/recordings") == []
        response = await owner.request("GET", f"/v1/rooms/{room_id}/recording")
        assert response.json()["error"]["code"] == "recording_not_found"
        await alice.ok(
            "POST", f"/v1/rooms/{room_id}/participants", 201, json={"sdp": await offer()}
        )
        response = await alice.request("GET", f"/v1/rooms/{room_id}/recordings")
        assert response.status_code == 403  # a participant, not the moderator
        await owner.ok("DELETE", f"/v1/rooms/{room_id}")
        recordings = await owner.ok("GET", f"/v1/rooms/{room_id}/recordings")
        assert len(recordings) == 1 and recordings[0]["ended_at"]
        assert (await alice.request("GET", recordings[0]["url"])).status_code == 404
        assert (await alice.request("GET", f"/v1/rooms/{room_id}/recordings")).status_code == 404
        response = await owner.request("GET", recordings[0]["url"])
        assert response.status_code == 200 and response.content[:4] == b"OggS"
        bad = await owner.request("GET", f"/v1/rooms/{room_id}/recordings/..%2Fadmin.key")
        assert bad.status_code in (404, 422)


async def test_a_participant_that_never_connects_is_removed(start_service):
    async with start_service(room_connect_timeout_s=1.0) as service, offers() as offer:
        owner = await service.client().sign_up("owner")
        owner_events = await owner.events()
        room_id = (await create(owner))["room_id"]
        path = f"/v1/rooms/{room_id}/participants"
        pid = (await owner.ok("POST", path, 201, json={"sdp": await offer()}))["participant_id"]
        # The answer is never applied: no ICE, no DTLS.
        left = await owner_events.next(
            "room.participant_left", lambda e: e["participant_id"] == pid, timeout=10
        )
        assert left["reason"] == "failed"
        assert (await owner.ok("GET", f"/v1/rooms/{room_id}"))["participants"] == []
        assert service.runtime.rooms.open_legs == 0
