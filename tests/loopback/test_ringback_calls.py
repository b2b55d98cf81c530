"""Callers hear exactly the tone the callee's rules select, by spectrum, looping without a
gap; `*` copies it; an expired tone falls back to the regional ring tone."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import update

from ringback.models import BoxEntry
from tests.api.test_ringback import catalog_tone, upload
from tests.audio import band_energy
from tests.audiofiles import wav_bytes
from tests.loopback.test_calls import peers, place

CHORD, SINGLE = (750.0, 1250.0), (900.0,)


async def stocked(service):
    """bob owns a chord tone (his default) and a 900 Hz tone for his family."""
    chord = await catalog_tone(service, "Chord", CHORD, price="1.00", validity_days=30)
    single = await catalog_tone(service, "Single", SINGLE, price="2.00", validity_days=30)
    alice = await service.client().sign_up("alice")
    bob = await service.client().sign_up("bob")
    carol = await service.client().sign_up("carol")
    await bob.ok("POST", "/v1/contacts", 201, json={"username": "alice", "group": "family"})
    for tone in (chord, single):
        await bob.ok("POST", "/v1/me/ringback/box", 201, json={"tone_id": tone["tone_id"]})
    await bob.ok(
        "PUT",
        "/v1/me/ringback",
        json={
            "default_tone_id": chord["tone_id"],
            "rules": [{"tone_id": single["tone_id"], "groups": ["family"]}],
        },
    )
    return alice, bob, carol, chord, single


async def hear(peer, seconds: float = 1.5) -> np.ndarray:
    start = time.monotonic()
    await peer.wait_heard(seconds, since_s=start, timeout=20)
    return peer.received_pcm(since_s=start)


async def test_each_caller_hears_the_tone_the_rules_select(service):
    alice, bob, carol, chord, single = await stocked(service)
    alice_app, carol_app = await alice.events(), await carol.events()
    await bob.events()
    async with peers(600.0, 600.0) as (from_alice, from_carol):
        a = await place(alice, "bob", from_alice)
        c = await place(carol, "bob", from_carol)
        await from_alice.wait_for_audio(900.0, timeout=20)
        heard = await hear(from_alice)
        assert band_energy(heard, 48000, 900) > 0.8
        assert band_energy(heard, 48000, 750) + band_energy(heard, 48000, 1250) < 0.05

        heard = await hear(from_carol, 2.0)
        assert band_energy(heard, 48000, 750) > 0.3 and band_energy(heard, 48000, 1250) > 0.3
        assert band_energy(heard, 48000, 900) < 0.05

        playing = await alice_app.next("call.ringback")
        assert (playing["call_id"], playing["title"], playing["copyable"]) == (
            a["call_id"],
            "Single",
            True,
        )
        assert (await carol_app.next("call.ringback"))["title"] == "Chord"
        for client, created in ((alice, a), (carol, c)):
            await client.ok("POST", f"/v1/calls/{created['call_id']}/hangup")


async def test_a_short_tone_loops_without_a_gap(service):
    alice = await service.client().sign_up("alice")
    bob = await service.client().sign_up("bob")
    await bob.events()
    mine = await upload(bob, wav_bytes((900.0,), 0.5), "me.wav", title="Short")
    await bob.ok("PUT", "/v1/me/ringback", json={"default_tone_id": mine.json()["tone_id"]})
    async with peers(600.0) as (caller,):
        created = await place(alice, "bob", caller)
        await caller.wait_for_audio(900.0, timeout=20)
        heard = await hear(caller, 2.2)  # more than four turns of the 0.5 s loop
        frames = heard[: len(heard) // 960 * 960].reshape(-1, 960).astype(float)
        rms = np.sqrt(np.mean(frames**2, axis=1))
        # A gap at the seam would show at every turn (4 or more times here); a single frame
        # lost on a loaded machine may show once.
        low = int(np.sum(rms < 0.25 * np.median(rms)))
        assert low <= 1, np.round(rms / np.median(rms), 2)
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")


async def test_star_copies_the_playing_tone_into_the_callers_box(service):
    alice, bob, carol, chord, single = await stocked(service)
    alice_app = await alice.events()
    await bob.events()
    async with peers(600.0) as (caller,):
        created = await place(alice, "bob", caller)
        await alice_app.next("call.ringback")
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "*"})
        copied = await alice_app.next("ringback.copied")
        assert (copied["tone_id"], copied["title"]) == (single["tone_id"], "Single")
        box = await alice.ok("GET", "/v1/me/ringback/box")
        assert [(i["tone"]["tone_id"], i["source"]) for i in box] == [(single["tone_id"], "copied")]
        assert [c["amount"] for c in await alice.ok("GET", "/v1/me/ringback/charges")] == [2.0]
        await alice.ok("POST", f"/v1/calls/{created['call_id']}/hangup")


async def test_default_ring_tone_cannot_be_copied_and_expired_tones_fall_back(service):
    alice, bob, carol, chord, single = await stocked(service)
    async with service.runtime.store.session() as session:
        past = datetime.now(UTC) - timedelta(days=1)
        await session.execute(update(BoxEntry).values(expires_at=past))
    carol_app = await carol.events()
    await bob.events()
    async with peers(600.0) as (caller,):
        created = await place(carol, "bob", caller)
        await caller.wait_for_audio(450.0, timeout=20)  # the regional ring tone
        await carol.ok("POST", f"/v1/calls/{created['call_id']}/dtmf", json={"digits": "*"})
        failed = await carol_app.next("ringback.copy_failed")
        assert failed["reason"] == "not_copyable"
        preview = await bob.ok("GET", "/v1/me/ringback/preview?caller=carol")
        assert preview["tone_id"] is None
        await carol.ok("POST", f"/v1/calls/{created['call_id']}/hangup")
