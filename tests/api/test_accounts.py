"""Accounts, sessions, contacts and address-book matching through the real app."""

from __future__ import annotations

import hashlib

import jwt

from tests.service import ADMIN_KEY


async def test_sign_up_log_in_and_me(service):
    client = service.client()
    created = await client.ok(
        "POST",
        "/v1/users",
        201,
        json={"username": "alice", "password": "secret-pw", "display_name": "Alice"},
    )
    assert created["username"] == "alice" and created["display_name"] == "Alice" and created["id"]
    session = await client.ok(
        "POST", "/v1/sessions", json={"username": "alice", "password": "secret-pw"}
    )
    assert session["user"]["id"] == created["id"] and session["expires_at"]
    me = await client.ok("GET", "/v1/me", token=session["token"])
    assert me["username"] == "alice"


async def test_passwords_are_stored_with_a_real_kdf(service):
    await service.client().sign_up("alice", "secret-pw")
    found = await service.runtime.store.password_hash("alice")
    assert found[1].startswith("$argon2id$") and "secret-pw" not in found[1]


async def test_duplicate_username_and_bad_credentials(service):
    client = await service.client().sign_up("alice")
    response = await client.request(
        "POST", "/v1/users", json={"username": "alice", "password": "another-pw"}
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "username_taken"
    for body in (
        {"username": "alice", "password": "wrong-pw"},
        {"username": "nobody", "password": "x"},
    ):
        response = await client.request("POST", "/v1/sessions", json=body)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "bad_credentials"


async def test_bad_sign_up_input_is_a_clear_4xx_and_creates_nothing(service):
    client = service.client()
    cases = [
        ({"username": "a b", "password": "secret-pw"}, 400, "bad_username"),
        ({"username": "bob", "password": "123"}, 400, "weak_password"),
        ({"username": "bob"}, 422, "invalid_request"),
        ({"username": "bob", "password": "secret-pw", "admin": True}, 422, "invalid_request"),
        ({"username": "bob", "password": "secret-pw", "phone": "not a number"}, 400, "bad_phone"),
    ]
    for body, status, code in cases:
        response = await client.request("POST", "/v1/users", json=body)
        assert response.status_code == status, body
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]
    response = await client.request(
        "POST", "/v1/users", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert await service.runtime.store.user_by_username("bob") is None


async def test_tokens_are_checked(service):
    client = await service.client().sign_up("alice")
    key = await service.runtime.store.shared_secret("token_signing_key")
    expired = jwt.encode({"sub": "x", "exp": 1}, key, "HS256")
    forged = jwt.encode(
        {"sub": "x", "exp": 2**31}, "not-the-signing-key-of-this-deployment", "HS256"
    )
    for token in ("", "garbage", expired, forged, ADMIN_KEY):
        response = await client.request("GET", "/v1/me", token=token or "-")
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] in ("unauthorized", "bad_token", "token_expired")
    response = await client.request("GET", "/v1/me", token="")
    assert response.status_code == 401


async def test_closed_sign_up_needs_the_admin_key(start_service):
    async with start_service(allow_signup=False) as service:
        client = service.client()
        body = {"username": "carol", "password": "secret-pw"}
        response = await client.request("POST", "/v1/users", json=body)
        assert response.status_code == 403 and response.json()["error"]["code"] == "signup_closed"
        await client.ok("POST", "/v1/users", 201, json=body, token=ADMIN_KEY)


async def test_contacts_with_groups(service):
    alice = await service.client().sign_up("alice")
    await service.client().sign_up("bob", display_name="Bob B.")
    await service.client().sign_up("carol")
    await alice.ok("POST", "/v1/contacts", 201, json={"username": "bob", "group": "family"})
    await alice.ok("POST", "/v1/contacts", 201, json={"username": "carol"})
    contacts = await alice.ok("GET", "/v1/contacts")
    assert contacts == [
        {"username": "bob", "display_name": "Bob B.", "group": "family"},
        {"username": "carol", "display_name": "carol", "group": None},
    ]
    await alice.ok("POST", "/v1/contacts", 201, json={"username": "bob", "group": "work"})
    assert (await alice.ok("GET", "/v1/contacts"))[0]["group"] == "work"
    for body, status in (({"username": "nobody"}, 404), ({"username": "alice"}, 400), ({}, 422)):
        assert (await alice.request("POST", "/v1/contacts", json=body)).status_code == status
    assert (await alice.request("DELETE", "/v1/contacts/carol")).status_code == 204
    assert (await alice.request("DELETE", "/v1/contacts/carol")).status_code == 404
    assert [c["username"] for c in await alice.ok("GET", "/v1/contacts")] == ["bob"]
    assert (await service.client().request("GET", "/v1/contacts")).status_code == 401


async def test_phone_numbers_match_the_address_book(service):
    alice = await service.client().sign_up("alice", phone="+86 138 0013 8000")
    await service.client().sign_up("bob")
    bob = service.client()
    await bob.ok("POST", "/v1/sessions", json={"username": "bob", "password": "secret-pw"})
    bob = await service.client().sign_up("dave")
    await bob.ok("PATCH", "/v1/me", json={"phone": "+1 415 555 0100"})
    assert (await alice.ok("GET", "/v1/me"))["phone"] == "+8613800138000"

    found = await alice.ok(
        "POST",
        "/v1/contacts/match",
        json={"phones": ["138 0013 8000", "+14155550100", "12345", "junk"]},
    )
    assert sorted((m["phone"], m["username"]) for m in found["matches"]) == [
        ("+14155550100", "dave"),
        ("138 0013 8000", "alice"),
    ]
    salt = (await alice.ok("GET", "/v1/contacts/match/salt"))["salt"]
    digest = hashlib.sha256(f"{salt}+14155550100".encode()).hexdigest()
    found = await alice.ok("POST", "/v1/contacts/match", json={"phone_hashes": [digest, "00" * 32]})
    assert found["matches"] == [{"phone": None, "phone_hash": digest, "username": "dave"}]
    response = await alice.request("PATCH", "/v1/me", json={"phone": "+86 138 0013 8000"})
    assert response.status_code == 200  # your own number again is fine
    response = await bob.request("PATCH", "/v1/me", json={"phone": "+8613800138000"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "phone_taken"


async def test_health_metrics_and_openapi(service):
    client = service.client()
    assert await client.ok("GET", "/healthz") == {"status": "ok"}
    metrics = (await client.request("GET", "/metrics")).text
    assert "chorus_calls" in metrics and "chorus_peer_connections" in metrics
    spec = await client.ok("GET", "/openapi.json")
    for path in (
        "/v1/users",
        "/v1/sessions",
        "/v1/me",
        "/v1/contacts",
        "/v1/calls",
        "/v1/calls/{call_id}/answer",
    ):
        assert path in spec["paths"]
    response = await client.request("GET", "/v1/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_a_bad_token_closes_the_events_socket_with_4401(service):
    import websockets

    url = service.base_url.replace("http", "ws", 1) + "/v1/events?token=forged"
    async with websockets.connect(url) as ws:
        try:
            await ws.recv()
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd.code == 4401
        else:
            raise AssertionError("the socket stayed open")


async def test_client_config_lists_the_ice_servers(start_service):
    async with start_service(ice_servers=["stun:stun.example.org:3478"]) as service:
        alice = await service.client().sign_up("alice")
        config = await alice.ok("GET", "/v1/config")
        assert config == {"ice_servers": ["stun:stun.example.org:3478"], "region": "cn"}
