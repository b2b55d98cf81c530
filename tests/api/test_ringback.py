"""Ringback tones through the API: catalog, personal tones, box, ledger, rules, gifts, and
every kind of bad input leaving nothing behind."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.audiofiles import encoded, flac_claiming, wav_bytes
from tests.service import ADMIN_KEY


async def upload(
    client, content: bytes, name: str = "tone.wav", token: str | None = None, **fields
):
    files = {"file": (name, content, "application/octet-stream")}
    data = {"title": fields.pop("title", name), **{k: str(v) for k, v in fields.items()}}
    return await client.request("POST", "/v1/ringback/tones", token=token, files=files, data=data)


async def catalog_tone(service, title: str, freqs=(900.0,), **fields) -> dict:
    response = await upload(
        service.client(), wav_bytes(freqs, 2.0), f"{title}.wav", ADMIN_KEY, title=title, **fields
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_admin_stocks_the_catalog_and_users_browse_and_preview(service):
    await catalog_tone(
        service, "Jasmine Flower", category="folk", artist="Trad.", price="2.00", validity_days=30
    )
    await catalog_tone(
        service, "Spring Festival", category="festive", price="3.50", validity_days=7
    )
    other = await upload(
        service.client(), encoded("mp3", (600.0,), 2.0), "song.mp3", ADMIN_KEY, title="Pop Song"
    )
    assert other.status_code == 201 and other.json()["duration_s"] == pytest.approx(2.0, abs=0.1)
    alice = await service.client().sign_up("alice")
    tones = await alice.ok("GET", "/v1/ringback/tones")
    assert [t["title"] for t in tones] == ["Pop Song", "Spring Festival", "Jasmine Flower"]
    jasmine = next(t for t in tones if t["title"] == "Jasmine Flower")
    assert (jasmine["price"], jasmine["validity_days"], jasmine["artist"]) == (2.0, 30, "Trad.")
    assert [t["title"] for t in await alice.ok("GET", "/v1/ringback/tones?q=jasmine")] == [
        "Jasmine Flower"
    ]
    assert [t["title"] for t in await alice.ok("GET", "/v1/ringback/tones?category=festive")] == [
        "Spring Festival"
    ]
    assert await alice.ok("GET", "/v1/ringback/categories") == ["festive", "folk"]
    audio = await alice.request("GET", f"/v1/ringback/tones/{jasmine['tone_id']}/audio")
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert audio.content[:4] == b"RIFF" and len(audio.content) > 48000 * 2 * 1.5
    assert (await service.client().request("GET", "/v1/ringback/tones")).status_code == 401


async def test_buying_records_a_charge_and_a_validity_period(service):
    tone = await catalog_tone(service, "Jasmine", price="2.00", validity_days=30)
    alice = await service.client().sign_up("alice")
    bought = await alice.ok("POST", "/v1/me/ringback/box", 201, json={"tone_id": tone["tone_id"]})
    assert bought["source"] == "bought" and bought["usable"] and bought["expires_at"]
    renewed = await alice.ok("POST", "/v1/me/ringback/box", 201, json={"tone_id": tone["tone_id"]})
    assert renewed["expires_at"] > bought["expires_at"]  # buying again extends it
    charges = await alice.ok("GET", "/v1/me/ringback/charges")
    assert [(c["amount"], c["reason"]) for c in charges] == [(2.0, "bought"), (2.0, "bought")]
    box = await alice.ok("GET", "/v1/me/ringback/box")
    assert [i["tone"]["tone_id"] for i in box] == [tone["tone_id"]]
    response = await alice.request("POST", "/v1/me/ringback/box", json={"tone_id": "nope"})
    assert response.status_code == 404
    assert (
        await alice.request("DELETE", f"/v1/me/ringback/box/{tone['tone_id']}")
    ).status_code == 204
    assert await alice.ok("GET", "/v1/me/ringback/box") == []


async def test_personal_tones_are_private_and_limited(start_service):
    async with start_service(personal_tone_quota=2) as service:
        alice = await service.client().sign_up("alice")
        bob = await service.client().sign_up("bob")
        mine = await upload(alice, wav_bytes((700.0,), 1.0), "me.wav", title="My voice")
        assert mine.status_code == 201 and mine.json()["personal"] and mine.json()["price"] == 0
        tone_id = mine.json()["tone_id"]
        assert (await alice.ok("GET", "/v1/me/ringback/box"))[0]["source"] == "personal"
        assert all(t["tone_id"] != tone_id for t in await alice.ok("GET", "/v1/ringback/tones"))
        for method, path, body in [
            ("GET", f"/v1/ringback/tones/{tone_id}", None),
            ("GET", f"/v1/ringback/tones/{tone_id}/audio", None),
            ("POST", "/v1/me/ringback/box", {"tone_id": tone_id}),
            ("POST", "/v1/me/ringback/gifts", {"tone_id": tone_id, "to": "alice"}),
            ("DELETE", f"/v1/ringback/tones/{tone_id}", None),
        ]:
            assert (await bob.request(method, path, json=body)).status_code == 404, path
        response = await bob.request("PUT", "/v1/me/ringback", json={"default_tone_id": tone_id})
        assert response.status_code == 422
        assert (await upload(alice, wav_bytes((700.0,), 1.0), title="Two")).status_code == 201
        third = await upload(alice, wav_bytes((700.0,), 1.0), title="Three")
        assert third.status_code == 422 and third.json()["error"]["code"] == "quota_exceeded"
        assert (await alice.request("DELETE", f"/v1/ringback/tones/{tone_id}")).status_code == 204
        assert len(await alice.ok("GET", "/v1/me/ringback/box")) == 1


async def test_settings_validate_and_preview_shows_the_selection(service):
    jasmine = await catalog_tone(service, "Jasmine", validity_days=30)
    festival = await catalog_tone(service, "Festival", validity_days=30)
    alice = await service.client().sign_up("alice")
    await service.client().sign_up("boss")
    await service.client().sign_up("mum")
    await alice.ok("POST", "/v1/contacts", 201, json={"username": "mum", "group": "family"})
    for tone in (jasmine, festival):
        await alice.ok("POST", "/v1/me/ringback/box", 201, json={"tone_id": tone["tone_id"]})
    assert (await alice.ok("GET", "/v1/me/ringback/preview"))["why"] == "none"
    setting = {
        "default_tone_id": jasmine["tone_id"],
        "mode": "single",
        "timezone": "Asia/Shanghai",
        "rules": [{"tone_id": festival["tone_id"], "groups": ["family"]}],
    }
    stored = await alice.ok("PUT", "/v1/me/ringback", json=setting)
    assert stored["rules"][0]["groups"] == ["family"]
    assert await alice.ok("GET", "/v1/me/ringback") == stored
    preview = await alice.ok("GET", "/v1/me/ringback/preview?caller=mum")
    assert (preview["title"], preview["why"]) == ("Festival", "group")
    preview = await alice.ok("GET", "/v1/me/ringback/preview?caller=boss")
    assert (preview["title"], preview["why"]) == ("Jasmine", "default")

    bad = [
        ({"default_tone_id": "nope"}, "default_tone_id"),
        ({"rules": [{"tone_id": festival["tone_id"], "groups": ["exes"]}]}, "rules.0.groups"),
        (
            {"rules": [{"tone_id": festival["tone_id"], "start": "18:00", "end": "25:00"}]},
            "rules.0.end",
        ),
        ({"rules": [{"tone_id": festival["tone_id"], "days": [9]}]}, "rules.0.days"),
        ({"timezone": "Nowhere/City"}, "timezone"),
    ]
    for body, path in bad:
        response = await alice.request("PUT", "/v1/me/ringback", json=body)
        assert response.status_code == 422, body
        assert path in response.json()["error"]["message"]
    for body in ({"mode": "loud"}, {"rules": [{"tone": "x"}]}, {"rules": "all"}):
        assert (await alice.request("PUT", "/v1/me/ringback", json=body)).status_code == 422
    assert await alice.ok("GET", "/v1/me/ringback") == stored  # nothing changed


async def test_gifts_are_accepted_or_declined_and_refunded(service):
    tone = await catalog_tone(service, "Jasmine", price="2.00", validity_days=30)
    alice = await service.client().sign_up("alice")
    bob = await service.client().sign_up("bob")
    bob_app = await bob.events()
    gift = await alice.ok(
        "POST", "/v1/me/ringback/gifts", 201, json={"tone_id": tone["tone_id"], "to": "bob"}
    )
    assert (gift["from"], gift["to"], gift["state"]) == ("alice", "bob", "pending")
    assert (await bob_app.next("ringback.gift"))["gift_id"] == gift["gift_id"]
    assert (await bob.ok("GET", "/v1/me/ringback/gifts"))[0]["gift_id"] == gift["gift_id"]
    assert (
        await alice.request("POST", f"/v1/me/ringback/gifts/{gift['gift_id']}/accept")
    ).status_code == 404
    accepted = await bob.ok("POST", f"/v1/me/ringback/gifts/{gift['gift_id']}/accept")
    assert accepted["state"] == "accepted"
    assert (await bob.ok("GET", "/v1/me/ringback/box"))[0]["source"] == "gifted"
    assert await bob.ok("GET", "/v1/me/ringback/charges") == []
    again = await bob.request("POST", f"/v1/me/ringback/gifts/{gift['gift_id']}/decline")
    assert again.status_code == 409

    second = await alice.ok(
        "POST", "/v1/me/ringback/gifts", 201, json={"tone_id": tone["tone_id"], "to": "bob"}
    )
    await bob.ok("POST", f"/v1/me/ringback/gifts/{second['gift_id']}/decline")
    ledger = [(c["amount"], c["reason"]) for c in await alice.ok("GET", "/v1/me/ringback/charges")]
    assert sorted(ledger) == [(-2.0, "gift_refund"), (2.0, "gift"), (2.0, "gift")]
    for body, status in (
        ({"tone_id": tone["tone_id"], "to": "nobody"}, 404),
        ({"tone_id": tone["tone_id"], "to": "alice"}, 400),
    ):
        assert (
            await alice.request("POST", "/v1/me/ringback/gifts", json=body)
        ).status_code == status


BAD_UPLOADS = {
    "random-bytes": (b"\x13\x37" * 20000, "bad_audio"),
    "zero-length": (b"", "bad_audio"),
    "truncated-wav": (wav_bytes((500.0,), 1.0)[:30], "bad_audio"),
    "three-hours": (flac_claiming(3 * 3600), "bad_audio"),
    "text": (b"hello, I am not audio\n" * 100, "bad_audio"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
async def test_bad_uploads_are_refused_and_store_nothing(service, case):
    content, code = BAD_UPLOADS[case]
    response = await upload(service.client(), content, "bad.bin", ADMIN_KEY, title="Bad")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert await service.client().ok("GET", "/v1/ringback/tones", token=ADMIN_KEY) == []
    async with service.runtime.store.session() as session:
        from sqlalchemy import func, select

        from voice.store.models import Clip

        assert await session.scalar(select(func.count()).select_from(Clip)) == 0


async def test_an_endless_upload_is_cut_off_at_the_limit(start_service):
    async with start_service(tone_max_upload_mb=1) as service:
        sent = 0

        async def endless():
            nonlocal sent
            yield b'--XyZ\r\nContent-Disposition: form-data; name="title"\r\n\r\nBig\r\n'
            yield (
                b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
            )
            chunk = b"\x00" * 65536
            while sent < 1024**3:  # a 1 GB body, generated lazily
                sent += len(chunk)
                yield chunk

        headers = {
            "Authorization": f"Bearer {ADMIN_KEY}",
            "Content-Type": "multipart/form-data; boundary=XyZ",
        }
        try:
            async with httpx.AsyncClient(base_url=service.base_url, timeout=60) as http:
                response = await http.post("/v1/ringback/tones", content=endless(), headers=headers)
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "file_too_large"
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server may close the connection before the client stops writing
        assert sent < 64 * 1024**2, f"the server read {sent} bytes before refusing"
        # a client that announces 2 GB is refused before it sends any of it
        reader, writer = await asyncio.open_connection("127.0.0.1", service.settings.port)
        writer.write(
            b"POST /v1/ringback/tones HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {ADMIN_KEY}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
            + f"Content-Length: {2 * 1024**3}\r\n\r\n".encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        writer.close()
        assert b" 422 " in status_line
        assert await service.client().ok("GET", "/v1/ringback/tones", token=ADMIN_KEY) == []


async def test_upload_form_errors(service):
    client = service.client()
    response = await client.request(
        "POST", "/v1/ringback/tones", token=ADMIN_KEY, json={"title": "x"}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_upload"
    response = await upload(
        client, wav_bytes((500.0,), 1.0), token=ADMIN_KEY, title="x", price="free"
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "bad_field"
    response = await upload(
        client, wav_bytes((500.0,), 1.0), token=ADMIN_KEY, title="x", validity_days="-3"
    )
    assert response.status_code == 422
    response = await upload(client, wav_bytes((500.0,), 1.0), token=None, title="x")
    assert response.status_code == 401
